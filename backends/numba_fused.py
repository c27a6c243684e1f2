"""The fused batch gradient of the ``numba`` backend, and the tiled products it is built from.

One pass over the samples in chunks small enough to stay in L2 (128 images as float32 are
400 KB of a core's 1 MB): each chunk runs forward and backward while it is in cache, so X is
read from memory once per epoch instead of twice. Threads each take every T-th chunk and
accumulate their gradients privately (thread 0 straight into the caller's buffer); the others'
are added in at the end, in parallel.

Memory layout: X is ``(n, d)`` row-major (uint8, float32 or float64). The first layer's weights
are read where the network keeps them (on a cache line: ``NumbaBackend.asparameter``); the
other parameters travel as one flat vector and the gradient comes back as one, layer by layer
``W¹ (h1, d), b¹ (h1,), W² (h2, h1), ...``, so one compiled kernel serves every depth and width.
The first layer's forward reads each chunk's rows where they lie in X, prefetching a few ahead,
and converts them to floats once (uint8 scaled by 1/255 on the way) for the weight gradient to
reuse, so a shuffled mini-batch needs no copy of X. Every scratch buffer starts on a cache line
(NumPy only promises 16 bytes, and a 64-byte vector load across two lines costs two).

The first layer's products dominate (784 inputs against 16 outputs). They use register tiles:
4 samples x 4 neurons of scalar accumulators with the reduction over inputs innermost, which
LLVM vectorises once ``fastmath`` allows it to reorder the sum. The weight-gradient update walks
two gradient rows per pass over four samples. Both run at about 100 GFLOP/s a core here, what
OpenBLAS's sgemm reaches on large matrices on the same core. Everything after the first layer
(:func:`_above_first`) is feature-major, ``(width, chunk)``, so its loops run along the samples.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .numba_kernels import RELU, TANH, _dg, like

OPTS = dict(cache=True, error_model="numpy", nogil=True, fastmath={"reassoc", "contract", "nsz"})
# Without "contract": with it, LLVM fuses the update g[i] += c*x[i] into a scalar fma before the
# loop vectoriser runs, and the loop then stays scalar.
OPTS_UPDATE = dict(cache=True, error_model="numpy", nogil=True, fastmath={"reassoc", "nsz"})

# Rational minimax fit of tanh on [-7.905, 7.905] (odd polynomial of degree 13 over an even one
# of degree 6): divisions and multiplies only, so it vectorises where libm's tanhf does not.
# Max error 3.4e-7 (~3 float32 ulps); the float64 path keeps np.tanh.
_TANH_CLAMP = 7.90531110763549805
_P = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
      -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)
_Q = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)


@njit(inline="always", **OPTS)
def _tanh32(x):
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


@njit(inline="always", **OPTS)
def _g(v, kind, fast):
    if kind == TANH:
        return _tanh32(v) if fast else np.tanh(v)
    if kind == RELU:
        return v if v > 0 else v - v
    # sigmoid(v) = (1 + tanh(v / 2)) / 2, which reuses the vectorisable tanh
    half, one = like(0.5, v), like(1, v)
    return half + half * _tanh32(half * v) if fast else one / (one + np.exp(-v))


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


@njit(inline="always", **OPTS)
def _convert(x, scale, out):
    """``out = scale * x``: one row of inputs as floats (uint8 scaled by 1/255 on the way)."""
    for i in range(x.shape[0]):
        out[i] = x[i] * scale


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
def _dot(x, w, zero):
    acc = zero
    for i in range(w.shape[0]):
        acc += x[i] * w[i]
    return acc


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


@njit(**OPTS)
def _layout(sizes):
    """Offsets of each W and b in the flat parameter vector, and its length."""
    L = len(sizes) - 1
    w_off = np.empty(L, np.int64)
    b_off = np.empty(L, np.int64)
    pos = 0
    for l in range(L):
        w_off[l] = pos
        pos += sizes[l] * sizes[l + 1]
        b_off[l] = pos
        pos += sizes[l + 1]
    return w_off, b_off, pos


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
def _exp(x, fast):
    """exp for x <= 0. The fast form, exp(x) = (1 + tanh(x/2)) / (1 - tanh(x/2)), vectorises with
    the rational tanh; its error is below 1e-7 absolute, which is all a probability needs."""
    if fast:
        t = _tanh32(like(0.5, x) * x)
        return (like(1, x) + t) / (like(1, x) - t)
    return np.exp(x)


CACHE_LINE = 64


def aligned_empty(shape, dtype):
    """``np.empty`` starting on a cache line. NumPy promises 16 bytes; a 64-byte vector load that
    straddles two lines costs two loads, and runs differed by 10% with where the buffers fell."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + CACHE_LINE, np.uint8)
    start = -raw.ctypes.data % CACHE_LINE
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def padded(n, dtype):
    """``n`` rounded up to whole cache lines of ``dtype``: per-thread rows of that length each
    start on their own line (aligned, and no two threads write one line)."""
    per_line = CACHE_LINE // np.dtype(dtype).itemsize
    return -(-n // per_line) * per_line


def workspace(threads, sizes, chunk, dtype):
    """Per-thread scratch for :func:`loss_and_gradients`, allocated once and reused every call."""
    widths = sizes[1:]
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    shapes = (
        (threads, chunk, padded(sizes[0], dtype)),  # the chunk's inputs as floats, sample-major
        (threads - 1, padded(n_params, dtype)),  # gradient accumulators of threads 1.. (0 uses grad)
        (threads, padded(chunk * sum(widths), dtype)),  # every layer's output, feature-major
        (threads, 2, padded(chunk * max(widths), dtype)),  # dZ of this layer and the one below
        (threads, 2, padded(chunk, dtype)),  # per-sample softmax scratch: max and total
    )
    return tuple(aligned_empty(shape, dtype) for shape in shapes)


@njit(inline="always", **OPTS)
def _rows(flat, start, n_rows, width):
    """A C-contiguous ``(n_rows, width)`` view of a flat buffer (a reshape of a slice keeps the
    C layout that lets LLVM vectorise; a 2-D slice of a wider buffer would not)."""
    return flat[start:start + n_rows * width].reshape(n_rows, width)


@njit(inline="always", **OPTS)
def _activate(HT, nr, kind, fast):
    for j in range(HT.shape[0]):
        row = HT[j]
        for s in range(nr):
            row[s] = _g(row[s], kind, fast)


@njit(**OPTS)
def _above_first(rows, r0, nr, Y, params, sizes, w_off, b_off, a_off, kind, fast, chunk, act, dz, sm, g, logitsT, inv_n):
    """One chunk's pass through everything above the first layer's product, whose output
    (activated) is already in ``act``: the other layers forward, softmax and cross-entropy (its
    loss returned), and backward down to dZ of the first layer, which is left in ``dz[(L-1) % 2]``.
    Adds the gradients of the layers above the first to ``g``.

    The chunk is samples ``r0 .. r0+nr`` of the batch, ``rows`` the batch's rows of X and Y;
    ``w_off, b_off`` are each layer's W and b in the flat gradient (``params`` holds the same
    minus W¹, which the kernel reads in place); ``act`` holds each layer's output
    ``(width, chunk)`` at ``a_off``, ``dz`` two dZ buffers that ping-pong down the layers, ``sm``
    per-sample softmax scratch.
    """
    L = len(sizes) - 1
    k = sizes[L]
    skip = sizes[0] * sizes[1]
    for l in range(1, L):
        W = _rows(params, w_off[l] - skip, sizes[l + 1], sizes[l])
        b = params[b_off[l] - skip:b_off[l] - skip + sizes[l + 1]]
        HT = _rows(act, a_off[l], sizes[l + 1], chunk)
        dense_T(W, b, _rows(act, a_off[l - 1], sizes[l], chunk), nr, HT)
        if l < L - 1:
            _activate(HT, nr, kind, fast)
    # softmax + cross-entropy along the samples; dZ = (P - Y) / n, so the gradients come out as
    # means and the threads' sums need no final scaling
    ZT = _rows(act, a_off[L - 1], k, chunk)
    dZT = _rows(dz[0], 0, k, chunk)
    top, total = sm[0], sm[1]
    for s in range(nr):
        top[s] = ZT[0, s]
        total[s] = 0
    for j in range(1, k):
        z = ZT[j]
        for s in range(nr):
            top[s] = max(top[s], z[s])
    for j in range(k):
        z, e = ZT[j], dZT[j]
        for s in range(nr):
            e[s] = _exp(z[s] - top[s], fast)
            total[s] += e[s]
    for s in range(nr):  # top becomes the log-sum-exp, total its reciprocal
        top[s] += np.log(total[s])
        total[s] = like(1, total[s]) / total[s]
    loss = 0.0
    for j in range(k):  # one class at a time, so the loops run along the samples
        z, e = ZT[j], dZT[j]
        for s in range(nr):
            r = r0 + s
            y = Y[rows[r], j]
            logitsT[j, r] = z[s]
            loss -= y * (z[s] - top[s])
            e[s] = (e[s] * total[s] - y) * inv_n
    # backward: dZ ping-pongs between dz[0] and dz[1]
    for l in range(L - 1, 0, -1):
        h, d = sizes[l + 1], sizes[l]
        dZT = _rows(dz[(L - 1 - l) % 2], 0, h, chunk)
        dots_T(dZT, _rows(act, a_off[l - 1], d, chunk), nr, _rows(g, w_off[l], h, d))
        _add_row_sums(dZT, nr, g[b_off[l]:b_off[l] + h])
        W = _rows(params, w_off[l] - skip, h, d)
        backprop_T(W, dZT, _rows(act, a_off[l - 1], d, chunk), nr, kind, _rows(dz[(L - l) % 2], 0, d, chunk))
    return loss


@njit(inline="always", **OPTS)
def _add_row_sums(ZT, nr, out):
    """``out += ZT[:, :nr].sum(axis=1)``: a bias gradient."""
    for o in range(ZT.shape[0]):
        z = ZT[o]
        acc = z[0] - z[0]
        for s in range(nr):
            acc += z[s]
        out[o] += acc


@njit(parallel=True, **OPTS)
def loss_and_gradients(X, rows, scale, Y, W1, params, sizes, kind, fast, chunk, XC, G, ACT, DZ, SM, grad, logitsT):
    """Mean cross-entropy, its gradient (flat, layer by layer ``W¹ b¹ W² b² ...``) and the
    logits, in one pass over the samples, each thread taking every T-th chunk.

    The batch is ``X[rows]`` (gathered chunk by chunk, so a shuffled mini-batch needs no copy);
    ``sizes`` is ``[d, h1, ..., k]``; hidden layers use activation ``kind``; ``fast`` selects the
    vectorisable float32 tanh and exp. ``W1`` is the first layer's weights, read in place;
    ``params`` the rest, flat (``b¹ W² b² ...``). ``XC, G, ACT, DZ, SM`` come from
    :func:`workspace`; the gradient goes to ``grad`` and the logits to ``logitsT`` (``(k, n)``,
    class-major like everything after the first layer, so its writes run along the samples):
    buffers the caller reuses, so a mini-batch step allocates nothing of the size of the
    parameters or the batch.

    Within a chunk the inputs are sample-major (rows of 784 pixels, for the big first-layer
    products) and everything after them feature-major (``(width, chunk)``), so the small layers,
    the activations and the softmax are loops along the samples.
    """
    n = rows.shape[0]
    L = len(sizes) - 1
    h1 = sizes[1]
    w_off, b_off, n_params = _layout(sizes)
    a_off = np.zeros(L + 1, np.int64)  # each layer's output in a chunk's activation buffer
    for l in range(L):
        a_off[l + 1] = a_off[l] + chunk * sizes[l + 1]
    skip = sizes[0] * sizes[1]  # params starts after W¹
    b1 = params[b_off[0] - skip:b_off[0] - skip + h1]
    n_chunks = (n + chunk - 1) // chunk
    threads = min(G.shape[0] + 1, n_chunks)
    losses = np.zeros(threads)
    inv_n = like(1 / n, grad[0])

    for t in prange(threads):
        # Thread 0 accumulates straight into grad, the others into their rows of G. W¹'s gradient
        # (at offset 0) is written by each thread's first chunk; only the rest is zeroed here.
        xc, act, dz = XC[t], ACT[t], DZ[t]
        g = grad if t == 0 else G[t - 1]
        g[skip:n_params] = 0
        loss = 0.0  # a local, not losses[t]: threads writing one cache line would fight over it
        for c in range(t, n_chunks, threads):
            r0 = c * chunk
            nr = min(chunk, n - r0)
            HT = _rows(act, 0, h1, chunk)
            linear_rows(X, rows[r0:r0 + nr], scale, xc, W1, b1, HT)
            if L > 1:
                _activate(HT, nr, kind, fast)
            loss += _above_first(rows, r0, nr, Y, params, sizes, w_off, b_off, a_off, kind, fast, chunk, act, dz, SM[t], g, logitsT, inv_n)
            dZT = _rows(dz[(L - 1) % 2], 0, h1, chunk)
            grad_rows(dZT, xc, nr, _rows(g, 0, h1, sizes[0]), c == t)  # a thread's first chunk writes W¹'s
            _add_row_sums(dZT, nr, g[b_off[0]:b_off[0] + h1])
        losses[t] = loss

    # Add the other threads' gradients into grad, each thread taking a slice of the parameters
    # (a serial sum was a tenth of a 200-sample step with 100 hidden units). One thread: done.
    if threads > 1:
        per_line = CACHE_LINE // grad.itemsize
        part = -(-n_params // (per_line * threads)) * per_line
        for p in prange(threads):
            lo, hi = p * part, min(n_params, (p + 1) * part)
            out = grad[lo:hi]
            for t in range(1, threads):
                src = G[t - 1, lo:hi]
                for i in range(hi - lo):
                    out[i] += src[i]
    return losses.sum() / n
