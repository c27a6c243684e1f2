"""Data-parallel training on a Dask cluster, the same backends on every worker.

Full-batch gradient descent is a sum over samples, so it splits across machines: each worker
holds a partition of the data in its memory for the whole run, computes the gradient *sums* of
its partition with its own backend (numba, numpy or cupy, chosen on the worker as on one
machine), the sums are added pairwise as a tree, the driver applies the update, and the new
parameters go back out. The result equals a one-process run up to the order of the sums.

Partitions are *recipes*, not arrays: a worker reads its own rows of an IDX or ``.npy`` file
from a path every worker can see, so the data never passes through the driver. Each partition
lives in a Dask actor (:class:`Shard`) that keeps its rows and a network between steps, so a
step is one message each way per partition. If a worker dies, its shards are rebuilt from
their recipes on another worker and training continues. The loop is :class:`~netcore.Trainer`'s;
this module only supplies where the gradients come from.
"""

from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .datasets import IDXFormatError, open_idx, read_idx_header
from .network import MLP
from .optim import Optimizer
from .trainer import EpochLog, History, StepResult, Trainer


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


def idx_partitions(images: str, labels: str, n_parts: int, stop: int | None = None) -> list[IDXRows]:
    """Split a pair of IDX files (their first ``stop`` rows, all if None) into ``n_parts``
    contiguous row ranges; reads only the headers."""
    with open_idx(images) as fh:
        n = read_idx_header(fh, images)[1][0]
    n = n if stop is None else min(n, stop)
    return [IDXRows(str(images), str(labels), start, end) for start, end in _ranges(n, n_parts)]


def npy_partitions(X: str, y: str, n_parts: int) -> list[NpyRows]:
    n = np.load(X, mmap_mode="r").shape[0]
    return [NpyRows(str(X), str(y), start, stop) for start, stop in _ranges(n, n_parts)]


def _ranges(n: int, parts: int) -> list[tuple[int, int]]:
    bounds = np.linspace(0, n, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


# -- what runs on a worker ---------------------------------------------------------------------------
class Shard:
    """One partition, living on one worker for the whole run (a Dask actor): its rows, moved to
    the worker's backend once, and a network to compute their gradients with. A step is then one
    message each way: the parameters in, the gradient sums out."""

    def __init__(self, part: Any, config: dict) -> None:
        X, y = part.load() if hasattr(part, "load") and not isinstance(part, tuple) else part
        self.net = MLP(config["layer_sizes"], config["activation"], backend=config["backend"], dtype=config["dtype"])
        self.batch = self.net.prepare(np.asarray(X).reshape(len(X), -1), np.asarray(y))
        self.n = len(self.batch.labels)

    def size(self) -> int:
        return self.n

    def gradient_sums(self, params: list, rows: np.ndarray | None) -> dict:
        """Gradient *sums* (not means) over this shard's rows ``rows`` (all if None), with the loss
        sum, the correct count and the seconds spent computing."""
        start = time.perf_counter()
        if rows is not None and len(rows) == 0:
            return {"n": 0, "loss": 0.0, "correct": 0, "grads": [(np.zeros_like(W), np.zeros_like(b)) for W, b in params], "seconds": 0.0}
        self.net.set_parameters(params)
        ops = self.net.backend
        loss, grads, Z = self.net.loss_and_gradients(self.batch.X, self.batch.Y, rows)
        m = self.n if rows is None else len(rows)
        labels = self.batch.labels if rows is None else self.batch.labels[rows]
        return {
            "n": m,
            "loss": ops.to_float(loss) * m,
            "correct": int(np.sum(ops.argmax_rows(Z) == labels)),
            "grads": [(ops.to_numpy(dW) * m, ops.to_numpy(db) * m) for dW, db in grads],
            "seconds": time.perf_counter() - start,
        }


def _add(a: dict, b: dict) -> dict:
    """Two shards' sums, added."""
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
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"could not reach the Dask scheduler at {scheduler} within {timeout:g} s ({exc}); is it running, and is the address right?") from None
    env = {"NUMBA_NUM_THREADS": str(threads_per_worker), "OMP_NUM_THREADS": str(threads_per_worker), "OPENBLAS_NUM_THREADS": str(threads_per_worker)}
    # silence_logs: Dask's warnings (an event loop "unresponsive" while a worker computes, on a
    # loaded machine) would interleave with the run's own lines; errors still show
    cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True, dashboard_address=None, env=env,
                           silence_logs=logging.ERROR)
    return Client(cluster)


class DaskGradients:
    """A gradient source for :meth:`netcore.Trainer.fit_source`: one :class:`Shard` actor per
    partition, spread over the workers.

    A step sends the parameters to every shard with the rows it should use, and adds the sums
    that come back; the trainer does everything else. If a worker dies, its shards are rebuilt
    elsewhere from their recipes and the step is tried again (a step changes nothing until its
    results are back). Partitions given as arrays have no recipe: they are lost with their worker.
    """

    def __init__(self, client: Any, partitions: Sequence[Any], config: dict, attempts: int = 3) -> None:
        from dask.delayed import Delayed

        self.client, self.config, self.attempts = client, config, attempts
        self.recipes: list[Any] = []
        for p in partitions:
            if isinstance(p, Delayed):  # a block of a dask array, computed where the scheduler likes
                p = client.compute(p)
            elif not (hasattr(p, "load") and not isinstance(p, tuple)):  # arrays from the driver
                p = client.scatter(tuple(np.asarray(a) for a in p), hash=False)
            self.recipes.append(p)
        self.shards: list[Any] = []
        self.futures: list[Any] = []
        self._start_shards()
        self.sizes = np.asarray([s.size().result() for s in self.shards])
        self.n_samples = int(self.sizes.sum())
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        self.compute_seconds = 0.0  # the longest shard's compute time, summed over steps

    def _start_shards(self) -> None:
        workers = sorted(self.client.scheduler_info()["workers"]) or [None]
        self.futures = [
            self.client.submit(Shard, recipe, self.config, actor=True, workers=[workers[i % len(workers)]] if workers[0] else None, pure=False)
            for i, recipe in enumerate(self.recipes)
        ]
        self.shards = [f.result() for f in self.futures]

    def close(self) -> None:
        """Release the shards (their data and networks) on the workers."""
        for future in self.futures:
            future.release()
        self.shards, self.futures = [], []
        gc.collect()  # actor proxies sit in reference cycles; the workers drop a shard when its last proxy goes

    def _sums(self, params: list, rows: np.ndarray | None) -> dict:
        per_shard = [None] * len(self.shards)
        if rows is not None:  # the global batch, split into each shard's local rows
            per_shard = [np.sort(rows[(rows >= a) & (rows < b)]) - a for a, b in zip(self.offsets[:-1], self.offsets[1:])]
        calls = [shard.gradient_sums(params, r) for shard, r in zip(self.shards, per_shard)]  # all sent before any is awaited
        results = [call.result() for call in calls]
        total = results[0]
        for r in results[1:]:
            total = _add(total, r)
        return total

    def step(self, rows: np.ndarray | None, *, net: MLP) -> StepResult:
        from distributed import CancelledError, KilledWorker

        params = net.get_parameters()
        for attempt in range(self.attempts):
            try:
                total = self._sums(params, rows)
                break
            except (OSError, TimeoutError, CancelledError, KilledWorker, ValueError) as exc:  # a lost worker or connection
                if attempt == self.attempts - 1:
                    raise RuntimeError(f"a training step failed {self.attempts} times, last with {type(exc).__name__}: {exc}") from exc
                time.sleep(0.5 * (attempt + 1))
                self._start_shards()  # rebuilt from the recipes, on the workers there are now
        ops, m = net.backend, total["n"]
        self.compute_seconds += total["seconds"]
        grads = [(ops.asarray(dW / m), ops.asarray(db / m)) for dW, db in total["grads"]]
        return StepResult(total["loss"] / m, grads, total["correct"], None)


class _BoundSource:
    """A :class:`DaskGradients` seen through one network (the trainer's)."""

    def __init__(self, source: DaskGradients, net: MLP) -> None:
        self.source, self.net, self.n_samples = source, net, source.n_samples

    def step(self, rows: np.ndarray | None) -> StepResult:
        return self.source.step(rows, net=self.net)


class DistributedTrainer(Trainer):
    """A :class:`~netcore.Trainer` whose gradients come from ``client``'s workers.

    ``partitions`` are recipes (:class:`IDXRows`, :class:`NpyRows`, or anything with ``load()``),
    dask-array blocks, or ``(X, y)`` arrays (sent to the workers once). The training itself is
    the Trainer's: full batch or synchronous mini-batches over the whole data set, schedules,
    L2, validation data (evaluated here), callbacks, divergence checks, ``save``/``restore``.
    The workers compute with ``worker_backend`` (default: the network's backend name).
    ``comm_seconds`` keeps, per epoch, the part of the wall time not spent computing on the workers.
    """

    def __init__(
        self,
        net: MLP,
        client: Any,
        partitions: Sequence[Any],
        optimizer: str | Optimizer = "sgd",
        lr: float | None = None,
        batch_size: int | None = None,
        schedule: Any = None,
        seed: int | None = None,
        worker_backend: str | None = None,
        **trainer_options: Any,
    ) -> None:
        super().__init__(net, optimizer, lr=lr, batch_size=batch_size, schedule=schedule, seed=seed, **trainer_options)
        config = {**net.describe(), "layer_sizes": tuple(net.layer_sizes), "backend": worker_backend or net.backend.name}
        self.source = DaskGradients(client, partitions, config)
        self.comm_seconds: list[float] = []

    @property
    def n(self) -> int:
        return self.source.n_samples

    def close(self) -> None:
        """Release the shards on the workers."""
        self.source.close()

    def __enter__(self) -> DistributedTrainer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def fit(self, epochs: int, validation_data: tuple[Any, Any] | None = None, callbacks: Sequence[Any] = ()) -> History:  # type: ignore[override]
        """Train until ``epochs`` epochs are done in all (see :meth:`Trainer.fit`)."""
        return self.fit_source(_BoundSource(self.source, self.net), epochs, validation_data, [_CommSeconds(self), *callbacks])


class _CommSeconds:
    """Records each epoch's wall time not spent computing on the workers."""

    def __init__(self, trainer: DistributedTrainer) -> None:
        self.trainer = trainer

    def on_epoch_end(self, trainer: Trainer, log: EpochLog) -> None:
        source = self.trainer.source
        self.trainer.comm_seconds.append(log.seconds - source.compute_seconds)
        source.compute_seconds = 0.0


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
