"""The ``numba-cuda`` backend: the contract on Numba CUDA device arrays, every op a CUDA kernel.

Arrays stay on the device through a step; the loss is a one-element device array read back only
by ``to_float``. Selectable as ``NETCORE_BACKEND=numba-cuda``; ``auto`` never picks it (CuPy is the
default GPU backend). With ``NUMBA_ENABLE_CUDASIM=1`` it runs on Numba's CUDA simulator, slowly
but anywhere, which is how its kernels are tested without a GPU.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import numpy as np

from .base import Backend, activation_code, check_output

INSTALL_HINT = "install it with: pip install 'netcore[numba-cuda]' (the numba-cuda package)"


def _on_device(x: Any) -> bool:
    """A Numba device array (the simulator's too, which lacks cuda.is_cuda_array)."""
    return hasattr(x, "copy_to_host")


class NumbaCudaBackend(Backend):
    """Numba CUDA device arrays and hand-written kernels."""

    name = "numba-cuda"
    xp = None

    @classmethod
    def check(cls) -> str | None:
        if importlib.util.find_spec("numba") is None:
            return f"Numba is not installed; {INSTALL_HINT}"
        try:
            from numba import cuda
        except Exception as exc:
            return f"numba.cuda failed to import ({exc}); {INSTALL_HINT}"
        if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
            return None
        try:
            if cuda.is_available() and len(cuda.gpus) > 0:
                return None
        except Exception as exc:
            return f"no usable CUDA device ({exc}); check the driver with `nvidia-smi`"
        return "no CUDA device or driver found (numba.cuda.is_available() is False); check `nvidia-smi`"

    def __init__(self, dtype: Any = "float64") -> None:
        super().__init__(dtype)
        from numba import cuda

        from . import numba_cuda_kernels, numba_cuda_outputs

        self.cuda, self.m, self.outputs = cuda, numba_cuda_kernels, numba_cuda_outputs
        self._k = None

    @property
    def k(self):
        if self._k is None:
            self._k = self.m.kernels(self.dtype.name)
        return self._k

    def describe(self) -> dict[str, str]:
        if self.m.SIMULATED:
            return {"device": "Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"}
        dev = self.cuda.get_current_device()
        return {"device": dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name), "compute capability": str(dev.compute_capability)}

    def _launch(self, kernel, n: int, *args) -> None:
        kernel[self.m.blocks(n), self.m.THREADS](*args)

    def _kind(self, kind: str) -> int:
        return activation_code(kind)

    def _scalar(self, x: float) -> Any:
        """A scalar argument in the compute dtype: a Python float would make Numba compile the
        kernel's arithmetic in double precision."""
        return self.dtype.type(x)

    def _empty(self, shape, dtype=None) -> Any:
        return self.cuda.device_array(shape, dtype=dtype or self.dtype)

    # -- conversion -------------------------------------------------------------------------
    def asarray(self, x: Any) -> Any:
        if _on_device(x) and x.dtype == self.dtype:
            return x
        return self.cuda.to_device(np.ascontiguousarray(np.asarray(x), dtype=self.dtype))

    def input_array(self, X: np.ndarray) -> Any:
        if X.dtype != np.uint8:
            return self.asarray(X)
        raw = self.cuda.to_device(np.ascontiguousarray(X))
        out = self._empty(X.shape)
        self._launch(self.k.from_uint8, X.size, raw.reshape(-1), self.dtype.type(1 / 255), out.reshape(-1))
        return out

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.copy_to_host() if _on_device(x) else np.asarray(x)

    def to_float(self, x: Any) -> float:
        return float(self.to_numpy(x).reshape(-1)[0])

    def copy(self, x: Any) -> Any:
        out = self.cuda.device_array_like(x)
        out.copy_to_device(x)
        return out

    def zeros_like(self, x: Any) -> Any:
        out = self.cuda.device_array_like(x)
        self._launch(self.k.fill, out.size, out.reshape(-1), self._scalar(0))
        return out

    def take_rows(self, x: Any, rows: np.ndarray) -> Any:
        out = self._empty((len(rows), x.shape[1]), x.dtype)
        self._launch(self.k.take_rows, out.size, x, self.cuda.to_device(np.asarray(rows, dtype=np.int64)), out)
        return out

    # -- matrix products --------------------------------------------------------------------
    def _gemm(self, a: Any, b: Any, trans_a: bool, trans_b: bool) -> Any:
        M = a.shape[1] if trans_a else a.shape[0]
        N = b.shape[0] if trans_b else b.shape[1]
        out = self._empty((M, N))
        self.k.gemm[self.m.gemm_grid(M, N), (self.m.TILE, self.m.TILE)](a, b, out, trans_a, trans_b)
        return out

    def matmul(self, a: Any, b: Any) -> Any:
        return self._gemm(a, b, False, False)

    def matmul_nt(self, a: Any, b: Any) -> Any:
        return self._gemm(a, b, False, True)

    def matmul_tn(self, a: Any, b: Any) -> Any:
        return self._gemm(a, b, True, False)

    # -- layers -----------------------------------------------------------------------------
    def add_bias(self, z: Any, b: Any) -> Any:
        self._launch(self.k.bias_activation, z.size, z, b, -1)
        return z

    # identity (g(z) = z, g' = 1) needs no kernel: the bias alone, or nothing
    def activation(self, z: Any, kind: str) -> Any:
        if kind != "identity":
            self._launch(self.k.activation, z.size, z.reshape(-1), self._kind(kind))
        return z

    def dense(self, a: Any, w: Any, b: Any, kind: str) -> Any:
        z = self.matmul_nt(a, w)
        self._launch(self.k.bias_activation, z.size, z, b, -1 if kind == "identity" else self._kind(kind))
        return z

    def activation_backward(self, a: Any, grad: Any, kind: str) -> Any:
        if kind != "identity":
            self._launch(self.k.activation_backward, a.size, a.reshape(-1), grad.reshape(-1), self._kind(kind))
        return grad

    # -- output layer and loss --------------------------------------------------------------
    def softmax(self, z: Any) -> Any:
        out = self._empty(z.shape)
        self._launch(self.k.softmax, z.shape[0], z, out)
        return out

    def _sum(self, v: Any, scale: float) -> Any:
        out = self._empty(1)
        self.k.total[1, self.m.THREADS](v, self._scalar(scale), out)
        return out

    def cross_entropy(self, z: Any, y: Any) -> Any:
        rows = self._empty(z.shape[0])
        self._launch(self.k.cross_entropy_rows, z.shape[0], z, y, rows)
        return self._sum(rows, 1 / z.shape[0])

    def softmax_cross_entropy_delta(self, p: Any, y: Any) -> Any:
        out = self._empty(p.shape)
        self._launch(self.k.subtract, p.size, p.reshape(-1), y.reshape(-1), out.reshape(-1))
        return out

    # -- output layers beyond softmax ----------------------------------------------------------
    def output(self, z: Any, kind: str) -> Any:
        if check_output(kind) == "softmax":
            return self.softmax(z)
        out = self._empty(z.shape)
        self._launch(self.outputs.values, z.size, z.reshape(-1), self.outputs.CODES[kind], out.reshape(-1))
        return out

    def output_loss(self, z: Any, y: Any, kind: str, weights: Any = None) -> tuple[Any, Any]:
        if check_output(kind) == "softmax" and weights is None:
            return self.softmax_cross_entropy(z, y)
        n = z.shape[0]
        k = self.outputs
        rows, delta = self._empty(n, np.float64), self._empty(z.shape)
        self._launch(k.rows, n, z, y, k.CODES[kind], rows, delta)
        if weights is not None:  # rows scaled by n w / Σw: the weighted mean, and its gradient
            total = self.to_float(self._sum(weights.reshape(-1), 1.0))
            self._launch(k.weigh, n, rows, delta, weights, n / total)
        return self._sum(rows, 1 / n), delta

    # -- sparse inputs ------------------------------------------------------------------------
    def sparse_input(self, X: Any) -> Any:
        # No sparse kernels here: the rows go to the device dense (the whole matrix, so mind its size).
        return self.asarray(super().sparse_input(X).toarray())

    # -- reductions and updates -------------------------------------------------------------
    def sum_rows(self, a: Any) -> Any:
        # Passes of chunked column sums (many threads each, not one a column), until one row is left.
        while True:
            out = self._empty((self.m.sum_rows_chunks(a.shape[0]), a.shape[1]))
            self._launch(self.k.sum_rows, out.size, a, out)
            if out.shape[0] == 1:
                return out.reshape(out.shape[1])
            a = out

    def sum_squares(self, a: Any) -> Any:
        sq = self._empty(a.size)
        self._launch(self.k.square, a.size, a.reshape(-1), sq)
        return self._sum(sq, 1.0)

    def all_finite(self, a: Any) -> bool:
        return bool(np.isfinite(self.to_numpy(a)).all())  # parameters: kilobytes, once an epoch

    def scale(self, a: Any, s: float) -> Any:
        self._launch(self.k.scale, a.size, a.reshape(-1), self._scalar(s))
        return a

    def sgd_update(self, param: Any, grad: Any, lr: float) -> None:
        self._launch(self.k.sgd_update, param.size, param.reshape(-1), grad.reshape(-1), self._scalar(lr))

    def adam_update(self, param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float, eps: float) -> None:
        t = self._scalar
        self._launch(self.k.adam_update, param.size, param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1), t(lr), t(beta1), t(beta2), t(eps))

    # -- labels -------------------------------------------------------------------------------
    def one_hot(self, labels: np.ndarray, n_classes: int) -> Any:
        out = self._empty((len(labels), n_classes))
        self._launch(self.k.one_hot, len(labels), self.cuda.to_device(np.asarray(labels, dtype=np.int64)), out)
        return out

    def argmax_rows(self, a: Any) -> np.ndarray:
        out = self._empty(a.shape[0], np.int64)
        self._launch(self.k.argmax_rows, a.shape[0], a, out)
        return out.copy_to_host()

