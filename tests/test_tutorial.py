"""netcore.tutorial against a transcription of the tutorial's own code, on generated data."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import backends
from benchmarks import tutorial_original as original
from netcore import tutorial
from netcore.datasets import write_idx

from .conftest import backend_params

ROOT = Path(__file__).resolve().parents[1]
DIMS = [784, 16, 16, 10]


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
    return images, labels, images.T / 255.0, original.one_hot(labels)


def run_model(module, X, Y, **kw):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        params, costs = module.model(X, Y, DIMS, **kw)
    return params, costs, out.getvalue().splitlines()


def test_model_prints_the_same_lines_and_gives_the_same_parameters(data):
    _, _, X, Y = data
    ref_params, ref_costs, ref_lines = run_model(original, X, Y)
    with backends.use("numpy"):
        params, costs, lines = run_model(tutorial, X, Y)
    assert len(lines) == 10 and lines[0].startswith("Cost after iteration 0: ")
    assert lines == ref_lines
    np.testing.assert_allclose(costs, ref_costs, rtol=1e-12)
    assert params.keys() == ref_params.keys()
    for key in ref_params:
        assert params[key].shape == ref_params[key].shape
        np.testing.assert_allclose(params[key], ref_params[key], rtol=0, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("name", backend_params(["numba", "cupy", "python"]))
def test_model_prints_the_same_lines_on_other_backends(data, name):
    _, _, X, Y = data
    iterations = 21 if name == "python" else 100  # the loop baseline is slow: check its first lines
    *_, ref_lines = run_model(original, X, Y, num_iterations=iterations)
    with backends.use(name):
        *_, lines = run_model(tutorial, X, Y, num_iterations=iterations)
    assert lines == ref_lines


def test_each_function_matches_the_transcription(data):
    _, labels, X, Y = data
    ref = original.initialize_parameters(DIMS)
    params = tutorial.initialize_parameters(DIMS)
    for key in ref:
        np.testing.assert_array_equal(params[key], ref[key])
    np.testing.assert_array_equal(tutorial.one_hot(labels), Y)
    Z = np.random.default_rng(1).standard_normal((10, 7)) * 5
    with backends.use("numpy"):
        np.testing.assert_allclose(tutorial.softmax(Z), original.softmax(Z), rtol=1e-14)
        np.testing.assert_array_equal(tutorial.tanh(Z), original.tanh(Z))
        A, cache = tutorial.forward_propagation(X, params)
        A_ref, cache_ref = original.forward_propagation(X, ref)
        np.testing.assert_allclose(A, A_ref, rtol=1e-13)
        for key in ("A1", "A2", "Z3", "A3"):
            np.testing.assert_allclose(cache[key], cache_ref[key], rtol=1e-12, atol=1e-15, err_msg=key)
        grads = tutorial.backward_propagation(X, Y, params, cache)
        grads_ref = original.backward_propagation(X, Y, ref, cache_ref)
        assert grads.keys() == grads_ref.keys()
        for key in grads_ref:
            assert grads[key].shape == grads_ref[key].shape
            np.testing.assert_allclose(grads[key], grads_ref[key], rtol=1e-11, atol=1e-15, err_msg=key)
        new = tutorial.update_parameters(dict(params), grads, 1.0)
        new_ref = original.update_parameters(dict(ref), grads_ref, 1.0)
        for key in new_ref:
            np.testing.assert_allclose(new[key], new_ref[key], rtol=0, atol=1e-14, err_msg=key)


def test_deeper_networks_work_through_the_same_functions():
    rng = np.random.default_rng(2)
    X, labels = rng.random((6, 30)), rng.integers(0, 3, 30)
    params, costs = tutorial.model(X, tutorial.one_hot(labels, 3), [6, 5, 4, 4, 3], num_iterations=30, print_cost=False)
    assert set(params) == {f"{p}{l}" for p in "Wb" for l in range(1, 5)}
    assert costs[-1] < costs[0]


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda p, X, Y: tutorial.forward_propagation(X[:783], p), r"X has 783 features per sample, but the network expects 784 \(shape \(n_features, n_samples\)\)"),
        (lambda p, X, Y: tutorial.model(X, Y[:, :5], DIMS), "X has 240 samples but Y has 5"),
        (lambda p, X, Y: tutorial.model(np.where(X > 0.5, np.nan, X), Y, DIMS), "X contains NaN"),
        (lambda p, X, Y: tutorial.one_hot([0, 10]), r"labels must be in 0..9 for 10 classes; found 10"),
        (lambda p, X, Y: tutorial.forward_propagation(X, {"W1": p["W1"]}), "parameters has 'W1' but no 'b1'"),
        (lambda p, X, Y: tutorial.forward_propagation(X, {}), "parameters has no 'W1'"),
        (lambda p, X, Y: tutorial.update_parameters(p, {}, 0.1), "grads is missing 'dW1'"),
        (lambda p, X, Y: tutorial.backward_propagation(X, Y, p, {}), "cache is missing A1, A2, A3"),
    ],
)
def test_bad_input_is_named(data, call, message):
    _, _, X, Y = data
    with pytest.raises((ValueError, TypeError), match=message):
        call(tutorial.initialize_parameters(DIMS), X, Y)


@pytest.mark.slow
def test_the_tutorial_script_runs_unchanged_but_for_its_import(tmp_path, data):
    """The script with its import swapped prints what the original prints (IDX files made here)."""
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
        env = {"PYTHONPATH": str(ROOT), "NETCORE_BACKEND": "numpy", "PATH": ""}
        run = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, env=env, cwd=ROOT)
        assert run.returncode == 0, run.stderr
        outputs.append(run.stdout)
    assert outputs[0].count("Cost after iteration") == 10
    assert outputs[0] == outputs[1]
