"""Shared options and data for the benchmark suites.

    pytest benchmarks/                                   # the full run (a few minutes)
    pytest benchmarks/ --netcore-data ../shared/data/mnist   # real images instead of synthetic
    pytest benchmarks/ --quick --benchmark-disable       # smoke run, as CI does

Timing does not depend on the pixel values, so synthetic MNIST-shaped data is the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

from netcore import backends
from netcore.datasets import load_idx_folder

from . import machine

TUTORIAL = (784, 16, 16, 10)


def pytest_benchmark_update_machine_info(config, machine_info):
    """Store the machine's description (CPU, LLVM target, vector ISA, BLAS kernel, threads) with
    the run: figures from different machines must not be compared as if they were one."""
    machine_info["netcore"] = machine.describe()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    terminalreporter.write_sep("-", "netcore: the machine these figures belong to")
    for line in machine.summary(machine.describe()):
        terminalreporter.write_line(line)


def pytest_addoption(parser):
    group = parser.getgroup("netcore")
    group.addoption("--samples", type=int, default=60_000, help="samples in a full-batch epoch (default 60,000)")
    group.addoption("--netcore-data", metavar="DIR", help="folder of MNIST-format IDX files to time on instead of synthetic data")
    group.addoption("--quick", action="store_true", help="smoke run: 2,000 samples and one round each")
    group.addoption("--rounds", type=int, help="timed rounds per benchmark (default 7, mini-batch epochs 5; more on a noisy machine)")


@dataclass(frozen=True)
class Settings:
    samples: int
    data: str | None
    quick: bool
    timed_rounds: int | None = None  # --rounds; None: each suite's default

    @property
    def rounds(self) -> int:
        return 1 if self.quick else self.timed_rounds or 7


@pytest.fixture(scope="session")
def settings(request) -> Settings:
    quick = request.config.getoption("--quick")
    samples = 2_000 if quick else request.config.getoption("--samples")
    rounds = request.config.getoption("--rounds")
    if rounds is not None and rounds < 1:
        raise pytest.UsageError(f"--rounds must be at least 1, got {rounds}")
    return Settings(samples, request.config.getoption("--netcore-data"), quick, rounds)


@cache
def _images(samples: int, data: str | None) -> tuple[np.ndarray, np.ndarray]:
    if data is None:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (samples, 784), dtype=np.uint8), rng.integers(0, 10, samples)
    train, test = load_idx_folder(data)
    X, y = train if train is not None else test
    reps = -(-samples // len(X))  # tile a smaller file (say, the 10,000 test images) up to `samples`
    return np.tile(X, (reps, 1))[:samples], np.tile(y, reps)[:samples].astype(np.intp)


@pytest.fixture(scope="session")
def images(settings) -> tuple[np.ndarray, np.ndarray]:
    """``(X uint8 (samples, 784), labels)``."""
    return _images(settings.samples, settings.data)


@cache
def scaled(samples: int, data: str | None, dtype: str) -> np.ndarray:
    """The images as floats in 0..1 (what the tutorial's code and the peers are given)."""
    return (_images(samples, data)[0] / 255.0).astype(dtype)


def numba_threads() -> int:
    import numba

    return numba.get_num_threads()


def skip_unless_available(name: str) -> None:
    status = backends.available()[name]
    if not status.ok:
        pytest.skip(f"{name} backend unavailable: {status.reason}")


def run(benchmark, fn, settings: Settings, rounds: int | None = None, **info) -> None:
    """Time ``fn`` after one untimed warm-up call (which also keeps Numba's compile out)."""
    benchmark.extra_info.update(info)
    benchmark.pedantic(fn, rounds=rounds or settings.rounds, iterations=1, warmup_rounds=1)
