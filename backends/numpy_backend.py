"""The ``numpy`` backend: the contract's defaults on NumPy arrays, the reference path."""

from __future__ import annotations

import numpy as np

from .base import Backend


class NumpyBackend(Backend):
    """Plain NumPy calls; float64 on this backend is the project's fixed point."""

    name = "numpy"
    xp = np

    def describe(self) -> dict[str, str]:
        info = super().describe()
        try:
            from threadpoolctl import threadpool_info

            blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
            if blas:
                info["blas"] = f"{blas[0]['internal_api']} {blas[0].get('version')} ({blas[0].get('architecture')} kernels), {blas[0]['num_threads']} threads"
        except ImportError:  # threadpoolctl comes with scikit-learn; only the info line is lost
            pass
        return info
