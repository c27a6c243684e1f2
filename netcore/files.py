"""Writing files whole or not at all: the one atomic write every netcore file goes through.

Checkpoints, networks, downloaded datasets, IDX files, training curves and benchmark plots are
all written by :func:`atomic_write`: into a temporary ``.NAME.PID-XXXX.part`` file beside the
destination, flushed to disk, then renamed over it. An interrupted write (Ctrl-C, a full disk, a
kill) therefore leaves the previous file intact, and a ``.part`` file left by a killed process is
removed by the next write to the same destination. The result gets the mode a plain ``open()``
would give it (0644 under the usual umask; an existing file keeps its own), and a missing folder
is an error, as ``open()`` would make it, never created silently.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def check_destination(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`Path` if a file can be written there, else the OSError ``open()`` would
    raise, with a message that names the path: a missing or non-folder parent, a folder in the
    way, a parent folder without write permission."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise FileNotFoundError(f"cannot write {path}: folder {parent} {what}")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {path}: no permission to create files in {parent}")
    return path


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but momentary)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_parts(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that writes of ``path`` by processes no longer running left
    behind (a killed save); returns what was removed. Parts of a live process are kept."""
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    for part in path.parent.glob(f".{path.name}.*.part"):
        pid = part.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        try:
            part.unlink()
            removed.append(part)
        except OSError:  # gone already, or not ours to remove
            pass
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a binary temporary file beside ``path``, then rename it into place.

    If ``write`` raises (or the process is interrupted), the temporary file is removed and
    ``path`` is left as it was. OSErrors come back as the same type with ``path`` in the message.
    """
    path = check_destination(path)
    remove_stale_parts(path)
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.strerror and exc.filename is None:  # e.g. a full disk: say which file
            raise type(exc)(exc.errno, f"cannot write {path}: {exc.strerror}") from None
        raise
