"""The IDX reader and loaders, on files generated here (no test needs the real MNIST)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from netcore.datasets import IDXFormatError, hold_out, load_data, load_digits, load_idx_folder, read_idx, write_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_idx_round_trip(tmp_path, suffix, dtype):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    if dtype == "uint8":
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / f"a{suffix}"
    write_idx(path, array)
    out = read_idx(path)
    assert out.dtype == array.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_mnist_header_layout(tmp_path):
    write_idx(tmp_path / "x", np.zeros((3, 28, 28), np.uint8))
    raw = (tmp_path / "x").read_bytes()
    assert struct.unpack(">IIII", raw[:16]) == (2051, 3, 28, 28)  # MNIST's images magic
    write_idx(tmp_path / "y", np.zeros(3, np.uint8))
    assert struct.unpack(">II", (tmp_path / "y").read_bytes()[:8]) == (2049, 3)


def write_raw(tmp_path, payload: bytes, name="bad"):
    path = tmp_path / name
    path.write_bytes(payload)
    return path


@pytest.mark.parametrize(
    "payload,message",
    [
        (b"\x00\x00", "too short for an IDX header"),
        (b"\x12\x34\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad IDX magic number 0x12340801"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "bad IDX magic number"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 10), r"truncated header: 3 dimensions need 16 bytes"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 10) + b"\x00" * 9, r"truncated: shape \(10,\) of uint8 needs 10 data bytes, found 9"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"\x00" * 3, "has trailing bytes"),
    ],
)
def test_corrupt_idx_is_named(tmp_path, payload, message):
    path = write_raw(tmp_path, payload)
    with pytest.raises(IDXFormatError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_truncated_and_corrupt_gzip_are_named(tmp_path):
    good = gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 1000) + bytes(1000))
    with pytest.raises(IDXFormatError, match="corrupt or truncated gzip data"):
        read_idx(write_raw(tmp_path, good[: len(good) // 2], "cut.gz"))
    with pytest.raises(IDXFormatError, match="corrupt or truncated gzip data"):
        read_idx(write_raw(tmp_path, good[:10] + b"\xff" * 40, "junk.gz"))


def write_split(folder, split, n, gz=True, n_labels=None):
    rng = np.random.default_rng(n)
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)).astype(np.uint8))
    write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n_labels or n).astype(np.uint8))


def test_load_idx_folder_finds_both_splits_gzipped_or_not(tmp_path):
    write_split(tmp_path, "train", 12, gz=False)
    write_split(tmp_path, "t10k", 5)
    (X, y), (X_test, y_test) = load_idx_folder(tmp_path)
    assert X.shape == (12, 784) and X.dtype == np.uint8 and y.shape == (12,)
    assert X_test.shape == (5, 784)


def test_load_idx_folder_with_one_split(tmp_path):
    write_split(tmp_path, "t10k", 5)
    train, test = load_idx_folder(tmp_path)
    assert train is None and test[0].shape == (5, 784)


@pytest.mark.parametrize(
    "setup,message",
    [
        (lambda d: None, "holds no MNIST-format files"),
        (lambda d: write_idx(d / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8)), "found t10k-images-idx3-ubyte but no t10k labels file"),
        (lambda d: write_split(d, "t10k", 5, n_labels=4), "has 5 images but t10k-labels-idx1-ubyte.gz has 4 labels"),
    ],
)
def test_load_idx_folder_errors(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises((FileNotFoundError, IDXFormatError), match=message):
        load_idx_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_idx_folder(tmp_path / "nowhere")


def test_digits_split_is_deterministic_and_scaled():
    (X, y), (X_test, y_test) = load_digits()
    assert X.shape[1] == 64 and len(X) + len(X_test) == 1797
    assert 0.0 <= X.min() and X.max() <= 1.0
    np.testing.assert_array_equal(load_digits()[1][1], y_test)


def test_load_data_holds_out_validation_and_records_where_the_data_came_from(tmp_path):
    write_split(tmp_path, "train", 20)
    write_split(tmp_path, "t10k", 6)
    (X, y), (X_test, _) = load_idx_folder(tmp_path)
    data = load_data(data_dir=tmp_path, validation=0.25)
    np.testing.assert_array_equal(data.train[0], X[:15])
    np.testing.assert_array_equal(data.validation[1], y[15:])
    np.testing.assert_array_equal(data.test[0], X_test)
    assert data.source == {"data": str(tmp_path.resolve())} and data.image_shape == (28, 28) and data.n_features == 784
    assert data.n_classes == max(int(s[1].max()) for s in data.splits) + 1 and data.notes == ()
    assert data.input_record() == {"shape": [28, 28], "dtype": "uint8", "range": [0.0, 255.0]}


def test_a_named_dataset_and_a_folder_are_one_or_the_other(tmp_path):
    with pytest.raises(ValueError, match="give a dataset name or a data folder, not both"):
        load_data("digits", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; choose one of mnist, fashion-mnist, digits"):
        load_data("cifar")


def test_the_digits_are_a_dataset_by_name():
    data = load_data("digits", validation=0.2)
    assert data.name == "scikit-learn digits" and data.source == {"dataset": "digits"} and data.image_shape == (8, 8)
    assert len(data.train[0]) + len(data.validation[0]) + len(data.test[0]) == 1797 and data.n_classes == 10
    assert data.input_record() == {"shape": [8, 8], "dtype": "float64", "range": [0.0, 1.0]}


@pytest.mark.parametrize("fraction,message", [(1.0, r"must be a number in \[0, 1\), got 1.0"), (-0.1, "got -0.1"), (float("nan"), "got nan"),
                                              ("0.5", "got '0.5'"), (0.001, "holds out 0 of 10 samples"), (0.99, "holds out 10 of 10 samples")])
def test_hold_out_leaves_samples_on_both_sides(fraction, message):
    split = (np.zeros((10, 2)), np.arange(10))
    with pytest.raises(ValueError, match=message):
        hold_out(split, fraction)


# -- read strictly (issue 13, item 6; test images of another size: item 5) -------------------

@pytest.mark.parametrize("which", ["images", "labels"])
def test_an_idx_type_other_than_unsigned_byte_is_an_error(tmp_path, which):
    write_split(tmp_path, "train", 12)
    shape = (12, 28, 28) if which == "images" else (12,)
    path = tmp_path / f"train-{which}-idx{len(shape)}-ubyte.gz"
    write_idx(path, np.random.default_rng(0).integers(-128, 128, shape).astype(np.int8))  # int8 data would train unscaled
    with pytest.raises(IDXFormatError, match=rf"{path}: IDX type int8 \(0x09\); MNIST-format images and labels are unsigned bytes \(0x08\)"):
        load_idx_folder(tmp_path)


@pytest.mark.parametrize("split", ["train", "t10k"])
def test_a_label_far_outside_the_other_splits_classes_is_named_with_its_index(tmp_path, split):
    for s, n in (("train", 30), ("t10k", 10)):
        write_idx(tmp_path / f"{s}-images-idx3-ubyte", np.zeros((n, 28, 28), np.uint8))
        labels = (np.arange(n) % 10).astype(np.uint8)
        if s == split:
            labels[7] = 200  # one corrupt byte: a 201-class network otherwise
        write_idx(tmp_path / f"{s}-labels-idx1-ubyte", labels)
    with pytest.raises(IDXFormatError, match=rf"{split}-labels-idx1-ubyte: label 200 at index 7 is far outside the classes the other labels use \(10 of them, up to 9\)"):
        load_idx_folder(tmp_path)


def test_a_label_a_little_beyond_the_other_split_is_fine(tmp_path):
    write_split(tmp_path, "train", 30)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1, 3], np.uint8))  # a small test set need not hold every class
    assert load_idx_folder(tmp_path)[1][1].tolist() == [0, 1, 3]


def test_test_images_of_another_size_are_an_error(tmp_path):
    write_split(tmp_path, "train", 12)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 20, 20), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(IDXFormatError, match="t10k-images-idx3-ubyte holds 20x20 images but .*train-images-idx3-ubyte.gz holds 28x28 ones"):
        load_idx_folder(tmp_path)
