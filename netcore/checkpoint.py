"""Checkpoints: a network (and optionally its trainer's state) in one ``.npz`` file.

Arrays are stored under their names; everything else (architecture, dtype, epoch, optimizer
configuration, history, RNG position) goes in a JSON string under ``__meta__``. Writes go through
:func:`netcore.files.atomic_write`, so an interrupted save leaves the previous checkpoint intact
and never a half-written one.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_write

FORMAT = "netcore-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file is not a readable netcore checkpoint, or does not fit what it is loaded into."""


def save(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write ``arrays`` and ``meta`` to ``path`` atomically."""
    payload = {"__meta__": np.asarray(json.dumps({"format": FORMAT, "version": VERSION, **meta}))}
    atomic_write(path, lambda fh: np.savez(fh, **payload, **arrays))


def load(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, meta)`` from a checkpoint; a clear error for anything else."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {path} is a folder, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    with open(path, "rb") as fh:  # PermissionError and the like, as open() gives them
        if fh.read(4) != b"PK\x03\x04":  # an .npz is a zip archive
            raise CheckpointError(f"{path} is not a readable checkpoint (not an .npz file)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    try:
        meta = json.loads(str(arrays.pop("__meta__")))
    except (KeyError, json.JSONDecodeError):
        meta = None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is an .npz file but not a netcore checkpoint (no metadata)")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a netcore checkpoint")
    if meta.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer netcore (format {meta['version']}); upgrade netcore to read it")
    return arrays, meta
