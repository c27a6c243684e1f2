"""Training loops over an :class:`~netcore.network.MLP`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .network import MLP
from .optim import StepLR


@dataclass(frozen=True)
class EpochLog:
    """What one epoch did: the loss and training accuracy before its update, its wall time and rate."""

    epoch: int
    loss: float
    accuracy: float
    seconds: float
    lr: float


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
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    ops = net.backend
    batch = net.prepare(X, y)
    history = []
    for epoch in range(int(epochs)):
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
