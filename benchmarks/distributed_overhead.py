"""Data-parallel overhead: 2 single-threaded Dask workers against one process with 2 threads.

    python -m benchmarks.distributed_overhead [--samples 60000] [--epochs 15]

Full-batch epochs of the tutorial network on MNIST-shaped uint8 data (numba backend, float32).
The workers read their halves from ``.npy`` files. Prints medians of epoch time, the part of it
not spent computing on the workers (communication and scheduling), and the bytes moved per step.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()

    import numba

    from netcore import MLP, SGD
    from netcore.distributed import DistributedTrainer, connect, npy_partitions, shard_to_npy

    sizes = [784, 16, 16, 10]
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (args.samples, 784), dtype=np.uint8)
    y = rng.integers(0, 10, args.samples)

    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    net = MLP(sizes, backend="numba", dtype="float32", seed=2)
    batch = net.prepare(X, y)
    net.train_step(batch.X, batch.Y, 0.1)
    single = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        loss, _ = net.train_step(batch.X, batch.Y, 0.1)
        net.backend.to_float(loss)
        single.append(time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as folder:
        xp, yp = shard_to_npy(X, y, folder)
        client = connect(workers=2, threads_per_worker=1)
        try:
            dist_net = MLP(sizes, backend="numpy", dtype="float32", seed=2)
            trainer = DistributedTrainer(dist_net, client, npy_partitions(xp, yp, 2), SGD(0.1), worker_backend="numba")
            history = trainer.fit(args.epochs + 2)
        finally:
            cluster = client.cluster
            client.close()
            cluster.close()
    epoch = np.median(history["seconds"][2:])  # the first epochs load the shards and the kernels
    comm = np.median(trainer.comm_seconds[2:])
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    one = np.median(single)
    print(f"one process, 2 threads:            {one * 1e3:7.1f} ms/epoch")
    print(f"2 workers x 1 thread (Dask):       {epoch * 1e3:7.1f} ms/epoch, of which {comm * 1e3:.1f} ms not computing on the workers")
    print(f"ratio distributed / one process:   {epoch / one:.2f}")
    print(f"per step: parameters out {params * 4 / 1024:.0f} KiB with each worker's task, gradient sums back {params * 4 / 1024:.0f} KiB per worker")


if __name__ == "__main__":
    main()
