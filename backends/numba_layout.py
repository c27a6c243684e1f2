"""Where the fused pass keeps its numbers: the flat parameter layout and cache-line buffers.

The parameters travel to the kernel, and the gradient comes back, as one flat vector, layer by
layer ``W¹ (h1, d), b¹ (h1,), W² (h2, h1), b², ...``, so one compiled kernel serves every depth
and width. :class:`FlatLayout` is the one definition of it: the backend packs and unpacks with
it, and the kernel receives its offsets. Every scratch buffer starts on a cache line (NumPy only
promises 16 bytes, and a 64-byte vector load across two lines costs two).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

CACHE_LINE = 64
#: The feature-major buffers' rows are padded to whole vectors of this many samples (the widest
#: vector, 64 bytes of float32), so the products along the samples never need a partial vector.
VECTOR_COLUMNS = 16


class FlatLayout(NamedTuple):
    """Offsets of each layer's W and b in the flat vector, and its length."""

    w_off: np.ndarray  # int64, one per layer
    b_off: np.ndarray
    size: int

    @classmethod
    def of(cls, sizes) -> FlatLayout:
        """The layout of a network of layer widths ``sizes`` (``[d, h1, ..., k]``)."""
        w_off, b_off, pos = [], [], 0
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            w_off.append(pos)
            pos += n_in * n_out
            b_off.append(pos)
            pos += n_out
        return cls(np.array(w_off, np.int64), np.array(b_off, np.int64), pos)

    @property
    def first_weights(self) -> int:
        """Length of W¹, which the kernel reads in place: the packed parameters start after it."""
        return int(self.b_off[0])

    def pack_after_first(self, layers: list, out: np.ndarray) -> np.ndarray:
        """Every parameter after W¹ (``b¹ W² b² ...``) into ``out``, in layout order."""
        np.concatenate([layers[0][1].reshape(-1), *(p.reshape(-1) for layer in layers[1:] for p in layer)], out=out)
        return out

    def unpack(self, flat: np.ndarray, layers: list) -> list:
        """``[(dW, db), ...]`` as views of ``flat``, shaped like ``layers``."""
        return [
            (flat[w:w + W.size].reshape(W.shape), flat[b:b + bias.size])
            for (W, bias), w, b in zip(layers, self.w_off.tolist(), self.b_off.tolist())
        ]


def aligned_empty(shape, dtype):
    """``np.empty`` starting on a cache line. NumPy promises 16 bytes; a 64-byte vector load that
    straddles two lines costs two loads, and runs differed by 10% with where the buffers fell."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + CACHE_LINE, np.uint8)
    start = -raw.ctypes.data % CACHE_LINE
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def padded(n, dtype):
    """``n`` rounded up to whole cache lines of ``dtype``: per-thread rows of that length each
    start on their own line (aligned, and no two threads write one line)."""
    per_line = CACHE_LINE // np.dtype(dtype).itemsize
    return -(-n // per_line) * per_line


def stride(chunk: int) -> int:
    """Row length of the feature-major buffers for ``chunk`` samples: whole vectors, and a
    multiple of a cache line for both float types."""
    return -(-chunk // VECTOR_COLUMNS) * VECTOR_COLUMNS


def workspace(threads, sizes, chunk, dtype):
    """Scratch for the fused pass, allocated once and reused every call. Zeroed, so the padding
    that the products run over holds numbers from the start."""
    d, h1 = sizes[0], sizes[1]
    shapes = (
        (d, padded(h1, dtype)),  # W¹ transposed, its rows padded to whole vectors (shared)
        (threads, chunk, padded(d, dtype)),  # the chunk's inputs as floats, sample-major
        (threads, chunk, padded(h1, dtype)),  # the first layer's product, sample-major
    )
    return (*_zeroed(shapes, dtype), *above_first_workspace(threads, sizes, chunk, dtype))


def above_first_workspace(threads, sizes, chunk, dtype):
    """The part of :func:`workspace` that the layers above the first use (``G, ACT, DZ, SM``):
    the sparse first layer (numba_sparse_path) shares it and brings its own first-layer buffers."""
    widths = sizes[1:]
    n_params = FlatLayout.of(sizes).size
    cs = stride(chunk)
    shapes = (
        (threads - 1, padded(n_params, dtype)),  # gradient accumulators of threads 1.. (0 uses grad)
        (threads, cs * sum(widths)),  # every layer's output, feature-major
        (threads, 2, cs * max(widths)),  # dZ of this layer and the one below
        (threads, 2, cs),  # per-sample softmax scratch: max and total
    )
    return _zeroed(shapes, dtype)


def _zeroed(shapes, dtype):
    buffers = tuple(aligned_empty(shape, dtype) for shape in shapes)
    for buffer in buffers:
        buffer[...] = 0
    return buffers


def read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a``. Numba compiles a separate kernel for read-only arrays (memory
    maps, ``np.frombuffer``): 13 s more on first meeting one. The fused passes only read their
    inputs, so they always get them read-only, and one compiled kernel serves both kinds."""
    view = a.view()
    view.flags.writeable = False
    return view
