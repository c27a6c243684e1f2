"""The output layers beyond softmax, sample weights and sparse inputs: every backend against
formulas written out here in NumPy, the network's gradient against finite differences, and the
numba fused pass's fallback against the generic path."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
from scipy.special import expit, log_softmax, softmax, xlogy

from netcore import backends
from netcore.backends.base import ACTIVATIONS, OUTPUTS
from netcore import MLP, Trainer
from netcore.network import generic_loss_and_gradients

from .conftest import backend_params

REF = backends.get_backend("numpy", "float64")
TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=2e-5, atol=2e-6)}


def targets(rng, kind: str, n: int, k: int) -> np.ndarray:
    if kind == "softmax":
        return np.eye(k)[rng.integers(0, k, n)]
    if kind == "logistic":
        return rng.integers(0, 2, (n, k)).astype(float)
    if kind == "exp":
        return rng.poisson(2.0, (n, k)).astype(float)
    return rng.standard_normal((n, k))


def expected(kind: str, z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(output, per-row loss, dZ) written out from the definitions."""
    if kind == "softmax":
        out, rows = softmax(z, axis=1), -(y * log_softmax(z, axis=1)).sum(axis=1)
    elif kind == "logistic":
        out = expit(z)
        rows = -(xlogy(y, out) + xlogy(1 - y, 1 - out)).sum(axis=1)
    elif kind == "identity":
        out, rows = z, 0.5 * ((z - y) ** 2).sum(axis=1)
    else:
        out = np.exp(z)
        rows = (xlogy(y, y / out) - y + out).sum(axis=1)
    return out, rows, out - y


def check_output_ops(ops, n: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    tol = TOL[ops.dtype.name]
    z = (2 * rng.standard_normal((n, k))).astype(ops.dtype).astype(np.float64)
    w = rng.random(n) + 0.1
    for kind in OUTPUTS:
        y = targets(rng, kind, n, k)
        out, rows, delta = expected(kind, z, y)
        np.testing.assert_allclose(ops.to_numpy(ops.output(ops.asarray(z), kind)), out, **tol, err_msg=kind)
        loss, dZ = ops.output_loss(ops.asarray(z), ops.asarray(y), kind)
        np.testing.assert_allclose(ops.to_float(loss), rows.mean(), **tol, err_msg=kind)
        np.testing.assert_allclose(ops.to_numpy(dZ), delta, **tol, err_msg=kind)
        loss, dZ = ops.output_loss(ops.asarray(z), ops.asarray(y), kind, ops.asarray(w.reshape(-1, 1)))
        np.testing.assert_allclose(ops.to_float(loss), (w * rows).sum() / w.sum(), **tol, err_msg=kind)
        np.testing.assert_allclose(ops.to_numpy(dZ), delta * (n * w / w.sum())[:, None], **tol, err_msg=kind)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 1), (9, 4)], ids=lambda s: "x".join(map(str, s)))
def test_output_ops_match_their_definitions(backend_name, dtype, shape):
    check_output_ops(backends.get_backend(backend_name, dtype), *shape, seed=sum(shape))


@pytest.mark.parametrize("name", backend_params(["numba-cuda"]))
def test_output_ops_on_numba_cuda(name):
    check_output_ops(backends.get_backend(name, "float64"), 5, 3, seed=1)


@pytest.mark.parametrize("name", backend_params(["numba-cuda"]))
def test_numba_cuda_trains_the_new_outputs_and_takes_sparse_inputs(name, rng):
    """No sparse kernels there: the rows go to the device dense, and give what dense inputs give."""
    X = rng.random((6, 4)) * (rng.random((6, 4)) < 0.5)
    y = rng.integers(0, 2, (6, 2))
    ref = MLP([4, 3, 2], "identity", backend="numpy", dtype="float64", seed=0, output="logistic")
    net = MLP([4, 3, 2], "identity", backend=name, dtype="float64", seed=0, output="logistic")
    for model in (ref, net):
        Trainer(model, "sgd", lr=0.5).fit(scipy.sparse.csr_matrix(X), y, 3, sample_weight=np.arange(1, 7))
    np.testing.assert_allclose(net.predict_proba(scipy.sparse.csr_matrix(X)), ref.predict_proba(X), rtol=1e-10)


def test_unknown_output_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown output 'sigmoid'; choose one of softmax, logistic, identity, exp"):
        MLP([3, 2], output="sigmoid")
    with pytest.raises(ValueError, match="softmax output needs at least 2 classes"):
        MLP([3, 1])
    assert MLP([3, 1], output="logistic").n_outputs == 1


def numeric_gradient(net: MLP, X, y, weights=None, eps=1e-6) -> list:
    batch = net.prepare(X, y, weights)
    params = net.get_parameters()
    grads = []
    for l, (W, b) in enumerate(params):
        layer = []
        for P in (W, b):
            G = np.zeros_like(P)
            for idx in np.ndindex(P.shape):
                values = []
                for sign in (1, -1):
                    P[idx] += sign * eps
                    net.set_parameters(params)
                    values.append(net.backend.to_float(net.loss_and_gradients(batch.X, batch.Y, None, batch.weights)[0]))
                    P[idx] -= sign * eps
                G[idx] = (values[0] - values[1]) / (2 * eps)
            layer.append(G)
        grads.append(tuple(layer))
    net.set_parameters(params)
    return grads


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("output", list(OUTPUTS))
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_gradients_match_finite_differences(rng, activation, output, weighted):
    n, sizes = 6, [4, 5, 3]
    X = rng.standard_normal((n, sizes[0]))
    y = targets(rng, output, n, sizes[-1])
    y = y.argmax(axis=1) if output == "softmax" else y
    w = rng.random(n) + 0.2 if weighted else None
    net = MLP(sizes, activation, backend="numpy", dtype="float64", seed=3, init="glorot", output=output)
    batch = net.prepare(X, y, w)
    _, grads, _ = net.loss_and_gradients(batch.X, batch.Y, None, batch.weights)
    for (dW, db), (nW, nb) in zip(grads, numeric_gradient(net, X, y, w)):
        np.testing.assert_allclose(dW, nW, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(db, nb, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("output", list(OUTPUTS))
@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_every_backend_agrees_with_numpy_float64(backend_name, rng, output, activation):
    """Sparse and dense inputs, weights or not, every output: one loss, one gradient, one prediction
    (numba's fused pass hands what it does not cover to the generic path)."""
    n, sizes = 12, [7, 5, 3]
    X = rng.random((n, sizes[0])) * (rng.random((n, sizes[0])) < 0.4)
    y = targets(rng, output, n, sizes[-1])
    y = y.argmax(axis=1) if output == "softmax" else y
    w = rng.random(n) + 0.2
    ref = MLP(sizes, activation, backend="numpy", dtype="float64", seed=0, init="glorot", output=output)
    net = MLP(sizes, activation, backend=backend_name, dtype="float64", seed=0, init="glorot", output=output)
    rows = np.array([1, 4, 5, 9, 11])
    for inputs in (X, scipy.sparse.csr_matrix(X), scipy.sparse.csr_array(X)):
        for weights in (None, w):
            expect = ref.prepare(X, y, weights)
            batch = net.prepare(inputs, y, weights)
            loss_ref, grads_ref, Z_ref = generic_loss_and_gradients(REF, ref.layers, expect.X[rows], expect.Y[rows], activation, output,
                                                                    None if weights is None else expect.weights[rows])
            loss, grads, Z = net.loss_and_gradients(batch.X, batch.Y, rows, batch.weights)
            np.testing.assert_allclose(net.backend.to_float(loss), loss_ref, rtol=1e-10)
            np.testing.assert_allclose(net.backend.to_numpy(Z), Z_ref, rtol=1e-10, atol=1e-12)
            for (dW, db), (eW, eb) in zip(grads, grads_ref):
                np.testing.assert_allclose(net.backend.to_numpy(dW), eW, rtol=1e-9, atol=1e-12)
                np.testing.assert_allclose(net.backend.to_numpy(db), eb, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(net.predict_proba(inputs), ref.predict_proba(X), rtol=1e-10)
        np.testing.assert_allclose(net.predict(inputs), ref.predict(X), rtol=1e-10)  # class ids, 0/1, or values


def test_uint8_inputs_mean_intensities_for_sparse_inputs_too(rng):
    X = (rng.random((6, 5)) * 255 * (rng.random((6, 5)) < 0.5)).astype(np.uint8)
    net = MLP([5, 3], backend="numpy", dtype="float64", seed=0)
    np.testing.assert_allclose(net.predict_proba(scipy.sparse.csr_matrix(X)), net.predict_proba(X / 255.0), rtol=1e-12)


def test_target_checks_name_the_problem(rng):
    X = rng.random((4, 3))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        MLP([3, 2], output="logistic").prepare(X, [[0, 2]] * 4)
    with pytest.raises(ValueError, match="non-negative"):
        MLP([3, 1], output="exp").prepare(X, [1, 2, -1, 0])
    with pytest.raises(ValueError, match=r"shape \(4, 2\)"):
        MLP([3, 2], output="identity").prepare(X, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="sample_weight must hold finite, non-negative"):
        MLP([3, 2]).prepare(X, [0, 1, 0, 1], [1, -1, 1, 1])
    with pytest.raises(ValueError, match="sample_weight is zero for every sample"):
        MLP([3, 2]).prepare(X, [0, 1, 0, 1], np.zeros(4))
    with pytest.raises(ValueError, match="stored values contains NaN"):
        MLP([3, 2]).prepare(scipy.sparse.csr_matrix(np.array([[np.nan, 0, 1]])))


@pytest.mark.parametrize("output", ["softmax", "identity"])
def test_integer_weights_train_like_repeated_samples(rng, output):
    """Full batch: weight 2 is the sample twice (the weighted mean is the mean over the repeats)."""
    X = rng.random((7, 4))
    y = targets(rng, output, 7, 3)
    y = y.argmax(axis=1) if output == "softmax" else y
    w = np.array([1, 2, 1, 3, 1, 1, 2])
    results = []
    for args in ((X, y, w), (np.repeat(X, w, axis=0), np.repeat(y, w, axis=0), None)):
        net = MLP([4, 5, 3], "tanh", backend="numpy", dtype="float64", seed=0, output=output)
        Trainer(net, "adam", lr=0.05).fit(args[0], args[1], 5, sample_weight=args[2])
        results.append(net.get_parameters())
    for (W, b), (V, c) in zip(*results):
        np.testing.assert_allclose(W, V, rtol=1e-10)
        np.testing.assert_allclose(b, c, rtol=1e-10)


def test_trainer_trains_every_output(rng):
    X = rng.random((40, 3))
    Y = np.c_[X.sum(axis=1), X[:, 0] - X[:, 1]]
    net = MLP([3, 8, 2], "tanh", backend="numpy", dtype="float64", seed=0, init="glorot", output="identity")
    history = Trainer(net, "adam", lr=0.02, batch_size=10, seed=0).fit(X, Y, 60)
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    assert np.isnan(history["accuracy"][-1])  # regression has no classes
    labels = (X > 0.5).astype(int)
    net = MLP([3, 8, 3], "tanh", backend="numpy", dtype="float64", seed=0, init="glorot", output="logistic")
    history = Trainer(net, "adam", lr=0.05, batch_size=10, seed=0).fit(X, labels, 80, validation_data=(X, labels))
    assert history["accuracy"][-1] > 0.8 and history["val_accuracy"][-1] > 0.8
    assert net.predict(X).shape == (40, 3) and net.accuracy(X, labels) == history["val_accuracy"][-1]
