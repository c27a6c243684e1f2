"""What a Trainer does with its state: divergence rules, checkpoints across dtypes and backends,
optimizer mismatches on restore, and fit() called again."""

from __future__ import annotations

import numpy as np
import pytest

from netcore import MLP, SGD, Adam, Trainer, TrainingDivergedError
from netcore.checkpoint import CheckpointError

from .conftest import backend_params, make_data


@pytest.fixture
def data(rng):
    X, y = make_data(rng, 90, 6, 3)
    X[np.arange(90), y] += 2.0  # separable enough to learn quickly
    return X, y


def test_a_finite_but_exploding_loss_is_divergence_and_keeps_the_last_good_parameters(data):
    """lr 1e6 on the python backend reaches losses near 1e69 without a NaN: the factor rule stops it."""
    X, y = data
    net = MLP([6, 8, 3], "relu", backend="numpy", dtype="float64", seed=0)
    trainer = Trainer(net, SGD(1e6))
    with pytest.raises(TrainingDivergedError, match=r"the loss reached .*, over 1000 times its first value in this fit \(1\.\d+\) at epoch 2"):
        trainer.fit(X, y, 5)
    assert trainer.epoch == 1 and all(np.isfinite(W).all() for W, _ in net.get_parameters())
    # the check can be switched off (scikit-learn's estimators only check finiteness)
    Trainer(MLP([6, 8, 3], "relu", backend="numpy", dtype="float64", seed=0), SGD(1e6), divergence_factor=None).fit(X, y, 2)


def test_a_non_finite_validation_loss_is_divergence(data, monkeypatch):
    X, y = data
    net = MLP([6, 8, 3], backend="numpy", dtype="float64", seed=0)
    trainer = Trainer(net, SGD(0.1))
    monkeypatch.setattr(trainer, "_evaluate", lambda batch: (float("nan"), 0.0))
    before = net.get_parameters()
    with pytest.raises(TrainingDivergedError, match="the validation loss became nan at epoch 1"):
        trainer.fit(X, y, 3, validation_data=(X, y))
    for (W, b), (V, c) in zip(net.get_parameters(), before):
        np.testing.assert_array_equal(W, V)  # the epoch's starting (finite) parameters


def test_non_finite_parameters_are_never_saved(data, tmp_path):
    X, y = data
    net = MLP([6, 3], backend="numpy", dtype="float64", seed=0)
    W, b = net.get_parameters()[0]
    W[0, 0] = np.inf
    net.layers[0][0][...] = W  # set behind the validation's back
    with pytest.raises(ValueError, match="not saving .*: the network's parameters are not all finite"):
        Trainer(net).save(str(tmp_path / "bad.npz"))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", backend_params(["python", "numba", "numpy"]))
def test_a_float32_checkpoint_loads_into_any_backend_and_dtype(data, tmp_path, name):
    X, y = data
    path = str(tmp_path / "f32.npz")
    trainer = Trainer(MLP([6, 5, 3], backend="numpy", dtype="float32", seed=0), Adam(0.01), batch_size=30, seed=1)
    trainer.fit(X, y, 2)
    trainer.save(path)
    resumed = Trainer.load(path, backend=name)
    assert resumed.optimizer.name == "adam" and resumed.epoch == 2
    for (W, _), (V, _) in zip(resumed.net.get_parameters(), trainer.net.get_parameters()):
        np.testing.assert_allclose(W, V, rtol=1e-7)
    resumed.fit(X, y, 3)
    assert resumed.epoch == 3


def test_loading_float64_into_float32_says_it_rounds(data, tmp_path):
    path = str(tmp_path / "f64.npz")
    Trainer(MLP([6, 3], backend="numpy", dtype="float64", seed=0)).save(path)
    with pytest.warns(UserWarning, match="holds float64 parameters; loading them as float32 rounds them"):
        Trainer(MLP([6, 3], backend="numpy", dtype="float32")).restore(path)


def test_restoring_another_optimizers_checkpoint_is_an_error(data, tmp_path):
    X, y = data
    path = str(tmp_path / "adam.npz")
    Trainer(MLP([6, 3], backend="numpy", seed=0), Adam(0.01)).save(path)
    with pytest.raises(CheckpointError, match=r"was trained with adam, but this trainer uses sgd; build the Trainer with the same optimizer, or use Trainer.load"):
        Trainer(MLP([6, 3], backend="numpy"), SGD(0.1)).restore(path)
    with pytest.raises(CheckpointError, match="trained with adam, but this trainer uses sgd with momentum"):
        Trainer(MLP([6, 3], backend="numpy"), "momentum").restore(path)
    assert Trainer(MLP([6, 3], backend="numpy"), Adam(0.5)).restore(path).optimizer.lr == 0.01  # the run's rate


def test_fit_again_with_the_same_epochs_trains_none_and_says_so(data):
    X, y = data
    trainer = Trainer(MLP([6, 3], backend="numpy", seed=0))
    trainer.fit(X, y, 3)
    with pytest.warns(UserWarning, match=r"already run 3 epochs, so fit\(epochs=3\) trains none.*ask for epochs=6 to train 3 more"):
        trainer.fit(X, y, 3)
    assert trainer.epoch == 3
    trainer.fit(X, y, 5)
    assert trainer.epoch == 5 and len(trainer.history) == 5
