"""Parameter updates and learning-rate schedules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backends import Backend


def sgd_step(ops: Backend, layers: list[tuple[Any, Any]], grads: list[tuple[Any, Any]], lr: float) -> None:
    """Plain gradient descent, in place: ``W -= lr * dW``, ``b -= lr * db`` for every layer."""
    for (W, b), (dW, db) in zip(layers, grads):
        ops.sgd_update(W, dW, lr)
        ops.sgd_update(b, db, lr)


@dataclass(frozen=True)
class StepLR:
    """``lr`` until iteration ``drop_at``, then ``lr * factor``: the tutorial's 1.0 -> 0.1 after 75.

    ``drop_at=None`` keeps the rate constant.
    """

    lr: float = 1.0
    drop_at: int | None = 75
    factor: float = 0.1

    def __call__(self, iteration: int) -> float:
        if self.drop_at is not None and iteration >= self.drop_at:
            return self.lr * self.factor
        return self.lr
