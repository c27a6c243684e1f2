"""Numba's on-disk cache, made to notice when any of the numba backend's modules changes.

Numba keys a cached function on its own source file only: the fused pass (numba_fused.py)
compiled against an older numba_tiles.py would load, stale, after an upgrade that changed only
the tiles. Here the functions of the backend's ``numba_*.py`` modules are located by cache
locators whose source stamp covers all those modules (and ``base.py``, which holds the
activation codes), so a change to any of them recompiles all of them. Imported before any of
them defines a cached function (the locator is chosen when a function is decorated).

A damaged file in those functions' cache (truncated by a full disk, garbled by hand) is read as
no cache: the kernels compile again, with one line on the ``netcore`` logger naming the folder, and the next save
rewrites it. Numba itself stops with an unpickling traceback there. Other code's caches are
left to Numba.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from numba.core import caching

_HERE = Path(__file__).resolve().parent
#: The cache folders of the backend's functions (those the locators below found), and those
#: already reported damaged.
_PATHS: set[str] = set()
_REPORTED: set[str] = set()


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
            if not _ours(py_file):
                return None
            locator = super().from_function(py_func, py_file)
            if locator is not None:
                _PATHS.add(locator.get_cache_path())
            return locator

        def get_source_stamp(self):
            return _stamp()

    Locator.__name__ = Locator.__qualname__ = f"Netcore{base.__name__}"
    return Locator


def _damage(cache_file, path: str, exc: Exception) -> None:
    """Re-raise ``exc`` unless ``cache_file`` is one of the backend's; else warn (once a folder)."""
    folder = cache_file._cache_path
    if folder not in _PATHS:
        raise exc
    if folder not in _REPORTED:  # the backend's compile notices' logger: one line
        _REPORTED.add(folder)
        logging.getLogger("netcore").warning("numba: damaged kernel cache in %s (%s: %s); compiling the kernels again", folder, Path(path).name, exc)


def _tolerant(cls: type) -> None:
    """Numba's index-and-data cache file class, made to read a damaged file of ours as no cache:
    a damaged index as an empty one, a damaged data file as missing (:meth:`load` treats an
    ``OSError`` as a miss)."""
    load_index, load_data = cls._load_index, cls._load_data

    def _load_index(self):
        try:
            return load_index(self)
        except Exception as exc:  # whatever unpickling garbage raises
            _damage(self, self._index_path, exc)
            return {}

    def _load_data(self, name):
        try:
            return load_data(self, name)
        except OSError:
            raise
        except Exception as exc:
            _damage(self, self._data_path(name), exc)
            raise OSError(str(exc)) from exc

    cls._load_index, cls._load_data = _load_index, _load_data
    cls._netcore_tolerant = True


def install() -> None:
    """Put the covering locators first, and make damaged cache files of ours misses (once)."""
    if not getattr(caching.IndexDataCacheFile, "_netcore_tolerant", False):
        _tolerant(caching.IndexDataCacheFile)
    classes = caching.CacheImpl._locator_classes
    if any(c.__name__.startswith("Netcore") for c in classes):
        return
    bases = [c for c in (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator, caching.UserWideCacheLocator) if c in classes]
    classes[:0] = [_covering(b) for b in bases]


install()
