"""Time a fresh process's way to its first full-batch epoch on the numba backend.

Prints one JSON line: seconds to import netcore, to finish the first epoch (compiling or loading
the cached kernels), and a second epoch, plus the peak resident memory after one epoch and after
``--epochs`` more (equal when memory stays flat across epochs). Run by ``benchmarks/test_startup.py`` in subprocesses.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

start = time.perf_counter()


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the
    process that started us)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    import numpy as np

    from netcore import MLP

    imported = time.perf_counter() - start
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (args.samples, 784), dtype=np.uint8)
    y = rng.integers(0, 10, args.samples)
    net = MLP([784, 16, 16, 10], backend="numba", dtype="float32", seed=2)
    batch = net.prepare(X, y)
    net.train_step(batch.X, batch.Y, 0.1)
    first = time.perf_counter() - start
    rss_one = peak_mb()
    t = time.perf_counter()
    net.train_step(batch.X, batch.Y, 0.1)
    second = time.perf_counter() - t
    for _ in range(args.epochs):
        net.train_step(batch.X, batch.Y, 0.1)
    json.dump(
        {
            "import_s": imported,
            "first_epoch_done_s": first,
            "second_epoch_s": second,
            "dataset_mb": X.nbytes / 2**20,
            "peak_rss_after_1_epoch_mb": rss_one,
            "peak_rss_mb": peak_mb(),
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
