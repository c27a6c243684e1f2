"""``auto`` and the numba backend's compile: Numba only where it pays for it.

With its kernels not yet compiled, a run that NumPy finishes sooner than the compile takes runs
on NumPy; the choice depends only on the run's size, the dtype and the on-disk cache, and says
why.
"""

from __future__ import annotations

import numpy as np
import pytest

from netcore import backends

from .conftest import backend_params

pytestmark = pytest.mark.parametrize("name", backend_params(["numba"]))


@pytest.fixture
def cached(monkeypatch):
    """Set whether the fused kernels count as compiled on disk."""
    from netcore.backends.numba_backend import NumbaBackend

    def set_cached(value: bool):
        monkeypatch.setattr(NumbaBackend, "kernels_cached", classmethod(lambda cls, dtype: value))

    return set_cached


@pytest.fixture(autouse=True)
def _no_gpu(monkeypatch):
    monkeypatch.setattr(backends, "AUTO_ORDER", ("numba", "numpy"))


def test_a_small_run_without_compiled_kernels_runs_on_numpy_and_says_why(name, cached):
    cached(False)
    digits = 100 * 1_294 * 6_592  # 100 full-batch epochs of the default digits run: 0.85 GFLOP
    choice = backends.resolve(work=digits, dtype="float32")
    assert choice.name == "numpy"
    assert "not compiled yet" in choice.why and "GFLOP" in choice.why
    assert backends.resolve(work=digits, dtype="float32") == choice  # the same inputs, the same answer


def test_a_big_run_pays_for_the_compile(name, cached):
    cached(False)
    assert backends.resolve(work=100 * 3.16e12, dtype="float32").name == "numba"


def test_cached_kernels_always_pay(name, cached):
    cached(True)
    choice = backends.resolve(work=1e6, dtype="float64")
    assert choice.name == "numba" and "cached" in choice.why


def test_without_a_size_auto_stays_as_before(name, cached):
    cached(False)
    assert backends.resolve().name == "numba"


def test_an_explicit_choice_is_never_second_guessed(name, cached):
    cached(False)
    assert backends.resolve("numba", work=1.0).name == "numba"
    assert backends.get_backend("numba", "float32", work=1.0).name == "numba"


def test_the_cache_check_sees_compiled_kernels(name):
    from netcore.backends.numba_backend import NumbaBackend
    from netcore import MLP

    rng = np.random.default_rng(0)
    net = MLP([12, 5, 3], backend=name, dtype="float32", seed=0)
    net.step(rng.integers(0, 256, (20, 12)).astype(np.uint8), rng.integers(0, 3, 20), 0.1)  # compiles (or loads) float32
    assert NumbaBackend.kernels_cached("float32")
