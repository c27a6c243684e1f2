"""Data: the IDX reader and the loaders the CLI and examples use.

IDX is MNIST's format: two zero bytes, a type code, the number of dimensions, each dimension
as a big-endian uint32, then the values in row-major order (big-endian for multi-byte types).
Files may be gzip-compressed; they are recognised by their content, not their name.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

# IDX type code -> big-endian dtype.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

Split = tuple[np.ndarray, np.ndarray]


class IDXFormatError(ValueError):
    """A file is not valid IDX (bad magic, truncated, or inconsistent sizes); the message names it."""


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise IDXFormatError(f"{path}: corrupt or truncated gzip data ({exc})") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a native-endian NumPy array."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXFormatError(f"{path}: {len(data)} bytes is too short for an IDX header")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in IDX_TYPES or ndim == 0:
        raise IDXFormatError(f"{path}: bad IDX magic number 0x{data[:4].hex()} (expected 0x0000, a type code and a dimension count)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(f"{path}: truncated header: {ndim} dimensions need {header} bytes, the file has {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(IDX_TYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        what = "truncated" if found < expected else "has trailing bytes"
        raise IDXFormatError(f"{path}: {what}: shape {shape} of {dtype.name} needs {expected} data bytes, found {found}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``."""
    array = np.asarray(array)
    codes = {np.dtype(t).newbyteorder("="): c for c, t in IDX_TYPES.items()}
    if array.dtype not in codes:
        raise TypeError(f"IDX cannot store dtype {array.dtype}; use one of {', '.join(sorted({d.name for d in codes}))}")
    header = struct.pack(f">HBB{array.ndim}I", 0, codes[array.dtype], array.ndim, *array.shape)
    payload = header + array.astype(IDX_TYPES[codes[array.dtype]]).tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def _find(folder: Path, split: str, kind: str) -> Path | None:
    """``train-images-idx3-ubyte``, ``.gz``, or the ``train-images.idx3-ubyte`` spelling."""
    ndim = 3 if kind == "images" else 1
    for stem in (f"{split}-{kind}-idx{ndim}-ubyte", f"{split}-{kind}.idx{ndim}-ubyte"):
        for suffix in ("", ".gz"):
            if (folder / (stem + suffix)).is_file():
                return folder / (stem + suffix)
    return None


def _read_pair(images_path: Path, labels_path: Path) -> Split:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim < 2 or labels.ndim != 1:
        raise IDXFormatError(f"{images_path.name} / {labels_path.name}: expected images (n, rows, cols) and labels (n,), got {images.shape} and {labels.shape}")
    if len(images) != len(labels):
        raise IDXFormatError(f"{images_path.name} has {len(images)} images but {labels_path.name} has {len(labels)} labels")
    return images.reshape(len(images), -1), labels


def load_idx_folder(folder: str | os.PathLike) -> tuple[Split | None, Split | None]:
    """``(train, test)`` from a folder of MNIST-format files; a split whose files are absent is None.

    Images come back flattened to ``(n, rows * cols)`` in their stored dtype (uint8 for MNIST).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} does not exist")
    splits = []
    for split in ("train", "t10k"):
        images, labels = _find(folder, split, "images"), _find(folder, split, "labels")
        if (images is None) != (labels is None):
            have, lack = (images, "labels") if labels is None else (labels, "images")
            raise FileNotFoundError(f"{folder}: found {have.name} but no {split} {lack} file next to it")
        splits.append(None if images is None else _read_pair(images, labels))
    if splits == [None, None]:
        raise FileNotFoundError(f"{folder} holds no MNIST-format files (expected train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and their labels)")
    return splits[0], splits[1]


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> tuple[Split, Split]:
    """scikit-learn's bundled 8x8 digits (1,797 images, 0..16 scaled to 0..1), split train/test.

    Bundled with scikit-learn, so it works offline on a fresh machine.
    """
    from sklearn.datasets import load_digits as sk_digits

    X, y = sk_digits(return_X_y=True)
    order = np.random.RandomState(seed).permutation(len(X))
    X, y = X[order] / 16.0, y[order]
    n_test = int(round(len(X) * test_fraction))
    return (X[n_test:], y[n_test:]), (X[:n_test], y[:n_test])
