"""Mini-batch training and the optimizers, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from netcore import backends
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


# -- the Trainer -------------------------------------------------------------------------------

from netcore import EarlyStopping, ModelCheckpoint, ProgressBar, StepLR, Trainer, TrainingDivergedError  # noqa: E402
from netcore.checkpoint import CheckpointError  # noqa: E402


def separable(rng, n=120, d=6, k=3):
    X, y = make_data(rng, n, d, k)
    X[np.arange(n), y] += 2.0
    return X, y


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("batch_size", [None, 32])
def test_resume_from_a_checkpoint_gives_the_same_numbers(backend_name, rng, tmp_path, optimizer, batch_size):
    X, y = separable(rng)

    def trainer():
        net = MLP([6, 7, 3], "tanh", backend=backend_name, dtype="float64", seed=1)
        return Trainer(net, optimizer, lr=0.05, batch_size=batch_size, l2=1e-3, seed=4, schedule=None)

    straight = trainer()
    straight.fit(X, y, 6)
    first = trainer()
    first.fit(X, y, 3, callbacks=[ModelCheckpoint(str(tmp_path / "ckpt.npz"))])
    resumed = Trainer.load(str(tmp_path / "ckpt.npz"), backend=backend_name)
    assert resumed.epoch == 3 and len(resumed.history) == 3
    resumed.fit(X, y, 6)
    for (W, b), (V, c) in zip(resumed.net.get_parameters(), straight.net.get_parameters()):
        np.testing.assert_array_equal(W, V)
        np.testing.assert_array_equal(b, c)
    assert resumed.history["loss"] == straight.history["loss"]


def test_an_interrupted_save_leaves_the_previous_checkpoint(rng, tmp_path, monkeypatch):
    X, y = separable(rng)
    trainer = Trainer(MLP([6, 4, 3], backend="numpy", seed=0), "sgd", lr=0.1)
    path = tmp_path / "model.npz"
    trainer.fit(X, y, 1)
    trainer.save(str(path))
    before = path.read_bytes()
    trainer.fit(X, y, 2)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # as if Ctrl-C arrived mid-write

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.save(str(path))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary file left


def test_loading_into_another_architecture_is_a_clear_error(rng, tmp_path):
    path, net_path = str(tmp_path / "trainer.npz"), str(tmp_path / "net.npz")
    Trainer(MLP([6, 4, 3], backend="numpy", dtype="float32", seed=0)).save(path)
    MLP([6, 4, 3], backend="numpy", dtype="float32", seed=0).save(net_path)
    assert MLP.load(path).layer_sizes == (6, 4, 3) and MLP.load(net_path).dtype == "float32"
    with pytest.raises(CheckpointError, match=r"holds a \[6, 4, 3\] tanh network; it cannot load into this \[6, 5, 3\] tanh one"):
        Trainer(MLP([6, 5, 3], backend="numpy", dtype="float32")).restore(path)
    with pytest.raises(CheckpointError, match=r"holds a \[6, 4, 3\] tanh network; it cannot load into this \[6, 4, 3\] relu one"):
        Trainer(MLP([6, 4, 3], "relu", backend="numpy", dtype="float32")).restore(path)
    with pytest.raises(CheckpointError, match="holds a network without training state; load it with MLP.load"):
        Trainer(MLP([6, 4, 3], backend="numpy", dtype="float32")).restore(net_path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="is not a readable checkpoint"):
        MLP.load(str(tmp_path / "junk.npz"))


# the learning rate is meant to blow the loss up: NumPy's overflow warnings are the point, not news
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value encountered:RuntimeWarning")
def test_divergence_stops_with_the_epoch_and_keeps_finite_parameters(backend_name, rng):
    X, y = separable(rng)
    net = MLP([6, 8, 8, 3], "relu", backend=backend_name, dtype="float64", seed=0)
    trainer = Trainer(net, "sgd", lr=1e200)
    with pytest.raises(TrainingDivergedError, match=r"the loss (became (nan|inf)|reached .*, over 1000 times its first value in this fit .*) at epoch \d+: training diverged.*Try a smaller learning rate \(this epoch used 1e\+200\)"):
        trainer.fit(X, y, 50)
    params = net.get_parameters()
    assert all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in params)
    assert np.isfinite(net.loss(X, y))


def test_validation_metrics_early_stopping_and_progress(rng, capsys):
    X, y = separable(rng, n=200)
    net = MLP([6, 8, 3], backend="numpy", dtype="float64", seed=0)
    stop = EarlyStopping("val_loss", patience=2, min_delta=1e-3)
    history = Trainer(net, "adam", lr=0.05, batch_size=20, seed=0).fit(X[:150], y[:150], 300, validation_data=(X[150:], y[150:]),
                                                                          callbacks=[stop, ProgressBar(file=__import__("sys").stdout)])
    assert len(history) < 300 and stop.stopped_epoch == len(history)
    assert all(v is not None for v in history["val_loss"]) and history["val_accuracy"][-1] > 0.9
    best = history["val_loss"][stop.best_epoch - 1]
    np.testing.assert_allclose(net.loss(X[150:], y[150:]), best, rtol=1e-12)  # the best epoch's parameters are back
    assert "epoch" in capsys.readouterr().out


def test_early_stopping_without_validation_data_says_so(rng):
    X, y = separable(rng)
    with pytest.raises(ValueError, match="EarlyStopping monitors val_loss but fit\\(\\) was given no validation_data"):
        Trainer(MLP([6, 3], backend="numpy")).fit(X, y, 3, callbacks=[EarlyStopping()])


def test_l2_penalty_gradient_matches_finite_differences(rng):
    X, y = make_data(rng, 10, 4, 3)
    net = MLP([4, 5, 3], backend="numpy", dtype="float64", seed=0)
    trainer = Trainer(net, "sgd", lr=1.0, l2=0.3)

    def penalised_loss():
        return net.loss(X, y) + 0.5 * 0.3 * sum((W**2).sum() for W, _ in net.get_parameters()) / len(X)

    W = net.get_parameters()
    assert trainer._l2_penalty(None, len(X)) == pytest.approx(0.5 * 0.3 * sum((a**2).sum() for a, _ in W) / len(X), rel=1e-14)
    _, grads, _ = net.loss_and_gradients(*net.prepare(X, y)[:2])
    trainer.optimizer.update(net.backend, net.layers, grads, l2=0.3 / len(X))  # W -= 1.0 * (dW + l2/m W)
    used = [a - b for (a, _), (b, _) in zip(W, net.get_parameters())]  # the gradient the step took
    h = 1e-6
    for idx in [(0, 0, 1), (1, 2, 3)]:
        l, i, j = idx
        shifted = [(a.copy(), b.copy()) for a, b in W]
        shifted[l][0][i, j] += h
        net.set_parameters(shifted)
        up = penalised_loss()
        shifted[l][0][i, j] -= 2 * h
        net.set_parameters(shifted)
        down = penalised_loss()
        np.testing.assert_allclose(used[l][i, j], (up - down) / (2 * h), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_adam_with_l2_is_the_separate_steps_to_the_bit(backend_name, rng, dtype):
    """The fused update (penalty gradient, Adam step, next sum of squares in one pass) takes the
    same step as adding ``l2 * W`` to the gradient and then stepping, and returns the new weights'
    sum of squares."""
    ops = backends.get_backend(backend_name, dtype)
    shapes = [(70, 1000), (70,), (3, 70), (3,)]  # the first above the numba kernels' parallel size
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(3)]
    results = []
    for fused in (True, False):
        layers = [(ops.asarray(params[0]), ops.asarray(params[1])), (ops.asarray(params[2]), ops.asarray(params[3]))]
        opt = Adam(0.01)
        for g in grads:
            g = [ops.asarray(a) for a in g]
            step = [(g[0], g[1]), (g[2], g[3])]
            if fused:
                squares = opt.update(ops, layers, step, l2=0.05)
            else:
                for (W, _), (dW, _) in zip(layers, step):
                    ops.sgd_update(dW, W, -0.05)
                opt.update(ops, layers, step)
        results.append([ops.to_numpy(p) for layer in layers for p in layer])
        if fused:
            expected = [float((ops.to_numpy(W).astype(np.float64) ** 2).sum()) for W, _ in layers]
            np.testing.assert_allclose([ops.to_float(s) for s in squares], expected, rtol=1e-12 if dtype == "float64" else 1e-6)
    exact = backend_name in ("numpy", "numba", "python")  # a GPU may contract a multiply-add
    for a, b in zip(*results):
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5)


def test_step_schedule_and_history_fields(rng):
    X, y = separable(rng)
    history = Trainer(MLP([6, 3], backend="numpy"), schedule=StepLR(1.0, drop_at=2)).fit(X, y, 4)
    assert history["lr"] == [1.0, 1.0, 1.0, 0.1] and history.history["seconds"][0] > 0


def test_graph_on_a_cpu_backend_is_refused():
    with pytest.raises(ValueError, match="the numpy backend cannot record a step for replay"):
        Trainer(MLP([4, 3], backend="numpy"), graph=True)
    with pytest.raises(NotImplementedError, match="the numpy backend cannot record a step for replay"):
        backends.get_backend("numpy").capture(lambda: None)
