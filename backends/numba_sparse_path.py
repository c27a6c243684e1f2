"""The host side of the ``numba`` backend's sparse first layer: the choice, made once per fit
when data is prepared, its buffers, and the calls into :mod:`netcore.backends.numba_sparse`.

With ``first_layer="auto"`` a network's inputs are counted and compressed
(:class:`~netcore.backends.numba_sparse_rows.SparseRows`) when their share of nonzeros is below the
crossover measured for the network's first layer and batch size
(:mod:`netcore.backends.numba_sparse_choice`); ``"sparse"`` and ``"dense"`` force either. A SciPy CSR
matrix is taken as it is unless ``"dense"`` is forced. :meth:`SparseFirstLayer.choice` says which
path inputs will take and why before they are prepared (what ``netcore train`` prints),
:meth:`SparseFirstLayer.path` the same of prepared inputs.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .numba_sparse_choice import choose
from .numba_sparse_rows import SparseRows, is_csr

#: Lanes of the sparse pass's vectors (numba_sparse_lanes.LANES, without importing Numba here).
LANES = 16

#: Rows the density is counted on (every k-th row of a larger X).
SAMPLE_ROWS = 4096

#: Samples per chunk of the sparse pass: measured best of 128-2,048 for the tutorial's network
#: (the small layers above the first run along a chunk's samples, and like long chunks).
CHUNK = 512


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def row_width(h: int, dtype: np.dtype) -> int:
    """The row length of the transposed weights, their gradient and a chunk's sums for a first
    layer of ``h`` neurons: whole 16-lane vectors, and an odd number of cache lines. The kernels
    walk a column of 16 of them down all the rows; with an even number of lines between rows
    those fall in a fraction of L1's sets (a 256-wide layer: 4 of 64) and evict each other,
    which made a 256-wide step 4x slower."""
    per_line = 64 // np.dtype(dtype).itemsize
    lines = _round_up(h, LANES) // per_line
    return (lines + 1 - lines % 2) * per_line


def density(X: np.ndarray, rows: int = SAMPLE_ROWS) -> float:
    """The share of nonzero entries, counted on every k-th row to about ``rows`` of them (the
    choice needs two digits, not all 47 MB of MNIST's images: 0.1 ms rather than 1.6 ms a fit)."""
    step = max(1, len(X) // rows)
    sample = X[::step]
    return np.count_nonzero(sample) / max(1, sample.size)


class _Compiled(NamedTuple):
    """The key under which the backend's first-call notice remembers a compiled kernel."""

    name: str


class SparseFirstLayer:
    """The sparse path of one :class:`~netcore.backends.numba_backend.NumbaBackend`: its choice, its
    buffers (reused by every call of the same shape, as the dense pass's are) and its calls."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.dtype = backend.dtype
        self._workspaces: dict[tuple, tuple] = {}
        # why inputs prepared for the dense path took it (a SparseRows carries its own reason)
        self._reasons: dict[int, tuple[weakref.ref, str]] = {}

    # -- the choice ------------------------------------------------------------------------
    def choice(self, X: Any, first_layer: str, layer_sizes: Sequence[int] | None = None, batch_size: int | None = None) -> tuple[str, str]:
        """``(path, reason)``: the path host inputs ``X`` will take, from a count of their nonzeros
        on a sample of rows (nothing is compressed; ``netcore train`` prints it before training).
        ``"auto"`` needs the network (``layer_sizes``) to choose for; without one the array
        stays as it is."""
        if is_csr(X) and first_layer != "dense":  # forced dense, the backend densifies it first
            return "sparse", "the input is a SciPy CSR matrix, taken as it is"
        if first_layer != "auto":
            return first_layer, f"forced: first_layer={first_layer!r}"
        if layer_sizes is None:
            return "dense", "auto: prepared without a network to choose for"
        return choose(density(X), layer_sizes[1], self.dtype.name, len(X), batch_size)

    def prepare(self, X: Any, first_layer: str, layer_sizes: Sequence[int] | None = None, batch_size: int | None = None) -> np.ndarray | SparseRows:
        """Host inputs (converted by the backend, or a SciPy CSR matrix, which the backend densifies
        first only where ``"dense"`` is forced) -> the form the first layer reads, as
        :meth:`choice` says: the array as it is, or its compressed rows."""
        path, reason = self.choice(X, first_layer, layer_sizes, batch_size)
        if is_csr(X):
            return SparseRows.from_csr(X, self.dtype, reason)
        if path == "sparse":
            return SparseRows.from_dense(X, reason=reason)
        self._reasons = {key: entry for key, entry in self._reasons.items() if entry[0]() is not None}
        self._reasons[id(X)] = (weakref.ref(X), reason)
        return X

    def path(self, X: Any, first_layer: str) -> tuple[str, str]:
        """``(path, reason)`` for prepared inputs: ``"sparse"`` or ``"dense"``, and why."""
        if isinstance(X, SparseRows):
            return "sparse", X.reason
        ref, reason = self._reasons.get(id(X), (None, None))
        if ref is not None and ref() is X:
            return "dense", reason
        if first_layer == "dense":
            return "dense", "forced: first_layer='dense'"
        return "dense", "auto: prepared without a network to choose for"

    # -- the fused pass ----------------------------------------------------------------------
    def loss_and_gradients(self, layers: list, S: SparseRows, Y: np.ndarray, activation: str, rows: np.ndarray | None) -> tuple:
        """The whole batch gradient over compressed rows; the same contract (and buffer reuse)
        as the dense pass, ``NumbaBackend.loss_and_gradients``."""
        import numba

        from . import numba_layout as lay
        from . import numba_sparse as kernels

        backend, dtype = self.backend, self.dtype
        sizes = (S.shape[1], *(W.shape[0] for W, _ in layers))
        rows = np.arange(len(S)) if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
        n, threads = len(rows), numba.get_num_threads()
        chunk = max(LANES, min(CHUNK, _round_up(-(-n // threads), LANES)))  # whole 16 x 16 blocks (see _transpose)
        key = (threads, sizes, chunk)
        if key not in self._workspaces:
            flat = lay.FlatLayout.of(sizes)
            d, hp = sizes[0], row_width(sizes[1], dtype)
            G, ACT, DZ, SM = lay.above_first_workspace(threads, sizes, chunk, dtype)  # the dense pass's, less its first layer's
            W1T = lay.aligned_empty((d + 1, hp), dtype)  # and the bias
            W1T[:] = 0  # the padding columns and the last row stay 0
            buffers = (W1T, lay.aligned_empty((threads, chunk * hp), dtype), lay.aligned_empty((threads, d * hp), dtype), G, ACT, DZ, SM)
            self._workspaces[key] = (flat, buffers, lay.aligned_empty(flat.size - flat.first_weights, dtype), lay.aligned_empty(flat.size, dtype), {})
        flat, (W1T, ZC, G1T, G, ACT, DZ, SM), params, grad, logits_by_n = self._workspaces[key]
        flat.pack_after_first(layers, params)
        if n not in logits_by_n:
            if len(logits_by_n) >= 4:  # a few batch sizes recur (full, batch_size, the last partial batch)
                logits_by_n.clear()
            logits_by_n[n] = lay.aligned_empty((sizes[-1], n), dtype)
        ZT = logits_by_n[n]
        loss = backend._first_call_notice(
            _Compiled(f"sparse {S.dtype.name} ({S.indices.dtype.name} columns)"),
            kernels.loss_and_gradients,
            backend.isa, S.values, S.indices, S.indptr, backend._scale_of(S), lay.read_only(rows), lay.read_only(np.ascontiguousarray(Y)),
            np.ascontiguousarray(layers[0][0], dtype=dtype), W1T, params,
            np.array(sizes, dtype=np.int64), flat.w_off, flat.b_off,
            backend._kind(activation), chunk, lay.stride(chunk), ZC, G1T, G, ACT, DZ, SM, grad, ZT,
        )
        return loss, flat.unpack(grad, layers), ZT.T

    # -- the op-by-op products (prediction and evaluation) ---------------------------------------
    def matmul_nt(self, S: SparseRows, W: np.ndarray) -> np.ndarray:
        """``S @ W.T``: the first layer's product alone, ``(n, out)``."""
        from . import numba_sparse as kernels

        h, d = W.shape
        hp = row_width(h, self.dtype)
        W1T = np.zeros((d + 1, hp), self.dtype)  # no bias: its row stays 0
        W1T[:d, :h] = W.T * self.backend._scale_of(S)
        out = np.empty((len(S), hp), self.dtype)
        kernels.products_nt(S.values, S.indices, S.indptr, np.arange(len(S)), W1T, h, out)
        return np.ascontiguousarray(out[:, :h])

    def matmul_tn(self, A: np.ndarray, S: SparseRows) -> np.ndarray:
        """``A.T @ S``: the first layer's weight gradient alone, ``(out, d)``."""
        from . import numba_sparse as kernels

        n, h = A.shape
        hp = row_width(h, self.dtype)
        dZ = np.zeros((n, hp), self.dtype)
        dZ[:, :h] = A
        G1T = np.zeros((S.shape[1], hp), self.dtype)
        kernels.products_tn(S.values, S.indices, S.indptr, np.arange(n), dZ, h, G1T)
        return np.ascontiguousarray(G1T[:, :h].T) * self.backend._scale_of(S)
