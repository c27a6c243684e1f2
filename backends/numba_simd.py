"""The register tiles of the fused pass, written as LLVM IR with explicit vector values.

Numba's auto-vectoriser decides for itself whether a tile's accumulators stay in registers; on a
16-register CPU it spilled them to the stack every iteration. Here each accumulator is one LLVM
vector (``<W x float>``, W lanes of the :class:`~netcore.backends.numba_isa.Isa`), the loads are vector
loads, the products explicit ``fma`` calls, so what runs is what is written: for the AVX-512
rank-1 tile, 3 vector loads, 8 broadcasts and 24 FMAs an iteration.

Both tiles take 2-D arrays and the tile's first row and column in each; the tile's shape comes
from the ISA type unless the call asks for another (the literal ``rows``/``vectors``
arguments, 0 meaning "the ISA's", rows -1 the ISA's tall tile one vector wide), which the
drivers in :mod:`netcore.backends.numba_tiles` use for narrow products and the edges. ``assign``
chooses between writing the result and adding it to what ``C`` holds.

Two more take the first layer's uint8 inputs (pixels) where they lie in X, through the chunk's
row indices, and widen the bytes to floats inside the tile: :func:`pixel_tile` (the forward,
converting a block of columns into a small packed buffer ahead of the multiply-adds) and
:func:`pixel_gradient_tile` (the weight gradient, bytes widened in the registers).
"""

from __future__ import annotations

import contextlib

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .numba_isa import IsaType

_I32 = ir.IntType(32)


def _literal(value):
    """A literal int argument's value (None if the call passed a variable: Numba then retries)."""
    return value.literal_value if isinstance(value, types.IntegerLiteral) else None


def _rank1_shape(isa, rows, vectors):
    """(MR, NR) of a rank-1-shaped tile from the literal ``rows``/``vectors`` arguments (0: the
    ISA's; rows -1: its tall tile one vector wide)."""
    MR = {0: isa.isa.rank1_tile[0], -1: isa.isa.tall_rows}.get(_literal(rows), _literal(rows))
    return MR, _literal(vectors) or isa.isa.rank1_tile[1]


def _float_arrays(*arrays):
    dtypes = {a.dtype for a in arrays}
    two_d = all(isinstance(a, types.Array) and a.ndim == 2 for a in arrays)
    if not two_d or len(dtypes) != 1 or not isinstance(next(iter(dtypes)), types.Float):
        raise TypeError("the tiles take 2-D arrays of one float dtype")
    return next(iter(dtypes))


def _element_strides(builder, ary, itemsize):
    """An array's strides in elements (Numba keeps them in bytes)."""
    return [builder.sdiv(s, ir.Constant(s.type, itemsize)) for s in cgutils.unpack_tuple(builder, ary.strides)]


def _vector_at(builder, base, offset, vector_type, itemsize):
    ptr = builder.bitcast(builder.gep(base, [offset]), vector_type.as_pointer())
    return ptr, builder.load(ptr, align=itemsize)


def _splat(builder, x, vector_type):
    undef = ir.Constant(vector_type, ir.Undefined)
    one = builder.insert_element(undef, x, _I32(0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(_I32, vector_type.count), [0] * vector_type.count))


def _fma(builder, a, b, c):
    """``a * b + c`` rounded once (llvm.fma on vectors: llvmlite's builder.fma takes scalars)."""
    vt = a.type
    name = f"llvm.fma.v{vt.count}f{vt.element.intrinsic_name[1:]}"
    return builder.call(cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]), name), [a, b, c])


def _lane_sum(builder, v):
    """The sum of a vector's lanes: halves added until one lane is left (a fixed order)."""
    n = v.type.count
    while n > 1:
        n //= 2
        undef = ir.Constant(v.type, ir.Undefined)
        lo = builder.shuffle_vector(v, undef, ir.Constant(ir.VectorType(_I32, n), list(range(n))))
        hi = builder.shuffle_vector(v, undef, ir.Constant(ir.VectorType(_I32, n), list(range(n, 2 * n))))
        v = builder.fadd(lo, hi)
    return builder.extract_element(v, _I32(0))


def _write(builder, ptr, value, assign, itemsize):
    """``*ptr = value`` if ``assign`` else ``*ptr += value`` (a select, not a branch)."""
    old = builder.load(ptr, align=itemsize)
    builder.store(builder.select(assign, value, builder.fadd(old, value)), ptr, align=itemsize)


def _store_rows(builder, c0, c_rs, acc, VT, itemsize, assign=None, mr=None, scale=None):
    """A rank-1-shaped tile's accumulators ``acc[m][v]`` (times ``scale`` if given) to row m,
    vector v of C from ``c0``: stored, or through :func:`_write` where ``assign`` is given; only
    the rows below ``mr`` where that is given (a tile with fewer rows)."""
    scale_v = None if scale is None else _splat(builder, scale, VT)
    for m, row_acc in enumerate(acc):
        with (builder.if_then(builder.icmp_signed("<", ir.Constant(mr.type, m), mr)) if mr is not None else contextlib.nullcontext()):
            c_row = builder.gep(c0, [builder.mul(ir.Constant(c_rs.type, m), c_rs)])
            for v, a in enumerate(row_acc):
                ptr = builder.bitcast(builder.gep(c_row, [ir.Constant(c_rs.type, v * VT.count)]), VT.as_pointer())
                value = builder.load(a) if scale_v is None else builder.fmul(builder.load(a), scale_v)
                if assign is None:
                    builder.store(value, ptr, align=itemsize)
                else:
                    _write(builder, ptr, value, assign, itemsize)


def _row_or_last(builder, m, mr):
    """``min(m, mr - 1)`` for a constant ``m``: a tile with fewer rows than its shape reads its last
    row again in the others, so it computes on real numbers and writes only ``mr`` rows."""
    c = ir.Constant(mr.type, m)
    return builder.select(builder.icmp_signed("<", c, mr), c, builder.sub(mr, ir.Constant(mr.type, 1)))


def _kernel(builder, name, arg_types, build):
    """A call to the function ``name`` of the module, defined by ``build(builder, args)`` on first
    use: each tile shape is one function, marked not to be inlined, so its loop gets the
    registers to itself (inlined into the fused pass, LLVM spilled tile pointers around it) and
    the pass compiles each shape once."""
    module = builder.module
    try:
        fn = module.get_global(name)
    except KeyError:
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), arg_types), name=name)
        fn.linkage = "linkonce_odr"
        fn.attributes.add("noinline")
        fn.attributes.add("nounwind")
        body = ir.IRBuilder(fn.append_basic_block("entry"))
        build(body, fn.args)
        body.ret_void()
    return fn


def _opaque(builder, value):
    """``value`` unchanged, hidden from LLVM's analyses: an empty inline asm that returns its operand
    (no instruction is emitted)."""
    return builder.asm(ir.FunctionType(value.type, [value.type]), "", "=r,0", [value], False)


def _prefetch_l2(builder, ptr):
    """Start loading the cache line at ``ptr`` into L2 (prefetcht1: not into L1, where it would
    evict the tile's own rows)."""
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, _I32, _I32, _I32]), "llvm.prefetch.p0")
    builder.call(fn, [ptr, _I32(0), _I32(2), _I32(1)])


#: Rows of ``A`` a rank-1 tile addresses from one base pointer (offsets 0-4 rows: see _rank1_body).
ROWS_PER_BASE = 5


def _rank1_body(MR, NR, VT, itemsize):
    """The rank-1 tile's function. ``A``'s rows are read through one base pointer per 5 rows, each
    row ``base + l * stride`` with ``l * stride`` an x86 addressing mode (stride x 1, 2, 4, or 3 x
    stride), and each base advanced by its own add per step, hidden from LLVM (:func:`_opaque`).

    Left to itself, LLVM's loop-strength reduction may instead chain the rows' addresses, row m's
    as row m-1's plus the stride, through one register carried from step to step: 24 dependent
    adds a step for the AVX-512 tall tile, 23-24 cycles where its 24 FMAs take 12 (138 GFLOP/s
    instead of 250 here, Zen 5). Whether it does depends on the module the function is optimised
    in (Numba compiles a copy into each caller's module, and which copy the JIT binds depends on
    what the process compiled or loaded from the cache first), so the speed changed from one
    process to the next. Opaque bases are not induction variables: there is nothing to chain."""

    def build(builder, args):
        c0, c_rs, a0, a_rs, a_cs, b0, b_rs, K, assign, ahead = args
        lanes = VT.count
        i8 = ir.IntType(8)
        i64 = a_rs.type
        acc = [[cgutils.alloca_once_value(builder, ir.Constant(VT, None)) for _ in range(NR)] for _ in range(MR)]
        row_bytes = builder.mul(a_rs, ir.Constant(a_rs.type, itemsize))
        stride = [_opaque(builder, row_bytes), _opaque(builder, builder.mul(row_bytes, ir.Constant(a_rs.type, 3)))]
        # row l of a base: (register, scale) of its offset, a single addressing mode each
        offsets = {1: (0, 1), 2: (0, 2), 3: (1, 1), 4: (0, 4)}
        bases = []
        for g in range(0, MR, ROWS_PER_BASE):
            ptr = builder.gep(a0, [builder.mul(ir.Constant(a_rs.type, g), a_rs)])
            bases.append(cgutils.alloca_once_value(builder, ptr))
        col_bytes = builder.mul(a_cs, ir.Constant(a_cs.type, itemsize))
        # the rows after the tile's, prefetched at the rate the tile reads its own (MR elements a
        # step), so a run of rows in memory arrives one tile ahead
        per_step = MR * itemsize
        following = builder.gep(a0, [builder.mul(ir.Constant(i64, MR), a_rs)])
        with cgutils.for_range(builder, K) as loop:
            k = loop.index
            offset = builder.mul(k, ir.Constant(i64, per_step))
            with builder.if_then(builder.icmp_signed("<", offset, ahead), likely=False):
                line = builder.gep(following, [offset], source_etype=i8)
                for extra in range(0, per_step, 64):  # one prefetch a cache line
                    _prefetch_l2(builder, builder.gep(line, [ir.Constant(i64, extra)], source_etype=i8) if extra else line)
            b_row = builder.gep(b0, [builder.mul(k, b_rs)])
            bv = [_vector_at(builder, b_row, ir.Constant(k.type, v * lanes), VT, itemsize)[1] for v in range(NR)]
            for g, base in enumerate(bases):
                col = builder.load(base)
                for m in range(g * ROWS_PER_BASE, min(MR, (g + 1) * ROWS_PER_BASE)):
                    l = m - g * ROWS_PER_BASE
                    ptr = col
                    if l:
                        reg, scale = offsets[l]
                        off = stride[reg] if scale == 1 else builder.mul(stride[reg], ir.Constant(a_rs.type, scale))
                        ptr = builder.gep(col, [off], source_etype=i8)
                    x = _splat(builder, builder.load(builder.bitcast(ptr, col.type)), VT)
                    for v in range(NR):
                        builder.store(_fma(builder, x, bv[v], builder.load(acc[m][v])), acc[m][v])
                builder.store(_opaque(builder, builder.gep(col, [col_bytes], source_etype=i8)), base)
        _store_rows(builder, c0, c_rs, acc, VT, itemsize, assign=assign)

    return build


@intrinsic
def rank1_tile(typingctx, isa, C, ci, cj, A, ai, ak, B, bk, bj, K, assign, ahead, rows, vectors):
    """``C[ci:ci+MR, cj:cj+NR*W] (+)= A[ai:ai+MR, ak:ak+K] @ B[bk:bk+K, bj:bj+NR*W]``.

    Each step of the reduction loads NR vectors of a row of ``B`` and multiplies each of the MR
    broadcast elements of a column of ``A`` into them; MR x NR accumulators. ``B`` and ``C`` need
    unit stride along their rows; ``A`` may have any strides (``W.T`` is fine). The first
    ``ahead`` bytes of memory from ``A[ai+MR, ak]`` on are prefetched into L2 along the way
    (the next rows, where A's rows lie back to back; 0: nothing), MR elements' worth a step.
    """
    if not isinstance(isa, IsaType) or _literal(rows) is None or _literal(vectors) is None:
        return None
    dtype = _float_arrays(C, A, B)
    itemsize = dtype.bitwidth // 8
    lanes = isa.isa.lanes(itemsize)
    MR, NR = _rank1_shape(isa, rows, vectors)
    if B.layout != "C" or C.layout != "C":
        raise TypeError("rank1_tile: B and C must be C-contiguous")
    intp = types.intp
    sig = types.void(isa, C, intp, intp, A, intp, intp, B, intp, intp, intp, types.boolean, intp, rows, vectors)

    def codegen(context, builder, sig, args):
        _, C_, ci_, cj_, A_, ai_, ak_, B_, bk_, bj_, K_, assign_, ahead_ = args[:13]
        c = context.make_array(sig.args[1])(context, builder, C_)
        a = context.make_array(sig.args[4])(context, builder, A_)
        b = context.make_array(sig.args[7])(context, builder, B_)
        T = context.get_value_type(dtype)
        VT = ir.VectorType(T, lanes)
        c_rs, _ = _element_strides(builder, c, itemsize)
        a_rs, a_cs = _element_strides(builder, a, itemsize)
        b_rs, _ = _element_strides(builder, b, itemsize)
        c0 = builder.gep(c.data, [builder.add(builder.mul(ci_, c_rs), cj_)])
        a0 = builder.gep(a.data, [builder.add(builder.mul(ai_, a_rs), builder.mul(ak_, a_cs))])
        b0 = builder.gep(b.data, [builder.add(builder.mul(bk_, b_rs), bj_)])
        i64, ptr = c_rs.type, c0.type
        fn = _kernel(builder, f"netcore.rank1.{dtype}.x{lanes}.{MR}x{NR}", [ptr, i64, ptr, i64, i64, ptr, i64, i64, ir.IntType(1), i64],
                     _rank1_body(MR, NR, VT, itemsize))
        builder.call(fn, [c0, c_rs, a0, a_rs, a_cs, b0, b_rs, K_, assign_, ahead_])
        return context.get_dummy_value()

    return sig, codegen


def _dot_body(MR, NR, VT, itemsize):
    def build(builder, args):
        c0, c_rs, c_cs, a0, a_rs, b0, b_rs, nv, assign = args
        lanes = VT.count
        a_rows = [builder.gep(a0, [builder.mul(ir.Constant(a_rs.type, m), a_rs)]) for m in range(MR)]
        b_rows = [builder.gep(b0, [builder.mul(ir.Constant(b_rs.type, n), b_rs)]) for n in range(NR)]
        acc = [[cgutils.alloca_once_value(builder, ir.Constant(VT, None)) for _ in range(NR)] for _ in range(MR)]
        with cgutils.for_range(builder, nv) as loop:
            offset = builder.mul(loop.index, ir.Constant(loop.index.type, lanes))
            av = [_vector_at(builder, row, offset, VT, itemsize)[1] for row in a_rows]
            for n in range(NR):
                bv = _vector_at(builder, b_rows[n], offset, VT, itemsize)[1]
                for m in range(MR):
                    builder.store(_fma(builder, av[m], bv, builder.load(acc[m][n])), acc[m][n])
        for m in range(MR):
            row = builder.gep(c0, [builder.mul(ir.Constant(c_rs.type, m), c_rs)])
            for n in range(NR):
                ptr = builder.gep(row, [builder.mul(ir.Constant(c_cs.type, n), c_cs)])
                _write(builder, ptr, _lane_sum(builder, builder.load(acc[m][n])), assign, itemsize)

    return build


@intrinsic
def dot_tile(typingctx, isa, C, ci, cj, A, ai, B, bj, n_vectors, assign, rows, cols):
    """``C[ci+m, cj+n] (+)= A[ai+m, :K] . B[bj+n, :K]`` for an MR x NR tile, K = ``n_vectors * W``.

    Each step loads one vector of each of the MR rows of ``A`` and NR rows of ``B`` and
    multiplies every pair; the MR x NR vector accumulators are summed across their lanes once at
    the end. The rest of the reduction (``K`` not a multiple of W) is the caller's. ``A`` and
    ``B`` need unit stride along their rows; ``C`` may have any strides (``ZT.T`` is fine).
    """
    if not isinstance(isa, IsaType) or _literal(rows) is None or _literal(cols) is None:
        return None
    dtype = _float_arrays(C, A, B)
    itemsize = dtype.bitwidth // 8
    lanes = isa.isa.lanes(itemsize)
    MR = _literal(rows) or isa.isa.dot_tile[0]
    NR = _literal(cols) or isa.isa.dot_tile[1]
    if A.layout != "C" or B.layout != "C":
        raise TypeError("dot_tile: A and B must be C-contiguous")
    sig = types.void(isa, C, types.intp, types.intp, A, types.intp, B, types.intp, types.intp, types.boolean, rows, cols)

    def codegen(context, builder, sig, args):
        _, C_, ci_, cj_, A_, ai_, B_, bj_, nv_, assign_ = args[:10]
        c = context.make_array(sig.args[1])(context, builder, C_)
        a = context.make_array(sig.args[4])(context, builder, A_)
        b = context.make_array(sig.args[6])(context, builder, B_)
        T = context.get_value_type(dtype)
        VT = ir.VectorType(T, lanes)
        c_rs, c_cs = _element_strides(builder, c, itemsize)
        a_rs, _ = _element_strides(builder, a, itemsize)
        b_rs, _ = _element_strides(builder, b, itemsize)
        c0 = builder.gep(c.data, [builder.add(builder.mul(ci_, c_rs), builder.mul(cj_, c_cs))])
        a0 = builder.gep(a.data, [builder.mul(ai_, a_rs)])
        b0 = builder.gep(b.data, [builder.mul(bj_, b_rs)])
        i64, ptr = c_rs.type, c0.type
        fn = _kernel(builder, f"netcore.dot.{dtype}.x{lanes}.{MR}x{NR}", [ptr, i64, i64, ptr, i64, ptr, i64, i64, ir.IntType(1)],
                     _dot_body(MR, NR, VT, itemsize))
        builder.call(fn, [c0, c_rs, c_cs, a0, a_rs, b0, b_rs, nv_, assign_])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def runtime(typingctx, x):
    """``x`` as a value, not a constant: a literal argument (``True``, ``0``) would have Numba
    compile the called function once more, specialised on it."""
    sig = types.unliteral(x)(x)

    def codegen(context, builder, sig, args):
        return context.cast(builder, args[0], sig.args[0], sig.return_type)

    return sig, codegen


@intrinsic
def tile_shape(typingctx, isa, array):
    """``(rank1 rows, rank1 vectors, tall rows, dot rows, dot cols, lanes)`` for ``array``'s
    dtype: constants the drivers step by (folded by LLVM)."""
    if not isinstance(isa, IsaType) or not isinstance(array, types.Array):
        return None
    lanes = isa.isa.lanes(array.dtype.bitwidth // 8)
    values = (*isa.isa.rank1_tile, isa.isa.tall_rows, *isa.isa.dot_tile, lanes)
    sig = types.UniTuple(types.intp, len(values))(isa, array)

    def codegen(context, builder, sig, args):
        return context.make_tuple(builder, sig.return_type, [context.get_constant(types.intp, v) for v in values])

    return sig, codegen


# --- uint8 rows (pixels) read where they lie in X, converted to floats inside the tiles ----------

#: Bytes of each row the forward pixel tile converts at a time (one 16-byte load a row).
PACK_COLUMNS = 16
#: Columns of the forward pixel tile's multiply-adds written out a turn of its loop.
UNROLL = 4


def reads_pixels(isa, X) -> bool:
    """Whether the first layer reads the Numba type ``X`` with the pixel tiles: C-contiguous rows of
    uint8, on an ISA of 32 vector registers (AVX-512). On 16 (AVX2) the weight-gradient tile
    holds 6 neurons, so each row's bytes were widened 3 times for 16 neurons: the step took 31.6
    ms on one thread where converting the chunk once took 29.6 (Zen 5, ``NUMBA_CPU_NAME=haswell``);
    there the forward converts the rows instead (:func:`converts_pixels`)."""
    return (isinstance(isa, IsaType) and isa.isa.registers >= 32 and isinstance(X, types.Array) and X.ndim == 2
            and X.dtype == types.uint8 and X.layout == "C")


def _pixel_arrays(isa, C, X, rows, *floats):
    """The float dtype of a pixel tile (``rows`` int64 indices of ``X``, the rest 2-D arrays of
    one float dtype), and whether it reads ``X`` (:func:`reads_pixels`): otherwise the tile
    compiles to nothing, so that the drivers type (and inline) where they never run."""
    if not (isinstance(rows, types.Array) and rows.ndim == 1 and rows.dtype == types.int64):
        raise TypeError("the pixel tiles take int64 row indices")
    return _float_arrays(C, *floats), reads_pixels(isa, X)


def _pixel_tile_types(name, isa, C, X, rows, F, tile_rows, vectors):
    """What typing a pixel tile with an output ``C`` and a float operand ``F`` (both C-contiguous)
    needs: ``(dtype, pixels, itemsize, lanes, MR, NR)``, as :func:`_pixel_arrays` and
    :func:`_rank1_shape` give them."""
    dtype, pixels = _pixel_arrays(isa, C, X, rows, C, F)
    if F.layout != "C" or C.layout != "C":
        raise TypeError(f"{name}: its float arrays must be C-contiguous")
    itemsize = dtype.bitwidth // 8
    return (dtype, pixels, itemsize, isa.isa.lanes(itemsize), *_rank1_shape(isa, tile_rows, vectors))


def _pixel_operands(context, builder, sig, args, iC, iX, iB, dtype, lanes, itemsize):
    """What both forward pixel tiles' code starts from, given the argument positions of ``C``,
    ``X`` (``rows`` and ``r0`` after it) and ``B``: ``C`` and its row stride in elements, ``X``
    and its row stride in bytes, a pointer to the tile's first row index, ``B`` and its row
    stride, and the vector type."""
    c, x, r, b = (context.make_array(sig.args[i])(context, builder, args[i]) for i in (iC, iX, iX + 1, iB))
    c_rs, _ = _element_strides(builder, c, itemsize)
    b_rs, _ = _element_strides(builder, b, itemsize)
    x_rs = cgutils.unpack_tuple(builder, x.strides)[0]
    idx = builder.gep(r.data, [args[iX + 2]])
    return c, c_rs, x, x_rs, idx, b, b_rs, ir.VectorType(context.get_value_type(dtype), lanes)


def _row_pointers(builder, x0, x_rs, idx, mr, MR):
    """The MR rows' first bytes, ``x0 + idx[min(m, mr - 1)] * x_rs``: rows past ``mr`` repeat the
    last one, so a tile with fewer rows computes on real numbers and writes only ``mr`` rows."""
    return [builder.gep(x0, [builder.mul(builder.load(builder.gep(idx, [_row_or_last(builder, m, mr)])), x_rs)]) for m in range(MR)]


def _pixel_rows_body(MR, NR, VT, itemsize, copy=False):
    """The forward pixel tile's function: ``C[m, :] = scale * (X[idx[m], :K] @ B[:K, :])`` for the
    MR rows listed in ``idx`` (``m < mr`` written). A BLIS-style packing of A with the conversion
    on the way: a block of 16 bytes of every row is widened to floats into a small buffer on the
    stack (two halves: the block being multiplied, and the next one), and the 16 columns of
    multiply-adds broadcast from it, so the converted rows never leave L1. The next block's rows
    are converted in among this block's multiply-adds, a quarter of them after every 4 columns
    (written out: with a loop a column and a block's conversions in one burst, the forward of
    60,000 float32 rows took 8.0 ms on one thread, as long as a separate conversion pass and the
    plain tile, 7.8-8.1; this way 7.5, Zen 5); the last
    blocks go a column at a time, the one short of 16 columns read with a masked load.
    ``scale`` multiplies the sums once, not every element. With ``copy``, two more arguments:
    each block converted is also stored (unscaled) to the rows ``out0 + m * out_rs`` (the chunk
    buffer the weight gradient reads: :func:`pixel_copy_tile`)."""

    def build(builder, args):
        c0, c_rs, x0, x_rs, idx, mr, scale, b0, b_rs, K = args[:10]
        T, lanes, KB = VT.element, VT.count, PACK_COLUMNS
        i64 = c_rs.type
        FT, BT = ir.VectorType(T, KB), ir.VectorType(ir.IntType(8), KB)
        zero, one, kb_c = ir.Constant(i64, 0), ir.Constant(i64, 1), ir.Constant(i64, KB)
        pack = builder.alloca(ir.ArrayType(T, 2 * MR * KB))
        pack.align = 64
        pack = builder.bitcast(pack, T.as_pointer())
        acc = [[cgutils.alloca_once_value(builder, ir.Constant(VT, None)) for _ in range(NR)] for _ in range(MR)]
        rows = _row_pointers(builder, x0, x_rs, idx, mr, MR)
        row_at = builder.alloca(ir.ArrayType(x0.type, MR))  # the same, indexed by a variable
        for m in range(MR):
            builder.store(rows[m], builder.gep(row_at, [zero, ir.Constant(i64, m)]))
        if copy:  # the rows the floats go to; those past mr repeat the last (the same values again)
            out0, out_rs = args[10:]
            out_rows = [builder.gep(out0, [builder.mul(_row_or_last(builder, m, mr), out_rs)]) for m in range(MR)]
            masked_store = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [FT, FT.as_pointer(), _I32, ir.VectorType(ir.IntType(1), KB)]),
                f"llvm.masked.store.v{KB}f{T.intrinsic_name[1:]}.p0")
            out_at = builder.alloca(ir.ArrayType(out_rows[0].type, MR))  # the same, indexed by a variable
            for m in range(MR):
                builder.store(out_rows[m], builder.gep(out_at, [zero, ir.Constant(i64, m)]))
        n_blocks = builder.sdiv(builder.add(K, ir.Constant(i64, KB - 1)), kb_c)
        lane = ir.Constant(ir.VectorType(_I32, KB), list(range(KB)))
        masked_load = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(BT, [BT.as_pointer(), _I32, ir.VectorType(ir.IntType(1), KB), BT]), f"llvm.masked.load.v{KB}i8.p0")

        def half_at(h):
            return builder.gep(pack, [builder.mul(h, ir.Constant(i64, MR * KB))])

        def convert_row(m, kb, half, mask=None):
            ptr = builder.bitcast(builder.gep(rows[m], [kb]), BT.as_pointer())
            raw = builder.load(ptr, align=1) if mask is None else builder.call(masked_load, [ptr, _I32(1), mask, ir.Constant(BT, None)])
            floats = builder.uitofp(raw, FT)
            builder.store(floats, builder.bitcast(builder.gep(half, [ir.Constant(i64, m * KB)]), FT.as_pointer()), align=64)
            if copy:
                _copy_out(builder.gep(out_rows[m], [kb]), floats, mask)

        def _copy_out(at, floats, mask):
            at = builder.bitcast(at, FT.as_pointer())
            if mask is None:
                builder.store(floats, at, align=itemsize)
            else:
                builder.call(masked_store, [floats, at, _I32(itemsize), mask])

        def convert_masked(block, half):  # any block, the last one short of 16 columns too
            kb = builder.mul(block, kb_c)
            left = builder.trunc(builder.sub(K, kb), _I32)
            if copy:  # AVX2 has no masked byte loads (LLVM tests and inserts byte by byte): whole blocks without
                with builder.if_else(builder.icmp_signed(">=", left, _I32(KB))) as (whole, part):
                    with whole:
                        for m in range(MR):
                            convert_row(m, kb, half)
                    with part:
                        mask = builder.icmp_signed("<", lane, _splat(builder, left, lane.type))
                        for m in range(MR):
                            convert_row(m, kb, half, mask)
                return
            mask = builder.icmp_signed("<", lane, _splat(builder, left, lane.type))
            for m in range(MR):
                convert_row(m, kb, half, mask)

        def step(k, half, kk):
            b_row = builder.gep(b0, [builder.mul(k, b_rs)])
            bv = [_vector_at(builder, b_row, ir.Constant(i64, v * lanes), VT, itemsize)[1] for v in range(NR)]
            for m in range(MR):
                x = _splat(builder, builder.load(builder.gep(half, [builder.add(ir.Constant(i64, m * KB), kk)]), align=itemsize), VT)
                for v in range(NR):
                    builder.store(_fma(builder, x, bv[v], builder.load(acc[m][v])), acc[m][v])

        with builder.if_then(builder.icmp_signed(">", n_blocks, zero)):
            convert_masked(zero, half_at(zero))
        with cgutils.for_range(builder, n_blocks) as loop:
            block = loop.index
            h = builder.and_(block, one)
            half, other = half_at(h), half_at(builder.xor(h, one))
            kb = builder.mul(block, kb_c)
            nxt = builder.add(kb, kb_c)
            next_whole = builder.icmp_signed("<=", builder.add(nxt, kb_c), K)
            with builder.if_else(next_whole, likely=True) as (fast, last):
                with fast:  # this block and the next whole: 4 columns a turn, a quarter of the next block's rows after them
                    with cgutils.for_range(builder, ir.Constant(i64, KB // UNROLL)) as turn:
                        first = builder.mul(turn.index, ir.Constant(i64, UNROLL))
                        for u in range(UNROLL):
                            kk = builder.add(first, ir.Constant(i64, u))
                            step(builder.add(kb, kk), half, kk)
                        per_turn = 0 if copy else -(-MR // (KB // UNROLL))
                        for r in range(per_turn):  # the last turn's rows past MR redo row MR - 1
                            m = builder.add(builder.mul(turn.index, ir.Constant(i64, per_turn)), ir.Constant(i64, r))
                            m = builder.select(builder.icmp_signed("<", m, ir.Constant(i64, MR)), m, ir.Constant(i64, MR - 1))
                            ptr = builder.bitcast(builder.gep(builder.load(builder.gep(row_at, [zero, m])), [nxt]), BT.as_pointer())
                            out = builder.bitcast(builder.gep(other, [builder.mul(m, kb_c)]), FT.as_pointer())
                            floats = builder.uitofp(builder.load(ptr, align=1), FT)
                            builder.store(floats, out, align=64)

                    # with the copy (16 registers: the accumulators take 12), the next block's
                    # rows in one burst after the block's multiply-adds; interleaved, the
                    # conversion spilled 4 accumulators every turn
                    with cgutils.for_range(builder, ir.Constant(i64, MR if copy else 0)) as row:
                        m = row.index
                        ptr = builder.bitcast(builder.gep(builder.load(builder.gep(row_at, [zero, m])), [nxt]), BT.as_pointer())
                        floats = builder.uitofp(builder.load(ptr, align=1), FT)
                        builder.store(floats, builder.bitcast(builder.gep(other, [builder.mul(m, kb_c)]), FT.as_pointer()), align=64)
                        if copy:
                            _copy_out(builder.gep(builder.load(builder.gep(out_at, [zero, m])), [nxt]), floats, None)
                with last:  # the last block or two: a column at a time
                    with builder.if_then(builder.icmp_signed("<", builder.add(block, one), n_blocks)):
                        convert_masked(builder.add(block, one), other)
                    left = builder.sub(K, kb)
                    count = builder.select(builder.icmp_signed("<", left, kb_c), left, kb_c)
                    with cgutils.for_range(builder, count) as inner:
                        step(builder.add(kb, inner.index), half, inner.index)
        _store_rows(builder, c0, c_rs, acc, VT, itemsize, mr=mr, scale=scale)

    return build


@intrinsic
def pixel_tile(typingctx, isa, C, ci, cj, X, rows, r0, mr, scale, B, bj, K, tile_rows, vectors):
    """``C[ci+m, cj:cj+NR*W] = (scale * X[rows[r0+m], :K]) @ B[:K, bj:bj+NR*W]`` for ``m < mr``
    (``mr`` at most the tile's MR rows): the first layer's forward on uint8 rows of X, gathered
    through ``rows`` and converted inside the tile (:func:`_pixel_rows_body`). Shapes as
    :func:`rank1_tile`'s (``tile_rows`` 0: the ISA's, -1: its tall tile). ``B`` and ``C``
    C-contiguous."""
    if not isinstance(isa, IsaType) or _literal(tile_rows) is None or _literal(vectors) is None:
        return None
    dtype, pixels, itemsize, lanes, MR, NR = _pixel_tile_types("pixel_tile", isa, C, X, rows, B, tile_rows, vectors)
    intp = types.intp
    sig = types.void(isa, C, intp, intp, X, rows, intp, intp, dtype, B, intp, intp, tile_rows, vectors)

    def codegen(context, builder, sig, args):
        if not pixels:
            return context.get_dummy_value()
        _, C_, ci_, cj_, X_, rows_, r0_, mr_, scale_, B_, bj_, K_ = args[:12]
        c, c_rs, x, x_rs, idx, b, b_rs, VT = _pixel_operands(context, builder, sig, args, 1, 4, 9, dtype, lanes, itemsize)
        c0 = builder.gep(c.data, [builder.add(builder.mul(ci_, c_rs), cj_)])
        b0 = builder.gep(b.data, [bj_])
        i64, ptr = c_rs.type, c0.type
        fn = _kernel(builder, f"netcore.pixels.{dtype}.x{lanes}.{MR}x{NR}",
                     [ptr, i64, x.data.type, i64, idx.type, i64, VT.element, ptr, i64, i64], _pixel_rows_body(MR, NR, VT, itemsize))
        builder.call(fn, [c0, c_rs, x.data, x_rs, idx, mr_, scale_, b0, b_rs, K_])
        return context.get_dummy_value()

    return sig, codegen


def converts_pixels(isa, X) -> bool:
    """Whether the first layer's forward converts uint8 rows (C-contiguous) inside its tiles and
    leaves the floats in the chunk buffer for the weight gradient (:func:`pixel_copy_tile`): on
    ISAs whose pixel tiles do not read the bytes in both products (:func:`reads_pixels`)."""
    return (isinstance(isa, IsaType) and not reads_pixels(isa, X) and isinstance(X, types.Array) and X.ndim == 2
            and X.dtype == types.uint8 and X.layout == "C")


@intrinsic
def pixel_copy_tile(typingctx, isa, C, ci, X, rows, r0, mr, scale, B, K, out, oi):
    """``C[ci+m, :NR*W] = (scale * X[rows[r0+m], :K]) @ B[:K, :NR*W]`` for ``m < mr`` in the ISA's
    rank-1 tile shape, as :func:`pixel_tile` (the bytes converted inside the tile), and
    ``out[oi+m, :K] = X[rows[r0+m], :K]`` (unscaled, as floats): the converted rows are also stored
    for the weight gradient, so no separate conversion pass writes and reads them again; the
    weight gradient applies ``scale`` to its other factor (dZ: far fewer multiplies). ``B``, ``C`` and
    ``out`` C-contiguous, ``out`` of ``C``'s dtype. Compiles to nothing where
    :func:`converts_pixels` is false."""
    if not isinstance(isa, IsaType):
        return None
    dtype, _ = _pixel_arrays(isa, C, X, rows, C, B, out)
    copies = converts_pixels(isa, X)
    itemsize = dtype.bitwidth // 8
    lanes = isa.isa.lanes(itemsize)
    MR, NR = isa.isa.rank1_tile
    if B.layout != "C" or C.layout != "C" or out.layout != "C":
        raise TypeError("pixel_copy_tile: B, C and out must be C-contiguous")
    intp = types.intp
    sig = types.void(isa, C, intp, X, rows, intp, intp, dtype, B, intp, out, intp)

    def codegen(context, builder, sig, args):
        if not copies:
            return context.get_dummy_value()
        _, C_, ci_, X_, rows_, r0_, mr_, scale_, B_, K_, out_, oi_ = args
        c, c_rs, x, x_rs, idx, b, b_rs, VT = _pixel_operands(context, builder, sig, args, 1, 3, 8, dtype, lanes, itemsize)
        o = context.make_array(sig.args[10])(context, builder, out_)
        o_rs, _ = _element_strides(builder, o, itemsize)
        c0 = builder.gep(c.data, [builder.mul(ci_, c_rs)])
        o0 = builder.gep(o.data, [builder.mul(oi_, o_rs)])
        i64, ptr = c_rs.type, c0.type
        fn = _kernel(builder, f"netcore.pixels_copy.{dtype}.x{lanes}.{MR}x{NR}",
                     [ptr, i64, x.data.type, i64, idx.type, i64, VT.element, ptr, i64, i64, ptr, i64],
                     _pixel_rows_body(MR, NR, VT, itemsize, copy=True))
        builder.call(fn, [c0, c_rs, x.data, x_rs, idx, mr_, scale_, b.data, b_rs, K_, o0, o_rs])
        return context.get_dummy_value()

    return sig, codegen


def _pixel_gradient_body(MR, NR, VT, itemsize):
    """The weight-gradient pixel tile's function: ``C[m, :] (+)= scale * A[m, :K] @ X[idx[:K], :]``
    for ``m < mr``: each step reads one row of X through ``idx`` (any order: a shuffled batch
    needs no copy) as NR vectors of bytes widened to floats in the registers, and broadcasts a
    column of A into them; ``scale`` (1/255) multiplies the sums once at the end."""

    def build(builder, args):
        c0, c_rs, a0, a_rs, x0, x_rs, idx, K, mr, scale, assign = args
        lanes = VT.count
        i64 = c_rs.type
        BT = ir.VectorType(ir.IntType(8), lanes)
        acc = [[cgutils.alloca_once_value(builder, ir.Constant(VT, None)) for _ in range(NR)] for _ in range(MR)]
        # rows past mr repeat the last one (A has only mr more rows)
        a_rows = [_opaque(builder, builder.gep(a0, [builder.mul(_row_or_last(builder, m, mr), a_rs)])) for m in range(MR)]
        with cgutils.for_range(builder, K) as loop:
            k = loop.index
            x_row = builder.gep(x0, [builder.mul(builder.load(builder.gep(idx, [k])), x_rs)])
            bv = [builder.uitofp(_vector_at(builder, x_row, ir.Constant(i64, v * lanes), BT, 1)[1], VT) for v in range(NR)]
            for m in range(MR):
                x = _splat(builder, builder.load(builder.gep(a_rows[m], [k]), align=itemsize), VT)
                for v in range(NR):
                    builder.store(_fma(builder, x, bv[v], builder.load(acc[m][v])), acc[m][v])
        _store_rows(builder, c0, c_rs, acc, VT, itemsize, assign=assign, mr=mr, scale=scale)

    return build


@intrinsic
def pixel_gradient_tile(typingctx, isa, C, ci, cj, A, ai, X, rows, r0, K, mr, scale, assign, tile_rows, vectors):
    """``C[ci+m, cj:cj+NR*W] (+)= scale * A[ai+m, :K] @ X[rows[r0:r0+K], cj:cj+NR*W]`` for
    ``m < mr``: the first layer's weight gradient on uint8 rows of X read where they lie
    (:func:`_pixel_gradient_body`). ``A`` and ``C`` C-contiguous; shapes as :func:`rank1_tile`'s."""
    if not isinstance(isa, IsaType) or _literal(tile_rows) is None or _literal(vectors) is None:
        return None
    dtype, pixels, itemsize, lanes, MR, NR = _pixel_tile_types("pixel_gradient_tile", isa, C, X, rows, A, tile_rows, vectors)
    intp = types.intp
    sig = types.void(isa, C, intp, intp, A, intp, X, rows, intp, intp, intp, dtype, types.boolean, tile_rows, vectors)

    def codegen(context, builder, sig, args):
        if not pixels:
            return context.get_dummy_value()
        _, C_, ci_, cj_, A_, ai_, X_, rows_, r0_, K_, mr_, scale_, assign_ = args[:13]
        c = context.make_array(sig.args[1])(context, builder, C_)
        a = context.make_array(sig.args[4])(context, builder, A_)
        x = context.make_array(sig.args[6])(context, builder, X_)
        r = context.make_array(sig.args[7])(context, builder, rows_)
        VT = ir.VectorType(context.get_value_type(dtype), lanes)
        c_rs, _ = _element_strides(builder, c, itemsize)
        a_rs, _ = _element_strides(builder, a, itemsize)
        x_rs = cgutils.unpack_tuple(builder, x.strides)[0]
        c0 = builder.gep(c.data, [builder.add(builder.mul(ci_, c_rs), cj_)])
        a0 = builder.gep(a.data, [builder.mul(ai_, a_rs)])
        x0 = builder.gep(x.data, [cj_])
        idx = builder.gep(r.data, [r0_])
        i64, ptr = c_rs.type, c0.type
        fn = _kernel(builder, f"netcore.pixel_gradient.{dtype}.x{lanes}.{MR}x{NR}",
                     [ptr, i64, ptr, i64, x0.type, i64, idx.type, i64, i64, VT.element, ir.IntType(1)],
                     _pixel_gradient_body(MR, NR, VT, itemsize))
        builder.call(fn, [c0, c_rs, a0, a_rs, x0, x_rs, idx, K_, mr_, scale_, assign_])
        return context.get_dummy_value()

    return sig, codegen
