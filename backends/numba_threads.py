"""Keeping Numba's threads and the BLAS's off each other's cores.

Both thread pools spin for a while after their work, waiting for more, before they sleep; on a
machine with as many cores as threads, a pool that spins takes a core from the other's next
call, and a parallel loop runs at the pace of its slowest thread. Measured on 2 cores: a fused
step right after an OpenBLAS sgemm took 20.4-24.2 ms instead of 12.0. Both spins are shortened
here, each to about what covers the gap between two calls of its own kind. A user's setting of
any of the variables involved wins.

- Numba's OpenMP pool (libgomp): ``GOMP_SPINCOUNT=3000`` before the runtime loads (see
  :func:`short_openmp_spin`).
- OpenBLAS's pthreads pool: its threads spin for ``2**OPENBLAS_THREAD_TIMEOUT`` clock ticks
  (2**28 by default, about 0.1 s) after each call. The variable is read when the pool starts,
  so :func:`short_blas_spin` sets it, has OpenBLAS read its environment again and stops the
  idle pool, which restarts on the next BLAS call with the short spin.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger("netcore")

#: log2 of the clock ticks an OpenBLAS thread spins after a call before it sleeps: 2**20 ticks,
#: about 0.4 ms here, against 2**28 (0.1 s) by default. Long enough for the calls of NumPy's
#: op-by-op path to find the pool awake, short enough that a fused step after a BLAS call loses
#: under 3% of one core. A BLAS call after a step finds the pool asleep and pays for waking it
#: (a 0.6 ms sgemm: 1.2x), no more than after a Python loop or a sleep as long as the step: not
#: a fight. Only threads spinning through the step would save most of it, taking a core from it.
BLAS_SPIN_LOG2 = 20

_blas_state: str | None = None


def short_openmp_spin() -> None:
    """After a parallel loop, libgomp's threads either sleep at once (``OMP_WAIT_POLICY=PASSIVE``)
    or spin for ``GOMP_SPINCOUNT`` iterations before sleeping (300,000 by default: milliseconds).
    Sleeping makes the next parallel loop wait for the thread to wake (50 us a call here; a
    mini-batch epoch took 276 ms instead of 197); a long spin steals the core that BLAS needs for
    the matrix products in between (22 ms vs 1.4 ms a step on the digits data). A short spin,
    tens of microseconds, covers the gap between the batches of a training loop and frees the
    core soon after. Must run before the OpenMP runtime loads."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "3000")


def short_blas_spin() -> str:
    """Shorten the spin of every OpenBLAS pthreads pool loaded in this process (once); returns
    what was done, for ``netcore info``. Run it when no other thread is inside a BLAS call (the
    backend does at its first fused step): stopping a pool mid-call would break that call."""
    global _blas_state
    if _blas_state is not None:
        return _blas_state
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ or "GOTO_THREAD_TIMEOUT" in os.environ:
        _blas_state = "OpenBLAS spin left as set (OPENBLAS_THREAD_TIMEOUT / GOTO_THREAD_TIMEOUT)"
        return _blas_state
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        _blas_state = "OpenBLAS spin unchanged (threadpoolctl is not installed)"
        return _blas_state
    pools = [p for p in threadpool_info() if p.get("internal_api") == "openblas" and p.get("threading_layer") == "pthreads"]
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(BLAS_SPIN_LOG2)
    done = []
    for pool in pools:
        try:
            lib = ctypes.CDLL(pool["filepath"])
            lib.openblas_read_env()  # the pool reads its timeout from here when it starts
            lib.blas_thread_shutdown_()  # the idle pool stops; the next call starts it again
            done.append(os.path.basename(pool["filepath"]))
        except (OSError, AttributeError) as error:  # another build of OpenBLAS: leave it be
            log.debug("netcore: could not shorten the spin of %s: %s", pool["filepath"], error)
    if done:
        _blas_state = f"OpenBLAS threads spin 2**{BLAS_SPIN_LOG2} ticks after a call ({', '.join(done)})"
    else:
        _blas_state = "no OpenBLAS pthreads pool loaded"
    return _blas_state


def blas_spin_state() -> str:
    """What :func:`short_blas_spin` did, or that it has not run yet."""
    return _blas_state or f"OpenBLAS spin shortened to 2**{BLAS_SPIN_LOG2} ticks at the first fused step"
