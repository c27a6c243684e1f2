"""The fused batch gradient of the ``numba`` backend: forward and backward in one pass.

One pass over the samples in chunks small enough to stay in L2 (128 images as float32 are
400 KB of a core's 1 MB): each chunk runs forward and backward while it is in cache, so X is
read from memory once per epoch instead of twice. Threads each take every T-th chunk and
accumulate their gradients privately (thread 0 straight into the caller's buffer); the others'
are added in at the end, in parallel.

X is ``(n, d)`` row-major (uint8, float32 or float64). The first layer's weights are read where
the network keeps them (on a cache line: ``NumbaBackend.asparameter``); the other parameters
travel as one flat vector and the gradient comes back as one (:mod:`netcore.backends.numba_layout`).
The first layer's forward reads each chunk's rows where they lie in X, so a shuffled mini-batch
needs no copy of X. uint8 rows, for a first layer of up to 16 neurons on AVX-512, are not copied
either: both products read their bytes and widen them inside the tiles (the weight gradient's
1/255 applied to its sums). Elsewhere (AVX2, plain) the forward's tiles convert uint8 rows into
the chunk buffer on the way, unscaled (dZ takes the 1/255), and a first layer of whole tiles of
neurons takes its weight gradient transposed, inputs x neurons, turned back after the thread's
last chunk. Other rows are read in place where they are a run of X in the compute dtype (float
inputs, a full batch), else copied once into the chunk buffer for both products.
Within a
chunk the inputs are sample-major (rows of 784 pixels) and everything after them feature-major,
``(width, stride)`` with the samples along the rows, so the small layers, the activations and
the softmax run along the samples. The products are register tiles sized for the CPU
(:mod:`netcore.backends.numba_tiles`, :mod:`netcore.backends.numba_isa`).
"""

from __future__ import annotations

import warnings

import numpy as np
from numba import njit, prange, typeof
from numba.core import types
from numba.core.errors import NumbaExperimentalFeatureWarning

from .numba_intrinsics import OPTS, activate, exp_neg
from .numba_kernels import _dg, like
from .numba_layout import CACHE_LINE, VECTOR_COLUMNS
from .numba_simd import runtime
from .numba_tiles import converted_gradient, dot, finish_gradient, first_layer, gradient_transposed, rank1, weight_gradient


def loss_and_gradients(isa, X, rows, scale, Y, W1, params, sizes, w_off, b_off, kind, chunk, stride,
                       WT, XC, ZS, G, ACT, DZ, SM, grad, logitsT):
    """Mean cross-entropy, its gradient (flat, layer by layer ``W¹ b¹ W² b² ...``) and the
    logits, in one pass over the samples, each thread taking every T-th chunk.

    The batch is ``X[rows]`` (gathered chunk by chunk); ``sizes`` is ``[d, h1, ..., k]``,
    ``w_off, b_off`` the flat layout's offsets (:class:`~netcore.backends.numba_layout.FlatLayout`);
    hidden layers use activation ``kind`` (tanh, sigmoid and exp vectorised in both dtypes:
    :mod:`~netcore.backends.numba_intrinsics`). ``W1`` is the first layer's weights (copied transposed into ``WT`` first); ``params``
    the rest, flat (``b¹ W² b² ...``). ``WT, XC, ZS, G, ACT, DZ, SM`` come from
    :func:`~netcore.backends.numba_layout.workspace` for ``chunk`` samples a chunk and feature-major
    rows of ``stride``; the gradient goes to ``grad`` and the logits to ``logitsT`` (``(k, n)``,
    class-major, so its writes run along the samples): buffers the caller reuses, so a
    mini-batch step allocates nothing of the size of the parameters or the batch.

    Compiled once per argument types (or loaded from Numba's cache) by :func:`compiled`.
    """
    args = (isa, X, rows, scale, Y, W1, params, sizes, w_off, b_off, kind, chunk, stride, WT, XC, ZS, G, ACT, DZ, SM, grad, logitsT)
    # What decides the compiled types, cheaply (typing all 22 arguments took 0.2 ms a call):
    # the backend passes the other arrays with fixed layouts and dtypes.
    key = (isa, X.dtype, X.flags.writeable, rows.flags.writeable, Y.dtype, Y.flags.writeable, W1.flags.writeable, kind)
    found = _BY_KEY.get(key)
    if found is None:
        # the activation as a compile-time constant: a run compiles the code of its own
        # activation only (all three cost 3 s more of compiling)
        found = _BY_KEY[key] = compiled(tuple(types.literal(a) if i == 10 else typeof(a) for i, a in enumerate(args)))
    entry, thread_pass = found
    return entry(thread_pass, *args)


_BY_KEY: dict = {}


class _CompiledPass:
    """A per-thread pass compiled for one signature, handed to the parallel loop as a function
    pointer (Numba's wrapper-address protocol) rather than compiled into it: a parallel
    function that calls a large one links and optimises all of it again, which took 10 of the
    20 seconds of a cold compile."""

    def __init__(self, thread_pass, signature) -> None:
        thread_pass.compile(signature.args)
        result = thread_pass.get_compile_result(signature)
        self._address = result.library.get_pointer_to_function(result.fndesc.llvm_cfunc_wrapper_name)
        self._signature = signature

    def __wrapper_address__(self) -> int:
        return self._address

    def signature(self):
        return self._signature


_COMPILED: dict = {}


def compiled_pass(parallel_pass, thread_pass, arg_types: tuple) -> tuple:
    """``(entry point of parallel_pass, thread_pass)`` compiled for these argument types: the
    parallel pass takes the thread pass (``isa, t, threads`` and the rest of its own arguments;
    returns a float) first, as a function pointer."""
    key = (parallel_pass, arg_types)
    if key not in _COMPILED:
        pass_signature = types.float64(arg_types[0], types.int64, types.int64, *arg_types[1:])
        compiled_thread_pass = _CompiledPass(thread_pass, pass_signature)
        signature = (types.FunctionType(pass_signature), *arg_types)
        with warnings.catch_warnings():
            # the pass handed on as a function pointer is deliberate (see _CompiledPass); Numba
            # calls that "experimental" at every call that passes it
            warnings.simplefilter("ignore", NumbaExperimentalFeatureWarning)
            parallel_pass.compile(signature)
        _COMPILED[key] = (parallel_pass.overloads[signature].entry_point, compiled_thread_pass)
    return _COMPILED[key]


def compiled(arg_types: tuple) -> tuple:
    """``(entry point of the parallel pass, per-thread pass)`` for these argument types."""
    return compiled_pass(_parallel_pass, _thread_pass, arg_types)


@njit(**OPTS)
def _parallel_pass(thread_pass, isa, X, rows, scale, Y, W1, params, sizes, w_off, b_off, kind, chunk, stride,
                   WT, XC, ZS, G, ACT, DZ, SM, grad, logitsT):
    """W¹ transposed, then ``thread_pass`` on every thread, then the threads' gradients summed:
    three calls of one parallel loop (:func:`_on_threads`)."""
    n = rows.shape[0]
    n_chunks = (n + chunk - 1) // chunk
    threads = min(G.shape[0] + 1, n_chunks)
    losses = np.zeros(threads)
    args = (thread_pass, isa, X, rows, scale, Y, W1, params, sizes, w_off, b_off, kind, chunk, stride,
            WT, XC, ZS, G, ACT, DZ, SM, grad, logitsT, losses)
    _on_threads(_TRANSPOSE, threads, *args)
    _on_threads(_PASS, threads, *args)
    if threads > 1:  # one thread: its gradient is already in grad
        _on_threads(_SUM, threads, *args)
    return losses.sum() / n


_TRANSPOSE, _PASS, _SUM = 0, 1, 2


@njit(parallel=True, **OPTS)
def _on_threads(job, threads, thread_pass, isa, X, rows, scale, Y, W1, params, sizes, w_off, b_off, kind, chunk,
                stride, WT, XC, ZS, G, ACT, DZ, SM, grad, logitsT, losses):
    """Thread ``p`` of ``threads`` does its share of one job: a slice of W¹'s transpose
    (``_TRANSPOSE``), its chunks (``_PASS``: ``thread_pass``, loss into ``losses[p]``) or a slice
    of the gradient, the other threads' added into ``grad`` (``_SUM``; a serial sum was a tenth
    of a 200-sample step with 100 hidden units). One parallel loop for the three: each ``prange``
    compiles a parallel region of its own, 0.3 s of a cold compile apiece."""
    L = len(sizes) - 1
    d, h1 = sizes[0], sizes[1]
    n_params = b_off[L - 1] + sizes[L]
    per_line = CACHE_LINE // grad.itemsize
    for p in prange(threads):
        if job == _TRANSPOSE:  # inputs x neurons, for the rank-1 tiles of the forward
            part = -(-d // threads)
            for i in range(p * part, min(d, (p + 1) * part)):
                row = WT[i]
                for o in range(h1):
                    row[o] = W1[o, i]
        elif job == _PASS:
            losses[p] = thread_pass(isa, np.int64(p), np.int64(threads), X, rows, scale, Y, W1, params, sizes, w_off, b_off,
                                    kind, chunk, stride, WT, XC, ZS, G, ACT, DZ, SM, grad, logitsT)
        else:  # slices of whole cache lines, so that no two threads write one line
            part = -(-n_params // (per_line * threads)) * per_line
            lo, hi = p * part, min(n_params, (p + 1) * part)
            out = grad[lo:hi]
            for t in range(1, threads):
                src = G[t - 1, lo:hi]
                for i in range(hi - lo):
                    out[i] += src[i]


@njit(**OPTS)
def _thread_pass(isa, t, threads, X, rows, scale, Y, W1, params, sizes, w_off, b_off, kind, chunk, stride,
                 WT, XC, ZS, G, ACT, DZ, SM, grad, logitsT):
    """Thread ``t``'s share: chunks ``t, t + threads, ...``; returns their loss and adds their
    gradients to ``grad`` (thread 0) or to ``G[t - 1]``. W¹'s gradient (at offset 0) is written
    by the thread's first chunk; only the rest is zeroed here."""
    n = rows.shape[0]
    L = len(sizes) - 1
    d, h1 = sizes[0], sizes[1]
    skip = d * h1
    a_off = np.zeros(L + 1, np.int64)  # each layer's output in the thread's activation buffer
    for l in range(L):
        a_off[l + 1] = a_off[l] + stride * sizes[l + 1]
    inv_n = like(1 / n, grad[0])
    xc, Z, act, dz, sm = XC[t], ZS[t], ACT[t], DZ[t], SM[t]
    g = grad if t == 0 else G[t - 1]
    b1 = params[b_off[0] - skip:b_off[0] - skip + h1]
    g[skip:b_off[L - 1] + sizes[L]] = 0
    paramsT = transposed_above(params, sizes, w_off)
    n_chunks = (n + chunk - 1) // chunk
    transposed = gradient_transposed(isa, X, g, h1, chunk)  # W¹'s gradient inputs x neurons until the end
    loss = 0.0
    for c in range(t, n_chunks, threads):
        r0 = c * chunk
        nr = min(chunk, n - r0)
        upcoming = rows[min(n, r0 + threads * chunk):min(n, r0 + threads * chunk + chunk)]
        inputs, in_place = first_layer(isa, X, rows[r0:r0 + nr], scale, xc, WT, Z, nr, upcoming)  # X's rows or xc
        HT = _rows(act, 0, h1, stride)
        _transpose(Z, nr, HT)
        _bias_activation(HT, b1, nr, kind, L > 1)
        loss += _above_first(isa, rows, r0, nr, Y, params, paramsT, sizes, w_off, b_off, a_off, kind, stride, act, dz, sm, g,
                             logitsT, inv_n)
        dZT = _rows(dz[(L - 1) % 2], 0, h1, stride)
        _add_row_sums(dZT, nr, g[b_off[0]:b_off[0] + h1])
        # a thread's first chunk writes W¹'s gradient, the others add to it. Rows read in place
        # stream through the hardware's prefetcher: prefetching the next chunk into L2 as well
        # cost 0.8 ms a float64 step on 2 threads, 1.5 on one
        # uint8 rows converted by the forward are unscaled: dZ takes the scale (Z is free: it takes
        # dZ sample-major where the gradient is transposed; the forward prefetched the next rows)
        if not converted_gradient(isa, X, g, dZT, Z, inputs, d, h1, nr, c == t, scale, transposed):
            weight_gradient(isa, _rows(g, 0, h1, d), dZT, inputs, nr, c == t, X, rows[r0:r0 + nr], scale,
                            upcoming[:0] if in_place else upcoming)
    finish_gradient(isa, X, g, d, h1, xc, transposed)
    return loss


@njit(inline="always", **OPTS)
def transposed_above(params, sizes, w_off):
    """``params`` (everything after W¹, flat) with the weights of the layers above the first
    transposed, each where ``params`` holds it: the backward's rank-1 tiles read them as a plain
    row-major operand, so one compiled :func:`~netcore.backends.numba_tiles.rank1` serves every
    product (a transposed view compiled a second one: 0.7 s of a cold compile)."""
    skip = sizes[0] * sizes[1]
    paramsT = np.empty_like(params)
    for l in range(1, len(sizes) - 1):
        h, w, off = sizes[l + 1], sizes[l], w_off[l] - skip
        for o in range(h):
            for j in range(w):
                paramsT[off + j * h + o] = params[off + o * w + j]
    return paramsT


@njit(**OPTS)
def _above_first(isa, rows, r0, nr, Y, params, paramsT, sizes, w_off, b_off, a_off, kind, stride, act, dz, sm, g, logitsT,
                 inv_n):
    """One chunk's pass through everything above the first layer's product, whose output
    (activated) is already in ``act``: the other layers forward, softmax and cross-entropy (its
    loss returned), and backward down to dZ of the first layer, which is left in ``dz[(L-1) % 2]``.
    Adds the gradients of the layers above the first to ``g``.

    The chunk is samples ``r0 .. r0+nr`` of the batch, ``rows`` the batch's rows of X and Y;
    ``w_off, b_off`` are each layer's W and b in the flat gradient (``params`` holds the same
    minus W¹, which the kernel reads in place; ``paramsT`` the same with each W transposed in
    its place); ``act`` holds each layer's output
    ``(width, stride)`` at ``a_off``, ``dz`` two dZ buffers that ping-pong down the layers
    (the second holds the chunk's targets while the softmax runs),
    ``sm`` per-sample softmax scratch. The products run over whole vectors of samples (up to
    ``stride``): the columns past ``nr`` hold leftovers that no sum reads.

    A function of its own, unlike the first layer's pieces in :mod:`~netcore.backends.numba_tiles`:
    inlined (``inline="always"``) it compiled 0.4-0.8 s faster, but Numba's SSA check then warned
    (``NumbaIRAssumptionWarning``) on every float64 compile.
    """
    L = len(sizes) - 1
    k = sizes[L]
    skip = sizes[0] * sizes[1]
    cols = min(stride, -(-nr // VECTOR_COLUMNS) * VECTOR_COLUMNS)
    for l in range(1, L):
        W = _rows(params, w_off[l] - skip, sizes[l + 1], sizes[l])
        b = params[b_off[l] - skip:b_off[l] - skip + sizes[l + 1]]
        HT = _rows(act, a_off[l], sizes[l + 1], stride)
        rank1(isa, HT, W, _rows(act, a_off[l - 1], sizes[l], stride), sizes[l + 1], runtime(0), cols, sizes[l], runtime(True), runtime(False))
        _bias_activation(HT, b, nr, kind, l < L - 1)
    # softmax + cross-entropy along the samples; dZ = (P - Y) / n, so the gradients come out as
    # means and the threads' sums need no final scaling
    ZT = _rows(act, a_off[L - 1], k, stride)
    dZT = _rows(dz[0], 0, k, stride)
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
            e[s] = exp_neg(z[s] - top[s])
            total[s] += e[s]
    for s in range(nr):  # top becomes the log-sum-exp, total its reciprocal
        top[s] += np.log(total[s])
        total[s] = like(1, total[s]) / total[s]
    # the chunk's targets, class-major, in dz[1] (free until the backward): read along Y's
    # rows here, so the loop below runs along the samples without a gather (which took 0.6 ms
    # an epoch on one thread, a third of everything above the first layer)
    YT = _rows(dz[1], 0, k, stride)
    for s in range(nr):
        y = Y[rows[r0 + s]]
        for j in range(k):
            YT[j, s] = y[j]
    loss = 0.0
    for j in range(k):  # one class at a time, so the loops run along the samples
        z, e, y, out = ZT[j], dZT[j], YT[j], logitsT[j, r0:r0 + nr]
        for s in range(nr):
            out[s] = z[s]
            loss -= y[s] * (z[s] - top[s])
            e[s] = (e[s] * total[s] - y[s]) * inv_n
    # backward: dZ ping-pongs between dz[0] and dz[1]
    for l in range(L - 1, 0, -1):
        h, d = sizes[l + 1], sizes[l]
        dZT = _rows(dz[(L - 1 - l) % 2], 0, h, stride)
        AT = _rows(act, a_off[l - 1], d, stride)
        dot(isa, _rows(g, w_off[l], h, d), dZT, AT, h, d, nr, runtime(False))
        _add_row_sums(dZT, nr, g[b_off[l]:b_off[l] + h])
        WT = _rows(paramsT, w_off[l] - skip, d, h)
        below = _rows(dz[(L - l) % 2], 0, d, stride)
        rank1(isa, below, WT, dZT, d, runtime(0), cols, h, runtime(True), runtime(False))
        for j in range(d):
            out, a = below[j], AT[j]
            for s in range(nr):
                out[s] *= _dg(a[s], kind)
    return loss


@njit(inline="always", **OPTS)
def _transpose(Z, nr, HT):
    """``HT[:, :nr] = Z[:nr, :h].T``: the first layer's product, turned feature-major."""
    for s in range(nr):
        z = Z[s]
        for j in range(HT.shape[0]):
            HT[j, s] = z[j]


@njit(inline="always", **OPTS)
def _bias_activation(HT, b, nr, kind, hidden):
    """``HT[:, :nr] = g(HT + b)`` (only ``+ b`` for the output layer)."""
    for j in range(HT.shape[0]):
        row, bj = HT[j], b[j]
        if hidden:
            for s in range(nr):
                row[s] = activate(row[s] + bj, kind)
        else:
            for s in range(nr):
                row[s] += bj


@njit(inline="always", **OPTS)
def _add_row_sums(ZT, nr, out):
    """``out += ZT[:, :nr].sum(axis=1)``: a bias gradient."""
    for o in range(ZT.shape[0]):
        z = ZT[o]
        acc = z[0] - z[0]
        for s in range(nr):
            acc += z[s]
        out[o] += acc


@njit(inline="always", **OPTS)
def _rows(flat, start, n_rows, width):
    """A C-contiguous ``(n_rows, width)`` view of a flat buffer (a reshape of a slice keeps the
    C layout that lets LLVM vectorise; a 2-D slice of a wider buffer would not)."""
    return flat[start:start + n_rows * width].reshape(n_rows, width)
