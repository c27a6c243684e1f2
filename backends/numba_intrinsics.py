"""What the fused kernels ask of LLVM beyond plain Numba: compile options, a prefetch hint, and a
tanh and exp that vectorise: a float32 approximation, and the float64 ones of numba_vmath.

Everything here is inlined into the kernels that use it (``inline="always"``, or by LLVM for the
per-dtype math of :func:`_typed`), so none of it costs a call.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils, compiler
from numba.core.cpu_options import FastMathOptions
from numba.extending import intrinsic

from .numba_kernels import RELU, TANH, like
from .numba_vmath import vexp, vsigmoid, vtanh

#: Compile options of the fused kernels: cached on disk, no division checks (they stop LLVM from
#: vectorising), the GIL released, and the float reassociation that lets sums vectorise.
OPTS = dict(cache=True, error_model="numpy", nogil=True, fastmath={"reassoc", "contract", "nsz"})
#: The same without "contract", for loops of the form ``g[i] += c * x[i]``: with it, LLVM fuses
#: them into a scalar fma before the loop vectoriser runs, and the loop then stays scalar.
OPTS_UPDATE = dict(cache=True, error_model="numpy", nogil=True, fastmath={"reassoc", "nsz"})


@intrinsic
def _prefetch(typingctx, arr, index):
    """Ask the CPU to start loading the cache line that holds ``arr[index]`` (a 1-D array) into L2."""

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        ptr = builder.gep(data, [args[1]])
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]), "llvm.prefetch.p0")
        # A read of data, locality 2 (prefetcht1): into L2 but not L1, where 13 lines a row would
        # evict the tile being computed; 1.6-2 ms an epoch faster than locality 3 on one thread.
        builder.call(fn, [ptr, i32(0), i32(2), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, types.intp), codegen


@njit(inline="always", **OPTS)
def prefetch_row(x):
    """Start loading every cache line of row ``x`` (64-byte lines)."""
    step = 64 // x.itemsize
    for i in range(0, x.shape[0], step):
        _prefetch(x, i)


# Rational minimax fit of tanh on [-7.905, 7.905] (odd polynomial of degree 13 over an even one
# of degree 6): divisions and multiplies only, so it vectorises where libm's tanhf does not.
# Max error 3.4e-7 (~3 float32 ulps); the float64 path takes numba_vmath's vtanh.
_TANH_CLAMP = 7.90531110763549805
_P = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
      -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)
_Q = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)


@njit(inline="always", **OPTS)
def tanh32(x):
    """tanh to a few float32 ulps, in ``x``'s type, without a call to libm."""
    c = like(_TANH_CLAMP, x)
    x = min(max(x, -c), c)
    x2 = x * x
    # Horner, with the constants in x's type so that float32 stays float32
    p = like(_P[6], x)
    p = p * x2 + like(_P[5], x)
    p = p * x2 + like(_P[4], x)
    p = p * x2 + like(_P[3], x)
    p = p * x2 + like(_P[2], x)
    p = p * x2 + like(_P[1], x)
    p = p * x2 + like(_P[0], x)
    q = like(_Q[3], x)
    q = q * x2 + like(_Q[2], x)
    q = q * x2 + like(_Q[1], x)
    q = q * x2 + like(_Q[0], x)
    return p * x / q


def _typed(f32, f64):
    """A function of one float that runs ``f32`` on float32 values and ``f64`` otherwise, chosen
    while typing, so a kernel holds the code of its own dtype only.

    Each choice is compiled once (per dtype) as a subroutine marked always-inline, which LLVM
    inlines into every kernel that calls it, so the loops around it still vectorise (called, the
    float64 step took 41 ms instead of 27-34; without always-inline, LLVM leaves the float64
    tanh a call). Not an inlined overload: Numba compiles one of those once more and runs its
    front end again at every call site: about 3 s of an 11.6-12.9 s cold float64 compile."""

    @intrinsic
    def choose(typingctx, x):
        if not isinstance(x, types.Float):
            return None
        impl = f32 if x == types.float32 else f64

        def codegen(context, builder, sig, args):
            cres = context.compile_subroutine(builder, impl, sig, flags=_subroutine_flags())
            return context.call_internal(builder, cres.fndesc, sig, args)

        return x(x), codegen

    return choose


def _subroutine_flags() -> compiler.Flags:
    """The kernels' compile options (:data:`OPTS`) for a subroutine, plus always-inline (a
    subroutine does not inherit its caller's options: without these it would check divisions,
    which stops the loops around it from vectorising)."""
    flags = compiler.Flags()
    flags.error_model = OPTS["error_model"]
    flags.fastmath = FastMathOptions(OPTS["fastmath"])
    flags.forceinline = True
    return flags


_exp_neg = _typed(lambda x: _exp_neg32(x), lambda x: like(vexp(np.float64(x)), x))
_tanh = _typed(lambda x: tanh32(x), lambda x: like(vtanh(np.float64(x)), x))
_sigmoid = _typed(lambda x: like(0.5, x) + like(0.5, x) * tanh32(like(0.5, x) * x), lambda x: like(vsigmoid(np.float64(x)), x))


@njit(inline="always", **OPTS)
def _exp_neg32(x):
    # exp(x) = (1 + tanh(x/2)) / (1 - tanh(x/2)): vectorises with the rational tanh; its error
    # is below 1e-7 absolute, which is all a float32 probability needs
    t = tanh32(like(0.5, x) * x)
    return (like(1, x) + t) / (like(1, x) - t)


@njit(inline="always", **OPTS)
def exp_neg(x):
    """exp for x <= 0, vectorised: float32 through the rational tanh, float64 numba_vmath's
    (a few float64 ulps)."""
    return _exp_neg(x)


@njit(inline="always", **OPTS)
def activate(v, kind):
    """The hidden activation ``kind`` of one value: float32 through the rational tanh (a few
    float32 ulps), float64 through numba_vmath (a few float64 ulps); both vectorise."""
    if kind == TANH:
        return _tanh(v)
    if kind == RELU:
        # not ``v - v`` or ``v * 0`` for the rest: those are NaN at -inf. NaN itself passes
        # through, as in NumPy's maximum(z, 0).
        return like(0, v) if v <= 0 else v
    # sigmoid(v) = (1 + tanh(v / 2)) / 2, which reuses the vectorisable tanh
    return _sigmoid(v)
