"""CUDA kernels for the ``numba-cuda`` backend, written with Numba's CUDA target.

Built per dtype on first use (shared-memory tiles need their dtype at compile time), so importing
this module compiles nothing and needs no GPU. Under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) the same kernels run in Python threads, which is how CI tests their
logic without a GPU; the simulator gets smaller blocks so that it stays quick.

A float32 kernel does no double-precision arithmetic: Numba types a Python ``1`` or ``0.0`` next
to a float32 as float64 (NumPy's scalar rules), so every constant is built as ``dtype(...)``, the
backend passes scalars already in the dtype (:data:`SIGNATURES` lists the types it launches with),
and accumulators are of the dtype. ``tests/test_cuda_sources.py`` compiles every kernel to PTX and
checks the float32 ones for ``.f64`` instructions.
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
ROWS_PER_THREAD = 4 if SIMULATED else 64  # rows one thread sums in a pass of sum_rows
MAX_GRID_Y = 65_535  # CUDA's limit on a grid's y (and z) dimension

from .base import RELU, TANH  # noqa: E402  (the contract's activation codes)


def blocks(n: int) -> int:
    return max(1, math.ceil(n / THREADS))


def gemm_grid(M: int, N: int) -> tuple[int, int]:
    """Blocks of the matrix product: row tiles along x (up to 2**31 - 1 of them), column tiles
    along y, capped at CUDA's 65,535; the kernel loops over the column tiles beyond the cap."""
    return max(1, math.ceil(M / TILE)), max(1, min(math.ceil(N / TILE), MAX_GRID_Y))


def sum_rows_chunks(n: int) -> int:
    """Row chunks of one sum_rows pass over ``n`` rows (each thread sums one chunk of a column)."""
    return max(1, math.ceil(n / ROWS_PER_THREAD))


def _signatures(dt):
    """Each kernel's argument types as the backend launches it (C-contiguous device arrays,
    scalars in the compute dtype, integer flags as int64)."""
    from numba import types

    i64, u8, b1 = types.int64, types.uint8, types.boolean
    v, m = dt[::1], dt[:, ::1]
    return {
        "gemm": (m, m, m, b1, b1),
        "bias_activation": (m, v, i64),
        "activation": (v, i64),
        "activation_backward": (v, v, i64),
        "softmax": (m, m),
        "cross_entropy_rows": (m, m, v),
        "total": (v, dt, v),
        "square": (v, v),
        "subtract": (v, v, v),
        "sum_rows": (m, m),
        "scale": (v, dt),
        "sgd_update": (v, v, dt),
        "adam_update": (v, v, v, v, dt, dt, dt, dt),
        "fill": (v, dt),
        "one_hot": (i64[::1], m),
        "argmax_rows": (m, i64[::1]),
        "take_rows": (m, i64[::1], m),
        "from_uint8": (u8[::1], dt, v),
    }


def signatures(dtype_name: str) -> dict[str, tuple]:
    """``{kernel name: argument types}`` for one dtype: what the PTX compile test compiles."""
    from numba import from_dtype

    return _signatures(from_dtype(np.dtype(dtype_name)))


@cache
def kernels(dtype_name: str) -> SimpleNamespace:
    """Every kernel, compiled for one float dtype (lazily, on first launch)."""
    from numba import from_dtype

    dtype = from_dtype(np.dtype(dtype_name))
    tile, threads, rows_per_thread = TILE, THREADS, ROWS_PER_THREAD

    @cuda.jit(device=True)
    def g(v, kind):
        zero, one = dtype(0), dtype(1)
        if kind == TANH:
            return math.tanh(v)
        if kind == RELU:
            # max(v, 0) as NumPy's maximum: -inf gives 0 (v * 0 would give NaN), NaN stays NaN
            return zero if v <= zero else v
        return one / (one + math.exp(-v))

    @cuda.jit(device=True)
    def dg(a, kind):
        zero, one = dtype(0), dtype(1)
        if kind == TANH:
            return one - a * a
        if kind == RELU:
            return one if a > zero else zero
        return a * (one - a)

    @cuda.jit(device=True)
    def row_max(z, r):
        top = z[r, 0]
        for j in range(1, z.shape[1]):
            top = max(top, z[r, j])
        return top

    @cuda.jit
    def gemm(A, B, C, trans_a, trans_b):
        """C = op(A) @ op(B), op = transpose when the flag is set; tiles of A and B go through
        shared memory so each global element is read once per tile, not once per product.
        Row tiles run along the grid's x, column tiles along y, looping past the y limit."""
        sa = cuda.shared.array((tile, tile), dtype)
        sb = cuda.shared.array((tile, tile), dtype)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        M, N = C.shape
        K = A.shape[0] if trans_a else A.shape[1]
        row = cuda.blockIdx.x * tile + ty
        for col_tile in range(cuda.blockIdx.y, (N + tile - 1) // tile, cuda.gridDim.y):
            col = col_tile * tile + tx
            acc = dtype(0)
            for t in range((K + tile - 1) // tile):
                k = t * tile + tx
                if row < M and k < K:
                    sa[ty, tx] = A[k, row] if trans_a else A[row, k]
                else:
                    sa[ty, tx] = dtype(0)
                k = t * tile + ty
                if col < N and k < K:
                    sb[ty, tx] = B[col, k] if trans_b else B[k, col]
                else:
                    sb[ty, tx] = dtype(0)
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
            total = dtype(0)
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
            total = dtype(0)
            for j in range(z.shape[1]):
                total += math.exp(z[r, j] - top)
            log_total = math.log(total)
            loss = dtype(0)
            for j in range(z.shape[1]):
                loss -= y[r, j] * (z[r, j] - top - log_total)
            out[r] = loss

    @cuda.jit
    def total(v, scale, out):
        """out[0] = scale * sum(v), one block: strided partial sums, then a tree in shared memory."""
        partial = cuda.shared.array(threads, dtype)
        t = cuda.threadIdx.x
        acc = dtype(0)
        for i in range(t, v.size, threads):
            acc += v[i]
        partial[t] = acc
        cuda.syncthreads()
        step = threads // 2
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
        """One pass of the column sums: out[c, j] = sum of a[r, j] over the c-th chunk of
        ``rows_per_thread`` rows. One thread per (chunk, column), neighbouring threads on
        neighbouring columns (coalesced reads); the backend repeats the pass until one row is left."""
        i = cuda.grid(1)
        n, k = a.shape
        if i < out.shape[0] * k:
            c, j = i // k, i % k
            acc = dtype(0)
            for r in range(c * rows_per_thread, min(n, (c + 1) * rows_per_thread)):
                acc += a[r, j]
            out[c, j] = acc

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
            one = dtype(1)
            m[i] = beta1 * m[i] + (one - beta1) * g_[i]
            v[i] = beta2 * v[i] + (one - beta2) * g_[i] * g_[i]
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
                out[r, j] = dtype(1) if j == labels[r] else dtype(0)

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
            out[i] = dtype(x[i]) * s

    return SimpleNamespace(
        gemm=gemm, bias_activation=bias_activation, activation=activation, activation_backward=activation_backward,
        softmax=softmax, cross_entropy_rows=cross_entropy_rows, total=total, square=square, subtract=subtract,
        sum_rows=sum_rows, scale=scale, sgd_update=sgd_update, adam_update=adam_update, fill=fill, one_hot=one_hot,
        argmax_rows=argmax_rows, take_rows=take_rows, from_uint8=from_uint8,
    )
