"""Measure where the sparse first layer starts to pay: the crossover density by width and batch.

For each first-layer width (a ``784-width-10`` tanh network, float32) and batch size, one step
(or an epoch of shuffled mini-batches) is timed on the dense and the sparse path over
generated pen-stroke images at densities 5-70%; the crossover is where the time ratio
sparse / dense crosses 1 (linear between the densities measured). These runs produced the
tables in ``backends/numba_sparse_choice.py``. Prints one line per width and batch size.

    flock /tmp/netcore-heavy.lock python -m benchmarks.sparse_crossover --widths 16,100 --batches 0,200
"""

from __future__ import annotations

import argparse
import time

import numpy as np

DENSITIES = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]


def crossover(width: int, batch: int, data: dict, dtype: str, rounds: int) -> tuple[float, list[tuple[float, float]]]:
    """``(crossover density, [(density, sparse / dense time), ...])``; batch 0: the whole batch."""
    from netcore.backends.numba_backend import NumbaBackend
    from netcore import MLP

    points = []
    for X in data.values():
        n = len(X)
        y = np.arange(n) % 10
        order = np.random.default_rng(0).permutation(n)
        batches = [None] if not batch else [order[i:i + batch] for i in range(0, n, batch)]
        times = {}
        for path in ("dense", "sparse"):
            net = MLP((X.shape[1], width, 10), "tanh", backend=NumbaBackend(dtype, first_layer=path), dtype=dtype, seed=2)
            prepared = net.prepare(X, y, batch_size=batch or None)
            net.loss_and_gradients(prepared.X, prepared.Y, batches[0])  # compile and warm up
            best = float("inf")
            for _ in range(rounds):
                start = time.perf_counter()
                for rows in batches:
                    net.loss_and_gradients(prepared.X, prepared.Y, rows)
                best = min(best, time.perf_counter() - start)
            times[path] = best
        points.append((float(np.count_nonzero(X) / X.size), times["sparse"] / times["dense"]))
        if points[-1][1] > 1.3:  # well past it
            break
    densities, ratios = zip(*points)
    return (float(np.interp(1.0, ratios, densities)) if max(ratios) > 1 else float("nan")), points


def main() -> None:
    from benchmarks.sparse_data import strokes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="4,8,10,16,24,32,64,100,128,256,512", help="first-layer widths")
    parser.add_argument("--batches", default="0", help="batch sizes (0: the whole batch)")
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, help="Numba threads (default: all)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        import numba

        numba.set_num_threads(args.threads)
    data = {d: strokes(args.samples, 784, d, seed=0) for d in DENSITIES}
    for batch in (int(b) for b in args.batches.split(",")):
        for width in (int(w) for w in args.widths.split(",")):
            cross, points = crossover(width, batch, data, args.dtype, args.rounds)
            line = " ".join(f"{d:.2f}:{r:.2f}" for d, r in points)
            print(f"width {width:4d}  batch {batch or 'all':>5}  {args.dtype}  crossover {cross:.3f}   density:sparse/dense {line}", flush=True)


if __name__ == "__main__":
    main()
