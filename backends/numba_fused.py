"""The fused batch gradient of the ``numba`` backend: forward and backward in one pass.

One pass over the samples in chunks small enough to stay in L2 (128 images as float32 are
400 KB of a core's 1 MB): each chunk runs forward and backward while it is in cache, so X is
read from memory once per epoch instead of twice. Threads each take every T-th chunk and
accumulate their gradients privately (thread 0 straight into the caller's buffer); the others'
are added in at the end, in parallel.

X is ``(n, d)`` row-major (uint8, float32 or float64). The first layer's weights are read where
the network keeps them (on a cache line: ``NumbaBackend.asparameter``); the other parameters
travel as one flat vector and the gradient comes back as one (:mod:`backends.numba_layout`).
The first layer's forward reads each chunk's rows where they lie in X, prefetching a few ahead,
and converts them to floats once (uint8 scaled by 1/255 on the way) for the weight gradient to
reuse, so a shuffled mini-batch needs no copy of X. Within a chunk the inputs are sample-major
(rows of 784 pixels, for the first layer's products, :mod:`backends.numba_tiles`) and
everything after them feature-major (``(width, chunk)``), so the small layers, the activations
and the softmax are loops along the samples.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_intrinsics import OPTS, activate, exp_neg
from .numba_kernels import like
from .numba_layout import CACHE_LINE
from .numba_tiles import add_row_sums, backprop_T, dense_T, dots_T, grad_rows, linear_rows


@njit(parallel=True, **OPTS)
def loss_and_gradients(X, rows, scale, Y, W1, params, sizes, w_off, b_off, kind, fast, chunk, XC, G, ACT, DZ, SM, grad, logitsT):
    """Mean cross-entropy, its gradient (flat, layer by layer ``W¹ b¹ W² b² ...``) and the
    logits, in one pass over the samples, each thread taking every T-th chunk.

    The batch is ``X[rows]`` (gathered chunk by chunk, so a shuffled mini-batch needs no copy);
    ``sizes`` is ``[d, h1, ..., k]``, ``w_off, b_off`` the flat layout's offsets
    (:class:`~backends.numba_layout.FlatLayout`); hidden layers use activation ``kind``;
    ``fast`` selects the vectorisable float32 tanh and exp. ``W1`` is the first layer's weights,
    read in place; ``params`` the rest, flat (``b¹ W² b² ...``). ``XC, G, ACT, DZ, SM`` come
    from :func:`~backends.numba_layout.workspace`; the gradient goes to ``grad`` and the logits
    to ``logitsT`` (``(k, n)``, class-major like everything after the first layer, so its writes
    run along the samples): buffers the caller reuses, so a mini-batch step allocates nothing of
    the size of the parameters or the batch.
    """
    n = rows.shape[0]
    L = len(sizes) - 1
    h1 = sizes[1]
    n_params = b_off[L - 1] + sizes[L]
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
            add_row_sums(dZT, nr, g[b_off[0]:b_off[0] + h1])
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
            e[s] = exp_neg(z[s] - top[s], fast)
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
        add_row_sums(dZT, nr, g[b_off[l]:b_off[l] + h])
        W = _rows(params, w_off[l] - skip, h, d)
        backprop_T(W, dZT, _rows(act, a_off[l - 1], d, chunk), nr, kind, _rows(dz[(L - l) % 2], 0, d, chunk))
    return loss


@njit(inline="always", **OPTS)
def _activate(HT, nr, kind, fast):
    for j in range(HT.shape[0]):
        row = HT[j]
        for s in range(nr):
            row[s] = activate(row[s], kind, fast)


@njit(inline="always", **OPTS)
def _rows(flat, start, n_rows, width):
    """A C-contiguous ``(n_rows, width)`` view of a flat buffer (a reshape of a slice keeps the
    C layout that lets LLVM vectorise; a 2-D slice of a wider buffer would not)."""
    return flat[start:start + n_rows * width].reshape(n_rows, width)
