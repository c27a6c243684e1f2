"""The ``cupy`` backend: the contract's defaults on CuPy device arrays, plus fused kernels.

Arrays stay on the device for a whole step; only ``to_numpy``/``to_float`` copy back, and the
network calls them only when a result is reported. Kernels are built on first use, so importing
this module (or ``backends``) never needs a GPU.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from .base import Backend, activation_code

INSTALL_HINT = (
    "install the CuPy build matching your CUDA driver: pip install 'netcore[cuda12]' (cupy-cuda12x) "
    "or 'netcore[cuda13]' (cupy-cuda13x); `nvidia-smi` shows the highest CUDA version the driver supports"
)

# Elementwise bodies, one per activation: ``z = g(z + b)`` in place (z is the kernel's output, read
# and written; b broadcasts over the rows) and ``g *= g'(z)`` written with the layer output a = g(z).
_FORWARD = {
    "tanh": "z = tanh(z + b)",
    "relu": "T v = z + b; z = v > (T)0 ? v : (T)0",
    "sigmoid": "z = (T)1 / ((T)1 + exp(-(z + b)))",
    "identity": "z = z + b",
}
_BACKWARD = {
    "tanh": "g = g * ((T)1 - a * a)",
    "relu": "g = a > (T)0 ? g : (T)0",
    "sigmoid": "g = g * a * ((T)1 - a)",
    "identity": "g = g",
}

#: Every ElementwiseKernel this backend builds: name -> (inputs, outputs, body), T the compute
#: dtype; CuPy names the kernel ``netcore_<name>``. With :data:`RAW` these are all the CUDA
#: sources the backend compiles, which tests/test_cuda_sources.py compiles with NVRTC.
ELEMENTWISE: dict[str, tuple[str, str, str]] = {
    "from_uint8": ("uint8 x, T s", "T y", "y = x * s"),
    "sgd": ("T g, T lr", "T p", "p -= lr * g"),
    "adam": (
        "T g, T lr, T b1, T b2, T eps", "T p, T m, T v",
        "m = b1 * m + ((T)1 - b1) * g; v = b2 * v + ((T)1 - b2) * g * g; p -= lr * m / (sqrt(v) + eps)",
    ),
    **{f"{kind}_forward": ("T b", "T z", body) for kind, body in _FORWARD.items()},
    **{f"{kind}_backward": ("T a", "T g", body) for kind, body in _BACKWARD.items()},
}

# Softmax + cross-entropy + its gradient in one pass over each row of logits (one thread a row:
# the output layer is narrow). Writes dZ = softmax(z) - y and the row's loss, accumulated in double.
_SOFTMAX_XENT = r"""
extern "C" __global__ void netcore_softmax_xent(const T* z, const T* y, T* delta, double* row_loss, long long n, int k) {
    long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= n) return;
    const T* zr = z + r * k;
    const T* yr = y + r * k;
    T* dr = delta + r * k;
    T top = zr[0];
    for (int j = 1; j < k; ++j) top = zr[j] > top ? zr[j] : top;
    double total = 0.0;
    for (int j = 0; j < k; ++j) total += exp((double)(zr[j] - top));
    double log_total = log(total), loss = 0.0;
    for (int j = 0; j < k; ++j) {
        double shifted = (double)(zr[j] - top);
        dr[j] = (T)(exp(shifted) / total) - yr[j];
        loss -= (double)yr[j] * (shifted - log_total);
    }
    row_loss[r] = loss;
}
"""

#: Every RawKernel this backend builds: name -> CUDA source, with ``T`` typedef'd by :func:`raw_source`.
RAW: dict[str, str] = {"softmax_xent": _SOFTMAX_XENT}


def raw_source(name: str, dtype: Any) -> str:
    """The exact source the backend hands to ``cupy.RawKernel`` for kernel ``netcore_<name>``."""
    ctype = {"float32": "float", "float64": "double"}[np.dtype(dtype).name]
    return f"typedef {ctype} T;\n" + RAW[name]


def _driver_version(cupy: Any) -> int | None:
    """The CUDA version the installed driver supports (0: no driver at all), or None if unknown."""
    try:
        return int(cupy.cuda.runtime.driverGetVersion())
    except Exception:
        return None


def _unavailable_reason(exc: BaseException, cupy: Any) -> str:
    """Turn a CUDA runtime failure into a sentence a user can act on."""
    msg = str(exc)
    if "InsufficientDriver" in msg:
        # The runtime says "insufficient driver" both when the driver is old and when there is
        # none; driverGetVersion() tells the two apart (0 means no driver was found).
        driver = _driver_version(cupy)
        if driver == 0:
            return (
                "no NVIDIA driver found (the CUDA driver library libcuda is not installed or not loaded); "
                "on a machine with an NVIDIA GPU install its driver and check it with `nvidia-smi`"
            )
        supports = "" if driver is None else f" (it supports CUDA {driver // 1000}.{driver % 1000 // 10})"
        return (
            f"the NVIDIA driver{supports} is too old for CuPy {cupy.__version__} "
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
        self._kernels: dict[str, Any] = {}

    def _elementwise(self, name: str) -> Any:
        """The ElementwiseKernel ``ELEMENTWISE[name]``, built on first use (CuPy compiles it per dtype)."""
        if name not in self._kernels:
            params_in, params_out, body = ELEMENTWISE[name]
            self._kernels[name] = self.xp.ElementwiseKernel(params_in, params_out, body, f"netcore_{name}")
        return self._kernels[name]

    def _raw(self, name: str) -> Any:
        """The RawKernel ``RAW[name]`` for this backend's dtype, built on first use."""
        key = f"{name} {self.dtype.name}"
        if key not in self._kernels:
            self._kernels[key] = self.xp.RawKernel(raw_source(name, self.dtype), f"netcore_{name}")
        return self._kernels[key]

    def _out_of_memory(self, what: str, nbytes: int | None = None) -> MemoryError:
        """The error for running out of device memory while doing ``what``: how much was asked
        (when known) and how much is free, and what to change."""
        asked = "" if nbytes is None else f" ({nbytes / 2**20:,.0f} MiB)"
        free, total = self.xp.cuda.runtime.memGetInfo()
        return MemoryError(
            f"the GPU ran out of memory {what}{asked} with {free / 2**20:,.0f} MiB free of {total / 2**20:,.0f} MiB: "
            "use fewer samples, mini-batches, float32 or uint8 inputs"
        )

    def _device(self, make, nbytes: int, what: str) -> Any:
        """Run an allocation; out of device memory becomes an error that says how much was asked."""
        try:
            return make()
        except self.xp.cuda.memory.OutOfMemoryError:
            raise self._out_of_memory(f"placing {what}", nbytes) from None

    def describe(self) -> dict[str, str]:
        cupy = self.xp
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        return {
            "cupy": cupy.__version__,
            "device": props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"]),
            "cuda runtime": str(cupy.cuda.runtime.runtimeGetVersion()),
        }

    def to_numpy(self, x: Any) -> np.ndarray:
        return self.xp.asnumpy(x)

    def asarray(self, x: Any) -> Any:
        nbytes = int(np.prod(np.shape(x))) * self.dtype.itemsize
        return self._device(lambda: self.xp.asarray(x, dtype=self.dtype), nbytes, f"an array of shape {np.shape(x)}")

    def input_array(self, X: np.ndarray) -> Any:
        """uint8 images cross the bus as uint8 (a quarter of float32's bytes) and are scaled on the device."""
        if X.dtype != np.uint8:
            return self.asarray(X)
        cp = self.xp
        raw = self._device(lambda: cp.asarray(X), X.nbytes, f"uint8 inputs of shape {X.shape}")
        out = self._device(lambda: cp.empty(X.shape, self.dtype), X.size * self.dtype.itemsize, f"inputs of shape {X.shape}")
        self._elementwise("from_uint8")(raw, self.dtype.type(1 / 255), out)
        return out

    def loss_and_gradients(self, layers: list, X: Any, Y: Any, activation: str, rows: np.ndarray | None, generic) -> tuple[Any, list, Any]:
        """The contract's whole-batch gradient; out of device memory on the way is a MemoryError that
        says how many samples the step held (the step's arrays scale with them)."""
        try:
            return super().loss_and_gradients(layers, X, Y, activation, rows, generic)
        except self.xp.cuda.memory.OutOfMemoryError as exc:
            n = len(X) if rows is None else len(rows)
            raise self._out_of_memory(f"during a training step on {n:,} samples ({exc})") from None

    def softmax_cross_entropy(self, z: Any, y: Any) -> tuple[Any, Any]:
        cp = self.xp
        kernel = self._raw("softmax_xent")
        z, y = cp.ascontiguousarray(z), cp.ascontiguousarray(y)
        n, k = z.shape
        delta = cp.empty_like(z)
        rows = cp.empty(n, cp.float64)
        kernel(((n + 255) // 256,), (256,), (z, y, delta, rows, cp.int64(n), cp.int32(k)))
        return (rows.sum() / n).astype(self.dtype), delta

    def sgd_update(self, param: Any, grad: Any, lr: float) -> None:
        self._elementwise("sgd")(grad, param.dtype.type(lr), param)

    def adam_update(self, param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float, eps: float) -> None:
        t = param.dtype.type
        self._elementwise("adam")(grad, t(lr), t(beta1), t(beta2), t(eps), param, m, v)

    def capture_limits(self, *, full_batch: bool, stateless: bool, l2: float) -> list[str]:
        reasons = []
        if not full_batch:
            reasons.append("it replays full-batch steps only (batch_size=None)")
        if not stateless:
            reasons.append("Adam's step size changes every step, which a recording would freeze (use sgd)")
        if l2:
            reasons.append("the L2 penalty reads its value back every step (use l2=0)")
        return reasons

    def capture(self, step) -> tuple[Any, Any]:
        """Run ``step`` once, then record its kernels as a CUDA graph: ``(first result, replay)``.

        ``replay()`` relaunches the whole recorded step with one call and returns the arrays the
        recording produced (overwritten in place each time). The step must not read anything back
        to the host, and the arrays it reads and updates (data, parameters, optimizer state) must
        stay alive, and be the ones used, for as long as ``replay`` is: the graph holds their
        addresses, not the arrays.

        Ordering rule (the host reads on the current stream: ``to_float``, ``to_numpy``,
        ``argmax_rows``): ``replay()`` launches the graph on the stream current when it is called,
        so it runs after all work queued there before it (uploads included) and before all work
        queued there after it. The first step runs on a capture stream that first waits for the
        current stream, and the current stream waits for that step before anything queued later.

        Memory: the first step allocates as usual, so state it creates to keep (momentum
        velocities) is owned by its arrays. The recording allocates from a private pool, filled
        beforehand with blocks of the sizes the first step asked for, so that nothing is allocated
        while capturing and the addresses baked into the graph stay valid while ``replay`` lives.
        """
        cp = self.xp
        current = cp.cuda.get_current_stream()
        stream = cp.cuda.Stream(non_blocking=True)  # capture cannot record the legacy default stream
        pool = cp.cuda.MemoryPool()
        allocate, sizes = cp.cuda.get_allocator(), []

        def allocate_and_note(size: int) -> Any:
            sizes.append(size)
            return allocate(size)

        stream.wait_event(current.record())  # the first step reads what is queued before it
        try:
            with stream:
                with cp.cuda.using_allocator(allocate_and_note):
                    first = step()  # a real step: compiles kernels, creates the optimizer's state
                blocks = [pool.malloc(size) for size in sizes]  # on this stream's free list
                del blocks
                with cp.cuda.using_allocator(pool.malloc):
                    stream.begin_capture()
                    try:
                        recorded = step()
                    finally:
                        graph = stream.end_capture()
        except cp.cuda.memory.OutOfMemoryError as exc:
            raise self._out_of_memory(f"recording a training step for graph replay ({exc})") from None
        current.wait_event(stream.record())  # what the caller queues next sees the first step done

        def replay() -> Any:
            graph.launch(cp.cuda.get_current_stream())
            return recorded

        replay.keep_alive = (pool, stream, graph)
        return first, replay

    def dense(self, a: Any, w: Any, b: Any, kind: str) -> Any:
        z = self.matmul_nt(a, w)
        activation_code(kind)
        self._elementwise(f"{kind}_forward")(b, z)  # bias + activation in one pass, in place
        return z

    def activation_backward(self, a: Any, grad: Any, kind: str) -> Any:
        activation_code(kind)
        self._elementwise(f"{kind}_backward")(a, grad)  # g is read and written in place
        return grad

    # -- sparse inputs: CSR on the device (cuSPARSE products), never densified whole --------------
    def sparse_input(self, X: Any) -> Any:
        import cupyx.scipy.sparse

        host = super().sparse_input(X)  # CSR in this dtype, uint8 scaled
        return self._device(lambda: cupyx.scipy.sparse.csr_matrix(host), host.data.nbytes + host.indices.nbytes, f"sparse inputs of shape {host.shape}")

    def matmul_tn(self, a: Any, b: Any) -> Any:
        import cupyx.scipy.sparse

        if cupyx.scipy.sparse.issparse(b):  # the sparse first layer's weight gradient
            return self.xp.ascontiguousarray((b.T @ a).T)
        return super().matmul_tn(a, b)
