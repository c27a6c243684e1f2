"""CUDA kernels for the ``numba-cuda`` backend, written with Numba's CUDA target.

Built per dtype on first use (shared-memory tiles need their dtype at compile time), so importing
this module compiles nothing and needs no GPU. Under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) the same kernels run in Python threads, which is how CI tests their
logic without a GPU; the simulator gets smaller blocks so that it stays quick.
"""

from __future__ import annotations

import math
import os
from functools import cache
from types import SimpleNamespace

import numpy as np
from numba import cuda

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
THREADS = 32 if SIMULATED else 256  # threads per block of the 1-D kernels
TILE = 4 if SIMULATED else 16  # side of the square shared-memory tile of the matrix product

from .base import RELU, SIGMOID, TANH  # noqa: E402  (the contract's activation codes)


def blocks(n: int) -> int:
    return max(1, math.ceil(n / THREADS))


@cache
def kernels(dtype_name: str) -> SimpleNamespace:
    """Every kernel, compiled for one float dtype (lazily, on first launch)."""
    from numba import from_dtype

    dtype = from_dtype(np.dtype(dtype_name))
    tile = TILE

    @cuda.jit(device=True)
    def g(v, kind):
        if kind == TANH:
            return math.tanh(v)
        if kind == RELU:
            return v if v > 0 else v * 0
        return 1 / (1 + math.exp(-v))

    @cuda.jit(device=True)
    def dg(a, kind):
        if kind == TANH:
            return 1 - a * a
        if kind == RELU:
            return 1.0 if a > 0 else 0.0
        return a * (1 - a)

    @cuda.jit(device=True)
    def row_max(z, r):
        top = z[r, 0]
        for j in range(1, z.shape[1]):
            top = max(top, z[r, j])
        return top

    @cuda.jit
    def gemm(A, B, C, trans_a, trans_b):
        """C = op(A) @ op(B), op = transpose when the flag is set; tiles of A and B go through
        shared memory so each global element is read once per tile, not once per product."""
        sa = cuda.shared.array((tile, tile), dtype)
        sb = cuda.shared.array((tile, tile), dtype)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        row = cuda.blockIdx.y * tile + ty
        col = cuda.blockIdx.x * tile + tx
        M, N = C.shape
        K = A.shape[0] if trans_a else A.shape[1]
        acc = dtype(0)
        for t in range((K + tile - 1) // tile):
            k = t * tile + tx
            if row < M and k < K:
                sa[ty, tx] = A[k, row] if trans_a else A[row, k]
            else:
                sa[ty, tx] = 0
            k = t * tile + ty
            if col < N and k < K:
                sb[ty, tx] = B[col, k] if trans_b else B[k, col]
            else:
                sb[ty, tx] = 0
            cuda.syncthreads()
            for i in range(tile):
                acc += sa[ty, i] * sb[i, tx]
            cuda.syncthreads()
        if row < M and col < N:
            C[row, col] = acc

    @cuda.jit
    def bias_activation(z, b, kind):
        """z = g(z + b) in place (kind < 0: the bias only), one thread per element."""
        i = cuda.grid(1)
        n, k = z.shape
        if i < n * k:
            r, c = i // k, i % k
            v = z[r, c] + b[c]
            z[r, c] = v if kind < 0 else g(v, kind)

    @cuda.jit
    def activation(z, kind):
        i = cuda.grid(1)
        if i < z.size:
            z[i] = g(z[i], kind)

    @cuda.jit
    def activation_backward(a, grad, kind):
        i = cuda.grid(1)
        if i < a.size:
            grad[i] *= dg(a[i], kind)

    @cuda.jit
    def softmax(z, out):
        """One thread per row: max-shifted exponentials, normalised."""
        r = cuda.grid(1)
        if r < z.shape[0]:
            top = row_max(z, r)
            total = 0.0
            for j in range(z.shape[1]):
                e = math.exp(z[r, j] - top)
                out[r, j] = e
                total += e
            for j in range(z.shape[1]):
                out[r, j] /= total

    @cuda.jit
    def cross_entropy_rows(z, y, out):
        """out[r] = -sum_j y[r, j] * log_softmax(z)[r, j]."""
        r = cuda.grid(1)
        if r < z.shape[0]:
            top = row_max(z, r)
            total = 0.0
            for j in range(z.shape[1]):
                total += math.exp(z[r, j] - top)
            log_total = math.log(total)
            loss = 0.0
            for j in range(z.shape[1]):
                loss -= y[r, j] * (z[r, j] - top - log_total)
            out[r] = loss

    @cuda.jit
    def total(v, scale, out):
        """out[0] = scale * sum(v), one block: strided partial sums, then a tree in shared memory."""
        partial = cuda.shared.array(THREADS, np.float64)
        t = cuda.threadIdx.x
        acc = 0.0
        for i in range(t, v.size, THREADS):
            acc += v[i]
        partial[t] = acc
        cuda.syncthreads()
        step = THREADS // 2
        while step > 0:
            if t < step:
                partial[t] += partial[t + step]
            cuda.syncthreads()
            step //= 2
        if t == 0:
            out[0] = partial[0] * scale

    @cuda.jit
    def square(v, out):
        i = cuda.grid(1)
        if i < v.size:
            out[i] = v[i] * v[i]

    @cuda.jit
    def subtract(a, b, out):
        i = cuda.grid(1)
        if i < out.size:
            out[i] = a[i] - b[i]

    @cuda.jit
    def sum_rows(a, out):
        """out[c] = sum_r a[r, c], one thread per column."""
        c = cuda.grid(1)
        if c < a.shape[1]:
            acc = 0.0
            for r in range(a.shape[0]):
                acc += a[r, c]
            out[c] = acc

    @cuda.jit
    def scale(a, s):
        i = cuda.grid(1)
        if i < a.size:
            a[i] *= s

    @cuda.jit
    def sgd_update(p, g_, lr):
        i = cuda.grid(1)
        if i < p.size:
            p[i] -= lr * g_[i]

    @cuda.jit
    def adam_update(p, g_, m, v, lr, beta1, beta2, eps):
        i = cuda.grid(1)
        if i < p.size:
            m[i] = beta1 * m[i] + (1 - beta1) * g_[i]
            v[i] = beta2 * v[i] + (1 - beta2) * g_[i] * g_[i]
            p[i] -= lr * m[i] / (math.sqrt(v[i]) + eps)

    @cuda.jit
    def fill(a, value):
        i = cuda.grid(1)
        if i < a.size:
            a[i] = value

    @cuda.jit
    def one_hot(labels, out):
        r = cuda.grid(1)
        if r < out.shape[0]:
            for j in range(out.shape[1]):
                out[r, j] = 1 if j == labels[r] else 0

    @cuda.jit
    def argmax_rows(a, out):
        r = cuda.grid(1)
        if r < a.shape[0]:
            best = 0
            for j in range(1, a.shape[1]):
                if a[r, j] > a[r, best]:
                    best = j
            out[r] = best

    @cuda.jit
    def take_rows(x, rows, out):
        i = cuda.grid(1)
        n, k = out.shape
        if i < n * k:
            out[i // k, i % k] = x[rows[i // k], i % k]

    @cuda.jit
    def from_uint8(x, s, out):
        """Images uploaded as uint8 (a quarter of the bytes), scaled to floats on the device."""
        i = cuda.grid(1)
        if i < out.size:
            out[i] = x[i] * s

    return SimpleNamespace(
        gemm=gemm, bias_activation=bias_activation, activation=activation, activation_backward=activation_backward,
        softmax=softmax, cross_entropy_rows=cross_entropy_rows, total=total, square=square, subtract=subtract,
        sum_rows=sum_rows, scale=scale, sgd_update=sgd_update, adam_update=adam_update, fill=fill, one_hot=one_hot,
        argmax_rows=argmax_rows, take_rows=take_rows, from_uint8=from_uint8,
    )
