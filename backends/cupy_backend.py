"""The ``cupy`` backend: the contract's defaults on CuPy device arrays, plus fused kernels.

Arrays stay on the device for a whole step; only ``to_numpy``/``to_float`` copy back, and the
network calls them only when a result is reported. Kernels are built on first use, so importing
this module (or ``backends``) never needs a GPU.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from .base import ACTIVATIONS, Backend

INSTALL_HINT = (
    "install the CuPy build matching your CUDA driver: pip install 'netcore[cuda12]' (cupy-cuda12x) "
    "or 'netcore[cuda13]' (cupy-cuda13x); `nvidia-smi` shows the highest CUDA version the driver supports"
)

# Elementwise bodies, one per activation; ``a = g(z + b)`` and ``g *= g'(z)`` written with a = g(z).
_FORWARD = {
    "tanh": "a = tanh(z + b)",
    "relu": "T v = z + b; a = v > (T)0 ? v : (T)0",
    "sigmoid": "a = (T)1 / ((T)1 + exp(-(z + b)))",
}
_BACKWARD = {
    "tanh": "g = g * ((T)1 - a * a)",
    "relu": "g = a > (T)0 ? g : (T)0",
    "sigmoid": "g = g * a * ((T)1 - a)",
}


def _unavailable_reason(exc: BaseException, cupy: Any) -> str:
    """Turn a CUDA runtime failure into a sentence a user can act on."""
    msg = str(exc)
    if "InsufficientDriver" in msg:
        return (
            f"the NVIDIA driver is too old for CuPy {cupy.__version__} "
            f"(built for CUDA {cupy.cuda.runtime.runtimeGetVersion() // 1000}); update the driver or {INSTALL_HINT}"
        )
    if "NoDevice" in msg or "no CUDA-capable device" in msg:
        return "no CUDA device found (is this machine's GPU visible? check CUDA_VISIBLE_DEVICES and `nvidia-smi`)"
    return f"CUDA did not answer ({msg}); check the driver with `nvidia-smi`, or {INSTALL_HINT}"


class CupyBackend(Backend):
    """CuPy arrays on the current CUDA device."""

    name = "cupy"

    @classmethod
    def check(cls) -> str | None:
        if importlib.util.find_spec("cupy") is None:
            return f"CuPy is not installed; {INSTALL_HINT}"
        try:
            import cupy
        except Exception as exc:  # a broken CuPy install raises all sorts of ImportErrors
            return f"CuPy failed to import ({exc}); {INSTALL_HINT}"
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:
            return _unavailable_reason(exc, cupy)
        if count == 0:
            return "no CUDA device found (is this machine's GPU visible? check CUDA_VISIBLE_DEVICES and `nvidia-smi`)"
        return None

    def __init__(self, dtype: Any = "float64") -> None:
        super().__init__(dtype)
        import cupy

        self.xp = cupy
        self._forward: dict[str, Any] = {}
        self._backward: dict[str, Any] = {}

    def describe(self) -> dict[str, str]:
        cupy = self.xp
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        return {
            "cupy": cupy.__version__,
            "device": props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"]),
            "cuda runtime": str(cupy.cuda.runtime.runtimeGetVersion()),
        }

    def _kernel(self, cache: dict, bodies: dict, kind: str, params_in: str, params_out: str) -> Any:
        if kind not in bodies:
            raise ValueError(f"unknown activation {kind!r}; choose one of {', '.join(ACTIVATIONS)}")
        if kind not in cache:
            cache[kind] = self.xp.ElementwiseKernel(params_in, params_out, bodies[kind], f"netcore_{kind}_{params_out[-1]}")
        return cache[kind]

    def to_numpy(self, x: Any) -> np.ndarray:
        return self.xp.asnumpy(x)

    def dense(self, a: Any, w: Any, b: Any, kind: str) -> Any:
        z = self.matmul_nt(a, w)
        kernel = self._kernel(self._forward, _FORWARD, kind, "T z, T b", "T a")
        return kernel(z, b, z)  # bias + activation in one pass, in place; b broadcasts over rows

    def activation_backward(self, a: Any, grad: Any, kind: str) -> Any:
        kernel = self._kernel(self._backward, _BACKWARD, kind, "T a", "T g")
        return kernel(a, grad)  # g is read and written in place
