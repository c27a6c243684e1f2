"""Mini-batch training and the optimizers, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import backends
from netcore import MLP
from netcore.optim import SGD, Adam
from netcore.trainer import train_full_batch, train_minibatch

from .conftest import make_data


def adam_reference(p, grads, lr=0.01, b1=0.9, b2=0.999, eps=1e-8):
    """Adam written out in NumPy float64, bias correction folded into the step as scikit-learn does."""
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    return p


def test_adam_update_matches_the_formula(backend_name, rng):
    ops = backends.get_backend(backend_name, "float64")
    W0, b0 = rng.standard_normal((3, 4)), rng.standard_normal(3)
    grads = [(rng.standard_normal((3, 4)), rng.standard_normal(3)) for _ in range(4)]
    layers = [(ops.asarray(W0.copy()), ops.asarray(b0.copy()))]
    opt = Adam(lr=0.01)
    for dW, db in grads:
        opt.update(ops, layers, [(ops.asarray(dW), ops.asarray(db))])
    np.testing.assert_allclose(ops.to_numpy(layers[0][0]), adam_reference(W0, [g[0] for g in grads]), rtol=1e-12)
    np.testing.assert_allclose(ops.to_numpy(layers[0][1]), adam_reference(b0, [g[1] for g in grads]), rtol=1e-12)


@pytest.mark.parametrize("optimizer", [lambda: Adam(0.05), lambda: SGD(0.5)], ids=["adam", "sgd"])
def test_minibatch_training_agrees_with_numpy_and_learns(backend_name, rng, optimizer):
    X, y = make_data(rng, 90, 6, 3)
    X[np.arange(90), y] += 2.0
    results = []
    for name in ("numpy", backend_name):
        net = MLP([6, 8, 3], "relu", backend=name, dtype="float64", seed=0)
        history = train_minibatch(net, X, y, 5, batch_size=16, optimizer=optimizer(), seed=3)
        results.append((net.get_parameters(), history))
    (ref_params, ref_hist), (params, hist) = results
    for (W, b), (rW, rb) in zip(params, ref_params):
        np.testing.assert_allclose(W, rW, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b, rb, rtol=1e-9, atol=1e-12)
    assert hist[-1].loss < 0.5 * hist[0].loss
    assert [h.epoch for h in hist] == [1, 2, 3, 4, 5]


def test_minibatch_is_reproducible_with_a_seed_and_shuffles(rng):
    X, y = make_data(rng, 40, 5, 2)

    def params(seed, shuffle=True):
        net = MLP([5, 4, 2], backend="numpy", dtype="float64", seed=0)
        train_minibatch(net, X, y, 2, batch_size=8, optimizer=SGD(0.3), shuffle=shuffle, seed=seed)
        return net.get_parameters()[0][0]

    np.testing.assert_array_equal(params(1), params(1))
    assert not np.array_equal(params(1), params(2))
    np.testing.assert_array_equal(params(1, shuffle=False), params(2, shuffle=False))


def test_one_batch_of_everything_is_full_batch_gradient_descent(rng):
    X, y = make_data(rng, 12, 4, 3)
    a = MLP([4, 5, 3], backend="numpy", dtype="float64", seed=0)
    b = MLP([4, 5, 3], backend="numpy", dtype="float64", seed=0)
    train_minibatch(a, X, y, 3, batch_size=12, optimizer=SGD(0.5), shuffle=False)
    train_full_batch(b, X, y, 3, lambda i: 0.5)
    for (W, _), (V, _) in zip(a.get_parameters(), b.get_parameters()):
        np.testing.assert_allclose(W, V, rtol=1e-13)


@pytest.mark.parametrize("kwargs,message", [(dict(epochs=0), "epochs must be a positive integer"), (dict(batch_size=0), "batch_size must be a positive integer")])
def test_bad_arguments_are_named(rng, kwargs, message):
    X, y = make_data(rng, 4, 4, 3)
    with pytest.raises(ValueError, match=message):
        train_minibatch(MLP([4, 3]), X, y, **{"epochs": 1, **kwargs})
