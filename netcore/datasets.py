"""Data: the IDX reader, MNIST / Fashion-MNIST (found on disk or downloaded), scikit-learn's digits.

IDX is MNIST's format: two zero bytes, a type code, the number of dimensions, each dimension
as a big-endian uint32, then the values in row-major order (big-endian for multi-byte types).
Files may be gzip-compressed; they are recognised by their content, not their name.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import struct
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# IDX type code -> big-endian dtype.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

Split = tuple[np.ndarray, np.ndarray]


class IDXFormatError(ValueError):
    """A file is not valid IDX (bad magic, truncated, or inconsistent sizes); the message names it."""


GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise IDXFormatError(f"{path}: corrupt or truncated gzip data ({exc})") from None


def open_idx(path: str | os.PathLike):
    """A binary file object over an IDX file's (decompressed) bytes, gzipped or not."""
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _parse_header(head: bytes, path: Path | str) -> tuple[np.dtype, tuple[int, ...], int]:
    """``(dtype, shape, header length)`` from the first bytes of an IDX file."""
    if len(head) < 4:
        raise IDXFormatError(f"{path}: {len(head)} bytes is too short for an IDX header")
    zero, code, ndim = struct.unpack(">HBB", head[:4])
    if zero != 0 or code not in IDX_TYPES or ndim == 0:
        raise IDXFormatError(f"{path}: bad IDX magic number 0x{head[:4].hex()} (expected 0x0000, a type code and a dimension count)")
    header = 4 + 4 * ndim
    if len(head) < header:
        raise IDXFormatError(f"{path}: truncated header: {ndim} dimensions need {header} bytes, the file has {len(head)}")
    return np.dtype(IDX_TYPES[code]), struct.unpack(f">{ndim}I", head[4:header]), header


def read_idx_header(fh, path: Path | str) -> tuple[np.dtype, tuple[int, ...], int]:
    """Read just the header from an open IDX file (see :func:`open_idx`), leaving it after the header."""
    head = fh.read(4)
    if len(head) == 4:
        head += fh.read(4 * head[3])
    return _parse_header(head, path)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a native-endian NumPy array."""
    path = Path(path)
    data = _read_bytes(path)
    dtype, shape, header = _parse_header(data, path)
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


def find_split(folder: Path, split: str, kind: str) -> Path | None:
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
        images, labels = find_split(folder, split, "images"), find_split(folder, split, "labels")
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


# -- MNIST and Fashion-MNIST: found on disk, or downloaded and verified ----------------------

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@dataclass(frozen=True)
class Source:
    """Where a dataset's four files live: public mirrors (tried in turn), their published MD5s,
    and folders an operating system package may have put them in."""

    name: str
    mirrors: tuple[str, ...]
    md5: dict[str, str]
    system_dirs: tuple[str, ...] = ()


SOURCES = {
    "mnist": Source(
        "mnist",
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        dict(zip(FILES, ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
                         "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"))),
    ),
    "fashion-mnist": Source(
        "fashion-mnist",
        ("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
         "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
        dict(zip(FILES, ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                         "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"))),
        ("/usr/share/datasets/fashion-mnist",),  # Debian's dataset-fashion-mnist package
    ),
}


class DatasetUnavailableError(FileNotFoundError):
    """The dataset is on no searched path and could not be downloaded; the message says where to put it."""


def cache_dir() -> Path:
    """``$NETCORE_CACHE``, else ``$XDG_CACHE_HOME/netcore``, else ``~/.cache/netcore``."""
    if os.environ.get("NETCORE_CACHE"):
        return Path(os.environ["NETCORE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "netcore"


def _complete(folder: Path) -> bool:
    return all(any((folder / (f[:-3] + s)).is_file() for s in (".gz", "")) for f in FILES)


def search_path(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders looked in, in order: ``data_dir``, ``$NETCORE_DATA`` (itself or its ``name``
    subfolder), the user cache, then the system folders for this dataset."""
    source = SOURCES[name]
    places = []
    if data_dir is not None:
        places.append(Path(data_dir))
    if os.environ.get("NETCORE_DATA"):
        places += [Path(os.environ["NETCORE_DATA"]) / name, Path(os.environ["NETCORE_DATA"])]
    places.append(cache_dir() / name)
    places += [Path(d) for d in source.system_dirs]
    return places


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, dest: Path, md5: str, timeout: float) -> None:
    """Download ``url`` to ``dest`` through a temporary file; nothing is left unless the MD5 matches."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out, 1 << 20)
        got = _md5(tmp)
        if got != md5:
            raise ValueError(f"checksum mismatch: MD5 {got}, published {md5}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def download(name: str, timeout: float = 10.0) -> Path:
    """Download a dataset's four files into the cache, each verified against its published MD5."""
    source = SOURCES[name]
    folder = cache_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    for filename, md5 in source.md5.items():
        if (folder / filename).is_file():
            continue
        errors = []
        for mirror in source.mirrors:
            try:
                _fetch(mirror + filename, folder / filename, md5, timeout)
                break
            except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError and timeouts are OSErrors
                errors.append(f"{mirror + filename}: {exc}")
        else:
            if not any(folder.iterdir()):
                folder.rmdir()  # leave no empty cache folder behind
            raise DatasetUnavailableError(f"could not download {filename}: " + "; ".join(errors))
    return folder


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, download_if_missing: bool = True, timeout: float = 10.0) -> tuple[Split, Split]:
    """``(X_train, y_train), (X_test, y_test)`` as uint8 images ``(n, 784)`` and labels, like Keras.

    Looks in :func:`search_path` order; if no folder holds all four files, downloads them into the
    cache (unless ``download_if_missing`` is False). Offline, fails within ``timeout`` seconds
    per mirror with a message that says where to put the files.
    """
    return load_idx_folder(dataset_folder(name, data_dir, download_if_missing, timeout))


def dataset_folder(name: str, data_dir: str | os.PathLike | None = None, download_if_missing: bool = True, timeout: float = 10.0) -> Path:
    """The folder holding a dataset's four files, found in :func:`search_path` order or downloaded."""
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(SOURCES)}")
    places = search_path(name, data_dir)
    folder = next((p for p in places if _complete(p)), None)
    if folder is None:
        hint = (f"put {', '.join(FILES)} (gzipped or not) in one of: " + ", ".join(map(str, places))
                + " (or point NETCORE_DATA at their folder)")
        if not download_if_missing:
            raise DatasetUnavailableError(f"{name} is not on disk; {hint}")
        try:
            folder = download(name, timeout)
        except DatasetUnavailableError as exc:
            raise DatasetUnavailableError(f"{name} is not on disk and {exc}. To use it offline, {hint}") from None
    return folder


def load_mnist(data_dir: str | os.PathLike | None = None, download_if_missing: bool = True) -> tuple[Split, Split]:
    """MNIST: 60,000 training and 10,000 test digits, uint8. See :func:`load_dataset`."""
    return load_dataset("mnist", data_dir, download_if_missing)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, download_if_missing: bool = True) -> tuple[Split, Split]:
    """Fashion-MNIST: 60,000 training and 10,000 test clothing images, uint8. See :func:`load_dataset`."""
    return load_dataset("fashion-mnist", data_dir, download_if_missing)
