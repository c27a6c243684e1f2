"""The ``numba`` backend: NumPy arrays, with the elementwise and reduction ops as jitted kernels.

Matrix products stay with NumPy's BLAS; every op that walks an activation matrix runs as a
parallel Numba kernel that does the work in one pass (bias and activation fused).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import time
from typing import Any

import numpy as np

from .base import IDENTITY, Backend, activation_code, check_dtype, is_sparse
from .numba_layout import read_only as _read_only
from .numba_sparse_choice import check_first_layer, policy
from .numba_sparse_path import SparseFirstLayer
from .numba_sparse_rows import SparseRows, is_csr

log = logging.getLogger("netcore")

# Bytes of (float) input rows per chunk of the fused pass: small enough that the chunk, the first
# layer's weights and its gradient rows stay in L2 (1 MB a core here). 128 MNIST rows of float32
# measured best of 64 / 128 / 256.
CHUNK_BYTES = 128 * 784 * 4


def _write_back(*pairs: tuple[np.ndarray, np.ndarray]) -> None:
    """After a kernel updated ``flat = a.reshape(-1)`` in place: where ``a`` is not contiguous,
    ``reshape`` may have copied it, and the update is copied back rather than lost."""
    for a, flat in pairs:
        if not a.flags.c_contiguous:
            a[...] = flat.reshape(a.shape)


class NumbaBackend(Backend):
    """NumPy arrays, Numba kernels on all cores."""

    name = "numba"
    xp = np

    @classmethod
    def check(cls) -> str | None:
        if importlib.util.find_spec("numba") is None:
            return "Numba is not installed; install it with: pip install numba"
        return None

    #: Seconds a cold compile of the fused kernels takes (one dtype and input type; measured on
    #: the machine in README's Speed section), and how much faster than NumPy the fused pass
    #: runs once compiled: what :meth:`pays_for` weighs.
    COLD_COMPILE_S = 9.0  # float32 on uint8 8.0-8.6 s, float64 7.4 s, sparse 8.1 s; AVX2 path 9.3 s (Zen 5, 2026-11-30)
    NUMPY_GFLOPS = 50.0
    SPEEDUP = 5.0

    @classmethod
    def kernels_cached(cls, dtype: Any) -> bool:
        """Whether the fused kernels for ``dtype`` compute are in Numba's on-disk cache for the CPU
        this process compiles for (so a run loads them in well under a second)."""
        from . import numba_fused

        import numba

        wanted = numba.from_dtype(check_dtype(dtype))
        dispatcher = numba_fused._thread_pass
        magic = dispatcher.targetctx.codegen().magic_tuple()
        try:
            index = dispatcher._cache._cache_file._load_index()  # {(signature, target, source hash): file}
        except (OSError, EOFError, ValueError):
            return False
        return any(key[1] == magic and getattr(key[0][-2], "dtype", None) == wanted for key in index)  # [-2]: the gradient

    @classmethod
    def pays_for(cls, work: float, dtype: Any) -> tuple[bool, str]:
        """Whether a run of ``work`` floating-point operations finishes sooner here than on NumPy,
        counting a cold compile if the kernels are not cached; and why, in words."""
        if cls.kernels_cached(dtype):
            return True, "its kernels are cached"
        numpy_s = work / (cls.NUMPY_GFLOPS * 1e9)
        numba_s = cls.COLD_COMPILE_S + numpy_s / cls.SPEEDUP
        if numba_s < numpy_s:
            return True, f"a run of {work / 1e9:.3g} GFLOP pays for compiling its kernels (about {cls.COLD_COMPILE_S:.0f} s)"
        return False, (f"its kernels are not compiled yet: about {cls.COLD_COMPILE_S:.0f} s, against about {numpy_s:.2g} s "
                       f"for this run's {work / 1e9:.3g} GFLOP on numpy")

    def __init__(self, dtype: Any = "float64", first_layer: str = "auto") -> None:
        super().__init__(dtype)
        self.first_layer = check_first_layer(first_layer)  # see the sparse first layer's hook below
        self.sparse = SparseFirstLayer(self)
        self._kernels = None
        self._fused = None
        self._layout = None
        self._isa = None
        self._aligned_w1 = None  # the last W¹ seen to be placed right (checking costs 2 us a step)
        self._workspaces: dict[tuple, tuple] = {}
        self._compiled: set[np.dtype] = set()  # input dtypes whose kernels have run once

    @property
    def k(self):
        """The kernel module, imported on first use so that importing the backend stays fast."""
        if self._kernels is None:
            from . import numba_kernels

            self._kernels = numba_kernels
        return self._kernels

    @property
    def f(self):
        """The fused-pass module, imported on first use."""
        if self._fused is None:
            from . import numba_fused

            self._fused = numba_fused
        return self._fused

    @property
    def isa(self):
        """The vector instruction set the fused kernels are compiled for (:mod:`netcore.backends.numba_isa`)."""
        if self._isa is None:
            from .numba_isa import target_isa

            self._isa = target_isa()  # fixed for the life of the process, as Numba's target is
        return self._isa

    @property
    def layout(self):
        """The fused pass's memory layout module (flat parameters, cache-line buffers)."""
        if self._layout is None:
            from . import numba_layout

            self._layout = numba_layout
        return self._layout

    def describe(self) -> dict[str, str]:
        import numba

        from .numba_threads import blas_spin_state

        return {
            "numba": numba.__version__,
            "threads": f"{numba.config.NUMBA_NUM_THREADS} (NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'unset')})",
            "threading layer": numba.config.THREADING_LAYER,
            "vector ISA": f"{self.isa.name} ({self.isa.vector_bytes}-byte vectors, {self.isa.registers} registers)",
            "BLAS threads": blas_spin_state(),
            "first layer": self.first_layer_policy(),
        }

    def _kind(self, kind: str) -> int:
        return activation_code(kind)

    def asarray(self, x: Any) -> np.ndarray:
        # Kernels are compiled for C-contiguous arrays; one copy here beats a slow layout later.
        return np.ascontiguousarray(x, dtype=self.dtype)

    def asparameter(self, x: Any) -> np.ndarray:
        # On a cache line: the fused kernels read W¹ in place, and a misaligned W¹ costs up to 10%.
        x = np.asarray(x)
        out = self.layout.aligned_empty(x.shape, self.dtype)
        out[...] = x
        return out

    def input_array(self, X: np.ndarray) -> np.ndarray | SparseRows:
        # uint8 images stay uint8 (a quarter of float32's bytes); the kernels scale by 1/255.
        # A SciPy CSR matrix stays compressed (the sparse first layer's hook, below).
        return self.prepare_inputs(X)

    def _scale_of(self, X: np.ndarray):
        return self.dtype.type(1 / 255 if X.dtype == np.uint8 else 1)

    def matmul_nt(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if isinstance(a, SparseRows):
            return self.sparse.matmul_nt(a, b)
        # uint8 inputs reach the op-by-op path only for prediction; scale a float copy there.
        return (self.input_array_float(a) if a.dtype == np.uint8 else a) @ b.T

    def matmul_tn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if isinstance(b, SparseRows):
            return self.sparse.matmul_tn(a, b)
        if is_sparse(b):  # the sparse first layer: the contract's product
            return super().matmul_tn(a, b)
        return a.T @ (self.input_array_float(b) if b.dtype == np.uint8 else b)

    def adam_update(self, param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, beta1: float, beta2: float, eps: float) -> None:
        t = self.dtype.type  # Python floats would make the kernel compute in float64
        p, m_, v_ = param.reshape(-1), m.reshape(-1), v.reshape(-1)
        self.k.adam_update(p, grad.reshape(-1), m_, v_, t(lr), t(beta1), t(beta2), t(eps))
        _write_back((param, p), (m, m_), (v, v_))

    def adam_update_l2(self, param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, beta1: float, beta2: float, eps: float, l2: float) -> float:
        t = self.dtype.type
        p, m_, v_ = param.reshape(-1), m.reshape(-1), v.reshape(-1)
        squares = self.k.adam_update_l2(p, grad.reshape(-1), m_, v_, t(lr), t(beta1), t(beta2), t(eps), t(l2))
        _write_back((param, p), (m, m_), (v, v_))
        return squares

    def _first_call_notice(self, input_dtype: np.dtype, kernel, *args):
        """Call ``kernel``; on a first call that runs past a second (compiling, not loading from
        the cache), say so while it compiles, and how long it took once done."""
        if input_dtype in self._compiled:  # dtype objects, not their names: .name costs microseconds
            return kernel(*args)
        message = f"numba: compiling the fused kernels for {self.dtype.name} compute on {input_dtype.name} inputs (once; cached on disk for later runs)..."
        timer = threading.Timer(1.0, log.warning, (message,))
        timer.start()
        start = time.perf_counter()
        try:
            result = kernel(*args)
        finally:
            timer.cancel()  # an interrupted or failed compile says nothing more
        self._compiled.add(input_dtype)
        if time.perf_counter() - start > 1.0:
            log.warning("numba: fused kernels ready after %.1f s", time.perf_counter() - start)
        return result

    def input_array_float(self, X: np.ndarray) -> np.ndarray:
        """uint8 intensities as floats in 0..1, the way the fused kernel reads them."""
        return X * self._scale_of(X)

    def loss_and_gradients(
        self, layers: list, X: np.ndarray, Y: np.ndarray, activation: str, rows: np.ndarray | None, generic,
        output: str = "softmax", weights: Any = None,
    ) -> tuple:
        """The whole batch gradient in one pass over X; see :mod:`netcore.backends.numba_fused`.

        The fused pass covers dense inputs, a softmax output without sample weights and the
        tanh / relu / sigmoid activations; everything else runs the contract's generic path.
        The gradients and logits live in buffers reused by the next call of the same shape (so a
        mini-batch step allocates nothing), as the contract allows.
        """
        if isinstance(X, SparseRows):
            if output == "softmax" and weights is None and self._kind(activation) != IDENTITY:
                return self.sparse.loss_and_gradients(layers, X, Y, activation, rows)
            X = X.to_csr(self.dtype)  # what the sparse pass does not cover runs on SciPy CSR (converted once)
        if output != "softmax" or weights is not None or self._kind(activation) == IDENTITY or is_sparse(X):
            return super().loss_and_gradients(layers, X, Y, activation, rows, generic, output, weights)
        import numba

        from .numba_threads import short_blas_spin

        short_blas_spin()  # once: a spinning BLAS pool would take a core from every step
        f, lay = self.f, self.layout
        # The kernels are compiled for C-contiguous X and Y (and chosen by dtype alone): a
        # transposed or column-sliced array would be misread, so it is copied (no-op otherwise).
        X, Y = np.ascontiguousarray(X), np.ascontiguousarray(Y)
        sizes = (layers[0][0].shape[1], *(W.shape[0] for W, _ in layers))
        rows = np.arange(len(X)) if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
        n, threads = len(rows), numba.get_num_threads()
        fits, per_thread = CHUNK_BYTES // (X.shape[1] * self.dtype.itemsize), -(-n // threads)
        # A mini-batch runs as one chunk a thread up to twice the budget: a thread's second chunk
        # reads and writes its whole W¹ gradient again, and 200 float64 rows in chunks of 64 split
        # 128 / 72 over 2 threads (an epoch of batch-200 steps: 158 ms, one chunk a thread 122).
        # Its rows split evenly: 100 / 100, not 104 / 96 (rounded to 8 rows, the step waited for
        # the larger share: the AVX2 epoch's steps 103 -> 98 ms)
        chunk = max(8, per_thread if per_thread <= 2 * fits else fits // 8 * 8)
        key = (threads, sizes, chunk)
        if key not in self._workspaces:
            flat = lay.FlatLayout.of(sizes)
            buffers = {"params": lay.aligned_empty(flat.size - flat.first_weights, self.dtype),
                       "grad": lay.aligned_empty(flat.size, self.dtype)}
            # what every step of this shape passes or returns, made once: the sizes, the row
            # stride, and the gradient's views (the same buffer every step, as the contract allows)
            fixed = (np.array(sizes, dtype=np.int64), lay.stride(chunk), flat.unpack(buffers["grad"], layers))
            self._workspaces[key] = (flat, lay.workspace(threads, sizes, chunk, self.dtype), buffers, {}, fixed)
        flat, scratch, buffers, logits_by_n, (sizes_array, stride, grads) = self._workspaces[key]
        W1 = layers[0][0]
        if W1 is not self._aligned_w1:
            if not (W1.dtype == self.dtype and W1.flags.c_contiguous and W1.ctypes.data % lay.CACHE_LINE == 0):
                W1 = self.asparameter(W1)  # set from outside (MLP.set_parameters places them right)
            else:
                self._aligned_w1 = W1  # (an array keeps its dtype, layout and address unless changed in place)
        # W¹ is read where it lies; the rest (small) is gathered into one flat vector
        flat.pack_after_first(layers, buffers["params"])
        if n not in logits_by_n:
            if len(logits_by_n) >= 4:  # a few batch sizes recur (full, batch_size, the last partial batch)
                logits_by_n.clear()
            logits_by_n[n] = lay.aligned_empty((sizes[-1], n), self.dtype)
        ZT = logits_by_n[n]
        loss = self._first_call_notice(
            X.dtype,
            f.loss_and_gradients,
            self.isa, _read_only(X), _read_only(rows), self._scale_of(X), _read_only(Y), _read_only(W1), buffers["params"],
            sizes_array, flat.w_off, flat.b_off,
            self._kind(activation), chunk, stride, *scratch, buffers["grad"], ZT,
        )
        return loss, list(grads), ZT.T  # (n, k), a transposed view

    def add_bias(self, z: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.k.bias_activation(z, b, -1)
        return z

    def activation(self, z: np.ndarray, kind: str) -> np.ndarray:
        self.k.activation(z, self._kind(kind))
        return z

    def dense(self, a: np.ndarray, w: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
        z = self.matmul_nt(a, w)
        self.k.bias_activation(z, b, self._kind(kind))
        return z

    def activation_backward(self, a: np.ndarray, grad: np.ndarray, kind: str) -> np.ndarray:
        self.k.activation_backward(a, grad, self._kind(kind))
        return grad

    def softmax(self, z: np.ndarray) -> np.ndarray:
        return self.k.softmax(z)

    def cross_entropy(self, z: np.ndarray, y: np.ndarray) -> float:
        return self.k.cross_entropy(z, y)

    def softmax_cross_entropy_delta(self, p: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.empty_like(p)
        self.k.subtract(p.reshape(-1), y.reshape(-1), out.reshape(-1))
        return out

    def sum_rows(self, a: np.ndarray) -> np.ndarray:
        return self.k.sum_rows(a)

    def scale(self, a: np.ndarray, s: float) -> np.ndarray:
        flat = a.reshape(-1)
        self.k.scale(flat, self.dtype.type(s))
        _write_back((a, flat))
        return a

    def sgd_update(self, param: np.ndarray, grad: np.ndarray, lr: float) -> None:
        flat = param.reshape(-1)
        self.k.sgd_update(flat, grad.reshape(-1), self.dtype.type(lr))
        _write_back((param, flat))

    # -- the sparse first layer (backends/numba_sparse_path.py) -----------------------------------
    # ``first_layer``: "auto" (by the inputs' density), "sparse" or "dense". ``prepare_inputs``
    # compresses mostly-zero inputs; ``loss_and_gradients`` and the products above hand them to it.
    def prepare_inputs(self, X: Any, layer_sizes: Any = None, batch_size: int | None = None) -> np.ndarray | SparseRows:
        if is_sparse(X) and not is_csr(X):
            X = X.tocsr()  # other SciPy formats: the sparse pass reads rows
        if is_csr(X) and self.first_layer == "dense":
            X = X.toarray()  # the one case a CSR matrix is densified: asked for
        if not is_csr(X):
            X = np.ascontiguousarray(X) if X.dtype == np.uint8 else self.asarray(X)
        return self.sparse.prepare(X, self.first_layer, layer_sizes, batch_size)

    def first_layer_path(self, X: Any) -> tuple[str, str]:
        return self.sparse.path(X, self.first_layer)

    def first_layer_choice(self, X: Any, layer_sizes: Any, batch_size: int | None = None) -> tuple[str, str]:
        if is_sparse(X) and not is_csr(X):
            X = X.tocsr()
        return self.sparse.choice(X, self.first_layer, layer_sizes, batch_size)

    def first_layer_policy(self) -> str:
        return f"auto: {policy()}" if self.first_layer == "auto" else f"{self.first_layer} (forced: first_layer={self.first_layer!r})"
