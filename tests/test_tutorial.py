"""netcore.tutorial against the tutorial's own code (benchmarks/tutorial_original.py), on generated data."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from netcore import backends
from benchmarks import tutorial_original as original
from netcore import tutorial
from netcore.datasets import write_idx

from .conftest import backend_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data():
    """MNIST-shaped data in the tutorial's columns: 240 noisy copies of 10 random stroke patterns.

    Learnable data keeps gradient descent at lr 1.0 smooth, as on MNIST; on pure noise it
    oscillates and amplifies last-bit differences, which would test chaos, not the code.
    """
    rng = np.random.default_rng(0)
    labels = np.arange(240) % 10
    strokes = rng.random((10, 784)) < 0.2
    images = np.where(strokes[labels], rng.integers(120, 256, (240, 784)), rng.integers(0, 60, (240, 784))).astype(np.uint8)
    return images, labels, images.T / 255, original.one_hot(labels, 10).T


def run_model(module, X, y, *args, **kw):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        params = module.model(X, y, *args, **kw)
    return params, out.getvalue().splitlines()


def test_model_prints_the_same_lines_and_gives_the_same_parameters(data):
    _, _, X, y = data
    ref_params, ref_lines = run_model(original, X, y, 1)
    with backends.use("numpy"):
        params, lines = run_model(tutorial, X, y, 1)
    assert len(lines) == 15 and lines[0].startswith("Cost after iteration 0: 0.23") and lines[-1].endswith(" Accuracy: 100.000000")
    assert lines == ref_lines
    assert params.keys() == ref_params.keys()
    for key in ref_params:
        assert params[key].shape == ref_params[key].shape
        np.testing.assert_allclose(params[key], ref_params[key], rtol=0, atol=1e-12, err_msg=key)


def test_the_rate_drops_after_iteration_75_as_in_the_tutorial(data):
    """77 iterations differ from 76 by one step at the dropped rate 0.1, not at 1.0."""
    _, _, X, y = data
    with backends.use("numpy"):
        p76 = tutorial.model(X, y, 1, num_iterations=76, print_cost=False)
        p77 = tutorial.model(X, y, 1, num_iterations=77, print_cost=False)
        A, cache = tutorial.forward_propagation(X, p76)
        expected = tutorial.update_parameters(p76, tutorial.backward_propagation(X, y, cache, p76), 0.1)
    for key in expected:
        np.testing.assert_allclose(p77[key], expected[key], rtol=0, atol=1e-15, err_msg=key)


@pytest.mark.parametrize("name", backend_params(["numba", "cupy", "python"]))
def test_model_prints_the_same_lines_on_other_backends(data, name):
    _, _, X, y = data
    iterations = 21 if name == "python" else 150  # the loop baseline is slow: check its first lines
    _, ref_lines = run_model(original, X, y, 1, iterations)
    with backends.use(name):
        _, lines = run_model(tutorial, X, y, 1, iterations)
    assert lines == ref_lines


@pytest.mark.parametrize("n_outs", [[10], [16, 10], [32, 16, 8, 10]], ids=["1-layer", "2-layer", "4-layer"])
@pytest.mark.parametrize("name", backend_params(["numba"]))
def test_any_depth_prints_the_same_lines_on_numpy_and_numba(data, name, n_outs):
    _, _, X, y = data
    with backends.use("numpy"):
        ref_params, ref_lines = run_model(tutorial, X, y, 0.5, 40, n_outs=n_outs)
    with backends.use(name):
        params, lines = run_model(tutorial, X, y, 0.5, 40, n_outs=n_outs)
    assert len(lines) == 4 and lines == ref_lines
    assert sorted(params) == sorted(f"{p}{l}" for p in "Wb" for l in range(1, len(n_outs) + 1))
    for key in ref_params:
        np.testing.assert_allclose(params[key], ref_params[key], rtol=0, atol=1e-10, err_msg=key)


def test_each_function_matches_the_tutorials(data):
    _, labels, X, y = data
    ref = original.initialize_parameters(784, [16, 16, 10])
    params = tutorial.initialize_parameters(784, [16, 16, 10])
    for key in ref:
        np.testing.assert_array_equal(params[key], ref[key])
    np.testing.assert_array_equal(tutorial.one_hot(labels, 10), original.one_hot(labels, 10))
    Z = np.random.default_rng(1).standard_normal((10, 7)) * 5
    with backends.use("numpy"):
        np.testing.assert_allclose(tutorial.softmax(Z), original.softmax(Z), rtol=1e-14)
        np.testing.assert_allclose(tutorial.tanh(Z), original.tanh(Z), rtol=1e-15, atol=1e-16)
        A, cache = tutorial.forward_propagation(X, params)
        A_ref, cache_ref = original.forward_propagation(X, ref)
        np.testing.assert_allclose(A, A_ref, rtol=1e-13)
        assert cache.keys() == cache_ref.keys()
        for key in cache_ref:
            np.testing.assert_allclose(cache[key], cache_ref[key], rtol=1e-12, atol=1e-15, err_msg=key)
        grads = tutorial.backward_propagation(X, y, cache, params)
        grads_ref = original.backward_propagation(X, y, cache_ref, ref)
        assert grads.keys() == grads_ref.keys()
        for key in grads_ref:
            assert grads[key].shape == grads_ref[key].shape
            np.testing.assert_allclose(grads[key], grads_ref[key], rtol=1e-11, atol=1e-15, err_msg=key)
        before = {k: v.copy() for k, v in params.items()}
        new = tutorial.update_parameters(params, grads, 1.0)
        new_ref = original.update_parameters(ref, grads_ref, 1.0)
    for key in new_ref:
        np.testing.assert_allclose(new[key], new_ref[key], rtol=0, atol=1e-14, err_msg=key)
        np.testing.assert_array_equal(params[key], before[key])  # a new dict, as the tutorial returns


def test_the_tutorials_script_sequence_of_calls(data):
    """What the tutorial's script does after training: one_hot(...).T into model, one test image."""
    images, labels, _, _ = data
    train_X = images.reshape(len(images), 784).T / 255
    train_y = tutorial.one_hot(labels, 10).T
    assert train_y.shape == (10, len(labels))
    with backends.use("numpy"), contextlib.redirect_stdout(io.StringIO()):
        parameters = tutorial.model(train_X, train_y, 1)
    im = images.reshape(-1, 28, 28)[3] / 255  # a (28, 28) image, as test_X[0] is in the script
    A3, cache = tutorial.forward_propagation(im.reshape(784, 1), parameters)
    assert A3.shape == (10, 1) and cache["Z1"].shape == (16, 1)
    y_hat = np.argmax(A3, axis=0)
    ref_A3, _ = original.forward_propagation(im.reshape(784, 1), original.model(train_X, train_y, 1, print_cost=False))
    assert y_hat.tolist() == [labels[3]] == np.argmax(ref_A3, axis=0).tolist()
    np.testing.assert_allclose(A3, ref_A3, rtol=1e-9)


def test_one_hot_of_a_single_label_is_squeezed_like_the_tutorials():
    np.testing.assert_array_equal(tutorial.one_hot(np.array([3]), 5), original.one_hot(np.array([3]), 5))
    assert tutorial.one_hot(np.array([3]), 5).shape == (5,)


def test_where_the_tutorials_arithmetic_overflows_the_drop_in_stays_finite():
    """The tutorial's tanh is (e^x - e^-x) / (e^x + e^-x): inf / inf = NaN past |x| = 710; its
    softmax subtracts the array's maximum, so a column far below it is 0 / 0. The drop-in gives
    tanh's limit and each column's own softmax."""
    x = np.array([[800.0, -800.0, 0.5]])
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.isnan(original.tanh(x)[0, :2]).all()
        z = np.array([[0.0, -1000.0], [1.0, -999.0]])
        assert np.isnan(original.softmax(z)[:, 1]).all()
    with backends.use("numpy"):
        np.testing.assert_array_equal(tutorial.tanh(x), [[1.0, -1.0, np.tanh(0.5)]])
        np.testing.assert_allclose(tutorial.softmax(z), [[1 / (1 + np.e)] * 2, [np.e / (1 + np.e)] * 2], rtol=1e-15)
    assert tutorial.tanh(0.5) == pytest.approx(np.tanh(0.5), rel=1e-15)  # any shape, as np.exp takes
    np.testing.assert_allclose(tutorial.softmax(np.array([1.0, 2.0])), original.softmax(np.array([1.0, 2.0])), rtol=1e-15)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda p, X, y: tutorial.forward_propagation(X[:783], p), r"X has 783 features per sample, but the network expects 784 \(shape \(n_features, n_samples\)\)"),
        (lambda p, X, y: tutorial.model(X, y[:, :5], 1), "X has 240 samples but y has 5"),
        (lambda p, X, y: tutorial.model(X, y.T, 1), r"y has shape \(240, 10\): one sample per row.*one_hot\(a, num_classes\)\.T"),
        (lambda p, X, y: tutorial.model(X, np.argmax(y, axis=0), 1), r"y must be one-hot columns of shape \(n_classes, n_samples\)"),
        (lambda p, X, y: tutorial.model(np.where(X > 0.5, np.nan, X), y, 1), "X contains NaN"),
        (lambda p, X, y: tutorial.one_hot(np.array([0, 10]), 10), r"labels must be in 0..9 for 10 classes; found 10"),
        (lambda p, X, y: tutorial.one_hot(np.array([0, -1]), 10), r"labels must be in 0..9 for 10 classes; found -1"),
        (lambda p, X, y: tutorial.forward_propagation(X, {"W1": p["W1"]}), "parameters has 'W1' but no 'b1'"),
        (lambda p, X, y: tutorial.forward_propagation(X, {}), "parameters has no 'W1'"),
        (lambda p, X, y: tutorial.update_parameters(p, {}, 0.1), "grads is missing 'dW1'"),
        (lambda p, X, y: tutorial.backward_propagation(X, y, {}, p), "cache is missing A1, A2, A3"),
        (lambda p, X, y: tutorial.initialize_parameters(784, [16, 0, 10]), "layer sizes must be positive integers"),
    ],
)
def test_bad_input_is_named(data, call, message):
    _, _, X, y = data
    with pytest.raises((ValueError, TypeError), match=message):
        call(tutorial.initialize_parameters(784, [16, 16, 10]), X, y)


@pytest.mark.slow
def test_the_tutorial_script_runs_unchanged_but_for_its_import(tmp_path, data):
    """The script with its import swapped prints what the tutorial's code prints (IDX files made here)."""
    images, labels, _, _ = data
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images.reshape(-1, 28, 28))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    source = (ROOT / "benchmarks" / "tutorial_script.py").read_text()
    line = "from benchmarks.tutorial_original import *"
    assert source.count(line) == 1
    outputs = []
    for new_import in (line, "from netcore.tutorial import *"):
        script = tmp_path / "script.py"
        script.write_text(source.replace(line, new_import))
        env = {"PYTHONPATH": str(ROOT), "NETCORE_BACKEND": "numpy", "PATH": "", "MPLBACKEND": "Agg"}
        run = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, env=env, cwd=ROOT)
        assert run.returncode == 0, run.stderr
        assert run.stderr == ""
        outputs.append(run.stdout)
    lines = outputs[0].splitlines()
    assert lines[:4] == ["X_train: (240, 28, 28)", "Y_train: (240,)", "X_test: (240, 28, 28)", "Y_test: (240,)"]
    assert sum(line.startswith("Cost after iteration") for line in lines) == 15
    assert lines[-1] == f"array([{labels[0]}])"
    assert outputs[0] == outputs[1]
