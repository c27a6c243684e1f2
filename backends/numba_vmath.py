"""float64 exp and tanh that LLVM vectorises, accurate to a few ulps.

libm's ``exp`` and ``tanh`` are calls, one value at a time, so a loop that uses them stays scalar;
these are straight-line arithmetic (both branches computed, then a select), so the loop around
them becomes vector code. The method is Cephes's (Moshier's): exp by Cody-Waite range reduction
``x = n ln2 + r``, a Padé-type rational for ``exp(r)`` on ``|r| <= ln2/2`` and ``2**n`` built from
its bits; tanh as ``x + x³ P(x²)/Q(x²)`` below 0.625 and ``1 - 2/(exp(2|x|) + 1)`` above.
Measured against 80-bit ``tanhl``/``expl`` in tests/test_vmath.py.

Everything is inlined into the caller (``inline="always"``) and so compiled with the caller's
fast-math flags; the two steps whose rounding matters are written so that those flags cannot
undo them: the reduction by ``fmuladd`` calls (reassociation would otherwise fold
``x - n*hi - n*lo`` into ``x - n*(hi + lo)``, losing the split), and ``n`` rounded by
``llvm.rint`` rather than the add-and-subtract trick that reassociation cancels.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import numba_cache  # noqa: F401  (before any cached function: see that module)

_INLINE = dict(cache=True, error_model="numpy", nogil=True, inline="always")


@intrinsic
def _as_int(typingctx, x):
    """The bits of a float64, as an int64 (a move, no conversion)."""
    if x != types.float64:
        return None
    return types.int64(types.float64), lambda context, builder, sig, args: builder.bitcast(args[0], ir.IntType(64))


@intrinsic
def _as_float(typingctx, i):
    """The float64 whose bits are the int64 ``i``."""
    if i != types.int64:
        return None
    return types.float64(types.int64), lambda context, builder, sig, args: builder.bitcast(args[0], ir.DoubleType())


@intrinsic
def _muladd(typingctx, a, b, c):
    """``a * b + c`` as one ``llvm.fmuladd`` (fused where the machine has FMA): an intrinsic call
    that the caller's reassociation leaves alone."""
    if not (a == b == c == types.float64):
        return None

    def codegen(context, builder, sig, args):
        f64 = ir.DoubleType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f64, [f64, f64, f64]), "llvm.fmuladd.f64")
        return builder.call(fn, args)

    return types.float64(types.float64, types.float64, types.float64), codegen


@intrinsic
def _rint(typingctx, x):
    """``x`` rounded to the nearest integer (ties to even), as a float64: ``llvm.rint``, one
    vector instruction (``vrndscalepd``/``vroundpd``)."""
    if x != types.float64:
        return None

    def codegen(context, builder, sig, args):
        f64 = ir.DoubleType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f64, [f64]), "llvm.rint.f64")
        return builder.call(fn, args)

    return types.float64(types.float64), codegen


_LOG2E = 1.4426950408889634073599
# ln 2 = _LN2_HI + _LN2_LO, _LN2_HI with 11 trailing zero bits of mantissa so that n * _LN2_HI is
# exact for |n| < 2048 (Cephes's C1, C2)
_LN2_HI = 6.93145751953125e-1
_LN2_LO = 1.42860682030941723212e-6
# exp(r) = 1 + 2 r P(r²) / (Q(r²) - r P(r²)) on |r| <= ln2/2 (Cephes exp.c)
_EP = (1.26177193074810590878e-4, 3.02994407707441961300e-2, 9.99999999999999999910e-1)
_EQ = (3.00198505138664455042e-6, 2.52448340349684104192e-3, 2.27265548208155028766e-1, 2.00000000000000000009e0)
# below exp(-746) the result rounds to 0; above exp(710) it is inf. Clamping there keeps n small
# enough for the two-factor scale below and changes no result.
_EXP_LO, _EXP_HI = -746.0, 710.0
# 2**52 + 2**51: added to an integral float64 of magnitude < 2**51, it leaves that integer in the
# low mantissa bits (in two's complement), so a subtraction of the bit patterns recovers it.
_SHIFTER = 6755399441055744.0
_SHIFTER_BITS = 0x4338000000000000
_TWO_64, _TWO_M64 = 2.0**64, 2.0**-64


@njit(**_INLINE)
def vexp(x):
    """exp of a float64, to a few ulps (subnormal results and 0 below, inf above, NaN kept)."""
    c = min(max(x, _EXP_LO), _EXP_HI)
    n = _rint(c * _LOG2E)
    r = _muladd(-n, _LN2_HI, c)  # exact
    r = _muladd(-n, _LN2_LO, r)
    rr = r * r
    p = r * ((_EP[0] * rr + _EP[1]) * rr + _EP[2])
    q = ((_EQ[0] * rr + _EQ[1]) * rr + _EQ[2]) * rr + _EQ[3]
    e = 1.0 + 2.0 * p / (q - p)  # exp(r), in [0.70, 1.42]
    # times 2**n, by adding n to e's exponent field. Where e * 2**n would leave the normal range
    # the exponent is moved 64 towards the middle and a multiply by 2**(+-64) moves it back,
    # rounding to a subnormal, to 0 or to inf as the exact product would. (Not e * 2**n1 * 2**n2:
    # the caller's reassociation may multiply the two scales first, which under/overflows.)
    k = _as_int(n + _SHIFTER) - _SHIFTER_BITS
    low, high = k < -1000, k > 1000
    shift = 64 if low else (-64 if high else 0)
    back = _TWO_M64 if low else (_TWO_64 if high else 1.0)
    out = _as_float(_as_int(e) + ((k + shift) << 52)) * back
    return x if x != x else out


# tanh(x) = x + x³ P(x²) / Q(x²) for |x| < 0.625 (Cephes tanh.c; Q monic)
_TP = (-9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3)
_TQ = (1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3)
_TANH_SMALL = 0.625
# tanh(x) rounds to ±1 above 19.06; clamping the argument of exp at 20 keeps it finite
_TANH_BIG = 20.0


@njit(**_INLINE)
def vtanh(x):
    """tanh of a float64, to a few ulps (±1 for ±inf, NaN kept). Both forms are computed and one
    selected; they share a single division."""
    a = min(abs(x), _TANH_BIG)
    small = a < _TANH_SMALL
    s = x * x
    p = ((_TP[0] * s + _TP[1]) * s + _TP[2]) * s * x
    q = ((s + _TQ[0]) * s + _TQ[1]) * s + _TQ[2]
    z = vexp(a + a)
    # small: x + p / q; large: 1 - 2 / (z + 1), with the sign of x
    t = (p if small else -2.0) / (q if small else z + 1.0)
    big = 1.0 + t
    out = x + t if small else (big if x > 0 else -big)
    return x if x != x else out


@njit(**_INLINE)
def vsigmoid(x):
    """1 / (1 + exp(-x)) of a float64 with the vectorisable exp (0 far below, 1 far above)."""
    return 1.0 / (1.0 + vexp(-x))

