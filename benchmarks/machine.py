"""What a benchmark run ran on: stored with every run and printed after it.

Timings only compare within one machine, so every run keeps its machine's description: the CPU
model, the CPU LLVM compiles for (and what Numba was told to target), the vector instruction set
the fused kernels use, the BLAS library and kernel NumPy calls (from threadpoolctl), the thread
counts, and the environment variables that change any of these.
"""

from __future__ import annotations

import os
import platform
from typing import Any

#: Environment variables that change what the benchmarks measure.
SETTINGS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "OMP_NUM_THREADS", "GOMP_SPINCOUNT",
            "NUMBA_NUM_THREADS", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "NUMBA_THREADING_LAYER")


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (``lscpu``'s "Model name")."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _numba() -> dict[str, Any]:
    try:
        import llvmlite.binding as ll
        import numba
    except ImportError as error:
        return {"numba": f"not installed ({error})"}
    from netcore.backends.numba_isa import target, target_isa

    name, _ = target()
    isa = target_isa()
    try:
        layer = numba.threading_layer()  # known once a parallel function has run
    except ValueError:
        layer = f"{numba.config.THREADING_LAYER} (none started yet)"
    return {
        "llvm_host_cpu": ll.get_host_cpu_name(),
        "llvm_target_cpu": name,
        "vector_isa": f"{isa.name} ({isa.vector_bytes}-byte vectors, {isa.registers} registers)",
        "numba": numba.__version__,
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "numba_threading_layer": layer,
    }


def _blas() -> list[dict[str, Any]]:
    """Every BLAS (and OpenMP) library loaded in this process, with its kernel and threads."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"threadpoolctl": "not installed"}]
    import numpy as np

    np.ones((2, 2)) @ np.ones((2, 2))  # make sure NumPy's BLAS is loaded
    keys = ("internal_api", "version", "architecture", "threading_layer", "num_threads", "filepath")
    return [{k: pool.get(k) for k in keys if pool.get(k) is not None} for pool in threadpool_info()]


def describe() -> dict[str, Any]:
    """The machine and settings a run measures, as plain data for the run's JSON."""
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        **_numba(),
        "blas": _blas(),
        "settings": {k: os.environ[k] for k in SETTINGS if k in os.environ},
    }


def summary(info: dict[str, Any]) -> list[str]:
    """A few lines for the terminal."""
    blas = "; ".join(f"{p.get('internal_api', '?')} {p.get('version', '')} {p.get('architecture', '')} kernel, "
                     f"{p.get('num_threads', '?')} threads" for p in info["blas"] if p.get("internal_api") in ("openblas", "mkl", "blis"))
    settings = ", ".join(f"{k}={v}" for k, v in info["settings"].items()) or "none"
    return [
        f"CPU: {info['cpu_model']}, {info['cores']} cores; LLVM host CPU {info.get('llvm_host_cpu', '?')}, "
        f"Numba targets {info.get('llvm_target_cpu', '?')} with {info.get('vector_isa', '?')}",
        f"Numba {info.get('numba', '?')}: {info.get('numba_threads', '?')} threads ({info.get('numba_threading_layer', '?')}); "
        f"BLAS: {blas or 'none found'}",
        f"settings: {settings}",
    ]
