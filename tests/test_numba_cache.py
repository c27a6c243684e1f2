"""A damaged on-disk kernel cache: the backend's kernels compile again (one line says so) and the
cache is rewritten; other code's caches are left to Numba. Each case runs in fresh processes
over its own ``NUMBA_CACHE_DIR``, as a user's next run would."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("numba")

OURS = """
import logging, numpy as np
logging.basicConfig(format="%(message)s")
from netcore.backends import numba_kernels as k
a = np.arange(5.0)
k.scale(a, 2.0)
print(a.sum())
"""

THEIRS = """
import numpy as np
from numba import njit

@njit(cache=True)
def twice(a):
    return a * 2

print(twice(np.arange(5.0)).sum())
"""


def _run(code: str, cache: Path, cwd: Path) -> subprocess.CompletedProcess:
    """``code`` run as a script file in ``cwd`` (Numba caches only functions defined in files)."""
    script = cwd / "script.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def _damage(cache: Path) -> int:
    """Truncate every index and data file in the cache to 7 bytes; how many there were."""
    files = [f for f in cache.rglob("*") if f.suffix in (".nbi", ".nbc")]
    for f in files:
        f.write_bytes(f.read_bytes()[:7])
    return len(files)


def test_a_damaged_cache_of_the_backend_compiles_again_and_is_rewritten(tmp_path):
    cache = tmp_path / "cache"
    first = _run(OURS, cache, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "20.0"
    assert _damage(cache) >= 2

    damaged = _run(OURS, cache, tmp_path)
    assert damaged.returncode == 0, damaged.stderr
    assert damaged.stdout.strip() == "20.0"
    assert "Traceback" not in damaged.stderr
    lines = [line for line in damaged.stderr.splitlines() if "damaged kernel cache" in line]
    assert len(lines) == 1, damaged.stderr  # once per folder, not once per file
    assert str(cache) in lines[0] and "compiling the kernels again" in lines[0]

    again = _run(OURS, cache, tmp_path)  # rewritten by the run before: read without a word
    assert again.returncode == 0 and again.stdout.strip() == "20.0"
    assert "damaged" not in again.stderr


def test_another_librarys_damaged_cache_is_left_to_numba(tmp_path):
    cache = tmp_path / "cache"
    code = "import netcore.backends.numba_kernels\n" + THEIRS  # netcore's cache hooks installed
    first = _run(code, cache, tmp_path)
    assert first.returncode == 0, first.stderr
    assert _damage(cache) >= 1
    damaged = _run(code, cache, tmp_path)
    assert damaged.returncode != 0  # Numba's own behaviour, unchanged: it raises
    assert "Unpickling" in damaged.stderr and "damaged kernel cache" not in damaged.stderr
