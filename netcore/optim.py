"""Optimizers (how gradients become parameter updates) and learning-rate schedules.

Each optimizer keeps its state (moments) on the backend, next to the parameters, and updates
them in place through the backend's ops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from backends import Backend

Layers = list[tuple[Any, Any]]


def sgd_step(ops: Backend, layers: Layers, grads: Layers, lr: float) -> None:
    """Plain gradient descent, in place: ``W -= lr * dW``, ``b -= lr * db`` for every layer."""
    for (W, b), (dW, db) in zip(layers, grads):
        ops.sgd_update(W, dW, lr)
        ops.sgd_update(b, db, lr)


class SGD:
    """Plain (stochastic) gradient descent: the tutorial's update."""

    def __init__(self, lr: float = 0.1) -> None:
        self.lr = lr

    def update(self, ops: Backend, layers: Layers, grads: Layers, lr: float | None = None) -> None:
        sgd_step(ops, layers, grads, self.lr if lr is None else lr)


class Adam:
    """Adam (Kingma & Ba), with the bias correction folded into the step size as scikit-learn does."""

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.t = 0
        self.moments: list[tuple[Any, Any]] | None = None

    def update(self, ops: Backend, layers: Layers, grads: Layers, lr: float | None = None) -> None:
        if self.moments is None:
            self.moments = [(ops.zeros_like(p), ops.zeros_like(p)) for layer in layers for p in layer]
        self.t += 1
        step = (self.lr if lr is None else lr) * math.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)
        params = [p for layer in layers for p in layer]
        flat_grads = [g for pair in grads for g in pair]
        for p, g, (m, v) in zip(params, flat_grads, self.moments):
            ops.adam_update(p, g, m, v, step, self.beta1, self.beta2, self.eps)


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
