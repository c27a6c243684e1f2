"""``netcore predict --model m.npz FILES...``: the class of each image or sample, one a line.

FILES are PNG or JPEG images, ``.npy`` arrays or IDX files (gzipped or not), recognised by their
content. Samples are fed the way the model's training data was, as its checkpoint records
(``netcore train`` stores the image shape, dtype and value range of its inputs):

- an image is read as grey levels 0..255 and must have the training images' size; for a model
  trained on uint8 images it is given as such (the network scales 0..255 to 0..1), otherwise its
  grey levels are mapped onto the training inputs' range (the digits' 0..1, say);
- an array or IDX file holds one sample (the image shape, or a flat row) or many (one per first
  index), in the training data's units: uint8 as 0..255 intensities, floats as the network takes
  them. Floats far outside the training inputs' range (0..255 where the model saw 0..1) are an
  error that says how to scale them.

Every file is read and checked before anything is printed.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint
from .datasets import GZIP_MAGIC, IDXFormatError, read_idx
from .network import MLP

PNG_MAGIC, JPEG_MAGIC, NPY_MAGIC = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\x93NUMPY"


@dataclass(frozen=True)
class InputSpec:
    """How a model's training samples were given to it: image shape, dtype and value range."""

    shape: tuple[int, ...]
    dtype: str
    low: float
    high: float

    @classmethod
    def of(cls, meta: dict[str, Any], n_features: int) -> InputSpec:
        """From a checkpoint's record; a model without one is taken to read 0..255 uint8 images
        (square if its input size is a square, else flat rows)."""
        record = (meta.get("run") or {}).get("input")
        if isinstance(record, dict):
            return cls(tuple(record["shape"]), record["dtype"], *map(float, record["range"]))
        side = math.isqrt(n_features)
        return cls((side, side) if side * side == n_features else (n_features,), "uint8", 0.0, 255.0)

    @property
    def n_features(self) -> int:
        return math.prod(self.shape)

    def describe(self) -> str:
        return "x".join(map(str, self.shape[::-1])) if len(self.shape) == 2 else f"{self.n_features}-value"


def add_predict_arguments(predict: argparse.ArgumentParser) -> None:
    predict.add_argument("--model", required=True, metavar="FILE.npz", help="a network or checkpoint written by netcore")
    predict.add_argument("files", nargs="+", metavar="FILE", help="PNG or JPEG images, .npy arrays or IDX files (gzipped or not)")
    predict.add_argument("--proba", action="store_true", help="print each class's probability (one row a sample) instead of the class")
    predict.add_argument("--backend", help="backend to compute on (default: $NETCORE_BACKEND, else auto)")


def _image(path: Path, spec: InputSpec) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("L"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # PIL reports a broken file in all of these
        raise ValueError(f"{path}: not a readable image ({exc})") from None
    h, w = pixels.shape
    if (len(spec.shape) == 2 and (h, w) != spec.shape) or pixels.size != spec.n_features:
        raise ValueError(f"{path} is a {w}x{h} image; the model takes {spec.describe()} images")
    if spec.dtype == "uint8":
        return pixels.reshape(1, -1)
    return (spec.low + pixels.reshape(1, -1) / 255.0 * (spec.high - spec.low)).astype(np.float64)


def _array(path: Path, head: bytes) -> np.ndarray:
    """An .npy array, or an IDX file's array (gzipped or not)."""
    try:
        if head.startswith(NPY_MAGIC):
            return np.load(path, allow_pickle=False)
        return read_idx(path)
    except IDXFormatError:
        raise
    except (ValueError, EOFError, OSError) as exc:
        raise ValueError(f"{path}: not a readable .npy array ({exc})") from None


def _samples(path: Path, array: np.ndarray, spec: InputSpec) -> np.ndarray:
    """An array's samples as rows, checked against what the model takes."""
    if array.dtype.kind not in "uif":
        raise ValueError(f"{path} holds {array.dtype} values; the model takes numbers")
    if array.shape == spec.shape or array.shape == (spec.n_features,):
        rows = array.reshape(1, -1)
    elif array.ndim >= 2 and (array.shape[1:] == spec.shape or array.shape[1:] == (spec.n_features,)):
        rows = array.reshape(len(array), -1)
    else:
        raise ValueError(f"{path} holds an array of shape {array.shape}; the model takes {spec.describe()} samples: "
                         f"shape {spec.shape} for one, (n, {', '.join(map(str, spec.shape))}) or (n, {spec.n_features}) for n")
    if len(rows) == 0:
        raise ValueError(f"{path} holds no samples")
    if rows.dtype.kind == "f":
        if not np.isfinite(rows).all():
            raise ValueError(f"{path} holds NaN or infinite values")
        low, high = (0.0, 1.0) if spec.dtype == "uint8" else (spec.low, spec.high)  # what the network saw
        width = high - low or 1.0
        if rows.min() < low - width or rows.max() > high + width:
            hint = "pass uint8 arrays, or floats divided by 255" if spec.dtype == "uint8" else f"scale them to {low:g}..{high:g}"
            raise ValueError(f"{path} holds values from {rows.min():g} to {rows.max():g}, but the model was trained on inputs in {low:g}..{high:g}; {hint}")
    return rows


def read_samples(path: str, spec: InputSpec) -> np.ndarray:
    """The samples of one file, as rows the model takes (see the module's docstring)."""
    p = Path(path)
    with open(p, "rb") as fh:  # FileNotFoundError, IsADirectoryError, PermissionError, as open() gives them
        head = fh.read(16)
    if head.startswith((PNG_MAGIC, JPEG_MAGIC)):
        return _image(p, spec)
    if head.startswith(NPY_MAGIC) or head.startswith(GZIP_MAGIC) or head[:2] == b"\x00\x00":
        return _samples(p, _array(p, head), spec)
    raise ValueError(f"{path} is not a PNG or JPEG image, an .npy array or an IDX file")


def cmd_predict(args: argparse.Namespace) -> int:
    _, meta = checkpoint.load(args.model)  # fails fast on a bad model file ...
    net = MLP.load(args.model, backend=args.backend)  # ... or backend
    spec = InputSpec.of(meta, net.n_features)
    if spec.n_features != net.n_features:
        raise ValueError(f"{args.model} records {spec.describe()} inputs but its network takes {net.n_features}")
    batches = [read_samples(f, spec) for f in args.files]  # every file checked before any output
    for X in batches:
        if args.proba:
            for row in net.predict_proba(X):
                print(" ".join(f"{p:.6f}" for p in row))
        else:
            print("\n".join(map(str, net.predict(X))))
    return 0

