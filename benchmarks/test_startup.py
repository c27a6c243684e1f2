"""Numba's compile cost, a cached process's time to its first epoch, and memory across epochs.

Each case runs ``benchmarks/first_epoch.py`` in a fresh process: once with an empty kernel cache
(the cold compile) and once more on the filled cache (what every later run pays).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import skip_unless_available

ROOT = Path(__file__).resolve().parents[1]


def _first_epoch(cache_dir: Path, samples: int) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "first_epoch.py"), "--samples", str(samples)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.benchmark(group="startup: a new process to its first full-batch epoch (numba float32, uint8)")
def test_cold_compile_then_cached_start(benchmark, settings, tmp_path):
    skip_unless_available("numba")
    if settings.quick:
        pytest.skip("quick mode: the cold compile alone takes about 10 s")
    cold = _first_epoch(tmp_path, settings.samples)
    warm = benchmark.pedantic(_first_epoch, args=(tmp_path, settings.samples), rounds=3, iterations=1)
    # The same process on 64 samples: the runtime's own footprint (Python, NumPy, Numba, LLVM).
    runtime = _first_epoch(tmp_path, 64)
    peak = warm["peak_rss_mb"]
    benchmark.extra_info.update(
        label="cached kernels: process start to first epoch done (wall, incl. interpreter)",
        cold_first_epoch_s=cold["first_epoch_done_s"], warm_first_epoch_s=warm["first_epoch_done_s"], warm_import_s=warm["import_s"],
        dataset_mb=warm["dataset_mb"], peak_rss_mb=peak, peak_rss_after_1_epoch_mb=warm["peak_rss_after_1_epoch_mb"],
        runtime_rss_mb=runtime["peak_rss_mb"], memory_beyond_dataset_mb=peak - runtime["peak_rss_mb"] - warm["dataset_mb"],
    )
