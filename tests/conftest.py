"""Shared fixtures: every backend as a parameter (skipped with its reason where it cannot run)."""

from __future__ import annotations

import numpy as np
import pytest

import backends

ALL = list(backends.BACKENDS)


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
