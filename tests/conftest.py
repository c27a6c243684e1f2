"""Shared fixtures: every backend as a parameter (skipped with its reason where it cannot run)."""

from __future__ import annotations

import os
import shutil

# Without a GPU, Numba's CUDA simulator runs the numba-cuda backend's kernels in Python, so their
# logic is tested everywhere (test_numba_cuda.py). It must be chosen before numba.cuda is imported.
if "NUMBA_ENABLE_CUDASIM" not in os.environ and shutil.which("nvidia-smi") is None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
SIMULATED_CUDA = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

import numpy as np  # noqa: E402
import pytest

from netcore import backends  # noqa: E402

# The simulator runs a kernel per Python thread: too slow for every test, so the simulated
# numba-cuda backend gets its own small tests instead of joining all of them.
ALL = [name for name in backends.BACKENDS if not (SIMULATED_CUDA and name == "numba-cuda")]


def backend_params(names=ALL):
    """One pytest param per backend; those that cannot run here are skipped with the reason."""
    params = []
    for name in names:
        status = backends.available()[name]
        marks = () if status.ok else pytest.mark.skip(reason=f"{name} backend unavailable: {status.reason}")
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(params=backend_params())
def backend_name(request) -> str:
    return request.param


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _no_backend_env(monkeypatch):
    """Tests start with NETCORE_BACKEND unset; those about the variable set it themselves."""
    monkeypatch.delenv("NETCORE_BACKEND", raising=False)


def make_data(rng, n_samples: int, n_features: int, n_classes: int):
    """Random inputs in [0, 1) and labels that cover every class when there are enough samples."""
    X = rng.random((n_samples, n_features))
    y = np.arange(n_samples) % n_classes
    rng.shuffle(y)
    return X, y
