"""NVRTC, CUDA's runtime compiler, through ctypes: CUDA C++ to PTX with no GPU and no driver.

The libraries come from PyPI wheels in the ``test`` extra: ``nvidia-cuda-nvrtc`` (CUDA 13, in
``nvidia/cu13/lib``) and ``nvidia-cuda-nvrtc-cu12`` (CUDA 12, in ``nvidia/cuda_nvrtc/lib``). Called
through its C API rather than cuda-bindings so that both majors load side by side in one process.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache


class NvrtcError(RuntimeError):
    """A compile that failed; the message holds NVRTC's log."""


@dataclass(frozen=True)
class Nvrtc:
    path: str
    version: tuple[int, int]

    def __str__(self) -> str:
        return f"NVRTC {self.version[0]}.{self.version[1]}"

    def compile(self, source: str, options: Sequence[str], name: str = "netcore.cu") -> str:
        """The PTX of ``source``; NvrtcError with the compiler's log if it does not compile."""
        lib = _load(self.path)
        prog = ctypes.c_void_p()
        _check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None))
        try:
            opts = [o.encode() for o in options]
            status = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
            size = ctypes.c_size_t()
            _check(lib, lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)))
            log = ctypes.create_string_buffer(size.value)
            _check(lib, lib.nvrtcGetProgramLog(prog, log))
            if status != 0:
                raise NvrtcError(f"{self} could not compile {name} ({' '.join(options)}):\n{log.value.decode(errors='replace')}")
            _check(lib, lib.nvrtcGetPTXSize(prog, ctypes.byref(size)))
            ptx = ctypes.create_string_buffer(size.value)
            _check(lib, lib.nvrtcGetPTX(prog, ptx))
            return ptx.value.decode()
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))


@cache
def _load(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    return lib


def _check(lib: ctypes.CDLL, status: int) -> None:
    if status != 0:
        raise NvrtcError(lib.nvrtcGetErrorString(status).decode())


@cache
def available() -> tuple[Nvrtc, ...]:
    """Every NVRTC major version installed as a wheel on this Python's path, oldest first."""
    found: dict[int, Nvrtc] = {}
    for entry in sys.path:
        for path in sorted(glob.glob(os.path.join(entry or ".", "nvidia", "*", "lib", "libnvrtc.so.*[0-9]"))):
            try:
                lib = _load(path)
            except OSError:
                continue
            major, minor = ctypes.c_int(), ctypes.c_int()
            if lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)) == 0:
                found.setdefault(major.value, Nvrtc(path, (major.value, minor.value)))
    return tuple(found[k] for k in sorted(found))
