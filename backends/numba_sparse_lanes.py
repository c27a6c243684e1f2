"""Sixteen-lane vectors for the sparse pass: one Numba type and the few operations it needs.

The sparse first layer adds a weight row (16 neurons) for each nonzero input into a sample's
sums. Written as plain loops, LLVM cannot keep those sums in registers: Numba tells it nothing
about aliasing, so the sums make a round trip through memory per nonzero, and with ``reassoc``
the loop vectoriser gathers along the nonzeros instead (measured 4-5x slower on MNIST than
these vectors). :class:`Lanes` is an LLVM ``<16 x float>`` value (or double), which LLVM keeps
in a register (or two) across the loop. Besides loads, stores and arithmetic: four numbers read
at once (:func:`load4`, :func:`splat4`) or one without wraparound (:func:`item`,
:func:`splat_at`), a 16 x 16 transpose in registers, and a prefetch.
Everything here is inlined; nothing checks bounds.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

#: Lanes of a vector: a 64-byte AVX-512 register of float32 (two of float64). Layer widths are
#: padded to a multiple of it.
LANES = 16

_I32 = ir.IntType(32)


class Lanes(types.Type):
    """A vector of :data:`LANES` values of ``dtype`` (a Numba float type)."""

    def __init__(self, dtype: types.Float) -> None:
        self.dtype = dtype
        super().__init__(name=f"Lanes{LANES}({dtype})")


@register_model(Lanes)
class _LanesModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), LANES))


def _address(context, builder, arrty, arr, start):
    """A ``<LANES x T>*`` to ``arr[start]`` (a contiguous array of T)."""
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.bitcast(builder.gep(data, [start]), ir.VectorType(data.type.pointee, LANES).as_pointer())


def _broadcast(builder, x, vector_type):
    one = builder.insert_element(ir.Constant(vector_type, ir.Undefined), x, _I32(0))
    return builder.shuffle_vector(one, ir.Constant(vector_type, ir.Undefined), ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))


@intrinsic
def load(typingctx, arr, start):
    """``arr[start:start + LANES]`` (a 1-D contiguous float array) as a vector."""

    def codegen(context, builder, sig, args):
        value = builder.load(_address(context, builder, sig.args[0], args[0], args[1]))
        value.align = arr.dtype.bitwidth // 8  # element alignment: rows need not start on a line
        return value

    return Lanes(arr.dtype)(arr, types.intp), codegen


@intrinsic
def store(typingctx, arr, start, vec):
    """``arr[start:start + LANES] = vec``."""

    def codegen(context, builder, sig, args):
        stored = builder.store(args[2], _address(context, builder, sig.args[0], args[0], args[1]))
        stored.align = arr.dtype.bitwidth // 8
        return context.get_dummy_value()

    return types.void(arr, types.intp, vec), codegen


@intrinsic
def splat(typingctx, x):
    """A vector of ``LANES`` copies of the float ``x``."""

    def codegen(context, builder, sig, args):
        return _broadcast(builder, args[0], ir.VectorType(args[0].type, LANES))

    return Lanes(x)(x), codegen


@intrinsic
def fma(typingctx, acc, s, vec):
    """``acc + s * vec`` (``s`` a vector, or a scalar of the vectors' type), as one fused
    multiply-add."""

    def codegen(context, builder, sig, args):
        vt = args[0].type
        width = acc.dtype.bitwidth
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]), f"llvm.fma.v{LANES}f{width}")
        factor = args[1] if isinstance(s, Lanes) else _broadcast(builder, args[1], vt)
        return builder.call(fn, [factor, args[2], args[0]])

    if not (isinstance(acc, Lanes) and s in (acc.dtype, acc) and vec == acc):
        return None
    return acc(acc, s, vec), codegen


@intrinsic
def add(typingctx, a, b):
    """``a + b``, lane by lane."""

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])

    if not (isinstance(a, Lanes) and a == b):
        return None
    return a(a, b), codegen


def _load_four(context, builder, arrty, arr, start):
    """``arr[start:start + 4]`` as one ``<4 x T>`` load."""
    data = context.make_array(arrty)(context, builder, arr).data
    four = builder.load(builder.bitcast(builder.gep(data, [start]), ir.VectorType(data.type.pointee, 4).as_pointer()))
    four.align = arrty.dtype.bitwidth // 8
    return four


def _convert(builder, x, from_type, to_type, ir_type):
    """``x`` (numbers of Numba type ``from_type``) as ``to_type``, a float type (``ir_type`` its
    LLVM type, or a vector of it)."""
    if isinstance(from_type, types.Integer):
        return (builder.sitofp if from_type.signed else builder.uitofp)(x, ir_type)
    if from_type != to_type:
        return (builder.fpext if from_type.bitwidth < to_type.bitwidth else builder.fptrunc)(x, ir_type)
    return x


@intrinsic
def load4(typingctx, arr, start):
    """``arr[start:start + 4]`` as a tuple of four numbers, read as one vector (LLVM then picks
    the cheapest way to take it apart)."""

    def codegen(context, builder, sig, args):
        four = _load_four(context, builder, sig.args[0], args[0], args[1])
        out = cgutils.get_null_value(context.get_value_type(sig.return_type))
        for k in range(4):
            out = builder.insert_value(out, builder.extract_element(four, _I32(k)), k)
        return out

    return types.UniTuple(arr.dtype, 4)(arr, types.intp), codegen


@intrinsic
def splat4(typingctx, arr, start, like):
    """Four vectors, each holding one of ``arr[start:start + 4]`` (as ``like``'s float type) in
    every lane: one load and one conversion for the four, then a shuffle each (measured 9-12%
    faster in the forward product than a load, a conversion and a broadcast per value)."""

    def codegen(context, builder, sig, args):
        four = _load_four(context, builder, sig.args[0], args[0], args[1])
        ft = ir.VectorType(context.get_value_type(like), 4)
        four = _convert(builder, four, arr.dtype, like, ft)
        out = cgutils.get_null_value(context.get_value_type(sig.return_type))
        for k in range(4):
            lanes = builder.shuffle_vector(four, ir.Constant(ft, ir.Undefined), ir.Constant(ir.VectorType(_I32, LANES), [k] * LANES))
            out = builder.insert_value(out, lanes, k)
        return out

    if not isinstance(like, types.Float):
        return None
    return types.UniTuple(Lanes(like), 4)(arr, types.intp, like), codegen


@intrinsic
def item(typingctx, arr, i):
    """``arr[i]`` (``i >= 0``, in bounds) without Numba's negative-index wraparound, which in
    a loop's last few steps cost more than the steps themselves."""

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        return builder.load(builder.gep(data, [args[1]]))

    return arr.dtype(arr, types.intp), codegen


@intrinsic
def splat_at(typingctx, arr, i, like):
    """A vector of ``arr[i]`` (as ``like``'s float type) in every lane: :func:`splat4` for one
    number, as :func:`item` reads it."""

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        x = builder.load(builder.gep(data, [args[1]]))
        ft = context.get_value_type(like)
        return _broadcast(builder, _convert(builder, x, arr.dtype, like, ft), ir.VectorType(ft, LANES))

    if not isinstance(like, types.Float):
        return None
    return Lanes(like)(arr, types.intp, like), codegen



def _transpose_masks(n: int) -> list[tuple[list[int], list[int]]]:
    """Shuffle masks of the ``log2(n)`` stages of an ``n x n`` transpose of rows held as vectors.

    At the stage of half-size ``h`` (n/2, n/4, .., 1) rows ``i`` and ``i + h`` (``i & h == 0``)
    swap their off-diagonal ``h x h`` blocks: row i becomes ``x0 y0 x2 y2 ..`` and row ``i + h``
    becomes ``x1 y1 x3 y3 ..`` in blocks of h (``x`` row i's, ``y`` row i + h's; a mask index
    ``n + k`` takes y's element k). After the last stage, row i holds column i."""
    stages, h = [], n // 2
    while h >= 1:
        low, high = [], []
        for k in range(n):
            block, pos = divmod(k, h)
            if block % 2 == 0:
                low.append(block * h + pos)
                high.append((block + 1) * h + pos)
            else:
                low.append(n + (block - 1) * h + pos)
                high.append(n + block * h + pos)
        stages.append((h, low, high))
        h //= 2
    return stages


@intrinsic
def transpose16(typingctx, src, src_start, src_stride, dst, dst_start, dst_stride, scale):
    """Write the transpose of a ``LANES x LANES`` block, times ``scale``: ``dst[dst_start + j *
    dst_stride + k] = scale * src[src_start + k * src_stride + j]``, all in registers (4 stages
    of 16 two-vector shuffles), where a loop of single numbers cost 5% of the sparse step."""

    def codegen(context, builder, sig, args):
        rows = [builder.load(_address(context, builder, sig.args[0], args[0], builder.add(args[1], builder.mul(args[2], args[2].type(k)))))
                for k in range(LANES)]
        for row in rows:
            row.align = src.dtype.bitwidth // 8
        for h, low, high in _transpose_masks(LANES):
            low, high = ir.Constant(ir.VectorType(_I32, LANES), low), ir.Constant(ir.VectorType(_I32, LANES), high)
            out = list(rows)
            for i in range(LANES):
                if i & h == 0:
                    out[i] = builder.shuffle_vector(rows[i], rows[i + h], low)
                    out[i + h] = builder.shuffle_vector(rows[i], rows[i + h], high)
            rows = out
        factor = _broadcast(builder, args[6], rows[0].type)
        for k, row in enumerate(rows):
            row = builder.fmul(row, factor)
            stored = builder.store(row, _address(context, builder, sig.args[3], args[3], builder.add(args[4], builder.mul(args[5], args[5].type(k)))))
            stored.align = dst.dtype.bitwidth // 8
        return context.get_dummy_value()

    if not (src.dtype == dst.dtype == scale):
        return None
    return types.void(src, types.intp, types.intp, dst, types.intp, types.intp, scale), codegen


@intrinsic
def prefetch(typingctx, arr, start):
    """Ask the CPU to fetch the cache line of ``arr[start]`` into L2 (as numba_intrinsics'
    prefetch, for arrays of any type: the pointer is cast to what the module's declaration of
    ``llvm.prefetch`` takes, whichever kernel declared it first)."""

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        ptr = builder.gep(data, [args[1]])
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer(), _I32, _I32, _I32]), "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, fn.function_type.args[0]), _I32(0), _I32(2), _I32(1)])
        return context.get_dummy_value()

    return types.void(arr, types.intp), codegen
