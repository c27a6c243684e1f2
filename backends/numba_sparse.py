"""The sparse first layer of the ``numba`` backend: the fused batch gradient over compressed rows.

The same pass as :mod:`netcore.backends.numba_fused` (chunks of samples, forward and backward while the
chunk is in cache, every thread taking every T-th chunk), with the first layer's two products
over each sample's nonzero inputs only (:class:`~netcore.backends.numba_sparse_rows.SparseRows`):

- forward: a sample's pre-activations are the sum, over its nonzero inputs, of value times
  that input's weight row. The weights are read transposed, ``W1T (d + 1, hp)``: row i holds
  input i's weights to the ``h1`` neurons (the last row zeros, where the sums start; the bias is
  added with the activation, as the dense pass does), so each nonzero adds one
  16-lane vector per 16 neurons (:mod:`netcore.backends.numba_sparse_lanes`).
- weight gradient: each nonzero adds value times the sample's dZ vector into its input's row of
  a per-thread ``G1T (d, hp)``; the rows of inputs that are zero are never touched. The threads'
  G1T are summed and transposed into the flat gradient's ``W1 (h1, d)`` at the end.

Both go 16 neurons at a time over all the chunk's samples, so that those neurons' column of W1T
or G1T stays in L1; rows are ``hp`` apart, an odd number of cache lines
(``numba_sparse_path.row_width``). Everything above the first layer's product is the dense
pass's own code (``_above_first``), so the two paths differ only where the products do; the
chunk's sums and dZ cross between the sample-major vectors and that code's feature-major rows
in 16 x 16 register transposes. uint8 values are converted as they are read, their 1/255 folded
into W1T (and applied to the weight gradient once, at the end): a table of the 256 floats
measured 13% slower in the forward product (one more load per nonzero, and loads are what this
loop runs out of).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, typeof
from numba.core import types

from . import numba_sparse_lanes as V
from .numba_fused import _above_first, _add_row_sums, _bias_activation, _rows, compiled_pass, transposed_above
from .numba_intrinsics import OPTS
from .numba_kernels import like
from .numba_layout import CACHE_LINE

LANES = V.LANES
#: Samples ahead whose compressed rows the forward product asks the CPU to fetch.
AHEAD = 8


def loss_and_gradients(isa, values, indices, indptr, scale, rows, Y, W1, W1T, params, sizes, w_off, b_off, kind, chunk, stride,
                       ZC, G1T, G, ACT, DZ, SM, grad, logitsT):
    """Mean cross-entropy, its gradient (flat, layer by layer ``W¹ b¹ W² b² ...``) and the
    logits of the batch ``rows`` of the compressed inputs ``values, indices, indptr``.

    As :func:`netcore.backends.numba_fused.loss_and_gradients`, with: ``scale`` what the values are
    multiplied by (1/255 for uint8 intensities, else 1); ``W1`` the first layer's weights
    ``(h1, d)``, copied into ``W1T`` (``(d + 1, hp)``, times ``scale``; its last row and
    padding columns stay zero) on entry; per-thread scratch ``ZC`` (``(threads, chunk * hp)``: a
    chunk's sums, then its dZ, sample-major) and ``G1T`` (``(threads, d * hp)``);
    ``G, ACT, DZ, SM`` as the dense pass's workspace (rows ``stride`` long); ``chunk`` a multiple
    of 16; ``isa`` the dense pass's, for the layers above the first.
    """
    args = (isa, values, indices, indptr, scale, rows, Y, W1, W1T, params, sizes, w_off, b_off, kind, chunk, stride, ZC, G1T, G,
            ACT, DZ, SM, grad, logitsT)
    # What decides the compiled types, cheaply (the caller passes rows and Y read-only, W1
    # contiguous, the other arrays with fixed layouts and dtypes)
    key = (isa, values.dtype, indices.dtype, Y.dtype, W1.dtype, W1.flags.writeable, kind)
    found = _BY_KEY.get(key)
    if found is None:  # the activation a constant, as in the dense pass
        found = _BY_KEY[key] = compiled_pass(_parallel_pass, _thread_pass,
                                             tuple(types.literal(a) if i == 13 else typeof(a) for i, a in enumerate(args)))
    entry, thread_pass = found
    return entry(thread_pass, *args)


_BY_KEY: dict = {}


@njit(parallel=True, **OPTS)
def _parallel_pass(thread_pass, isa, values, indices, indptr, scale, rows, Y, W1, W1T, params, sizes, w_off, b_off, kind, chunk,
                   stride, ZC, G1T, G, ACT, DZ, SM, grad, logitsT):
    """W¹ into W1T, ``thread_pass`` (:func:`_thread_pass`, compiled apart: see
    :class:`~netcore.backends.numba_fused._CompiledPass`) on every thread, then the threads'
    gradients summed."""
    n = rows.shape[0]
    L = len(sizes) - 1
    d, h1 = sizes[0], sizes[1]
    hp = W1T.shape[1]
    n_params = b_off[L - 1] + sizes[L]
    skip = d * h1  # params starts after W¹
    n_chunks = (n + chunk - 1) // chunk
    threads = min(G1T.shape[0], n_chunks)
    losses = np.zeros(threads)
    _transpose_blocks(W1.reshape(-1), d, W1T.reshape(-1), hp, 0, h1, d, scale)  # a row per input, times the values' scale
    for t in prange(threads):
        losses[t] = thread_pass(isa, np.int64(t), np.int64(threads), values, indices, indptr, scale, rows, Y, W1, W1T, params, sizes,
                                w_off, b_off, kind, chunk, stride, ZC, G1T, G, ACT, DZ, SM, grad, logitsT)
    # Sum the threads' gradients: the parameters above W¹ as the dense pass does, each thread a
    # slice; W¹'s in thread 0's G1T, then transposed into place (times the values' scale), each
    # thread a slice of the inputs.
    per_line = CACHE_LINE // grad.itemsize
    part = -(-(n_params - skip) // (per_line * threads)) * per_line
    inputs = -(-d // (LANES * threads)) * LANES
    for p in prange(threads):
        lo, hi = skip + p * part, min(n_params, skip + (p + 1) * part)
        out = grad[lo:hi]
        for t in range(1, threads):
            src = G[t - 1, lo:hi]
            for i in range(hi - lo):
                out[i] += src[i]
        first, last = min(d, p * inputs), min(d, (p + 1) * inputs)
        mine = G1T[0, first * hp:last * hp]
        for t in range(1, threads):
            src = G1T[t, first * hp:last * hp]
            for k in range(mine.shape[0]):
                mine[k] += src[k]
        _transpose_blocks(G1T[0], hp, grad, d, first, last, h1, scale)
    return losses.sum() / n


@njit(**OPTS)
def _thread_pass(isa, t, threads, values, indices, indptr, scale, rows, Y, W1, W1T, params, sizes, w_off, b_off, kind, chunk, stride,
                 ZC, G1T, G, ACT, DZ, SM, grad, logitsT):
    """Thread ``t``'s share: chunks ``t, t + threads, ...``; returns their loss and adds their
    gradients to ``grad`` (thread 0) or ``G[t - 1]``, W¹'s to ``G1T[t]``."""
    n = rows.shape[0]
    L = len(sizes) - 1
    d, h1 = sizes[0], sizes[1]
    hp = W1T.shape[1]
    n_params = b_off[L - 1] + sizes[L]
    a_off = np.zeros(L + 1, np.int64)
    for l in range(L):
        a_off[l + 1] = a_off[l] + stride * sizes[l + 1]
    skip = d * h1  # params starts after W¹
    b1 = params[b_off[0] - skip:b_off[0] - skip + h1]
    n_chunks = (n + chunk - 1) // chunk
    inv_n = like(1 / n, grad[0])
    paramsT = transposed_above(params, sizes, w_off)
    W1Tf = W1T.reshape(-1)
    zc, g1t, act, dz = ZC[t], G1T[t], ACT[t], DZ[t]
    g = grad if t == 0 else G[t - 1]
    g[skip:n_params] = 0
    g1t[:] = 0
    loss = 0.0
    for c in range(t, n_chunks, threads):
        r0 = c * chunk
        nr = min(chunk, n - r0)
        batch = rows[r0:r0 + nr]
        _forward(values, indices, indptr, batch, W1Tf, hp, h1, zc)
        _transpose(zc, hp, act, stride, nr, h1, True)  # sums -> feature-major, as the layers above read them
        HT = _rows(act, 0, h1, stride)
        _bias_activation(HT, b1, nr, kind, L > 1)  # as the dense pass does
        loss += _above_first(isa, rows, r0, nr, Y, params, paramsT, sizes, w_off, b_off, a_off, kind, stride, act, dz, SM[t], g, logitsT, inv_n)
        dZT = _rows(dz[(L - 1) % 2], 0, h1, stride)
        _transpose(zc, hp, dz[(L - 1) % 2], stride, nr, h1, False)  # dZ -> sample-major (padding lanes stay 0)
        _weight_gradient(values, indices, indptr, batch, zc, hp, h1, g1t)
        _add_row_sums(dZT, nr, g[b_off[0]:b_off[0] + h1])
    return loss


@njit(parallel=True, **OPTS)
def products_nt(values, indices, indptr, rows, W1T, h, out):
    """``out[s, :h] = x[rows[s]] @ W1T[:d, :h]`` for every row: the first layer's product without
    the rest (the op-by-op path: prediction, evaluation). ``out`` is ``(len(rows), hp)``, ``hp``
    W1T's width; W1T's last row (where the sums start) is zero here."""
    hp = W1T.shape[1]
    n = rows.shape[0]
    per = 256
    flat, W1Tf = out.reshape(-1), W1T.reshape(-1)
    for c in prange((n + per - 1) // per):
        lo, hi = c * per, min(n, (c + 1) * per)
        _forward(values, indices, indptr, rows[lo:hi], W1Tf, hp, h, flat[lo * hp:hi * hp])


@njit(**OPTS)
def products_tn(values, indices, indptr, rows, dZ, h, G1T):
    """``G1T[:, :h] += x[rows].T @ dZ[:, :h]`` (``dZ (len(rows), hp)``, ``G1T (d, hp)``): the
    first layer's weight gradient without the rest (the op-by-op path)."""
    _weight_gradient(values, indices, indptr, rows, dZ.reshape(-1), G1T.shape[1], h, G1T.reshape(-1))


@njit(**OPTS)
def _forward(values, indices, indptr, rows, W1T, hp, h, zc):
    """``zc[s * hp:(s + 1) * hp] = x[rows[s]] @ W1T[:d] + W1T[d]`` for each sample s (``W1T``
    flat, ``(d + 1, hp)``, its last row zero): each nonzero input adds its value times its
    row of W1T into the sample's sums.

    One block of 16 neurons at a time for all the samples: the block's column of W1T (784 cache
    lines, 50 KB) then stays in L1 while the samples go by. A sample at a time through all the
    blocks read a wide layer's W1T from L2 (100 neurons: 350 KB), and took twice as long."""
    zero = W1T[0] - W1T[0]
    bias = W1T.shape[0] - hp
    n = rows.shape[0]
    for off in range(0, h, LANES):
        for s in range(n):
            # a mini-batch's rows lie anywhere: fetch ahead (consecutive rows, a whole batch's, the CPU streams itself)
            if off == 0 and s + AHEAD < n and rows[s + AHEAD] != rows[s] + AHEAD:
                _prefetch_rows(values, indices, indptr[rows[s + AHEAD]], indptr[rows[s + AHEAD] + 1])
            lo, hi = indptr[rows[s]], indptr[rows[s] + 1]
            # four running sums, a nonzero each in turn (one sum would wait on the previous
            # multiply-add every step); four values and four columns read at once, the last
            # 0-3 nonzeros one by one into the sums in turn (a loop there, with Numba's
            # wraparound on every read, cost 7% of the product)
            a0 = V.load(W1T, bias + off)
            a1 = a2 = a3 = V.splat(zero)
            q = lo
            while q + 4 <= hi:
                v0, v1, v2, v3 = V.splat4(values, q, zero)
                i0, i1, i2, i3 = V.load4(indices, q)
                a0 = V.fma(a0, v0, V.load(W1T, np.intp(i0) * hp + off))
                a1 = V.fma(a1, v1, V.load(W1T, np.intp(i1) * hp + off))
                a2 = V.fma(a2, v2, V.load(W1T, np.intp(i2) * hp + off))
                a3 = V.fma(a3, v3, V.load(W1T, np.intp(i3) * hp + off))
                q += 4
            if q < hi:
                a0 = V.fma(a0, V.splat_at(values, q, zero), V.load(W1T, np.intp(V.item(indices, q)) * hp + off))
                if q + 1 < hi:
                    a1 = V.fma(a1, V.splat_at(values, q + 1, zero), V.load(W1T, np.intp(V.item(indices, q + 1)) * hp + off))
                    if q + 2 < hi:
                        a2 = V.fma(a2, V.splat_at(values, q + 2, zero), V.load(W1T, np.intp(V.item(indices, q + 2)) * hp + off))
            V.store(zc, s * hp + off, V.add(V.add(a0, a1), V.add(a2, a3)))


@njit(**OPTS)
def _weight_gradient(values, indices, indptr, rows, dz, hp, h, G1T):
    """``G1T[i] += x[rows[s], i] * dz[s]`` over every sample s and its nonzero inputs i
    (``dz`` flat, ``(len(rows), hp)``; ``G1T`` flat, ``(d, hp)``): a block of 16 neurons at a
    time for all the samples, as :func:`_forward` does, so the block's column of G1T stays in L1.
    Eight values and columns are read at a time, four at once (9% faster than four at a time,
    which was 5% faster than one by one), the last 0-7 one by one without wraparound."""
    zero = G1T[0] - G1T[0]
    for off in range(0, h, LANES):
        for s in range(rows.shape[0]):
            lo, hi = indptr[rows[s]], indptr[rows[s] + 1]
            dzv = V.load(dz, s * hp + off)
            q = lo
            while q + 8 <= hi:
                v0, v1, v2, v3 = V.splat4(values, q, zero)
                i0, i1, i2, i3 = V.load4(indices, q)
                v4, v5, v6, v7 = V.splat4(values, q + 4, zero)
                i4, i5, i6, i7 = V.load4(indices, q + 4)
                _add_row(G1T, np.intp(i0) * hp + off, v0, dzv)
                _add_row(G1T, np.intp(i1) * hp + off, v1, dzv)
                _add_row(G1T, np.intp(i2) * hp + off, v2, dzv)
                _add_row(G1T, np.intp(i3) * hp + off, v3, dzv)
                _add_row(G1T, np.intp(i4) * hp + off, v4, dzv)
                _add_row(G1T, np.intp(i5) * hp + off, v5, dzv)
                _add_row(G1T, np.intp(i6) * hp + off, v6, dzv)
                _add_row(G1T, np.intp(i7) * hp + off, v7, dzv)
                q += 8
            for r in range(q, hi):
                _add_row(G1T, np.intp(V.item(indices, r)) * hp + off, V.splat_at(values, r, zero), dzv)


@njit(**OPTS)
def _transpose(sm, sm_width, fm, fm_width, nr, h, to_features):
    """Between a chunk's sample-major rows ``sm[s * sm_width + j]`` and its feature-major rows
    ``fm[j * fm_width + s]`` (``s < nr`` samples, ``j < h`` features): into ``fm`` if
    ``to_features``, else into ``sm``. 16 x 16 blocks go through registers (a loop of single
    numbers cost 5% of the step); the last block of samples may run past ``nr`` up to the next
    multiple of 16, which both buffers have room for and nothing reads."""
    full = h // LANES * LANES
    one = like(1, sm[0])
    for s0 in range(0, nr, LANES):
        for j0 in range(0, full, LANES):
            if to_features:
                V.transpose16(sm, s0 * sm_width + j0, sm_width, fm, j0 * fm_width + s0, fm_width, one)
            else:
                V.transpose16(fm, j0 * fm_width + s0, fm_width, sm, s0 * sm_width + j0, sm_width, one)
        for j in range(full, h):
            for s in range(s0, min(s0 + LANES, nr)):
                if to_features:
                    fm[j * fm_width + s] = sm[s * sm_width + j]
                else:
                    sm[s * sm_width + j] = fm[j * fm_width + s]


@njit(**OPTS)
def _transpose_blocks(src, src_width, dst, dst_width, first, last, cols, scale):
    """``dst[j * dst_width + i] = scale * src[i * src_width + j]`` for rows ``first <= i < last``
    and ``j < cols`` of src: 16 x 16 blocks in registers where whole, single numbers at the
    edges (a loop of single numbers wrote W1T and W¹'s gradient in 10-12 us each, a sixth of a
    200-sample step)."""
    whole_i = first + (last - first) // LANES * LANES
    whole_j = cols // LANES * LANES
    for i0 in range(first, whole_i, LANES):
        for j0 in range(0, whole_j, LANES):
            V.transpose16(src, i0 * src_width + j0, src_width, dst, j0 * dst_width + i0, dst_width, scale)
    for i in range(first, last):
        for j in range(whole_j if i < whole_i else 0, cols):
            dst[j * dst_width + i] = scale * src[i * src_width + j]


@njit(inline="always", **OPTS)
def _prefetch_rows(values, indices, lo, hi):
    """Start fetching ``values[lo:hi]`` and ``indices[lo:hi]`` (every cache line of both)."""
    for p in range(lo, hi, 64 // values.itemsize):
        V.prefetch(values, p)
    for p in range(lo, hi, 64 // indices.itemsize):
        V.prefetch(indices, p)


@njit(inline="always", **OPTS)
def _add_row(G, o, v, dzv):
    """``G[o:o + LANES] += v * dzv``."""
    V.store(G, o, V.fma(V.load(G, o), v, dzv))
