"""Training loops over an :class:`~netcore.network.MLP`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .network import MLP
from .optim import Adam, SGD, StepLR


@dataclass(frozen=True)
class EpochLog:
    """What one epoch did: the loss and training accuracy before its update, its wall time and rate."""

    epoch: int
    loss: float
    accuracy: float
    seconds: float
    lr: float


def _check_epochs(epochs: Any) -> int:
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    return int(epochs)


def train_full_batch(
    net: MLP,
    X: Any,
    y: Any,
    epochs: int,
    schedule: Callable[[int], float] = StepLR(),
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> list[EpochLog]:
    """Full-batch gradient descent, the tutorial's way: one step over all of ``(X, y)`` per epoch.

    The data is validated and moved to the backend once. The loss is read back each epoch (for
    the log), which is also what makes the epoch time honest on asynchronous devices.
    """
    epochs = _check_epochs(epochs)
    ops = net.backend
    batch = net.prepare(X, y)
    history = []
    for epoch in range(epochs):
        lr = schedule(epoch)
        start = time.perf_counter()
        loss, Z = net.train_step(batch.X, batch.Y, lr)
        loss = ops.to_float(loss)
        seconds = time.perf_counter() - start
        accuracy = float(np.mean(ops.argmax_rows(Z) == batch.labels))
        entry = EpochLog(epoch + 1, loss, accuracy, seconds, lr)
        history.append(entry)
        if on_epoch is not None:
            on_epoch(entry)
    return history


def train_minibatch(
    net: MLP,
    X: Any,
    y: Any,
    epochs: int,
    batch_size: int = 200,
    optimizer: SGD | Adam | None = None,
    shuffle: bool = True,
    seed: int | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> list[EpochLog]:
    """Mini-batch training: each epoch visits every sample once, ``batch_size`` at a time.

    The data moves to the backend once; a batch is a set of row indices into it, which a fused
    backend reads in place (no per-batch copy of X). The logged loss and accuracy are means
    over the epoch's batches, before each batch's update. ``optimizer`` defaults to Adam.
    """
    epochs = _check_epochs(epochs)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    optimizer = Adam() if optimizer is None else optimizer
    ops = net.backend
    batch = net.prepare(X, y)
    n = len(batch.labels)
    rng = np.random.RandomState(seed)
    history = []
    for epoch in range(epochs):
        order = rng.permutation(n) if shuffle else np.arange(n)
        start = time.perf_counter()
        total_loss, correct = 0.0, 0
        for first in range(0, n, batch_size):
            rows = order[first:first + batch_size]
            loss, grads, Z = net.loss_and_gradients(batch.X, batch.Y, rows)
            optimizer.update(ops, net.layers, grads)
            total_loss += ops.to_float(loss) * len(rows)
            correct += int(np.sum(ops.argmax_rows(Z) == batch.labels[rows]))
        entry = EpochLog(epoch + 1, total_loss / n, correct / n, time.perf_counter() - start, getattr(optimizer, "lr", float("nan")))
        history.append(entry)
        if on_epoch is not None:
            on_epoch(entry)
    return history
