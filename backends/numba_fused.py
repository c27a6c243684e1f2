"""The fused batch gradient of the ``numba`` backend, and the tiled products it is built from.

One pass over the samples in chunks small enough to stay in L2 (256 samples of 784 uint8 pixels
are 200 KB): each chunk runs forward and backward while it is in cache, so X is read from memory
once per epoch instead of twice. Threads each take every T-th chunk, accumulate their gradients
in a private buffer, and the buffers are summed at the end.

Memory layout: X is ``(n, d)`` row-major (uint8, float32 or float64); the parameters travel as
one flat vector, layer by layer ``W¹ (h1, d), b¹ (h1,), W² (h2, h1), ...``, so one compiled kernel
serves every depth and width. Each chunk's rows are gathered and converted to floats once (uint8
scaled by 1/255 on the way), so a shuffled mini-batch needs no copy of X.

The first layer's products dominate (784 inputs against 16 outputs). They use register tiles:
4 samples x 4 neurons of scalar accumulators with the reduction over inputs innermost, which
LLVM vectorises once ``fastmath`` allows it to reorder the sum. The weight-gradient update walks
one gradient row per pass, so the loop stores to a single stream and LLVM's aliasing check stays
small enough for it to vectorise.
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, prange

from .numba_kernels import RELU, SIGMOID, TANH

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
    x = min(max(x, -_TANH_CLAMP), _TANH_CLAMP)
    x2 = x * x
    p = ((((((_P[6] * x2 + _P[5]) * x2 + _P[4]) * x2 + _P[3]) * x2 + _P[2]) * x2 + _P[1]) * x2 + _P[0]) * x
    q = ((_Q[3] * x2 + _Q[2]) * x2 + _Q[1]) * x2 + _Q[0]
    return p / q


@njit(inline="always", **OPTS)
def _g(v, kind, fast):
    if kind == TANH:
        return _tanh32(v) if fast else np.tanh(v)
    if kind == RELU:
        return v if v > 0 else v - v
    # sigmoid(v) = (1 + tanh(v / 2)) / 2, which reuses the vectorisable tanh
    return 0.5 + 0.5 * _tanh32(0.5 * v) if fast else 1 / (1 + np.exp(-v))


@njit(inline="always", **OPTS)
def _dg(a, kind):
    if kind == TANH:
        return 1 - a * a
    if kind == RELU:
        return a * 0 + (a > 0)
    return a * (1 - a)


@njit(**OPTS)
def gather_rows(X, rows, scale, out):
    """``out[s] = scale * X[rows[s]]``: the chunk's inputs as floats, converted once and reused by
    the forward and backward products (converting uint8 inside them would redo it per neuron)."""
    for s in range(rows.shape[0]):
        x, o = X[rows[s]], out[s]
        for i in range(x.shape[0]):
            o[i] = x[i] * scale


@njit(**OPTS)
def linear_rows(X, nr, W, b, out):
    """``out[:nr] = X[:nr] @ W.T + b`` with 4x4 register tiles."""
    h, d = W.shape
    zero = b[0] - b[0]  # a 0 of W's dtype: a literal 0 would make the accumulators float64
    s = 0
    while s + 4 <= nr:
        x0, x1, x2, x3 = X[s], X[s + 1], X[s + 2], X[s + 3]
        o = 0
        while o + 4 <= h:
            w0, w1, w2, w3 = W[o], W[o + 1], W[o + 2], W[o + 3]
            a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = zero
            a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = zero
            for i in range(d):
                v0, v1, v2, v3 = x0[i], x1[i], x2[i], x3[i]
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
            out[s, o], out[s, o + 1], out[s, o + 2], out[s, o + 3] = a00 + b[o], a01 + b[o + 1], a02 + b[o + 2], a03 + b[o + 3]
            out[s + 1, o], out[s + 1, o + 1], out[s + 1, o + 2], out[s + 1, o + 3] = a10 + b[o], a11 + b[o + 1], a12 + b[o + 2], a13 + b[o + 3]
            out[s + 2, o], out[s + 2, o + 1], out[s + 2, o + 2], out[s + 2, o + 3] = a20 + b[o], a21 + b[o + 1], a22 + b[o + 2], a23 + b[o + 3]
            out[s + 3, o], out[s + 3, o + 1], out[s + 3, o + 2], out[s + 3, o + 3] = a30 + b[o], a31 + b[o + 1], a32 + b[o + 2], a33 + b[o + 3]
            o += 4
        for oo in range(o, h):  # neurons left over when h is not a multiple of 4
            for ss in range(s, s + 4):
                out[ss, oo] = _dot(X[ss], W[oo], zero) + b[oo]
        s += 4
    for ss in range(s, nr):  # samples left over
        for oo in range(h):
            out[ss, oo] = _dot(X[ss], W[oo], zero) + b[oo]


@njit(inline="always", **OPTS)
def _dot(x, w, zero):
    acc = zero
    for i in range(w.shape[0]):
        acc += x[i] * w[i]
    return acc


@njit(**OPTS_UPDATE)
def grad_rows(dZ, X, nr, G):
    """``G += dZ[:nr].T @ X[:nr]``: two gradient rows per sweep, four samples at a time.

    Two rows share each load of the four input rows; measured 30% faster than one row with
    eight samples, which rereads G (16 x 784 floats overflow L1) twice as often per FLOP.
    """
    h, d = G.shape
    s = 0
    while s + 4 <= nr:
        x0, x1, x2, x3 = X[s], X[s + 1], X[s + 2], X[s + 3]
        o = 0
        while o + 2 <= h:
            g0, g1 = G[o], G[o + 1]
            a0, a1, a2, a3 = dZ[s, o], dZ[s + 1, o], dZ[s + 2, o], dZ[s + 3, o]
            b0, b1, b2, b3 = dZ[s, o + 1], dZ[s + 1, o + 1], dZ[s + 2, o + 1], dZ[s + 3, o + 1]
            for i in range(d):
                v0, v1, v2, v3 = x0[i], x1[i], x2[i], x3[i]
                g0[i] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
                g1[i] += b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3
            o += 2
        if o < h:  # odd number of rows
            g0 = G[o]
            a0, a1, a2, a3 = dZ[s, o], dZ[s + 1, o], dZ[s + 2, o], dZ[s + 3, o]
            for i in range(d):
                g0[i] += a0 * x0[i] + a1 * x1[i] + a2 * x2[i] + a3 * x3[i]
        s += 4
    for ss in range(s, nr):  # samples left over
        x = X[ss]
        for o in range(h):
            g = G[o]
            c = dZ[ss, o]
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


def workspace(threads, sizes, chunk, dtype):
    """Per-thread scratch for :func:`loss_and_gradients`, allocated once and reused every call."""
    widths = sizes[1:]
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    return (
        np.empty((threads, chunk, sizes[0]), dtype),  # the chunk's inputs as floats
        np.zeros((threads, n_params), dtype),  # gradient accumulators
        np.empty((threads, chunk * sum(widths)), dtype),  # every layer's output for one chunk
        np.empty((threads, 2, chunk * max(widths)), dtype),  # dZ of this layer and the one below
    )


@njit(inline="always", **OPTS)
def _rows(flat, start, n_rows, width):
    """A C-contiguous ``(n_rows, width)`` view of a flat buffer (a reshape of a slice keeps the
    C layout that lets LLVM vectorise; a 2-D slice of a wider buffer would not)."""
    return flat[start:start + n_rows * width].reshape(n_rows, width)


@njit(parallel=True, **OPTS)
def loss_and_gradients(X, rows, scale, Y, params, sizes, kind, fast, chunk, XC, G, ACT, DZ):
    """Mean cross-entropy, its gradient (flat, laid out like ``params``) and the logits, in one pass.

    The batch is ``X[rows]`` (gathered chunk by chunk, so a shuffled mini-batch needs no copy);
    ``sizes`` is ``[d, h1, ..., k]``; hidden layers use activation ``kind``; ``fast`` selects the
    vectorisable float32 tanh. ``XC, G, ACT, DZ`` come from :func:`workspace`.
    """
    n = rows.shape[0]
    L = len(sizes) - 1
    k = sizes[L]
    w_off, b_off, n_params = _layout(sizes)
    a_off = np.zeros(L + 1, np.int64)
    for l in range(L):
        a_off[l + 1] = a_off[l] + chunk * sizes[l + 1]
    n_chunks = (n + chunk - 1) // chunk
    threads = min(G.shape[0], n_chunks)
    losses = np.zeros(threads)
    logits = np.empty((n, k), dtype=params.dtype)
    # Each W transposed, so the backward product dA = dZ W runs as linear_rows(dZ, W.T), the
    # same vectorised reduction as the forward; zeros stand in for its bias.
    params_T = np.empty_like(params)
    for l in range(1, L):
        W, WT = _rows(params, w_off[l], sizes[l + 1], sizes[l]), _rows(params_T, w_off[l], sizes[l], sizes[l + 1])
        for o in range(sizes[l + 1]):
            for j in range(sizes[l]):
                WT[j, o] = W[o, j]
    no_bias = np.zeros(max(sizes[:L]), dtype=params.dtype)

    for t in prange(threads):
        xc, g, act = XC[t], G[t], ACT[t]
        g[:] = 0
        loss = 0.0  # a local, not losses[t]: threads writing one cache line would fight over it
        for c in range(t, n_chunks, threads):
            r0 = c * chunk
            nr = min(chunk, n - r0)
            gather_rows(X, rows[r0:r0 + nr], scale, xc)
            # forward: layer l's output goes to rows of width sizes[l+1] at a_off[l]
            for l in range(L):
                W = _rows(params, w_off[l], sizes[l + 1], sizes[l])
                b = params[b_off[l]:b_off[l] + sizes[l + 1]]
                out = _rows(act, a_off[l], chunk, sizes[l + 1])
                if l == 0:
                    linear_rows(xc, nr, W, b, out)
                else:
                    linear_rows(_rows(act, a_off[l - 1], chunk, sizes[l]), nr, W, b, out)
                if l < L - 1:  # one flat loop over the chunk's outputs: long, so it vectorises
                    flat = act[a_off[l]:a_off[l] + nr * sizes[l + 1]]
                    for j in range(flat.shape[0]):
                        flat[j] = _g(flat[j], kind, fast)
            # softmax + cross-entropy; dZ = P - Y, kept unscaled (1/n is applied once at the end)
            Z = _rows(act, a_off[L - 1], chunk, k)
            dZ = _rows(DZ[t, 0], 0, chunk, k)
            for s in range(nr):
                r = rows[r0 + s]
                top = Z[s, 0]
                for j in range(1, k):
                    top = max(top, Z[s, j])
                total = 0.0
                for j in range(k):
                    logits[r0 + s, j] = Z[s, j]
                    e = np.exp(Z[s, j] - top)
                    dZ[s, j] = e
                    total += e
                log_total = np.log(total)
                inv = 1 / total
                for j in range(k):
                    y = Y[r, j]
                    loss -= y * (Z[s, j] - top - log_total)
                    dZ[s, j] = dZ[s, j] * inv - y
            # backward: dZ ping-pongs between DZ[t, 0] and DZ[t, 1]
            for l in range(L - 1, -1, -1):
                h, d = sizes[l + 1], sizes[l]
                dZ = _rows(DZ[t, (L - 1 - l) % 2], 0, chunk, h)
                Gw = _rows(g, w_off[l], h, d)
                if l == 0:
                    grad_rows(dZ, xc, nr, Gw)
                else:
                    grad_rows(dZ, _rows(act, a_off[l - 1], chunk, d), nr, Gw)
                for j in range(h):  # bias gradient: column sums, kept in a register
                    acc = dZ[0, j] - dZ[0, j]
                    for s in range(nr):
                        acc += dZ[s, j]
                    g[b_off[l] + j] += acc
                if l > 0:  # dZ below = (dZ W) * g'(A below), the product as a reduction over W.T
                    below = _rows(DZ[t, (L - l) % 2], 0, chunk, d)
                    linear_rows(dZ, nr, _rows(params_T, w_off[l], d, h), no_bias[:d], below)
                    flat, a_flat = DZ[t, (L - l) % 2, :nr * d], act[a_off[l - 1]:a_off[l - 1] + nr * d]
                    for j in range(flat.shape[0]):
                        flat[j] *= _dg(a_flat[j], kind)
        losses[t] = loss

    grad = G[0, :n_params].copy()
    for t in range(1, threads):
        grad += G[t]
    grad *= 1 / n
    return losses.sum() / n, grad, logits
