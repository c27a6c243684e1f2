"""The output layers' CUDA kernels for the ``numba-cuda`` backend (compiled on first launch):
their values, each row's loss with dZ = output - y, and the rows' sample weights.

Kept apart from :mod:`netcore.backends.numba_cuda_kernels` (the op vocabulary's kernels) and written with a
module-level ``cuda``, which Numba's CUDA simulator swaps for its own when it runs them.
"""

from __future__ import annotations

import math

from numba import cuda

#: The codes the kernels switch on, one per output layer of the contract.
CODES = {"softmax": 0, "logistic": 1, "identity": 2, "exp": 3}


@cuda.jit
def values(z, kind, out):
    i = cuda.grid(1)
    if i < z.size:
        v = z[i]
        out[i] = 1 / (1 + math.exp(-v)) if kind == 1 else (math.exp(v) if kind == 3 else v)


@cuda.jit
def rows(z, y, kind, loss, delta):
    """One thread per row: the row's loss (float64) and dZ = output - y."""
    r = cuda.grid(1)
    if r < z.shape[0]:
        acc = 0.0
        if kind == 0:
            top = z[r, 0]
            for j in range(1, z.shape[1]):
                top = max(top, z[r, j])
            total = 0.0
            for j in range(z.shape[1]):
                total += math.exp(z[r, j] - top)
            log_total = math.log(total)
            for j in range(z.shape[1]):
                log_p = z[r, j] - top - log_total
                acc -= y[r, j] * log_p
                delta[r, j] = math.exp(log_p) - y[r, j]
        else:
            for j in range(z.shape[1]):
                v, t = z[r, j], y[r, j]
                if kind == 1:  # binary cross-entropy, max(z, 0) - y z + log(1 + e^-|z|)
                    o = 1 / (1 + math.exp(-v))
                    acc += max(v, 0.0) - t * v + math.log1p(math.exp(-abs(v)))
                elif kind == 2:  # half squared error
                    o = v
                    acc += 0.5 * (v - t) * (v - t)
                else:  # half Poisson deviance, y log(y / μ) - y + μ, 0 log 0 = 0
                    o = math.exp(v)
                    acc += (t * (math.log(t) - v) if t > 0 else 0.0) - t + o
                delta[r, j] = o - t
        loss[r] = acc


@cuda.jit
def weigh(loss, delta, w, scale):
    r = cuda.grid(1)
    if r < delta.shape[0]:
        f = w[r, 0] * scale
        loss[r] *= f
        for j in range(delta.shape[1]):
            delta[r, j] *= f
