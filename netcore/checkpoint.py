"""Checkpoints: a network (and optionally its trainer's state) in one ``.npz`` file.

Arrays are stored under their names; everything else (architecture, dtype, epoch, optimizer
configuration, history, RNG position) goes in a JSON string under ``__meta__``. Writes are atomic:
the file is written next to its destination and renamed over it, so an interrupted save leaves
the previous checkpoint intact and never a half-written one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "netcore-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file is not a readable netcore checkpoint, or does not fit what it is loaded into."""


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write ``arrays`` and ``meta`` to ``path`` atomically."""
    payload = {"__meta__": np.asarray(json.dumps({"format": FORMAT, "version": VERSION, **meta}))}
    atomic_write(path, lambda fh: np.savez(fh, **payload, **arrays))


def load(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, meta)`` from a checkpoint; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({exc})") from None
    try:
        meta = json.loads(str(arrays.pop("__meta__")))
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{path} is an .npz file but not a netcore checkpoint (no metadata)") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a netcore checkpoint")
    if meta.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer netcore (format {meta['version']}); upgrade netcore to read it")
    return arrays, meta
