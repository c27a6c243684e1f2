"""The floor: an epoch's floating-point work at this machine's large-matrix BLAS speed.

An epoch of the tutorial network is 3.16 GFLOP on 60,000 samples (:func:`benchmarks.report.epoch_flop`).
The floor row times NumPy's BLAS on one square product of the same FLOP count (n = 1,166 for
that epoch: matrices of megabytes, where sgemm runs at its large-matrix speed), in the same run
as the backends, so "x the floor" is a ratio of two figures measured together. Nothing that
computes the epoch in FLOP-for-FLOP terms can beat it by much; the fused kernels aim at 1.3x.
"""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from .conftest import TUTORIAL, run
from .report import epoch_flop
from .test_full_batch import GROUP as FULL_BATCH
from .test_minibatch import GROUP as MINI_BATCH
from .test_minibatch import SIZES as MINI_BATCH_SIZES


def _gemm(flop: int, dtype: str):
    """A square product of ``flop`` floating-point operations (2 n³), ready to time."""
    n = max(64, round((flop / 2) ** (1 / 3)))
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n)).astype(dtype), rng.random((n, n)).astype(dtype)
    out = np.empty((n, n), dtype)
    return n, lambda: np.matmul(a, b, out=out)


def _blas() -> str:
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    # one entry per distinct pool: NumPy's and SciPy's bundled OpenBLAS read the same alike
    described = dict.fromkeys(f"{p['internal_api']} {p.get('architecture', '')} kernel, {p['num_threads']} threads" for p in pools)
    return "; ".join(described) or "unknown BLAS"


@pytest.mark.benchmark(group=FULL_BATCH)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_floor_full_batch(benchmark, settings, dtype):
    flop = epoch_flop(TUTORIAL, settings.samples)
    n, gemm = _gemm(flop, dtype)
    name = "sgemm" if dtype == "float32" else "dgemm"
    run(benchmark, gemm, settings, label=f"floor: {name} of the epoch's FLOPs ({n}x{n}, {_blas()})", backend="floor", dtype=dtype,
        input="float", samples=settings.samples, flop=2 * n**3, gemm_n=n)


@pytest.mark.benchmark(group=MINI_BATCH)
def test_floor_minibatch(benchmark, settings):
    samples = settings.samples
    flop = epoch_flop(MINI_BATCH_SIZES, samples)
    n, gemm = _gemm(flop, "float32")
    run(benchmark, gemm, settings, label=f"floor: sgemm of the epoch's FLOPs ({n}x{n}, {_blas()})", backend="floor", dtype="float32",
        input="float", samples=samples, flop=2 * n**3, gemm_n=n)
