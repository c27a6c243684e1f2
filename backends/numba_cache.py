"""Numba's on-disk cache, made to notice when any of the numba backend's modules changes.

Numba keys a cached function on its own source file only: the fused pass (numba_fused.py)
compiled against an older numba_tiles.py would load, stale, after an upgrade that changed only
the tiles. Here the functions of the backend's ``numba_*.py`` modules are located by cache
locators whose source stamp covers all those modules (and ``base.py``, which holds the
activation codes), so a change to any of them recompiles all of them. Imported before any of
them defines a cached function (the locator is chosen when a function is decorated).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from numba.core import caching

_HERE = Path(__file__).resolve().parent


def _sources() -> list[Path]:
    return sorted([*_HERE.glob("numba_*.py"), _HERE / "base.py"])


def _stamp() -> str:
    digest = hashlib.sha256()
    for path in _sources():
        st = path.stat()
        digest.update(f"{path.name}:{st.st_mtime_ns}:{st.st_size};".encode())
    return digest.hexdigest()


def _ours(py_file: str) -> bool:
    path = Path(py_file).resolve()
    return path.parent == _HERE and path.name.startswith("numba_")


def _covering(base: type) -> type:
    """``base`` (one of Numba's locators), for the backend's files only, stamped with all of them."""

    class Locator(base):
        @classmethod
        def from_function(cls, py_func, py_file):
            return super().from_function(py_func, py_file) if _ours(py_file) else None

        def get_source_stamp(self):
            return _stamp()

    Locator.__name__ = Locator.__qualname__ = f"Netcore{base.__name__}"
    return Locator


def install() -> None:
    """Put the covering locators first (once)."""
    classes = caching.CacheImpl._locator_classes
    if any(c.__name__.startswith("Netcore") for c in classes):
        return
    bases = [c for c in (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator, caching.UserWideCacheLocator) if c in classes]
    classes[:0] = [_covering(b) for b in bases]


install()
