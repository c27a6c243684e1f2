"""scikit-learn's own MLP tests, run on netcore's estimators.

The test module ships inside the installed scikit-learn (``sklearn/neural_network/tests/test_mlp.py``).
It is read from there at collection time, its one import of the estimators is swapped for
netcore's, and its tests are collected here as they are, parametrisations included. Nothing of it
is copied into this repository. Tests that reach into scikit-learn's private internals are skipped
by name below, each with the reason; every other test must pass, on the numba and numpy backends.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

from netcore import backends

from .conftest import backend_params

SKLEARN_IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
NETCORE_IMPORT = "from netcore import MLPClassifier, MLPRegressor"

#: Tests that read scikit-learn's private state, which netcore's estimators do not have.
PRIVATE = {
    "test_gradient": "calls the private _loss_grad_lbfgs(packed, X, Y, ...) with scikit-learn's buffers "
    "(tests/test_estimator_state.py checks netcore's gradients against finite differences instead)",
    "test_learning_rate_warmstart": "reads the private _optimizer.learning_rate "
    "(tests/test_estimator_state.py checks invscaling across warm starts on netcore's trainer)",
    "test_adaptive_learning_rate": "reads the private _optimizer.learning_rate "
    "(tests/test_estimator_state.py checks the adaptive rate on netcore's trainer)",
    "test_n_iter_no_change": "reads the private _no_improvement_count "
    "(tests/test_estimator_state.py checks netcore's stopping rule's count)",
    "test_n_iter_no_change_inf": "reads the private _no_improvement_count "
    "(tests/test_estimator_state.py checks netcore's stopping rule's count)",
}


def _load_sklearn_tests() -> types.ModuleType:
    spec = importlib.util.find_spec("sklearn.neural_network.tests.test_mlp")
    if spec is None or spec.origin is None:
        pytest.skip("the installed scikit-learn ships without its tests (sklearn/neural_network/tests/test_mlp.py)", allow_module_level=True)
    path = Path(spec.origin)
    source = path.read_text()
    if source.count(SKLEARN_IMPORT) != 1:
        raise RuntimeError(f"{path} no longer imports the estimators as {SKLEARN_IMPORT!r}: update this module")
    module = types.ModuleType("sklearn_test_mlp_on_netcore")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    exec(compile(source.replace(SKLEARN_IMPORT, NETCORE_IMPORT), str(path), "exec"), module.__dict__)
    return module


_suite = _load_sklearn_tests()
assert _suite.MLPClassifier.__module__.startswith("netcore"), "the swap did not take"

for _name, _test in vars(_suite).items():
    if _name.startswith("test_") and callable(_test):
        if _name in PRIVATE:
            _test = pytest.mark.skip(reason=f"private scikit-learn internals: {PRIVATE[_name]}")(_test)
        globals()[_name] = _test


@pytest.fixture(autouse=True, params=backend_params(["numba", "numpy"]))
def _netcore_backend(request):
    """Every test of the suite on the two CPU backends (the python baseline computes in float64
    only, so the suite's float32 checks are not for it; it passes the rest)."""
    with backends.use(request.param):
        yield


@pytest.fixture
def global_random_seed() -> int:
    """scikit-learn's conftest fixture, at its default seed."""
    return 42


def test_every_private_skip_names_a_test_of_the_suite():
    missing = set(PRIVATE) - set(vars(_suite))
    assert not missing, f"skipped tests that scikit-learn's suite no longer has: {sorted(missing)}"
