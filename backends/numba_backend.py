"""The ``numba`` backend: NumPy arrays, with the elementwise and reduction ops as jitted kernels.

Matrix products stay with NumPy's BLAS; every op that walks an activation matrix runs as a
parallel Numba kernel that does the work in one pass (bias and activation fused).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import numpy as np

from .base import ACTIVATIONS, Backend


class NumbaBackend(Backend):
    """NumPy arrays, Numba kernels on all cores."""

    name = "numba"
    xp = np

    @classmethod
    def check(cls) -> str | None:
        if importlib.util.find_spec("numba") is None:
            return "Numba is not installed; install it with: pip install numba"
        return None

    def __init__(self, dtype: Any = "float64") -> None:
        super().__init__(dtype)
        self._kernels = None

    @property
    def k(self):
        """The kernel module, imported on first use so that importing the backend stays fast."""
        if self._kernels is None:
            from . import numba_kernels

            self._kernels = numba_kernels
        return self._kernels

    def describe(self) -> dict[str, str]:
        import numba

        return {
            "numba": numba.__version__,
            "threads": f"{numba.config.NUMBA_NUM_THREADS} (NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'unset')})",
            "threading layer": numba.config.THREADING_LAYER,
        }

    def _kind(self, kind: str) -> int:
        try:
            return self.k.KINDS[kind]
        except KeyError:
            raise ValueError(f"unknown activation {kind!r}; choose one of {', '.join(ACTIVATIONS)}") from None

    def asarray(self, x: Any) -> np.ndarray:
        # Kernels are compiled for C-contiguous arrays; one copy here beats a slow layout later.
        return np.ascontiguousarray(x, dtype=self.dtype)

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
        return self.k.subtract(p, y)

    def sum_rows(self, a: np.ndarray) -> np.ndarray:
        return self.k.sum_rows(a)

    def scale(self, a: np.ndarray, s: float) -> np.ndarray:
        self.k.scale(a, s)
        return a

    def sgd_update(self, param: np.ndarray, grad: np.ndarray, lr: float) -> None:
        self.k.sgd_update(param, grad, lr)
