"""Data: the IDX reader, MNIST / Fashion-MNIST (found on disk or downloaded), scikit-learn's digits,
and :func:`load_data`, which picks a run's data and splits off its validation and test sets.

IDX is MNIST's format: two zero bytes, a type code, the number of dimensions, each dimension
as a big-endian uint32, then the values in row-major order (big-endian for multi-byte types).
Files may be gzip-compressed; they are recognised by their content, not their name.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import struct
import urllib.request
import zlib
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_write

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
    data = gzip.compress(payload) if path.suffix == ".gz" else payload
    atomic_write(path, lambda fh: fh.write(data))


def find_split(folder: Path, split: str, kind: str) -> Path | None:
    """``train-images-idx3-ubyte``, ``.gz``, or the ``train-images.idx3-ubyte`` spelling."""
    ndim = 3 if kind == "images" else 1
    for stem in (f"{split}-{kind}-idx{ndim}-ubyte", f"{split}-{kind}.idx{ndim}-ubyte"):
        for suffix in ("", ".gz"):
            if (folder / (stem + suffix)).is_file():
                return folder / (stem + suffix)
    return None


def _read_pair(images_path: Path, labels_path: Path) -> tuple[Split, tuple[int, ...]]:
    """A split's images, flattened to ``(n, rows * cols)``, its labels, and the image shape.

    MNIST-format files hold unsigned bytes: any other IDX type is an error (a signed or float
    file would otherwise be trained on as if it were 0..255 intensities).
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    for path, array in ((images_path, images), (labels_path, labels)):
        if array.dtype != np.uint8:
            code = next(c for c, t in IDX_TYPES.items() if np.dtype(t).newbyteorder("=") == array.dtype)
            raise IDXFormatError(f"{path}: IDX type {array.dtype.name} (0x{code:02X}); MNIST-format images and labels are unsigned bytes (0x08)")
    if images.ndim < 2 or labels.ndim != 1:
        raise IDXFormatError(f"{images_path.name} / {labels_path.name}: expected images (n, rows, cols) and labels (n,), got {images.shape} and {labels.shape}")
    if len(images) != len(labels):
        raise IDXFormatError(f"{images_path.name} has {len(images)} images but {labels_path.name} has {len(labels)} labels")
    return (images.reshape(len(images), -1), labels), images.shape[1:]


def _check_splits(found: list[tuple[Path, Path, Split, tuple[int, ...]]]) -> None:
    """The test split must fit the training split: the same image size, and no label far outside
    the classes the other labels use. Labels are class ids 0..K-1, so the largest one sets the
    network's size: when more than half of the classes up to it appear in neither split, it is a
    corrupt byte (one set to 200 would otherwise make a 201-class network), not a class."""
    (train_images, train_labels, (_, y), shape), (test_images, test_labels, (_, y_test), test_shape) = found
    if shape != test_shape:
        size = "x".join(map(str, shape[::-1]))
        raise IDXFormatError(f"{test_images} holds {'x'.join(map(str, test_shape[::-1]))} images but {train_images} holds {size} ones: "
                             "the test images must have the training images' size")
    used = np.union1d(np.unique(y), np.unique(y_test))
    top = int(used[-1])
    if len(used) > 1 and 2 * len(used) < top + 1:
        path, labels = (train_labels, y) if top in y else (test_labels, y_test)
        i = int(np.flatnonzero(labels == top)[0])
        raise IDXFormatError(f"{path}: label {top} at index {i} is far outside the classes the other labels use "
                             f"({len(used) - 1} of them, up to {int(used[-2])}); the file looks corrupt")


def _folder_splits(folder: str | os.PathLike) -> tuple[Split | None, Split | None, tuple[int, ...]]:
    """``(train, test, image shape)`` of a folder of MNIST-format files (see :func:`load_idx_folder`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} " + ("is not a folder" if folder.exists() else "does not exist"))
    splits, found = [], []
    for split in ("train", "t10k"):
        images, labels = find_split(folder, split, "images"), find_split(folder, split, "labels")
        if (images is None) != (labels is None):
            have, lack = (images, "labels") if labels is None else (labels, "images")
            raise FileNotFoundError(f"{folder}: found {have.name} but no {split} {lack} file next to it")
        if images is None:
            splits.append(None)
            continue
        pair, shape = _read_pair(images, labels)
        splits.append(pair)
        found.append((images, labels, pair, shape))
    if not found:
        raise FileNotFoundError(f"{folder} holds no MNIST-format files (expected train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and their labels)")
    if len(found) == 2:
        _check_splits(found)
    return splits[0], splits[1], found[0][3]


def load_idx_folder(folder: str | os.PathLike) -> tuple[Split | None, Split | None]:
    """``(train, test)`` from a folder of MNIST-format files; a split whose files are absent is None.

    Images come back flattened to ``(n, rows * cols)`` as uint8. Read strictly: files of another
    IDX type than unsigned bytes, test images of another size than the training images, and a
    label far outside the other split's classes are errors that name the file.
    """
    train, test, _ = _folder_splits(folder)
    return train, test


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


class Reason(Enum):
    """Why a dataset could not be had: what :class:`DatasetUnavailableError` carries in ``reason``."""

    NOT_ON_DISK = "not on disk"  # no searched folder holds it, and downloading was not allowed
    DOWNLOAD_FAILED = "could not download"  # no searched folder holds it, and no mirror answered


class DatasetUnavailableError(FileNotFoundError):
    """The dataset is on no searched path and could not be downloaded; the message says where to put it.

    Fields, for code that acts on the failure without reading the message: ``dataset`` (its
    name), ``reason`` (a :class:`Reason`), ``detail`` (what went wrong, e.g. each mirror's error)
    and ``hint`` (where to put the files to use it offline); ``why`` is the message without the hint.
    """

    def __init__(self, dataset: str, reason: Reason, detail: str = "", hint: str = "") -> None:
        self.dataset, self.reason, self.detail, self.hint = dataset, reason, detail, hint
        super().__init__(self.why + (f". To use it offline, {hint}" if hint and detail else f"; {hint}" if hint else ""))

    @property
    def why(self) -> str:
        return f"{self.dataset} is not on disk" + (f" and {self.detail}" if self.detail else "")

    def __reduce__(self) -> tuple[Any, ...]:  # rebuilt from its fields, not its message (pickling, Dask)
        return type(self), (self.dataset, self.reason, self.detail, self.hint)


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


def _fetch(url: str, dest: Path, md5: str, timeout: float) -> None:
    """Download ``url`` to ``dest`` atomically; nothing is left unless the MD5 matches."""

    def write(out) -> None:
        digest = hashlib.md5(usedforsecurity=False)
        with urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != md5:
            raise ValueError(f"checksum mismatch: MD5 {digest.hexdigest()}, published {md5}")

    atomic_write(dest, write)


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
            raise DatasetUnavailableError(name, Reason.DOWNLOAD_FAILED, f"could not download {filename}: " + "; ".join(errors))
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
            raise DatasetUnavailableError(name, Reason.NOT_ON_DISK, hint=hint)
        try:
            folder = download(name, timeout)
        except DatasetUnavailableError as exc:
            raise DatasetUnavailableError(name, exc.reason, exc.detail, hint) from None
    return folder


def load_mnist(data_dir: str | os.PathLike | None = None, download_if_missing: bool = True) -> tuple[Split, Split]:
    """MNIST: 60,000 training and 10,000 test digits, uint8. See :func:`load_dataset`."""
    return load_dataset("mnist", data_dir, download_if_missing)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, download_if_missing: bool = True) -> tuple[Split, Split]:
    """Fashion-MNIST: 60,000 training and 10,000 test clothing images, uint8. See :func:`load_dataset`."""
    return load_dataset("fashion-mnist", data_dir, download_if_missing)


# -- a run's data: which dataset, and its training / validation / test splits ----------------

DATASETS = (*SOURCES, "digits")
DIGITS_SHAPE = (8, 8)


@dataclass(frozen=True)
class Data:
    """The data of a run: its splits, where they came from, and how to find them again.

    ``source`` is what a checkpoint records (``{"dataset": name}`` or ``{"data": folder}``);
    ``notes`` are what a person should be told about the choice (a fallback, a split made here).
    """

    name: str
    source: dict[str, str]
    train: Split | None
    validation: Split | None
    test: Split
    image_shape: tuple[int, ...]
    notes: tuple[str, ...] = ()

    @property
    def splits(self) -> list[Split]:
        return [s for s in (self.train, self.validation, self.test) if s is not None]

    @property
    def n_features(self) -> int:
        return int(self.test[0].shape[1])

    @property
    def n_classes(self) -> int:
        """One more than the largest label in any split (labels are class ids from 0)."""
        return int(max(int(y.max()) for _, y in self.splits)) + 1

    def input_record(self) -> dict[str, Any]:
        """How the samples were given to the network: image shape, dtype, and value range (uint8
        images are 0..255 intensities, which the network scales to 0..1 itself)."""
        X = self.splits[0][0]
        if X.dtype == np.uint8:
            low, high = 0.0, 255.0
        else:
            low, high = min(float(s[0].min()) for s in self.splits), max(float(s[0].max()) for s in self.splits)
        return {"shape": list(self.image_shape), "dtype": X.dtype.name, "range": [low, high]}


def check_fraction(fraction: float, what: str = "validation fraction") -> float:
    """A fraction of the samples to hold out: a number in [0, 1)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) or not 0 <= fraction < 1:
        raise ValueError(f"the {what} must be a number in [0, 1), got {fraction!r}")
    return float(fraction)


def check_dataset(name: str) -> str:
    """A dataset :func:`load_data` knows by name."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return name


def hold_out(split: Split, fraction: float, what: str = "validation fraction") -> tuple[Split, Split]:
    """``(first, last)``: the last ``fraction`` of the samples held out, in their stored order.

    Both parts must keep at least one sample: a fraction too small or too large for the data
    is an error that says how many samples there are.
    """
    X, y = split
    cut = len(X) - hold_out_count(len(X), fraction, what)
    return (X[:cut], y[:cut]), (X[cut:], y[cut:])


def hold_out_count(n: int, fraction: float, what: str = "validation fraction") -> int:
    """How many of ``n`` samples :func:`hold_out` holds out (checked to leave some on both sides)."""
    fraction = check_fraction(fraction, what)
    n_out = int(round(n * fraction))
    if n_out < 1 or n_out >= n:
        raise ValueError(f"a {what} of {fraction:g} holds out {n_out} of {n} samples; "
                         f"choose one that leaves samples on both sides (at least {1 / n:.2g})")
    return n_out


def _named(dataset: str, timeout: float | None = None) -> tuple[str, Split, Split, tuple[int, ...]]:
    """``(display name, train, test, image shape)`` of a dataset known by name."""
    if dataset == "digits":
        return ("scikit-learn digits", *load_digits(), DIGITS_SHAPE)
    train, test, shape = _folder_splits(dataset_folder(dataset, **({} if timeout is None else {"timeout": timeout})))
    return dataset, train, test, shape


def load_data(
    dataset: str | None = None,
    data_dir: str | os.PathLike | None = None,
    validation: float = 0.0,
    for_training: bool = True,
    timeout: float | None = None,
) -> Data:
    """A run's data: training, validation and test splits, with where they came from.

    ``data_dir`` reads that folder of MNIST-format files; ``dataset`` names one of
    :data:`DATASETS` (never falling back); with neither, MNIST is used when it is on disk or can
    be downloaded (``timeout`` per mirror, 5 s by default here), else scikit-learn's bundled
    digits, with a note that says why. A folder holding one split only is split here for
    training (its last sixth is the test set); for evaluation (``for_training=False``) that one
    split is the test set, whole. ``validation`` is the fraction of the training split held out.
    """
    if dataset is not None and data_dir is not None:
        raise ValueError("give a dataset name or a data folder, not both")
    fraction = check_fraction(validation)
    notes: list[str] = []
    if data_dir is not None:
        folder = Path(data_dir)
        train, test, shape = _folder_splits(folder)
        name, source = str(folder), {"data": str(folder.resolve())}
        if train is None or test is None:
            one, which = (train, "training") if train is not None else (test, "test")
            if for_training:
                train, test = hold_out(one, 1 / 6, "test fraction")
                notes.append(f"{folder} holds one split only ({which}); training on its first {len(train[0])} samples, testing on the last {len(test[0])}")
            else:
                train, test = None, one
                notes.append(f"{folder} holds one split only ({which}); scoring all of its {len(one[0])} samples")
    else:
        if dataset is None:
            dataset = "mnist"
            try:
                loaded = _named("mnist", 5.0 if timeout is None else timeout)
            except DatasetUnavailableError as exc:
                dataset, loaded = "digits", _named("digits")
                notes.append(f"using scikit-learn's bundled digits, because {exc.why}")
        else:
            loaded = _named(check_dataset(dataset), timeout)
        (name, train, test, shape), source = loaded, {"dataset": dataset}
    val = None
    if for_training and fraction > 0:
        train, val = hold_out(train, fraction)
    return Data(name, source, train if for_training else None, val, test, tuple(int(d) for d in shape), tuple(notes))
