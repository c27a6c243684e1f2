"""Where the sparse first layer's full-batch step spends its time, timed apart.

MNIST's test images tiled to 60,000 (generated strokes at MNIST's density where they are absent;
``benchmarks/test_sparse.py``), the tutorial network 784-16-16-10 tanh in float32, on 2 threads
then 1: the dense and the sparse step (``loss_and_gradients`` on the prepared batch), the sparse
step over all-zero images of the same shape (its fixed costs: transposing W¹ and its gradient,
and the layers above the first), the forward product alone (``products_nt``, parallel) and, on
one thread, the weight gradient alone (``products_tn``; its dZ comes from memory, where the
fused pass has it in L1, so it overstates). Medians of 15 calls after one.

    flock /tmp/netcore-heavy.lock python -m benchmarks.sparse_profile
"""

from __future__ import annotations

import time

import numpy as np


def _median_ms(f, calls: int = 15) -> float:
    f()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main() -> None:
    import numba

    from netcore import MLP
    from netcore.backends import numba_sparse as kernels
    from netcore.backends.numba_backend import NumbaBackend
    from netcore.backends.numba_sparse_path import row_width

    from .test_sparse import mnist_density

    X, y, what = mnist_density(60_000)
    before = numba.get_num_threads()
    for threads in (2, 1):
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        out = {}
        for path in ("dense", "sparse"):
            net = MLP([784, 16, 16, 10], "tanh", backend=NumbaBackend("float32", first_layer=path), dtype="float32", seed=2)
            batch = net.prepare(X, y)
            out[path] = _median_ms(lambda: net.loss_and_gradients(batch.X, batch.Y))
        S = batch.X
        zero = net.prepare(np.zeros_like(X), y)
        out["sparse, no nonzeros"] = _median_ms(lambda: net.loss_and_gradients(zero.X, zero.Y))
        hp = row_width(16, np.float32)
        W1T = np.zeros((785, hp), np.float32)
        W1T[:784, :16] = np.random.default_rng(0).standard_normal((784, 16))
        rows, Z = np.arange(len(S)), np.empty((len(S), hp), np.float32)
        out["forward product only"] = _median_ms(lambda: kernels.products_nt(S.values, S.indices, S.indptr, rows, W1T, 16, Z))
        if threads == 1:
            G1T = np.zeros((784, hp), np.float32)
            out["weight gradient only"] = _median_ms(lambda: kernels.products_tn(S.values, S.indices, S.indptr, rows, Z, 16, G1T))
        print(f"{what}, {S.values.size:,} nonzeros, threads {numba.get_num_threads()}: "
              + "; ".join(f"{k} {v:.2f} ms" for k, v in out.items()), flush=True)
    numba.set_num_threads(before)


if __name__ == "__main__":
    main()
