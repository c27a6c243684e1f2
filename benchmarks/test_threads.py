"""Thread pools back to back: a fused numba step right after a BLAS call, and the other way round.

Both Numba's OpenMP threads and OpenBLAS's pthreads spin for a while after their work before
they sleep. On a machine with as many cores as threads, a pool still spinning takes a core from
the other's next call (a fused step after an sgemm took twice its time here before the backend
shortened OpenBLAS's spin; :mod:`netcore.backends.numba_threads`). Each pair of rows should agree within
10%: "after" is timed right after the other kind of work (untimed), "alone" right after the same
kind.

An sgemm "alone" (right after another sgemm) finds OpenBLAS's pool awake, still spinning from the
call before: the best case, not the time of an sgemm that follows anything as long as a step.
Whatever kept the process from BLAS that long, the pool is asleep and the sgemm pays for waking
it (on 2 Zen 5 cores: the same 1.1-1.25x after a fused step, a ``time.sleep`` or a Python loop
of the step's length, with Numba's OpenMP spin at 0, 3,000 or 300,000 and in a process without
Numba). So the sgemm is also timed after a Python loop as long as a step (the calling thread
busy, as in a step, but with neither BLAS nor Numba): "sgemm right after a numba step" against
that row is what the step itself costs the BLAS call after it; against "sgemm alone" it adds
what any pause in BLAS work costs: mostly waking the pool, which only BLAS threads spinning
through the step would save (taking a core from it), and a few percent that even one BLAS
thread pays.
"""

from __future__ import annotations

import statistics
import time
import timeit

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
    "sgemm after a Python loop as long as a numba step": ("blas", "gap"),
}


def step_seconds(step, calls: int = 5) -> float:
    """The median time of ``step`` over ``calls`` calls, after one untimed call (Numba's compile)."""
    step()
    return statistics.median(timeit.repeat(step, number=1, repeat=calls))


def busy_wait(seconds: float) -> None:
    """Keep the calling thread busy in Python (it holds its core, as a step does; a sleep would
    let another process take the core and still be running there when the sgemm starts)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


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
    if before == "gap":  # no BLAS and no Numba for as long as a step takes, the calling thread busy
        gap = step_seconds(work["step"], 1 if settings.quick else 5)
        work["gap"] = lambda: busy_wait(gap)
        benchmark.extra_info["gap_ms"] = gap * 1e3
    benchmark.extra_info.update(label=case, backend="numba" if timed == "step" else "numpy", dtype="float32", samples=settings.samples)
    def setup():  # untimed, and returning nothing (pytest-benchmark would take it for arguments)
        work[before]()

    benchmark.pedantic(work[timed], setup=setup, rounds=settings.rounds * 2, iterations=1, warmup_rounds=1)
