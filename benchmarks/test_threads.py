"""Thread pools back to back: a fused numba step right after a BLAS call, and the other way round.

Both Numba's OpenMP threads and OpenBLAS's pthreads spin for a while after their work before
they sleep. On a machine with as many cores as threads, a pool still spinning takes a core from
the other's next call (a fused step after an sgemm took twice its time here before the backend
shortened OpenBLAS's spin; :mod:`netcore.backends.numba_threads`). Each pair of rows should agree within
10%: "after" is timed right after the other kind of work (untimed), "alone" right after the same
kind.
"""

from __future__ import annotations

import numpy as np
import pytest

from netcore import MLP

from .conftest import TUTORIAL, skip_unless_available

GROUP = "back to back: a full-batch numba step (float32, uint8) and a 512x512 sgemm"
CASES = {
    "numba step alone": ("step", "step"),
    "numba step right after an sgemm": ("step", "blas"),
    "sgemm alone": ("blas", "blas"),
    "sgemm right after a numba step": ("blas", "step"),
}


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("case", list(CASES))
def test_back_to_back(benchmark, settings, images, case):
    skip_unless_available("numba")
    net = MLP(TUTORIAL, backend="numba", dtype="float32", seed=2)
    batch = net.prepare(*images)
    a = np.random.default_rng(0).random((512, 512), dtype=np.float32)
    work = {
        "step": lambda: net.backend.to_float(net.train_step(batch.X, batch.Y, 0.1)[0]),
        "blas": lambda: a @ a,
    }
    timed, before = CASES[case]
    benchmark.extra_info.update(label=case, backend="numba" if timed == "step" else "numpy", dtype="float32", samples=settings.samples)
    def setup():  # untimed, and returning nothing (pytest-benchmark would take it for arguments)
        work[before]()

    benchmark.pedantic(work[timed], setup=setup, rounds=settings.rounds * 2, iterations=1, warmup_rounds=1)
