"""Compile every numba-cuda kernel to PTX for one compute capability, without a GPU; print JSON.

    python -m tests.numba_cuda_ptx 8.0

Run by tests/test_cuda_sources.py in a process of its own, because the test session runs Numba's
CUDA simulator, which skips Numba's type checks and compiles nothing. Each kernel is compiled with
the argument types the backend launches it with (``numba_cuda_kernels.signatures``); the output
lists, per dtype and kernel, the PTX lines with a double-precision (``.f64``) operand, or the
compile error. Prints ``{"skip": reason}`` when NVVM (the ``nvidia-nvvm`` wheel) is missing.
"""

from __future__ import annotations

import json
import os
import sys


def main(cc: tuple[int, int]) -> dict:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return {"error": "run without NUMBA_ENABLE_CUDASIM: the simulator compiles nothing"}
    from numba import cuda
    from numba.cuda import dispatcher
    from numba.cuda.cudadrv import nvvm

    try:
        nvvm.NVVM()
    except Exception as exc:
        return {"skip": f"NVVM is not available ({str(exc).strip().splitlines()[0]}): pip install nvidia-nvvm (in the test extra)"}

    class Device:  # device functions compile for "the current device"; there is none, so say which
        compute_capability = cc

    dispatcher.get_current_device = lambda: Device

    from netcore.backends import numba_cuda_kernels as m

    out: dict = {"kernels": {}}
    for dtype in ("float32", "float64"):
        kernels, signatures = vars(m.kernels(dtype)), m.signatures(dtype)
        result = out["kernels"][dtype] = {}
        for name in sorted(set(kernels) | set(signatures)):
            if name not in signatures or name not in kernels:
                result[name] = {"error": "a kernel without a signature in numba_cuda_kernels.signatures, or the reverse"}
                continue
            try:
                ptx, _ = cuda.compile_ptx(kernels[name].py_func, signatures[name], cc=cc)
            except Exception as exc:
                result[name] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            result[name] = {"f64": [line.strip() for line in ptx.splitlines() if ".f64" in line], "entry": ".entry" in ptx}
    return out


if __name__ == "__main__":
    print(json.dumps(main(tuple(int(x) for x in sys.argv[1].split(".")))))
