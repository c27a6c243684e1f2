"""A mini-batch epoch (784-100-10 relu, batch 200, Adam) against scikit-learn's MLPClassifier.

Each timed round is one more epoch of the same model. With real data (``--netcore-data``) the
test accuracy after the rounds is recorded too, so speed is compared at known accuracy.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pytest

from netcore import MLP
from netcore.datasets import load_data
from netcore.optim import Adam
from netcore.trainer import train_minibatch

from .conftest import Settings, numba_threads, run, skip_unless_available
from .report import epoch_flop

GROUP = "mini-batch epoch, 784-100-10 relu, batch 200, Adam"
SIZES = (784, 100, 10)
ROUNDS = 5


@cache
def _split(settings: Settings):
    """``(X_train, y_train, X_test, y_test)`` as uint8 images; no test set for synthetic data."""
    if settings.data is None:
        rng = np.random.default_rng(1)
        return rng.integers(0, 256, (settings.samples, 784), dtype=np.uint8), rng.integers(0, 10, settings.samples), None, None
    data = load_data(data_dir=settings.data)  # one split on disk: its last sixth is the test set
    train, test = data.train, data.test
    n = min(settings.samples, len(train[0]))
    return train[0][:n], train[1][:n], test[0], test[1]


def _rounds(settings: Settings) -> int:
    return 1 if settings.quick else settings.timed_rounds or ROUNDS


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("backend", ["numba", "numpy", "cupy"])
def test_netcore(benchmark, settings, backend):
    skip_unless_available(backend)
    X, y, X_test, y_test = _split(settings)
    net = MLP(SIZES, "relu", backend=backend, dtype="float32", seed=0)
    optimizer = Adam(0.001)
    seeds = iter(range(10_000))

    def epoch():
        train_minibatch(net, X, y, 1, batch_size=200, optimizer=optimizer, seed=next(seeds))

    run(benchmark, epoch, settings, rounds=_rounds(settings), label=f"netcore {backend} float32, uint8 input", backend=backend,
        dtype="float32", input="uint8", samples=len(X), threads=numba_threads() if backend == "numba" else None,
        flop=epoch_flop(SIZES, len(X)), reference="numpy" if backend == "numpy" else None)
    if X_test is not None:
        benchmark.extra_info["test_accuracy"] = net.accuracy(X_test, y_test)
        benchmark.extra_info["epochs"] = _rounds(settings) + 1


@pytest.mark.benchmark(group=GROUP)
def test_peer_sklearn(benchmark, settings):
    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X, y, X_test, y_test = _split(settings)
    Xf = (X / 255.0).astype(np.float32)
    clf = MLPClassifier((100,), activation="relu", solver="adam", batch_size=200, learning_rate_init=0.001, random_state=0)
    classes = np.arange(10)

    def epoch():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.partial_fit(Xf, y, classes=classes)

    run(benchmark, epoch, settings, rounds=_rounds(settings), label=f"peer: scikit-learn {sklearn.__version__} MLPClassifier, float32",
        backend="sklearn", dtype="float32", input="float", samples=len(X), flop=epoch_flop(SIZES, len(X)))
    if X_test is not None:
        benchmark.extra_info["test_accuracy"] = float(clf.score((X_test / 255.0).astype(np.float32), y_test))
        benchmark.extra_info["epochs"] = _rounds(settings) + 1
