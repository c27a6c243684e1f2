"""The tiled products of the fused pass: the first layer's (784 inputs against a few neurons)
and the small layers' above it.

The first layer's products dominate. They use register tiles: 4 samples x 4 neurons of scalar
accumulators with the reduction over inputs innermost, which LLVM vectorises once ``fastmath``
allows it to reorder the sum. The weight-gradient update walks two gradient rows per pass over
four samples. Both run at about 100 GFLOP/s a core here, what OpenBLAS's sgemm reaches on
large matrices on the same core. The small layers are feature-major, ``(width, chunk)``, so
their loops run along the samples.
"""

from __future__ import annotations

from numba import njit

from .numba_intrinsics import OPTS, OPTS_UPDATE, prefetch_row
from .numba_kernels import _dg, like

# -- the first layer: forward (converting the inputs on the way) and weight gradient -----------


@njit(**OPTS)
def linear_rows(X, rows, scale, xc, W, b, outT):
    """``xc[:n] = scale * X[rows]`` and ``outT[:, :n] = (xc @ W.T + b).T``, n = ``len(rows)``.

    The first layer's forward. For each four samples, the first tile reads their rows where
    they lie in X and converts them into ``xc`` as it goes (kept for the weight gradient); the
    other neurons' tiles read ``xc`` back from L1; the next four rows are prefetched into L2
    meanwhile. 2-8% an epoch over converting the chunk in a pass of its own, and 1-5% over
    converting each four rows just before their tiles.
    """
    h, d = W.shape
    nr = rows.shape[0]
    zero = b[0] - b[0]
    s = 0
    while s < nr:
        for ahead in range(s + 4, min(s + 8, nr)):
            prefetch_row(X[rows[ahead]])
        if s + 4 > nr or h < 4:  # fewer than four samples, or neurons, for a tile
            for ss in range(s, min(s + 4, nr)):
                _convert(X[rows[ss]], scale, xc[ss])
                for o in range(h):
                    outT[o, ss] = _dot(xc[ss], W[o], zero) + b[o]
            s += 4
            continue
        x0, x1, x2, x3 = xc[s], xc[s + 1], xc[s + 2], xc[s + 3]
        for o in range(0, h - 3, 4):
            w0, w1, w2, w3 = W[o], W[o + 1], W[o + 2], W[o + 3]
            if o == 0:
                acc = _tile(X[rows[s]], X[rows[s + 1]], X[rows[s + 2]], X[rows[s + 3]], w0, w1, w2, w3, d, scale, x0, x1, x2, x3)
            else:
                acc = _tile(x0, x1, x2, x3, w0, w1, w2, w3, d, scale, None, None, None, None)
            a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, a30, a31, a32, a33 = acc  # a<sample><neuron>
            outT[o, s], outT[o + 1, s], outT[o + 2, s], outT[o + 3, s] = a00 + b[o], a01 + b[o + 1], a02 + b[o + 2], a03 + b[o + 3]
            outT[o, s + 1], outT[o + 1, s + 1], outT[o + 2, s + 1], outT[o + 3, s + 1] = a10 + b[o], a11 + b[o + 1], a12 + b[o + 2], a13 + b[o + 3]
            outT[o, s + 2], outT[o + 1, s + 2], outT[o + 2, s + 2], outT[o + 3, s + 2] = a20 + b[o], a21 + b[o + 1], a22 + b[o + 2], a23 + b[o + 3]
            outT[o, s + 3], outT[o + 1, s + 3], outT[o + 2, s + 3], outT[o + 3, s + 3] = a30 + b[o], a31 + b[o + 1], a32 + b[o + 2], a33 + b[o + 3]
        for o in range(h // 4 * 4, h):  # neurons left over when h is not a multiple of 4
            for ss in range(s, s + 4):
                outT[o, ss] = _dot(xc[ss], W[o], zero) + b[o]
        s += 4


@njit(inline="always", **OPTS)
def _tile(x0, x1, x2, x3, w0, w1, w2, w3, n, scale, y0, y1, y2, y3):
    """The 16 dot products ``a<k><l> = x<k>[:n] . w<l>[:n]``: a 4x4 register tile, scalar
    accumulators, the reduction innermost (LLVM vectorises it under fastmath). It serves the
    first layer (four samples' inputs against four neurons' weights) and the small layers'
    weight gradients (four rows of dZ against four of the layer's input, along the samples).

    Given rows ``y0..y3`` (not None), the ``x`` rows are also converted on the way (``scale * x``,
    uint8 or float) and stored there. Numba compiles the two cases apart and drops the unused
    branch, so the plain tile pays nothing for it.
    """
    zero = w0[0] - w0[0]  # a 0 of w's dtype: a literal 0 would make the accumulators float64
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = zero
    a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = zero
    for i in range(n):
        if y0 is None:
            v0, v1, v2, v3 = x0[i], x1[i], x2[i], x3[i]
        else:
            v0, v1, v2, v3 = like(x0[i], zero) * scale, like(x1[i], zero) * scale, like(x2[i], zero) * scale, like(x3[i], zero) * scale
            y0[i] = v0
            y1[i] = v1
            y2[i] = v2
            y3[i] = v3
        u0, u1, u2, u3 = w0[i], w1[i], w2[i], w3[i]
        a00 += v0 * u0
        a01 += v0 * u1
        a02 += v0 * u2
        a03 += v0 * u3
        a10 += v1 * u0
        a11 += v1 * u1
        a12 += v1 * u2
        a13 += v1 * u3
        a20 += v2 * u0
        a21 += v2 * u1
        a22 += v2 * u2
        a23 += v2 * u3
        a30 += v3 * u0
        a31 += v3 * u1
        a32 += v3 * u2
        a33 += v3 * u3
    return a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, a30, a31, a32, a33


@njit(inline="always", **OPTS)
def _dot(x, w, zero):
    acc = zero
    for i in range(w.shape[0]):
        acc += x[i] * w[i]
    return acc


@njit(inline="always", **OPTS)
def _convert(x, scale, out):
    """``out = scale * x``: one row of inputs as floats (uint8 scaled by 1/255 on the way)."""
    for i in range(x.shape[0]):
        out[i] = x[i] * scale


@njit(**OPTS_UPDATE)
def grad_rows(dZT, X, nr, G, assign):
    """``G += dZT[:, :nr] @ X[:nr]``, or ``G = ...`` if ``assign``: two gradient rows per sweep,
    four samples at a time.

    Two rows share each load of the four input rows; measured 30% faster than one row with
    eight samples, which rereads G (16 x 784 floats overflow L1) twice as often per FLOP. With
    ``assign`` the first sweep writes G instead of adding to it, which spares zeroing G first
    (a pass over as many bytes as W; 4% of a 200-sample step with 100 hidden units).
    """
    h, d = G.shape
    s = 0
    if assign:
        if nr < 4:  # no sweep to write G
            G[:] = 0
        else:
            _grad_sweep(dZT, X, 0, G, True)
            s = 4
    while s + 4 <= nr:
        _grad_sweep(dZT, X, s, G, None)
        s += 4
    for ss in range(s, nr):  # samples left over
        x = X[ss]
        for o in range(h):
            g = G[o]
            c = dZT[o, ss]
            for i in range(d):
                g[i] += c * x[i]


@njit(inline="always", **OPTS_UPDATE)
def _grad_sweep(dZT, X, s, G, assign):
    """``G += dZT[:, s:s+4] @ X[s:s+4]``, or ``G = ...`` when ``assign`` is not None (a branch on
    None that Numba settles at compile time: a runtime flag here cost 6-8% of the sweep)."""
    h, d = G.shape
    x0, x1, x2, x3 = X[s], X[s + 1], X[s + 2], X[s + 3]
    o = 0
    while o + 2 <= h:
        g0, g1 = G[o], G[o + 1]
        a0, a1, a2, a3 = dZT[o, s], dZT[o, s + 1], dZT[o, s + 2], dZT[o, s + 3]
        b0, b1, b2, b3 = dZT[o + 1, s], dZT[o + 1, s + 1], dZT[o + 1, s + 2], dZT[o + 1, s + 3]
        for i in range(d):
            v0, v1, v2, v3 = x0[i], x1[i], x2[i], x3[i]
            if assign is None:
                g0[i] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
                g1[i] += b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3
            else:
                g0[i] = a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
                g1[i] = b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3
        o += 2
    if o < h:  # odd number of rows
        g0 = G[o]
        a0, a1, a2, a3 = dZT[o, s], dZT[o, s + 1], dZT[o, s + 2], dZT[o, s + 3]
        if assign is not None:
            g0[:] = 0
        for i in range(d):
            g0[i] += a0 * x0[i] + a1 * x1[i] + a2 * x2[i] + a3 * x3[i]



# -- the small layers, feature-major --------------------------------------------------------


@njit(**OPTS_UPDATE)
def dense_T(W, b, HT, nr, outT):
    """``outT[:, :nr] = W @ HT[:, :nr] + b``: a small layer, feature-major, so every loop runs
    along the chunk's samples and vectorises (no per-sample horizontal sums)."""
    for o in range(W.shape[0]):
        row, bo = outT[o], b[o]
        for s in range(nr):
            row[s] = bo
        _add_weighted_rows(row, W[o], HT, nr)


@njit(**OPTS_UPDATE)
def backprop_T(W, dZT, AT, nr, kind, outT):
    """``outT[:, :nr] = (W.T @ dZT[:, :nr]) * g'(AT[:, :nr])``: the gradient one layer down."""
    for j in range(W.shape[1]):
        row = outT[j]
        for s in range(nr):
            row[s] = 0
        _add_weighted_rows(row, W[:, j], dZT, nr)
        a = AT[j]
        for s in range(nr):
            row[s] *= _dg(a[s], kind)


@njit(inline="always", **OPTS_UPDATE)
def _add_weighted_rows(row, c, R, nr):
    """``row[:nr] += c @ R[:, :nr]``: four rows of R per sweep, so ``row`` is loaded and stored
    once per four multiply-adds, not every one. The loops run along the samples and vectorise."""
    m = c.shape[0]
    k = 0
    while k + 4 <= m:
        c0, c1, c2, c3 = c[k], c[k + 1], c[k + 2], c[k + 3]
        r0, r1, r2, r3 = R[k], R[k + 1], R[k + 2], R[k + 3]
        for s in range(nr):
            row[s] += (c0 * r0[s] + c1 * r1[s]) + (c2 * r2[s] + c3 * r3[s])
        k += 4
    for kk in range(k, m):
        ck, rk = c[kk], R[kk]
        for s in range(nr):
            row[s] += ck * rk[s]


@njit(**OPTS)
def dots_T(A, B, nr, out):
    """``out += A[:, :nr] @ B[:, :nr].T``: a small layer's weight gradient, dot products along
    the samples, in 4x4 tiles (:func:`_tile`); the rest, where a side is not a multiple of 4, go
    one by one."""
    ha, hb = A.shape[0], B.shape[0]
    zero = A[0, 0] - A[0, 0]
    for o in range(0, ha - 3, 4):
        for j in range(0, hb - 3, 4):
            c = _tile(A[o], A[o + 1], A[o + 2], A[o + 3], B[j], B[j + 1], B[j + 2], B[j + 3], nr, zero, None, None, None, None)
            for k in range(4):
                for m in range(4):
                    out[o + k, j + m] += c[4 * k + m]
    tiled_a, tiled_b = ha // 4 * 4, hb // 4 * 4
    for o in range(ha):
        for j in range(tiled_b if o < tiled_a else 0, hb):
            out[o, j] += _dot(B[j], A[o][:nr], zero)


@njit(inline="always", **OPTS)
def add_row_sums(ZT, nr, out):
    """``out += ZT[:, :nr].sum(axis=1)``: a bias gradient."""
    for o in range(ZT.shape[0]):
        z = ZT[o]
        acc = z[0] - z[0]
        for s in range(nr):
            acc += z[s]
        out[o] += acc
