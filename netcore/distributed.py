"""Data-parallel training on a Dask cluster, the same backends on every worker.

Full-batch gradient descent is a sum over samples, so it splits across machines: each worker
holds a partition of the data in its memory for the whole run, computes the gradient *sums* of
its partition with its own backend (numba, numpy or cupy, chosen on the worker as on one
machine), the sums are added pairwise as a tree, the driver applies the update, and the new
parameters go back out. The result equals a one-process run up to the order of the sums.

Partitions are *recipes*, not arrays: a worker reads its own rows of an IDX or ``.npy`` file
from a path every worker can see, so the data never passes through the driver. If a worker
dies, Dask runs the recipe again on another worker and training continues.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .datasets import IDXFormatError, open_idx, read_idx_header
from .network import MLP
from .optim import Optimizer, get_optimizer
from .trainer import EpochLog, History


# -- partitions: where a worker finds its rows ---------------------------------------------------
@dataclass(frozen=True)
class IDXRows:
    """Rows ``start:stop`` of a pair of IDX files (images, labels), gzipped or not. An uncompressed
    file is read at its offset; a gzipped one is decompressed up to the rows and no further."""

    images: str
    labels: str
    start: int
    stop: int

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        return _idx_rows(self.images, self.start, self.stop).reshape(self.stop - self.start, -1), _idx_rows(self.labels, self.start, self.stop)


@dataclass(frozen=True)
class NpyRows:
    """Rows ``start:stop`` of two ``.npy`` files, memory-mapped so only those rows are read."""

    X: str
    y: str
    start: int
    stop: int

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        X = np.load(self.X, mmap_mode="r")[self.start:self.stop]
        y = np.load(self.y, mmap_mode="r")[self.start:self.stop]
        return np.ascontiguousarray(X.reshape(len(X), -1)), np.asarray(y)


def _idx_rows(path: str, start: int, stop: int) -> np.ndarray:
    with open_idx(path) as fh:
        dtype, shape, header = read_idx_header(fh, path)
        row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        fh.seek(header + start * row)  # gzip seeks forward by decompressing, never holding the prefix
        data = fh.read((stop - start) * row)
    if len(data) != (stop - start) * row:
        raise IDXFormatError(f"{path}: rows {start}:{stop} run past the end of the file")
    return np.frombuffer(data, dtype=dtype).reshape((stop - start, *shape[1:])).astype(dtype.newbyteorder("="))


def idx_partitions(images: str, labels: str, n_parts: int) -> list[IDXRows]:
    """Split a pair of IDX files into ``n_parts`` contiguous row ranges (reads only the headers)."""
    with open_idx(images) as fh:
        n = read_idx_header(fh, images)[1][0]
    return [IDXRows(str(images), str(labels), start, stop) for start, stop in _ranges(n, n_parts)]


def npy_partitions(X: str, y: str, n_parts: int) -> list[NpyRows]:
    n = np.load(X, mmap_mode="r").shape[0]
    return [NpyRows(str(X), str(y), start, stop) for start, stop in _ranges(n, n_parts)]


def _ranges(n: int, parts: int) -> list[tuple[int, int]]:
    bounds = np.linspace(0, n, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


# -- what runs on a worker ---------------------------------------------------------------------------
def _load(recipe: Any) -> tuple[np.ndarray, np.ndarray]:
    return recipe.load()


_WORKER_STATE: dict[Any, Any] = {}
TREE_ABOVE = 4  # up to this many partial sums go straight to the driver; more are reduced as a tree  # per worker process: networks and prepared partitions


def _partition_gradient(part: tuple[np.ndarray, np.ndarray], key: str, config: dict, params: list, rows: np.ndarray | None) -> dict:
    """Gradient *sums* (not means) of one partition, or of its rows ``rows``, with the worker's backend."""
    start = time.perf_counter()
    net_key = (config["layer_sizes"], config["activation"], config["backend"], config["dtype"])
    net = _WORKER_STATE.get(net_key)
    if net is None:
        net = _WORKER_STATE[net_key] = MLP(config["layer_sizes"], config["activation"], backend=config["backend"], dtype=config["dtype"])
    net.set_parameters(params)
    batch = _WORKER_STATE.get((key, net_key))
    if batch is None:  # prepared once per partition and worker, then reused every step
        batch = _WORKER_STATE[(key, net_key)] = net.prepare(*part)
    if rows is not None and len(rows) == 0:
        return {"n": 0, "loss": 0.0, "correct": 0, "grads": [(np.zeros_like(W), np.zeros_like(b)) for W, b in params], "seconds": 0.0}
    ops = net.backend
    loss, grads, Z = net.loss_and_gradients(batch.X, batch.Y, rows)
    m = len(batch.labels) if rows is None else len(rows)
    labels = batch.labels if rows is None else batch.labels[rows]
    return {
        "n": m,
        "loss": ops.to_float(loss) * m,
        "correct": int(np.sum(ops.argmax_rows(Z) == labels)),
        "grads": [(ops.to_numpy(dW) * m, ops.to_numpy(db) * m) for dW, db in grads],
        "seconds": time.perf_counter() - start,
    }


def _forget(keys: list[str]) -> int:
    """Drop a finished trainer's prepared partitions from this worker's cache."""
    stale = [k for k in _WORKER_STATE if isinstance(k, tuple) and k[0] in keys]
    for k in stale:
        del _WORKER_STATE[k]
    return len(stale)


def _add(a: dict, b: dict) -> dict:
    """One node of the reduction tree."""
    return {
        "n": a["n"] + b["n"],
        "loss": a["loss"] + b["loss"],
        "correct": a["correct"] + b["correct"],
        "grads": [(dWa + dWb, dba + dbb) for (dWa, dba), (dWb, dbb) in zip(a["grads"], b["grads"])],
        "seconds": max(a["seconds"], b["seconds"]),
    }


# -- the driver -----------------------------------------------------------------------------------------
def connect(scheduler: str | None = None, workers: int | None = None, threads_per_worker: int = 1, timeout: float = 10.0):
    """A Dask client: to an existing scheduler (a clear error within ``timeout`` if it does not
    answer) or to a new local cluster of ``workers`` processes."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"could not reach the Dask scheduler at {scheduler} within {timeout:g} s ({exc}); is it running, and is the address right?") from None
    env = {"NUMBA_NUM_THREADS": str(threads_per_worker), "OMP_NUM_THREADS": str(threads_per_worker), "OPENBLAS_NUM_THREADS": str(threads_per_worker)}
    cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True, dashboard_address=None, env=env)
    return Client(cluster)


@dataclass
class DistributedTrainer:
    """Data-parallel training of ``net`` on ``client``'s workers.

    ``partitions`` are recipes (:class:`IDXRows`, :class:`NpyRows`, or anything with ``load()``)
    or ``(X, y)`` arrays, which are sent to the workers once. ``batch_size=None`` is full-batch
    gradient descent; a number gives synchronous mini-batch SGD over the whole data set (each
    worker computes its share of every batch). The backend on the workers is ``worker_backend``
    (default: the network's backend name).
    """

    net: MLP
    client: Any
    partitions: Sequence[Any]
    optimizer: str | Optimizer = "sgd"
    lr: float | None = None
    batch_size: int | None = None
    schedule: Any = None
    seed: int | None = None
    worker_backend: str | None = None
    history: History = field(default_factory=History)
    epoch: int = 0

    def __post_init__(self) -> None:
        self.optimizer = get_optimizer(self.optimizer, **({} if self.lr is None else {"lr": self.lr}))
        self.rng = np.random.RandomState(self.seed)
        self.config = {**self.net.describe(), "layer_sizes": tuple(self.net.layer_sizes), "backend": self.worker_backend or self.net.backend.name}
        self.keys, self.parts = [], []
        from dask.delayed import Delayed

        for i, p in enumerate(self.partitions):
            if isinstance(p, Delayed):  # a block of a dask array, computed where the scheduler likes
                future = self.client.compute(p)
            elif isinstance(p, (IDXRows, NpyRows)) or (hasattr(p, "load") and not isinstance(p, tuple)):
                # a recipe: the worker reads its rows itself, and again elsewhere if it dies
                future = self.client.submit(_load, p, key=f"netcore-part-{i}-{abs(hash(p))}", pure=False)
            else:  # arrays from the driver (no recipe to rerun: lost with their worker)
                future = self.client.scatter(tuple(np.asarray(a) for a in p), hash=False)
            self.parts.append(future)
            self.keys.append(future.key)
        sizes = self.client.gather([self.client.submit(lambda part: len(part[1]), f) for f in self.parts])
        self.sizes = np.asarray(sizes)
        self.n = int(self.sizes.sum())
        self.comm_seconds: list[float] = []

    def close(self) -> None:
        """Release the partitions on the workers (the data and the prepared copies)."""
        try:
            self.client.run(_forget, self.keys)
        except (OSError, TimeoutError):  # a worker already gone has nothing left to release
            pass
        for future in self.parts:
            future.release()
        self.parts = []

    def __enter__(self) -> DistributedTrainer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _step(self, rows_per_part: list | None, attempts: int = 3) -> dict:
        """One synchronous step, tried again if a worker is lost under it: the step changes nothing
        until its result is back, and Dask rebuilds lost partitions from their recipes."""
        from distributed import CancelledError, KilledWorker

        for attempt in range(attempts):
            try:
                return self._try_step(rows_per_part)
            except (OSError, TimeoutError, CancelledError, KilledWorker) as exc:  # a lost worker or connection
                if attempt == attempts - 1:
                    raise RuntimeError(f"a training step failed {attempts} times, last with {type(exc).__name__}: {exc}") from exc
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    def _try_step(self, rows_per_part: list | None) -> dict:
        """A gradient task per partition, the parameters riding along (52 KB for the tutorial
        network: cheaper inline than a separate scatter), then the sums: added on the driver for a
        few partitions, as a tree of additions on the workers for more (so the driver receives one
        result, not one per worker)."""
        params = self.net.get_parameters()
        level = [
            self.client.submit(_partition_gradient, part, key, self.config, params, None if rows_per_part is None else rows_per_part[i], pure=False)
            for i, (part, key) in enumerate(zip(self.parts, self.keys))
        ]
        while len(level) > TREE_ABOVE:
            paired = [self.client.submit(_add, a, b, pure=False) for a, b in zip(level[::2], level[1::2])]
            level = paired + ([level[-1]] if len(level) % 2 else [])
        results = self.client.gather(level)
        total = results[0]
        for r in results[1:]:
            total = _add(total, r)
        return total

    def fit(self, epochs: int, callbacks: Sequence[Any] = ()) -> History:
        """Train until ``epochs`` epochs are done in all; each log's ``seconds`` is the wall time,
        and ``comm_seconds`` keeps how much of it was not spent computing on the workers."""
        ops = self.net.backend
        self.target_epochs = epochs
        while self.epoch < epochs:
            lr = self.schedule(self.epoch) if self.schedule is not None else self.optimizer.lr
            start = time.perf_counter()
            if self.batch_size is None or self.batch_size >= self.n:
                batches = [None]
            else:
                order = self.rng.permutation(self.n)
                batches = [order[i:i + self.batch_size] for i in range(0, self.n, self.batch_size)]
            offsets = np.concatenate([[0], np.cumsum(self.sizes)])
            loss = correct = compute = 0.0
            for rows in batches:
                per_part = None
                if rows is not None:  # the global batch, split into each partition's local rows
                    per_part = [np.sort(rows[(rows >= a) & (rows < b)]) - a for a, b in zip(offsets[:-1], offsets[1:])]
                total = self._step(per_part)
                m = total["n"]
                grads = [(ops.asarray(dW / m), ops.asarray(db / m)) for dW, db in total["grads"]]
                self.optimizer.update(ops, self.net.layers, grads, lr)
                loss += total["loss"]
                correct += total["correct"]
                compute += total["seconds"]
            seconds = time.perf_counter() - start
            self.comm_seconds.append(seconds - compute)
            log = EpochLog(self.epoch + 1, loss / self.n, correct / self.n, seconds, lr)
            self.epoch += 1
            self.history.epochs.append(log)
            for cb in callbacks:
                getattr(cb, "on_epoch_end", lambda t, e: None)(self, log)
        return self.history


def dask_array_partitions(X: Any, y: Any) -> list[Any]:
    """Partitions from dask arrays (one per block of rows), persisted on the workers."""
    import dask

    xs, ys = X.to_delayed().ravel(), y.to_delayed().ravel()
    return [dask.delayed(lambda a, b: (np.asarray(a).reshape(len(a), -1), np.asarray(b)))(a, b) for a, b in zip(xs, ys)]


def expected_epoch_seconds(n_samples: int, workers: int, seconds_per_sample: float, step_overhead: float, steps: int = 1) -> float:
    """A model of the epoch time: compute split evenly, plus a fixed cost per synchronous step
    (parameter broadcast, reduction, scheduling) that grows with ``log2(workers)``."""
    return n_samples * seconds_per_sample / workers + steps * step_overhead * max(1.0, math.log2(max(workers, 1)))


def shard_to_npy(X: np.ndarray, y: np.ndarray, folder: str, name: str = "data") -> tuple[str, str]:
    """Write ``X`` and ``y`` as ``.npy`` files workers can memory-map (``npy_partitions``)."""
    os.makedirs(folder, exist_ok=True)
    xp, yp = os.path.join(folder, f"{name}-X.npy"), os.path.join(folder, f"{name}-y.npy")
    np.save(xp, X)
    np.save(yp, y)
    return xp, yp
