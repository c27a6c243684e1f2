"""Numba-jitted kernels behind the ``numba`` backend.

Imported only when the backend is first used, so ``import netcore.backends`` never pays for Numba.
All kernels take C-contiguous arrays laid out with samples as rows. They compile on first
call for each dtype and are cached on disk (``cache=True``), so a later process loads them.
``error_model="numpy"`` drops the division-by-zero checks that otherwise stop LLVM from
vectorising the loops.
"""

from __future__ import annotations

import functools
import types

from . import numba_cache  # noqa: F401  (before any cached function: a change to any numba_*.py recompiles them all)
from .numba_threads import short_openmp_spin

short_openmp_spin()  # before the OpenMP runtime loads

import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402
from numba.core import types as nbtypes  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

from .base import IDENTITY, RELU, SIGMOID, TANH  # noqa: E402, F401  (the contract's activation codes)

jit = njit(cache=True, error_model="numpy", nogil=True)

# Arrays smaller than this (elements) are walked on the calling thread: waking the thread pool
# costs more than the loop (and a woken pool spins on the core that BLAS uses next).
PARALLEL_MIN = 1 << 16


def pjit(kernel):
    """Compile ``kernel`` twice, with its ``prange`` loops parallel and as plain loops, and call
    whichever suits the size of its first argument."""
    parallel = njit(cache=True, error_model="numpy", nogil=True, parallel=True)(kernel)
    # A copy under another name, so the two compilations keep separate on-disk cache entries.
    twin = types.FunctionType(kernel.__code__, kernel.__globals__, kernel.__name__ + "_serial", kernel.__defaults__, kernel.__closure__)
    twin.__qualname__ = kernel.__qualname__ + "_serial"
    serial = jit(twin)

    @functools.wraps(kernel)
    def call(a, *args):
        return (parallel if a.size >= PARALLEL_MIN else serial)(a, *args)

    call.parallel, call.serial = parallel, serial
    return call


@intrinsic
def like(typingctx, value, x):
    """``value`` as a constant of ``x``'s type. Numba types a literal ``1`` or ``0.5`` as 64-bit,
    and ``1 - a`` with a float32 ``a`` then computes in float64: correct, but half the vector width
    and a slow float64 division where a float32 kernel meant none.

    An intrinsic (a cast LLVM folds into the constant) rather than an inlined overload: Numba
    compiles an inlined overload once more and runs its front end again at every call site, and
    the kernels have dozens of them (1.7 s of a 12 s cold compile)."""
    if not isinstance(nbtypes.unliteral(value), nbtypes.Number) or not isinstance(nbtypes.unliteral(x), nbtypes.Number):
        return None
    source, target = nbtypes.unliteral(value), nbtypes.unliteral(x)

    def codegen(context, builder, sig, args):
        return context.cast(builder, args[0], source, target)

    return target(source, target), codegen


@njit(cache=True, error_model="numpy", inline="always")
def _g(v, kind):
    """The activation of one value."""
    if kind == TANH:
        return np.tanh(v)
    if kind == RELU:
        # 0 below (not ``v * 0``, which is NaN at -inf); NaN passes through, as in np.maximum
        return like(0, v) if v <= 0 else v
    return like(1, v) / (like(1, v) + np.exp(-v))


@njit(cache=True, error_model="numpy", inline="always")
def _dg(a, kind):
    """The activation's derivative, written with its output ``a``."""
    one = like(1, a)
    if kind == TANH:
        return one - a * a
    if kind == RELU:
        return one if a > 0 else a - a
    return a * (one - a)


@njit(cache=True, error_model="numpy", inline="always")
def _row_max(z, i):
    top = z[i, 0]
    for j in range(1, z.shape[1]):
        top = max(top, z[i, j])
    return top


@pjit
def bias_activation(z, b, kind):
    """``z = g(z + b)`` in place; ``kind < 0`` (or identity) adds the bias only."""
    n, k = z.shape
    if kind == IDENTITY:
        kind = -1
    for i in prange(n):
        for j in range(k):
            v = z[i, j] + b[j]
            z[i, j] = v if kind < 0 else _g(v, kind)


@pjit
def activation(z, kind):
    """``z = g(z)`` in place (identity: nothing to do)."""
    n, k = z.shape
    if kind == IDENTITY:
        return
    for i in prange(n):
        for j in range(k):
            z[i, j] = _g(z[i, j], kind)


@pjit
def activation_backward(a, grad, kind):
    """``grad *= g'(z)`` in place, from the layer output ``a`` (identity: g' = 1)."""
    n, k = a.shape
    if kind == IDENTITY:
        return
    for i in prange(n):
        for j in range(k):
            grad[i, j] *= _dg(a[i, j], kind)


@pjit
def softmax(z):
    """Row-wise softmax into a new array, max-shifted so exp() cannot overflow."""
    n, k = z.shape
    out = np.empty_like(z)
    for i in prange(n):
        top = _row_max(z, i)
        total = 0.0
        for j in range(k):
            e = np.exp(z[i, j] - top)
            out[i, j] = e
            total += e
        inv = like(1, total) / total
        for j in range(k):
            out[i, j] *= inv
    return out


@pjit
def cross_entropy(z, y):
    """Mean of ``-sum(y * log_softmax(z))`` over the rows, accumulated in float64."""
    n, k = z.shape
    loss = 0.0
    for i in prange(n):
        top = _row_max(z, i)
        total = 0.0
        for j in range(k):
            total += np.exp(np.float64(z[i, j] - top))
        log_total = np.log(total)
        row = 0.0
        for j in range(k):
            row += y[i, j] * (z[i, j] - top - log_total)
        loss -= row
    return loss / n


@jit
def sum_rows(a):
    """Column sums of ``(n, k)``; a row-order walk so memory is read once, in order."""
    n, k = a.shape
    out = np.zeros(k, dtype=a.dtype)
    for i in range(n):
        for j in range(k):
            out[j] += a[i, j]
    return out


# The flat kernels below take 1-D views made by the caller (reshape(-1) of a contiguous array):
# reshaping inside a parallel loop's function once lost writes. Their scalars arrive in the
# arrays' dtype (the backend casts them), so float32 parameters are updated in float32.


@jit
def subtract(p, y, out):
    """``out = p - y``."""
    for i in range(out.size):
        out[i] = p[i] - y[i]


@jit
def scale(a, s):
    """``a *= s`` in place."""
    for i in range(a.size):
        a[i] *= s


@pjit
def sgd_update(p, g, lr):
    """``p -= lr * g`` in place."""
    for i in prange(p.size):
        p[i] -= lr * g[i]


@pjit
def adam_update(p, g, m, v, lr, beta1, beta2, eps):
    """One Adam step in place, all four arrays walked once."""
    one = like(1, beta1)
    for i in prange(p.size):
        mi = beta1 * m[i] + (one - beta1) * g[i]
        vi = beta2 * v[i] + (one - beta2) * g[i] * g[i]
        m[i] = mi
        v[i] = vi
        p[i] -= lr * mi / (np.sqrt(vi) + eps)



# Elements a block of the L2 update: its sum of squares reads the block again from L1.
ADAM_BLOCK = 1024


@pjit
def adam_update_l2(p, g, m, v, lr, beta1, beta2, eps, l2):
    """:func:`adam_update` on ``g + l2 * p`` (``g`` left as it is) and ``sum(p**2)`` of the updated
    ``p`` (in float64, the next step's L2 penalty), block by block while the block is in L1.
    ``g + l2 * p`` rounds as the separate ``g -= -l2 * p`` did, so the step is the same to the bit.
    (A running sum in the update's own loop keeps LLVM from vectorising it: 7x slower.)"""
    one = like(1, beta1)
    n = p.size
    blocks = (n + ADAM_BLOCK - 1) // ADAM_BLOCK
    sums = np.empty(blocks)
    for k in prange(blocks):
        lo, hi = k * ADAM_BLOCK, min(n, (k + 1) * ADAM_BLOCK)
        # slices, so that indices count from 0: a loop from lo keeps Numba's negative-index check
        # in it, which stops the vectoriser
        _adam_l2_block(p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], lr, beta1, beta2, eps, l2, one)
        sums[k] = _sum_squares(p[lo:hi])
    return sums.sum()


@jit
def _adam_l2_block(p, g, m, v, lr, beta1, beta2, eps, l2, one):
    for i in range(p.size):
        gi = g[i] + l2 * p[i]
        mi = beta1 * m[i] + (one - beta1) * gi
        vi = beta2 * v[i] + (one - beta2) * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] = p[i] - lr * mi / (np.sqrt(vi) + eps)


@njit(cache=True, error_model="numpy", nogil=True, fastmath={"reassoc"})
def _sum_squares(a):
    """``sum(a**2)`` in float64. Reassociating its adds (this function's only) lets LLVM keep
    a vector of running sums instead of one chain of dependent adds: a different order of the
    same sum."""
    total = 0.0
    for i in range(a.size):
        x = np.float64(a[i])
        total += x * x
    return total
