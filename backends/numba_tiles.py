"""Matrix products of the fused pass, walked in register tiles (:mod:`netcore.backends.numba_simd`).

Two drivers cover every product of a chunk, each tiling its output with the ISA's tile and the
edges with smaller ones, and doing what is left of a row narrower than a vector element by
element:

- :func:`rank1`, ``C (+)= A @ B`` with ``B`` and ``C`` contiguous along their rows: the first
  layer's forward (:func:`first_layer`: samples against the transposed weights, one vector of
  16 neurons wide on AVX-512) and weight gradient (``dZ¹ @ X``, along the inputs), and the small
  layers' forward and backward (feature-major, along the samples);
- :func:`dot`, ``C (+)= A @ B.T`` with both contiguous along the reduction: the small layers'
  weight gradients (along the samples);
- for uint8 inputs, :func:`pixel_product` and :func:`pixel_gradient`, the first layer's two
  products on the chunk's rows where they lie in X, the bytes widened inside the tiles: the
  separate conversion into a chunk buffer of floats (188 MB written a full-batch float32 step)
  is gone, 4-7% of the step on a Zen 5 (AVX-512 and first layers of up to 16 neurons only: on
  AVX2, and for 100 neurons, it was 5-7% slower). Elsewhere :func:`convert_product` converts
  them inside the forward's tiles into the chunk buffer, which the weight gradient then reads
  (transposed where the layer is whole tiles wide: :func:`weight_gradient_transposed`).

``isa`` is an :class:`~netcore.backends.numba_isa.Isa`; every function here compiles once per ISA.
:func:`first_layer` and :func:`weight_gradient` are inlined into the thread pass by Numba
(``inline="always"``): compiled as functions of their own, each was optimised and turned into
machine code once alone and again inside the pass (0.9 s of a 12 s cold compile, run time the
same). Whether a pass may take the pixel tiles is decided by its input type and ISA
(:func:`pixels_forward`, :func:`pixels_gradient`): other inputs never compile them.
"""

from __future__ import annotations

from numba import njit, types
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic, overload

from .numba_intrinsics import OPTS, prefetch_row
from .numba_kernels import like
from .numba_simd import (converts_pixels, dot_tile, pixel_copy_tile, pixel_gradient_tile, pixel_tile, rank1_tile, reads_pixels, runtime,
                         tile_shape)

#: The widest first layer whose uint8 rows the pixel tiles read (a multiple of 16, so that the
#: test on the padded width in :func:`first_layer` and on the width in :func:`weight_gradient`
#: agree): the weight-gradient tile widens each row's bytes once per 8 neurons, so 16 neurons do it
#: twice where the separate conversion did once and wrote floats, and won (full-batch step 16.2-16.5
#: ms on one thread against 17.3); 100 neurons do it 13 times, and the mini-batch epoch (784-100-10)
#: took 77 ms against 73.5 (Zen 5).
PIXEL_NEURONS = 16

# Rows of X prefetched ahead of the conversion: far enough to cover memory's latency, near
# enough not to evict what the conversion writes (on AMD cores the hint fills L1 too).
PREFETCH_ROWS = 4


@njit(inline="always", **OPTS)
def first_layer(isa, X, rows, scale, xc, WT, Z, nr, upcoming):
    """``Z[:nr] = scale * X[rows] @ WT`` (no bias; ``Z`` sample-major); returns the chunk's inputs
    as floats, for the weight gradient to read, and whether they are X's own rows.

    uint8 rows (pixels) are read where they lie in X by tiles that convert them on the way
    (:func:`pixel_product`, on AVX-512 for up to 16 neurons: :func:`pixels_forward`,
    :data:`PIXEL_NEURONS`): nothing is written to ``xc``, which is returned untouched, and the
    weight gradient reads the bytes as well. Where the chunk's rows are a run of X already in
    the compute dtype (a full batch, or a mini-batch of consecutive rows, of float inputs), the
    product reads them where they lie and the view of X is returned. Otherwise (a shuffled
    mini-batch of floats) they are copied into ``xc`` first, a few rows ahead prefetched, the
    last ones from ``upcoming`` (the thread's next chunk), and ``xc`` is returned: for float64,
    that copy wrote 376 MB a full-batch step and took as long as the product. The product is a
    rank-1 tile per input: a row of the transposed weights (``WT``, inputs x neurons padded to
    whole vectors) loaded as vectors, each sample's input broadcast into them.
    """
    if pixels_forward(isa, Z, X, rows, scale, WT, nr, upcoming):
        return xc[:nr], False
    if is_converted(isa, X):  # a constant: uint8 rows on AVX2 and plain; unscaled in xc
        convert_product(isa, Z, X, rows, scale, WT, xc, nr, upcoming)
        return xc[:nr], False
    src, in_place = chunk_inputs(X, rows, scale, xc, nr)
    if not in_place:
        d = X.shape[1]
        for r in range(nr):
            ahead = r + PREFETCH_ROWS
            if ahead < nr:
                prefetch_row(X[rows[ahead]])
            elif ahead - nr < upcoming.shape[0]:
                prefetch_row(X[upcoming[ahead - nr]])
            x, out = X[rows[r]], xc[r]
            for i in range(d):
                out[i] = x[i] * scale
    rank1(isa, Z, src, WT, nr, runtime(0), WT.shape[1], X.shape[1], runtime(True), runtime(in_place))
    return src, in_place


@intrinsic
def is_converted(typingctx, isa, X):
    """Whether the first layer's forward converts ``X``'s rows inside its tiles into the chunk
    buffer (uint8 rows where the pixel tiles do not read them:
    :func:`~netcore.backends.numba_simd.converts_pixels`): a constant, decided while typing."""
    value = converts_pixels(isa, X)

    def codegen(context, builder, sig, args):
        return context.get_constant(types.boolean, value)

    return types.boolean(isa, X), codegen


def pixels_forward(isa, Z, X, rows, scale, WT, nr, upcoming):
    """:func:`pixel_product` where the pixel tiles take this first layer (uint8 rows on AVX-512:
    :func:`~netcore.backends.numba_simd.reads_pixels`, and at most :data:`PIXEL_NEURONS`
    neurons); returns whether they did."""
    raise NotImplementedError("only callable from Numba-compiled code")


def pixels_gradient(isa, G, dZT, X, rows, scale, nr, assign, upcoming):
    """:func:`pixel_gradient` where the pixel tiles take this first layer (as
    :func:`pixels_forward`); returns whether they did."""
    raise NotImplementedError("only callable from Numba-compiled code")


OVERLOAD_OPTS = {k: v for k, v in OPTS.items() if k != "cache"}  # cached with their caller


# Decided by the argument types, so that other inputs never type the pixel drivers at all (an
# `if` on a constant still types both branches: 0.7 s of a float64 cold compile). Not inlined
# into the caller: Numba's inlining of an overload compiles it again at the call site.
@overload(pixels_forward, jit_options=OVERLOAD_OPTS)
def _pixels_forward(isa, Z, X, rows, scale, WT, nr, upcoming):
    if not reads_pixels(isa, X):
        return lambda isa, Z, X, rows, scale, WT, nr, upcoming: False

    def impl(isa, Z, X, rows, scale, WT, nr, upcoming):
        if WT.shape[1] > PIXEL_NEURONS:  # padded to whole vectors: the same test
            return False
        pixel_product(isa, Z, X, rows, scale, WT, nr, upcoming)
        return True

    return impl


@overload(pixels_gradient, jit_options=OVERLOAD_OPTS)
def _pixels_gradient(isa, G, dZT, X, rows, scale, nr, assign, upcoming):
    if not reads_pixels(isa, X):
        return lambda isa, G, dZT, X, rows, scale, nr, assign, upcoming: False

    def impl(isa, G, dZT, X, rows, scale, nr, assign, upcoming):
        if G.shape[0] > PIXEL_NEURONS:
            return False
        pixel_gradient(isa, G, dZT, X, rows, scale, nr, assign, upcoming)
        return True

    return impl


def chunk_inputs(X, rows, scale, xc, nr):
    """``(X[rows[0]:rows[0] + nr], True)`` if the chunk's ``nr`` rows ``rows`` are that run of X,
    unscaled and in ``xc``'s dtype, else ``(xc[:nr], False)``: ``xc``, for the caller to fill.
    Either array has ``xc``'s type, so the products that read it compile once."""
    raise NotImplementedError("only callable from Numba-compiled code")


@overload(chunk_inputs, inline="always")
def _chunk_inputs(X, rows, scale, xc, nr):
    if X.dtype != xc.dtype or X.layout != "C" or X.ndim != 2:
        return lambda X, rows, scale, xc, nr: (xc[:nr], False)  # uint8 (decided while typing)

    def impl(X, rows, scale, xc, nr):
        first = run_start(rows, nr)
        if first >= 0 and scale == 1:
            return _as_writable(X[first:first + nr]), True
        return xc[:nr], False

    return impl


@njit(inline="always", **OPTS)
def run_start(rows, nr):
    """``rows[0]`` if ``rows[:nr]`` are consecutive rows, else -1. Every row is checked, not just
    the last against the first: a shuffled batch can hold a permutation of a run (64 compares
    against a chunk's 64 x 784 multiply-adds)."""
    first = rows[0]
    run = True
    for r in range(1, nr):
        run &= rows[r] == first + r
    return first if run else -1


@intrinsic
def _as_writable(typingctx, a):
    """``a`` typed as a writable array (the same value). The backend hands X over read-only (one
    compiled kernel for every kind of array); the products take it in the place of ``xc`` and
    only read it, and with ``xc``'s type they compile once, not once more for a read-only B."""
    if not isinstance(a, types.Array):
        return None
    sig = a.copy(readonly=False)(a)

    def codegen(context, builder, sig, args):
        return impl_ret_borrowed(context, builder, sig.return_type, args[0])

    return sig, codegen


@njit(inline="always", **OPTS)
def weight_gradient(isa, G, dZT, xc, nr, assign, X, rows, scale, upcoming):
    """``G (+)= dZT[:, :nr] @ (scale * X[rows])``: the first layer's weight gradient, a block of
    columns (inputs) at a time, prefetching the rows of X listed in ``upcoming`` (the thread's
    next chunk) a few between blocks. ``xc`` is what :func:`first_layer` returned: the chunk's
    rows of X, or their float copy, read instead of X for float inputs; uint8 rows are read
    where they lie in X, as bytes (:func:`pixel_gradient`). This product computes from L2 for as
    long as memory takes to deliver them, so the next chunk finds its rows in cache: 3-5 ms an
    epoch a core of waiting for memory otherwise."""
    if pixels_gradient(isa, G, dZT, X, rows, scale, nr, assign, upcoming):
        return
    h, d = G.shape
    NR, W = tile_shape(isa, G)[1], tile_shape(isa, G)[5]
    step = NR * W
    parts = -(-d // step)
    per_part = -(-upcoming.shape[0] // parts)
    j, p = runtime(0), 0
    while j < d:
        rank1(isa, G, dZT, xc, h, j, min(d, j + step), nr, assign, runtime(False))
        for r in range(p * per_part, min(upcoming.shape[0], (p + 1) * per_part)):
            prefetch_row(X[upcoming[r]])
        j += step
        p += 1


def gradient_transposed(isa, X, g, h, chunk):
    """Whether the first layer's weight gradient is taken transposed
    (:func:`weight_gradient_transposed`): where the forward converts uint8 rows into the chunk
    buffer (:func:`is_converted`: AVX2, plain), for a layer of whole tiles of neurons (16 float32
    on AVX2; other widths would leave columns short of a vector), and chunks of at least ``h``
    rows (their buffer holds the gradient while :func:`untranspose` turns it back)."""
    raise NotImplementedError("only callable from Numba-compiled code")


# The three steps the thread pass takes for converted rows are overloads chosen by X's type, so
# that a pass that does not convert (AVX-512, float inputs) compiles none of them: written as
# branches on a constant, Numba typed and lowered them anyway (2 s more of a cold compile).
@overload(gradient_transposed, inline="always")
def _gradient_transposed(isa, X, g, h, chunk):
    if not converts_pixels(isa, X):
        return lambda isa, X, g, h, chunk: False

    def impl(isa, X, g, h, chunk):
        _, NR, _, _, _, W = tile_shape(isa, g)
        return h % (NR * W) == 0 and chunk >= h

    return impl


def converted_gradient(isa, X, g, dZT, dZ, xc, d, h, nr, assign, scale, transposed):
    """For uint8 rows the forward converted (unscaled, :func:`convert_product`): the first layer's
    weight gradient into ``g`` (its first ``d * h`` elements) where it is taken ``transposed``,
    returning True; otherwise ``dZT`` scaled for :func:`weight_gradient`, returning False. For other
    inputs nothing, False."""
    raise NotImplementedError("only callable from Numba-compiled code")


@overload(converted_gradient, inline="always")
def _converted_gradient(isa, X, g, dZT, dZ, xc, d, h, nr, assign, scale, transposed):
    if not converts_pixels(isa, X):
        return lambda isa, X, g, dZT, dZ, xc, d, h, nr, assign, scale, transposed: False

    def impl(isa, X, g, dZT, dZ, xc, d, h, nr, assign, scale, transposed):
        if transposed:
            weight_gradient_transposed(isa, g[:d * h].reshape(d, h), dZT, dZ, xc, nr, assign, scale)
            return True
        for o in range(h):
            row = dZT[o]
            for s in range(nr):
                row[s] *= scale
        return False

    return impl


def finish_gradient(isa, X, g, d, h, xc, transposed):
    """After a thread's last chunk: its first layer's weight gradient turned back to neurons x
    inputs where it was taken ``transposed`` (through ``xc``, a chunk buffer of at least ``h`` rows)."""
    raise NotImplementedError("only callable from Numba-compiled code")


@overload(finish_gradient, inline="always")
def _finish_gradient(isa, X, g, d, h, xc, transposed):
    if not converts_pixels(isa, X):
        return lambda isa, X, g, d, h, xc, transposed: None

    def impl(isa, X, g, d, h, xc, transposed):
        if transposed:
            untranspose(g, d, h, xc.reshape(-1))

    return impl


@njit(inline="always", **OPTS)
def weight_gradient_transposed(isa, GT, dZT, dZ, xc, nr, assign, scale):
    """``GT (+)= (scale * dZT[:, :nr] @ xc[:nr]).T``: the first layer's weight gradient, inputs x
    neurons, in the layout of BLIS's and OpenBLAS's micro-kernels: the neurons along the vectors
    (a whole tile's width: :func:`gradient_transposed`), each sample's inputs broadcast, so every
    tile is the ISA's full rank-1 shape. Row-major, 16 neurons are 6 + 6 + 4 rows of that tile,
    and the 4-row one keeps only 8 accumulators: the product ran at 123 GFLOP/s, transposed at
    132 (one thread, AVX2, Zen 5). ``dZ`` (samples x neurons, at least ``nr`` rows) receives
    ``scale * dZT[:, :nr].T`` first."""
    h = GT.shape[1]
    for s in range(nr):
        row = dZ[s]
        for o in range(h):
            row[o] = dZT[o, s] * scale
    rank1(isa, GT, xc[:nr].T, dZ, GT.shape[0], runtime(0), h, nr, assign, runtime(False))


@njit(inline="always", **OPTS)
def untranspose(G, d, h, scratch):
    """``G[:d*h]``, a ``(d, h)`` matrix, rewritten in place as its ``(h, d)`` transpose (through
    ``scratch``, a flat buffer of at least ``d * h`` elements)."""
    for i in range(d * h):  # a loop: a slice assignment compiles Numba's shape-mismatch message (1.2 s)
        scratch[i] = G[i]
    for o in range(h):
        out = G[o * d:(o + 1) * d]
        for i in range(d):
            out[i] = scratch[i * h + o]


@njit(inline="always", **OPTS)
def pixel_product(isa, Z, X, rows, scale, WT, nr, upcoming):
    """``Z[:nr] = (scale * X[rows[:nr]]) @ WT`` on uint8 rows read where they lie
    (:func:`~netcore.backends.numba_simd.pixel_tile`: converted inside the tile, a block of
    columns ahead of the multiply-adds). One vector of neurons at a time (at most
    :data:`PIXEL_NEURONS`: one or two vectors, short of the ISA's 3-vector tile), in tall tiles,
    the rows short of one in a tile of the ISA's rows, those short of that in one with fewer rows
    written (its others repeat the last row). The first pass prefetches the next tile's rows (the
    thread's next chunk after the last)."""
    MR, _, TALL, _, _, W = tile_shape(isa, Z)
    n_cols, K = WT.shape[1], X.shape[1]
    j = runtime(0)
    while j < n_cols:
        o = 0
        while o < nr:
            rows_left = nr - o
            if j == 0:
                _prefetch_rows(X, rows, o + TALL, o + 2 * TALL, nr, upcoming)
            if rows_left > MR:
                pixel_tile(isa, Z, o, j, X, rows, o, min(TALL, rows_left), scale, WT, j, K, -1, 1)
                o += TALL
            else:
                pixel_tile(isa, Z, o, j, X, rows, o, rows_left, scale, WT, j, K, 0, 1)
                o += MR
        j += W


#: Tiles of rows ahead of the one being computed whose rows :func:`convert_product` prefetches.
CONVERT_AHEAD = 2


def convert_product(isa, Z, X, rows, scale, WT, xc, nr, upcoming):
    """``Z[:nr] = scale * xc[:nr] @ WT`` with ``xc[:nr] = X[rows[:nr]]`` (floats, unscaled: the
    weight gradient scales dZ instead, 784 / 16 times fewer multiplies) written on the way: uint8
    rows converted inside the forward's tiles (:func:`~netcore.backends.numba_simd.pixel_copy_tile`,
    the ISA's rank-1 shape, a short last tile repeating its last row), so the floats are written
    once, read by the weight gradient, and the products no longer wait for a conversion pass
    (AVX2, one thread, 60,000 rows, Zen 5 under ``NUMBA_CPU_NAME=haswell``: conversion pass 2.7 ms
    + forward 11.5, here 12.9 in all). Each tile prefetches the rows :data:`CONVERT_AHEAD` tiles on
    (past the chunk's end, the thread's next chunk from ``upcoming``). Neurons past the tile's
    width (layers wider than 16 float32 neurons on AVX2) come from ``xc`` by :func:`rank1`."""
    raise NotImplementedError("only callable from Numba-compiled code")


@overload(convert_product, inline="always")
def _convert_product(isa, Z, X, rows, scale, WT, xc, nr, upcoming):
    if not converts_pixels(isa, X):  # nothing compiled where the forward does not convert
        return lambda isa, Z, X, rows, scale, WT, xc, nr, upcoming: None

    def impl(isa, Z, X, rows, scale, WT, xc, nr, upcoming):
        MR, NR, _, _, _, W = tile_shape(isa, Z)
        K = X.shape[1]
        o = 0
        while o < nr:
            _prefetch_rows(X, rows, o + CONVERT_AHEAD * MR, o + (CONVERT_AHEAD + 1) * MR, nr, upcoming)
            pixel_copy_tile(isa, Z, o, X, rows, o, min(MR, nr - o), scale, WT, K, xc, o)
            o += MR
        if WT.shape[1] > NR * W:
            rank1(isa, Z, xc, WT, nr, runtime(NR * W), WT.shape[1], K, runtime(True), runtime(False))
            for r in range(nr):
                z = Z[r]
                for j in range(NR * W, WT.shape[1]):
                    z[j] *= scale

    return impl


@njit(inline="always", **OPTS)
def _prefetch_rows(X, rows, lo, hi, nr, upcoming):
    """Prefetch rows ``lo..hi`` of the chunk, those past its ``nr`` from ``upcoming``."""
    for r in range(lo, hi):
        if r < nr:
            prefetch_row(X[rows[r]])
        elif r - nr < upcoming.shape[0]:
            prefetch_row(X[upcoming[r - nr]])


@njit(inline="always", **OPTS)
def pixel_gradient(isa, G, dZT, X, rows, scale, nr, assign, upcoming):
    """``G (+)= scale * dZT[:, :nr] @ X[rows[:nr]]`` on uint8 rows read where they lie, as bytes
    widened in the registers (:func:`~netcore.backends.numba_simd.pixel_gradient_tile`), a block
    of columns at a time, the thread's next rows prefetched between blocks as in
    :func:`weight_gradient`."""
    h, d = G.shape
    MR, NR, _, _, _, W = tile_shape(isa, G)
    step = NR * W
    parts = -(-d // step)
    per_part = -(-upcoming.shape[0] // parts)
    j, p = runtime(0), 0
    while j < d:
        if j + step <= d:
            for o in range(0, h, MR):
                pixel_gradient_tile(isa, G, o, j, dZT, o, X, rows, 0, nr, min(MR, h - o), scale, assign, 0, 0)
            j += step
        elif j + W <= d:  # a vector at a time
            for o in range(0, h, MR):
                pixel_gradient_tile(isa, G, o, j, dZT, o, X, rows, 0, nr, min(MR, h - o), scale, assign, 0, 1)
            j += W
        else:  # columns short of a vector
            zero = like(0, G[0, 0])
            for o in range(h):
                for jj in range(j, d):
                    acc = zero
                    for k in range(nr):
                        acc += dZT[o, k] * like(X[rows[k], jj], zero)
                    G[o, jj] = acc * scale if assign else G[o, jj] + acc * scale
            j = d
        for r in range(p * per_part, min(upcoming.shape[0], (p + 1) * per_part)):
            prefetch_row(X[upcoming[r]])
        p += 1
    for r in range(p * per_part, upcoming.shape[0]):
        prefetch_row(X[upcoming[r]])


@njit(**OPTS)
def rank1(isa, C, A, B, n_rows, j0, n_cols, K, assign, ahead):
    """``C[:n_rows, j0:n_cols] (+)= A[:n_rows, :K] @ B[:K, j0:n_cols]``.

    Whole tiles of the ISA's shape first, then the columns left one vector at a time in tall
    tiles, and the columns short of a vector element by element. With ``ahead`` (``A``'s rows
    contiguous and just arrived from memory: the first layer's inputs read in place), each tile
    of the first block of columns prefetches the rows of the next tile.
    """
    MR, NR, TALL, _, _, W = tile_shape(isa, C)
    j = j0
    ahead_bytes = A.strides[0] if ahead else 0  # a row's bytes, times the rows a tile prefetches
    while j + NR * W <= n_cols:
        o = 0
        while o + MR <= n_rows:
            rank1_tile(isa, C, o, j, A, o, 0, B, 0, j, K, assign, min(MR, n_rows - o - MR) * ahead_bytes, 0, 0)
            o += MR
        if n_rows - o >= 4:
            rank1_tile(isa, C, o, j, A, o, 0, B, 0, j, K, assign, min(4, n_rows - o - 4) * ahead_bytes, 4, 0)
            o += 4
        if n_rows - o >= 2:
            rank1_tile(isa, C, o, j, A, o, 0, B, 0, j, K, assign, min(2, n_rows - o - 2) * ahead_bytes, 2, 0)
            o += 2
        if n_rows - o >= 1:
            rank1_tile(isa, C, o, j, A, o, 0, B, 0, j, K, assign, min(1, n_rows - o - 1) * ahead_bytes, 1, 0)
        j += NR * W
        ahead_bytes = 0
    if NR > 2 and j + 2 * W <= n_cols:
        # two vectors left (the first layer's 16 float64 neurons on AVX-512): MR x 2 tiles, steadier
        # than two passes of the tall tile (11 ms for 60,000 samples, where the tall one took 12-21).
        # The same walk as above, written out: shared through an inlined helper, the float64 step
        # took 23.5 ms instead of 20 in 2 of 3 processes
        o = 0
        while o + MR <= n_rows:
            rank1_tile(isa, C, o, j, A, o, 0, B, 0, j, K, assign, min(MR, n_rows - o - MR) * ahead_bytes, 0, 2)
            o += MR
        if n_rows - o >= 4:
            rank1_tile(isa, C, o, j, A, o, 0, B, 0, j, K, assign, min(4, n_rows - o - 4) * ahead_bytes, 4, 2)
            o += 4
        if n_rows - o >= 2:
            rank1_tile(isa, C, o, j, A, o, 0, B, 0, j, K, assign, min(2, n_rows - o - 2) * ahead_bytes, 2, 2)
            o += 2
        if n_rows - o >= 1:
            rank1_tile(isa, C, o, j, A, o, 0, B, 0, j, K, assign, min(1, n_rows - o - 1) * ahead_bytes, 1, 2)
        j += 2 * W
        ahead_bytes = 0
    while j + W <= n_cols:  # one vector at a time
        o = 0
        while o + TALL <= n_rows:
            rank1_tile(isa, C, o, j, A, o, 0, B, 0, j, K, assign, min(TALL, n_rows - o - TALL) * ahead_bytes, -1, 1)
            o += TALL
        while o + 8 <= n_rows:
            rank1_tile(isa, C, o, j, A, o, 0, B, 0, j, K, assign, min(8, n_rows - o - 8) * ahead_bytes, 8, 1)
            o += 8
        if n_rows - o >= 4:
            rank1_tile(isa, C, o, j, A, o, 0, B, 0, j, K, assign, min(4, n_rows - o - 4) * ahead_bytes, 4, 1)
            o += 4
        if n_rows - o >= 2:
            rank1_tile(isa, C, o, j, A, o, 0, B, 0, j, K, assign, min(2, n_rows - o - 2) * ahead_bytes, 2, 1)
            o += 2
        if n_rows - o >= 1:
            rank1_tile(isa, C, o, j, A, o, 0, B, 0, j, K, assign, min(1, n_rows - o - 1) * ahead_bytes, 1, 1)
        j += W
        ahead_bytes = 0
    if j < n_cols:  # columns short of a vector
        zero = like(0, C[0, 0])
        for o in range(n_rows):
            for jj in range(j, n_cols):
                acc = zero
                for k in range(K):
                    acc += A[o, k] * B[k, jj]
                C[o, jj] = acc if assign else C[o, jj] + acc


@njit(**OPTS)
def dot(isa, C, A, B, n_a, n_b, K, assign):
    """``C[i, j] (+)= A[i, :K] . B[j, :K]`` for ``i < n_a, j < n_b``."""
    _, _, _, MR, NR, W = tile_shape(isa, A)
    nv = K // W
    i = 0
    while i < n_a:
        j = 0
        if n_a - i >= MR:
            while j + NR <= n_b:
                dot_tile(isa, C, i, j, A, i, B, j, nv, assign, 0, 0)
                j += NR
            if n_b - j >= 2:
                dot_tile(isa, C, i, j, A, i, B, j, nv, assign, 0, 2)
                j += 2
            if n_b - j >= 1:
                dot_tile(isa, C, i, j, A, i, B, j, nv, assign, 0, 1)
            i += MR
        else:  # the last rows, one at a time
            while j + NR <= n_b:
                dot_tile(isa, C, i, j, A, i, B, j, nv, assign, 1, 0)
                j += NR
            if n_b - j >= 2:
                dot_tile(isa, C, i, j, A, i, B, j, nv, assign, 1, 2)
                j += 2
            if n_b - j >= 1:
                dot_tile(isa, C, i, j, A, i, B, j, nv, assign, 1, 1)
            i += 1
    for k in range(nv * W, K):  # the reduction's last elements, short of a vector
        for i in range(n_a):
            a = A[i, k]
            for j in range(n_b):
                C[i, j] += a * B[j, k]
