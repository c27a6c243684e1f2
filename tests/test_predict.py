"""`netcore predict --model m.npz FILES...`: images, arrays and IDX files in, one class a line out,
fed the way the model's training data was."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from netcore import MLP
from netcore.cli import main
from netcore.datasets import load_digits, write_idx


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A model trained on the digits (8x8, 0..16 scaled to 0..1 floats) by `netcore train`."""
    path = tmp_path_factory.mktemp("model") / "digits.npz"
    assert main(["train", "--backend", "numpy", "--dataset", "digits", "--optimizer", "adam", "--lr", "0.01",
                 "--epochs", "60", "--no-progress", "--save", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def mnist_like_model(tmp_path_factory):
    """A model trained by `netcore train` on 0..255 uint8 images of 6x5 pixels."""
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("t10k", 10)):
        write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 6, 5)).astype(np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte", (np.arange(n) % 3).astype(np.uint8))
    path = folder / "m.npz"
    assert main(["train", "--backend", "numpy", "--data", str(folder), "--epochs", "2", "--hidden", "4", "--no-progress", "--save", str(path)]) == 0
    return path


def lines(capsys):
    return capsys.readouterr().out.split()


def test_arrays_and_images_get_the_networks_own_predictions(digits_model, tmp_path, capsys):
    (X, _), _ = load_digits()
    net = MLP.load(str(digits_model), backend="numpy")
    np.save(tmp_path / "rows.npy", X[:5])  # flat rows in the training units (0..1)
    np.save(tmp_path / "one.npy", X[5].reshape(8, 8))  # one sample, image-shaped
    Image.fromarray(np.round(X[6].reshape(8, 8) * 255).astype(np.uint8)).save(tmp_path / "six.png")  # grey levels 0..255
    capsys.readouterr()
    assert main(["predict", "--model", str(digits_model), "--backend", "numpy", str(tmp_path / "rows.npy"), str(tmp_path / "one.npy"), str(tmp_path / "six.png")]) == 0
    expected = [*net.predict(X[:6]), *net.predict(np.round(X[6:7] * 255) / 255)]
    assert lines(capsys) == [str(c) for c in expected]


def test_proba_prints_a_row_of_probabilities_a_sample(digits_model, tmp_path, capsys):
    (X, _), _ = load_digits()
    np.save(tmp_path / "rows.npy", X[:3])
    capsys.readouterr()
    assert main(["predict", "--model", str(digits_model), "--backend", "numpy", "--proba", str(tmp_path / "rows.npy")]) == 0
    rows = np.array([[float(v) for v in line.split()] for line in capsys.readouterr().out.splitlines()])
    np.testing.assert_allclose(rows, MLP.load(str(digits_model), backend="numpy").predict_proba(X[:3]), atol=1e-6)


def test_uint8_images_feed_a_uint8_model_as_it_was_trained(mnist_like_model, tmp_path, capsys):
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (4, 6, 5)).astype(np.uint8)
    write_idx(tmp_path / "x-idx3-ubyte.gz", images)
    Image.fromarray(images[0]).save(tmp_path / "first.png")
    Image.fromarray(images[1]).convert("RGB").save(tmp_path / "second.jpg", quality=100)  # colour is read as grey
    capsys.readouterr()
    assert main(["predict", "--model", str(mnist_like_model), "--backend", "numpy", str(tmp_path / "x-idx3-ubyte.gz"), str(tmp_path / "first.png")]) == 0
    net = MLP.load(str(mnist_like_model), backend="numpy")
    assert lines(capsys) == [str(c) for c in net.predict(np.concatenate([images, images[:1]]).reshape(5, -1))]
    assert main(["predict", "--model", str(mnist_like_model), "--backend", "numpy", str(tmp_path / "second.jpg")]) == 0
    assert len(lines(capsys)) == 1


@pytest.mark.parametrize("make,message", [
    (lambda p: Image.fromarray(np.zeros((28, 28), np.uint8)).save(p / "f.png"), "f.png is a 28x28 image; the model takes 8x8 images"),
    (lambda p: np.save(p / "f.npy", np.zeros((3, 10))), r"holds an array of shape \(3, 10\); the model takes 8x8 samples"),
    (lambda p: np.save(p / "f.npy", np.full((2, 64), 16.0)), "holds values from 16 to 16, but the model was trained on inputs in 0..1; scale them to 0..1"),
    (lambda p: np.save(p / "f.npy", np.full((2, 64), np.nan)), "holds NaN or infinite values"),
    (lambda p: np.save(p / "f.npy", np.array(["a"] * 64)), "holds <U1 values; the model takes numbers"),
    (lambda p: (p / "f.txt").write_text("hello"), "is not a PNG or JPEG image, an .npy array or an IDX file"),
    (lambda p: (p / "f.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20), "f.png: not a readable image"),
    (lambda p: (p / "f.npy").write_bytes(b"\x93NUMPY\x01\x00garbage"), "f.npy: not a readable .npy array"),
    (lambda p: None, "No such file or directory"),
])
def test_a_bad_input_is_one_line_and_nothing_is_printed_before_it(digits_model, tmp_path, capsys, make, message):
    (X, _), _ = load_digits()
    np.save(tmp_path / "good.npy", X[:2])
    make(tmp_path)
    bad = next((p for p in sorted(tmp_path.iterdir()) if p.name.startswith("f.")), tmp_path / "f.missing")
    capsys.readouterr()
    assert main(["predict", "--model", str(digits_model), "--backend", "numpy", str(tmp_path / "good.npy"), str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("netcore: error: ")
    assert re.search(message, captured.err), captured.err


def test_uint8_model_refuses_unscaled_floats(mnist_like_model, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.full((1, 6, 5), 200.0))
    assert main(["predict", "--model", str(mnist_like_model), str(tmp_path / "x.npy")]) == 1
    assert "but the model was trained on inputs in 0..1; pass uint8 arrays, or floats divided by 255" in capsys.readouterr().err


def test_a_network_file_without_a_record_takes_square_uint8_images(tmp_path, capsys):
    MLP([16, 3, 2], backend="numpy", seed=0).save(str(tmp_path / "net.npz"))
    Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4)).save(tmp_path / "x.png")
    assert main(["predict", "--model", str(tmp_path / "net.npz"), "--backend", "numpy", str(tmp_path / "x.png")]) == 0
    assert capsys.readouterr().out.strip() in ("0", "1")
