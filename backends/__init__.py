"""Compute backends: the registry, selection and the ``use()`` context manager.

Which backend runs, first rule that applies:

1. an explicit argument (``get_backend("numba")`` or a Backend instance);
2. the innermost ``with use("numba"):`` block (a context variable, so threads and async
   tasks each see their own);
3. the ``NETCORE_BACKEND`` environment variable, read when a backend is asked for (an
   empty value counts as unset);
4. ``auto``: CuPy if a CUDA device answers, else Numba if importable, else NumPy. Given the
   run's size (``work``, its floating-point operations), Numba only where it pays: with its
   kernels not yet compiled, a run that NumPy finishes sooner than the compile runs on NumPy.

An explicit choice that cannot run raises :class:`BackendUnavailableError`; only ``auto``
falls back, and it logs what it picked and why.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import functools
import importlib
import logging
import os
from collections.abc import Iterator
from typing import Any, NamedTuple

from .base import ACTIVATIONS, DTYPES, Backend, BackendUnavailableError, activation_code, check_dtype

__all__ = [
    "ACTIVATIONS",
    "DTYPES",
    "activation_code",
    "Availability",
    "Backend",
    "BackendUnavailableError",
    "BACKENDS",
    "available",
    "get_backend",
    "resolve",
    "use",
]

log = logging.getLogger("netcore")

ENV_VAR = "NETCORE_BACKEND"

#: name -> "module:Class", imported only when that backend is asked for.
BACKENDS = {
    "numpy": "numpy_backend:NumpyBackend",
    "numba": "numba_backend:NumbaBackend",
    "cupy": "cupy_backend:CupyBackend",
    "python": "python_backend:PythonBackend",
    "numba-cuda": "numba_cuda_backend:NumbaCudaBackend",
}
AUTO_ORDER = ("cupy", "numba", "numpy")

_selected: contextvars.ContextVar[Backend | str | None] = contextvars.ContextVar("netcore_backend", default=None)


class Availability(NamedTuple):
    """Whether a backend can run here, and if not, why (with the fix)."""

    name: str
    ok: bool
    reason: str


class Selection(NamedTuple):
    """The backend name that would run, and the rule that chose it."""

    name: str
    why: str


def _class(name: str) -> type[Backend]:
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def _check_name(name: str) -> str:
    key = name.strip().lower()
    if key == "auto" or key in BACKENDS:
        return key
    valid = ", ".join([*BACKENDS, "auto"])
    close = difflib.get_close_matches(key, [*BACKENDS, "auto"], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown backend {name!r}; valid names are: {valid}.{hint}")


@functools.cache
def _reason(name: str) -> str | None:
    # Cached: probing CUDA can take a second, and the answer does not change within a process.
    return _class(name).check()


def available() -> dict[str, Availability]:
    """Every known backend, whether it can run here and, if not, why."""
    return {name: Availability(name, (r := _reason(name)) is None, r or "") for name in BACKENDS}


def _auto(work: float | None, dtype: str) -> Selection:
    skipped = []
    for name in AUTO_ORDER:
        reason = _reason(name)
        if reason is not None:
            skipped.append(f"{name} unavailable ({reason.split(';')[0]})")
            continue
        if name == "numba" and work is not None:  # the one backend with a compile to pay for
            pays, why = _class(name).pays_for(work, dtype)
            if not pays:
                skipped.append(f"numba not worth it ({why})")
                continue
            skipped.append(f"numba: {why}")
        why = "auto: " + ("; ".join(skipped) + "; " if skipped else "") + f"picked {name}"
        return Selection(name, why)
    raise AssertionError("the numpy backend is always available")


def resolve(name: str | None = None, *, work: float | None = None, dtype: Any = None) -> Selection:
    """Which backend ``get_backend(name)`` would return, and which rule chose it.

    ``work``: the floating-point operations of the run the backend is for (e.g. epochs x the
    epoch's FLOPs), if known; ``auto`` then picks Numba only where it pays for its compile. The
    choice depends only on the arguments and on whether the kernels are compiled on disk.
    """
    if name is not None:
        choice, why = _check_name(name), f"argument {name!r}"
    elif (ctx := _selected.get()) is not None:
        if isinstance(ctx, Backend):
            return Selection(ctx.name, "use() block")
        choice, why = _check_name(ctx), f"use({ctx!r}) block"
    elif (env := os.environ.get(ENV_VAR, "").strip()):
        choice, why = _check_name(env), f"{ENV_VAR}={env}"
    else:
        choice, why = "auto", f"{ENV_VAR} unset"
    if choice == "auto":
        picked = _auto(work, check_dtype("float64" if dtype is None else dtype).name)
        return Selection(picked.name, f"{why}; {picked.why}")
    return Selection(choice, why)


@functools.cache
def _instance(name: str, dtype: str) -> Backend:
    return _class(name)(dtype)


def get_backend(name: str | Backend | None = None, dtype: Any = None, *, work: float | None = None) -> Backend:
    """The backend to compute with, bound to ``dtype`` (float64 if not given).

    ``name`` may be a backend name, ``"auto"``, a Backend instance, or None to follow
    ``use()`` blocks, then ``NETCORE_BACKEND``, then ``auto``. ``work`` (the run's
    floating-point operations, if known) lets ``auto`` skip a compile that would not pay.
    """
    if isinstance(name, Backend):
        return name if dtype is None or check_dtype(dtype) == name.dtype else _instance(name.name, check_dtype(dtype).name)
    if name is None and isinstance(ctx := _selected.get(), Backend):
        return get_backend(ctx, dtype)
    dt = check_dtype("float64" if dtype is None else dtype).name
    selection = resolve(name, work=work, dtype=dt)
    reason = _reason(selection.name)
    if reason is not None:
        raise BackendUnavailableError(f"backend {selection.name!r} ({selection.why}) cannot run here: {reason}")
    if "auto:" in selection.why:
        log.info("netcore backend: %s", selection.why)
    return _instance(selection.name, dt)


@contextlib.contextmanager
def use(name: str | Backend) -> Iterator[Backend]:
    """Select a backend for the code inside the block; blocks nest, the innermost wins.

    The backend is checked on entry, so an unknown or unavailable one fails at the ``with``.
    Yields the backend (float64; networks inside the block still pick their own dtype).
    """
    backend = get_backend(name)
    token = _selected.set(name if isinstance(name, Backend) else _check_name(name))
    try:
        yield backend
    finally:
        _selected.reset(token)
