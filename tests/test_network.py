"""The network: initialisation, gradients against finite differences, agreement across backends."""

from __future__ import annotations

import numpy as np
import pytest

from netcore import MLP
from netcore.optim import StepLR
from netcore.trainer import train_full_batch
from netcore.validation import check_X

from .conftest import make_data

ARCHS = [([7, 3], "tanh"), ([6, 5, 4], "tanh"), ([5, 4, 3, 3], "sigmoid"), ([9, 6, 5, 4, 2], "relu"), ([4, 8, 3], "relu")]


def test_seed_2_reproduces_the_tutorials_initialisation():
    net = MLP([784, 16, 16, 10], backend="numpy", dtype="float64", seed=2)
    np.random.seed(2)
    expected = [np.random.randn(16, 784) * 0.1, np.random.randn(16, 16) * 0.1, np.random.randn(10, 16) * 0.1]
    for (W, b), W_ref in zip(net.get_parameters(), expected):
        np.testing.assert_array_equal(W, W_ref)
        np.testing.assert_array_equal(b, np.zeros(len(W_ref)))


def test_initialisation_leaves_the_global_random_state_alone():
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    MLP([4, 3, 2], seed=2)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize("sizes,activation", ARCHS, ids=lambda v: str(v))
def test_gradients_match_central_finite_differences(rng, sizes, activation):
    """The float64 NumPy path, the reference for every backend, against (f(θ+h) - f(θ-h)) / 2h."""
    X, y = make_data(rng, 11, sizes[0], sizes[-1])
    net = MLP(sizes, activation, backend="numpy", dtype="float64", seed=3)
    if activation == "relu":  # keep pre-activations away from the kink at 0
        net.set_parameters([(W * 3, b + 0.05) for W, b in net.get_parameters()])
    grads = net.gradients(X, y)
    params = net.get_parameters()
    h = 1e-6
    for l, (W, b) in enumerate(params):
        for which, array in ((0, W), (1, b)):
            numeric = np.zeros_like(array)
            for idx in np.ndindex(array.shape):
                losses = []
                for sign in (1, -1):
                    shifted = [(W_.copy(), b_.copy()) for W_, b_ in params]
                    shifted[l][which][idx] += sign * h
                    net.set_parameters(shifted)
                    losses.append(net.loss(X, y))
                numeric[idx] = (losses[0] - losses[1]) / (2 * h)
            np.testing.assert_allclose(grads[l][which], numeric, rtol=1e-5, atol=1e-8, err_msg=f"layer {l + 1} {'Wb'[which]}")
    net.set_parameters(params)


def _train(name, dtype, sizes, activation, X, y, steps=20):
    net = MLP(sizes, activation, backend=name, dtype=dtype, seed=5)
    train_full_batch(net, X, y, steps, StepLR(0.5, drop_at=15))
    return net.get_parameters(), net.loss(X, y)


@pytest.mark.parametrize("sizes,activation", ARCHS[1:], ids=lambda v: str(v))
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 1e-4)])
def test_twenty_training_steps_agree_with_numpy_float64(backend_name, rng, sizes, activation, dtype, rtol):
    X, y = make_data(rng, 37, sizes[0], sizes[-1])
    ref_params, ref_loss = _train("numpy", "float64", sizes, activation, X, y)
    params, loss = _train(backend_name, dtype, sizes, activation, X, y)
    assert params[0][0].dtype == np.dtype("float64" if backend_name == "python" else dtype)  # python computes in doubles
    np.testing.assert_allclose(loss, ref_loss, rtol=rtol)
    for (W, b), (W_ref, b_ref) in zip(params, ref_params):
        scale = np.abs(W_ref).max()
        np.testing.assert_allclose(W, W_ref, rtol=rtol, atol=rtol * scale)
        np.testing.assert_allclose(b, b_ref, rtol=rtol, atol=rtol * scale)


def test_training_reduces_the_loss_and_learns(backend_name, rng):
    X, y = make_data(rng, 60, 5, 3)
    X[np.arange(60), y] += 2.0  # make the classes separable
    net = MLP([5, 8, 3], backend=backend_name, seed=1)
    history = train_full_batch(net, X, y, 40, StepLR(1.0, drop_at=None))
    assert history[-1].loss < 0.5 * history[0].loss
    assert net.accuracy(X, y) > 0.9


def test_one_hot_labels_give_the_same_gradients(rng):
    X, y = make_data(rng, 9, 4, 3)
    net = MLP([4, 5, 3], backend="numpy", dtype="float64", seed=0)
    for (a, b), (c, d) in zip(net.gradients(X, y), net.gradients(X, np.eye(3)[y])):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def test_predict_and_probabilities(backend_name, rng):
    X, _ = make_data(rng, 6, 4, 3)
    net = MLP([4, 5, 3], backend=backend_name, dtype="float64", seed=0)
    P = net.predict_proba(X)
    assert P.shape == (6, 3)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    np.testing.assert_array_equal(net.predict(X), P.argmax(axis=1))


def test_step_returns_loss_before_the_update(rng):
    X, y = make_data(rng, 8, 4, 3)
    net = MLP([4, 3], backend="numpy", dtype="float64", seed=0)
    before = net.loss(X, y)
    assert net.step(X, y, 0.5) == pytest.approx(before)
    assert net.loss(X, y) < before


@pytest.mark.parametrize(
    "X,y,message",
    [
        (np.ones((3, 5)), [0, 1, 2], "X has 5 features per sample, but the network expects 4"),
        (np.ones((3, 4)), [0, 1], "X has 3 samples but y has 2"),
        (np.array([[0, np.nan, 0, 0]]), [0], r"X contains NaN \(at index 0, 1\)"),
        (np.array([[0, 0, np.inf, 0]]), [0], "X contains infinity"),
        (np.ones((2, 4)), [0, 3], r"labels must be in 0..2 for 3 classes; found 3 \(at index 1\)"),
        (np.ones((2, 4)), [0, -1], "labels must be in 0..2"),
        (np.ones((2, 4)), [0.0, 1.5], "y must be integer class ids; found 1.5"),
        (np.ones((2, 4)), ["a", "b"], "y must be integer class ids"),
        (np.ones((0, 4)), [], "X is empty"),
        (np.ones(4), [0], r"X must be 2-D .* got 1-D shape \(4,\) \(for one sample use X.reshape\(1, -1\)\)"),
        (np.array([["a"] * 4]), [0], "X must hold numbers"),
        (None, [0], "X is None"),
        (np.ones((2, 4)), np.ones((2, 3)), "2-D y must be one-hot"),
        (np.ones((2, 4)), np.eye(4)[:2], "one-hot y has 4 columns, but the network has 3 classes"),
    ],
)
def test_bad_input_is_named_before_any_compute(X, y, message):
    net = MLP([4, 5, 3], backend="numpy", seed=0)
    with pytest.raises((ValueError, TypeError), match=message):
        net.step(X, y, 0.1)


@pytest.mark.parametrize(
    "X",
    [
        np.full((2, 3), 1e308),  # finite, but its sum overflows: the elementwise test decides
        np.full((2, 3), -3e38, np.float32),  # float32 extremes: their float64 sum is finite
        np.array([[1e308, -1e308, 5.0]]),
    ],
)
def test_huge_finite_values_are_not_taken_for_infinity(X):
    assert check_X(X) is not None


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_bad_value_among_huge_ones_is_found(bad, dtype):
    X = np.full((3, 4), np.finfo(dtype).max / 2, dtype)
    X[2, 1] = bad
    with pytest.raises(ValueError, match=r"contains (NaN|infinity) \(at index 2, 1\)"):
        check_X(X)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(layer_sizes=[4]), "at least an input and an output"),
        (dict(layer_sizes=[4, 0, 3]), "positive integers"),
        (dict(layer_sizes=[4, 2.5, 3]), "positive integers"),
        (dict(layer_sizes=[4, 1]), "at least 2 classes"),
        (dict(layer_sizes=[4, 3], activation="gelu"), "unknown activation 'gelu'; choose one of tanh, relu, sigmoid"),
        (dict(layer_sizes=[4, 3], dtype="float16"), "unsupported dtype 'float16'"),
        (dict(layer_sizes=[4, 3], backend="tensorflow"), "unknown backend 'tensorflow'"),
    ],
)
def test_bad_construction_is_named(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        MLP(**kwargs)


def test_set_parameters_checks_shapes():
    net = MLP([4, 3], seed=0)
    with pytest.raises(ValueError, match=r"layer 1: expected W \(3, 4\) and b \(3,\)"):
        net.set_parameters([(np.ones((4, 3)), np.zeros(3))])


def test_epochs_must_be_positive(rng):
    X, y = make_data(rng, 4, 4, 3)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        train_full_batch(MLP([4, 3]), X, y, 0)
