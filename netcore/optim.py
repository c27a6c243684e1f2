"""Optimizers (how gradients become parameter updates) and learning-rate schedules.

Every optimizer keeps its state (velocities, moments) on the backend next to the parameters and
updates in place through the backend's ops, so no array leaves the device during training. The
state can be exported to NumPy and restored, which is what checkpoints save.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from netcore.backends import Backend

Layers = list[tuple[Any, Any]]


def sgd_step(ops: Backend, layers: Layers, grads: Layers, lr: float) -> None:
    """Plain gradient descent, in place: ``W -= lr * dW``, ``b -= lr * db`` for every layer."""
    for (W, b), (dW, db) in zip(layers, grads):
        ops.sgd_update(W, dW, lr)
        ops.sgd_update(b, db, lr)


def _flat(layers: Layers) -> list[Any]:
    return [p for layer in layers for p in layer]


class Optimizer:
    """Base class: ``update`` applies one step; ``state``/``load_state`` round-trip through NumPy."""

    name = "optimizer"

    def __init__(self, lr: float) -> None:
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"learning rate must be a positive number, got {lr!r}")
        self.lr = float(lr)
        self.t = 0  # steps taken
        self.slots: list[list[Any]] = []  # per-parameter state arrays, on the backend

    def config(self) -> dict[str, Any]:
        """Hyperparameters, enough to rebuild the optimizer with :func:`get_optimizer`."""
        return {"name": self.name, "lr": self.lr}

    def update(self, ops: Backend, layers: Layers, grads: Layers, lr: float | None = None, l2: float = 0.0) -> list | None:
        """One step. With ``l2``, the step is on the gradients plus an L2 penalty's (``l2 * W`` added
        to each weight gradient, in place; biases have none). Returns each layer's ``sum(W**2)``
        after the step (backend scalars) where the update computed it on the way, else None."""
        self.t += 1
        if l2:
            for (W, _), (dW, _) in zip(layers, grads):
                ops.sgd_update(dW, W, -l2)  # dW += l2 W
        self._update(ops, _flat(layers), _flat(grads), self.lr if lr is None else lr)
        return None

    def _update(self, ops: Backend, params: list, grads: list, lr: float) -> None:
        raise NotImplementedError

    def _slots(self, ops: Backend, params: list, n: int) -> list[list[Any]]:
        if not self.slots:
            self.slots = [[ops.zeros_like(p) for _ in range(n)] for p in params]
        return self.slots

    def state(self, ops: Backend) -> dict[str, np.ndarray]:
        """The step count and every state array, as NumPy arrays keyed ``slot{i}_{j}``."""
        out = {"t": np.asarray(self.t)}
        for i, slots in enumerate(self.slots):
            for j, s in enumerate(slots):
                out[f"slot{i}_{j}"] = ops.to_numpy(s)
        return out

    def load_state(self, ops: Backend, state: dict[str, np.ndarray]) -> None:
        self.t = int(state["t"])
        keys = sorted((k for k in state if k.startswith("slot")), key=lambda k: tuple(map(int, k[4:].split("_"))))
        slots: dict[int, list] = {}
        for k in keys:
            i, _ = map(int, k[4:].split("_"))
            slots.setdefault(i, []).append(ops.asarray(state[k]))
        self.slots = [slots[i] for i in sorted(slots)]


class SGD(Optimizer):
    """Gradient descent, optionally with (Nesterov) momentum, as scikit-learn's 'sgd' solver:
    ``v = μ v - lr g``, then ``p += v`` (or ``p += μ v - lr g`` with Nesterov)."""

    name = "sgd"

    def __init__(self, lr: float = 0.1, momentum: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(lr)
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "momentum": self.momentum, "nesterov": self.nesterov}

    def _update(self, ops: Backend, params: list, grads: list, lr: float) -> None:
        if self.momentum == 0:
            for p, g in zip(params, grads):
                ops.sgd_update(p, g, lr)
            return
        for p, g, (v,) in zip(params, grads, self._slots(ops, params, 1)):
            ops.scale(v, self.momentum)
            ops.sgd_update(v, g, lr)  # v = μ v - lr g
            if self.nesterov:
                ops.sgd_update(p, v, -self.momentum)  # p += μ v ...
                ops.sgd_update(p, g, lr)  # ... - lr g
            else:
                ops.sgd_update(p, v, -1.0)  # p += v


class Adam(Optimizer):
    """Adam (Kingma & Ba), the bias correction folded into the step size as scikit-learn does."""

    name = "adam"

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def config(self) -> dict[str, Any]:
        return {**super().config(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def _step_size(self, lr: float) -> float:
        return lr * math.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)

    def _update(self, ops: Backend, params: list, grads: list, lr: float) -> None:
        step = self._step_size(lr)
        for p, g, (m, v) in zip(params, grads, self._slots(ops, params, 2)):
            ops.adam_update(p, g, m, v, step, self.beta1, self.beta2, self.eps)

    def update(self, ops: Backend, layers: Layers, grads: Layers, lr: float | None = None, l2: float = 0.0) -> list | None:
        if not l2:
            return super().update(ops, layers, grads, lr)
        # The penalty's gradient, the step and the next penalty's sum of squares in one pass over
        # each weight matrix (a separate pass for each read the largest matrix three times a step).
        self.t += 1
        step = self._step_size(self.lr if lr is None else lr)
        params = _flat(layers)
        slots, squares = self._slots(ops, params, 2), []
        for i, (dW, db) in enumerate(grads):
            (W, b), (mW, vW), (mb, vb) = layers[i], slots[2 * i], slots[2 * i + 1]
            squares.append(ops.adam_update_l2(W, dW, mW, vW, step, self.beta1, self.beta2, self.eps, l2))
            ops.adam_update(b, db, mb, vb, step, self.beta1, self.beta2, self.eps)
        return squares


OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {"sgd": SGD, "momentum": lambda **kw: SGD(**{"momentum": 0.9, **kw}), "nesterov": lambda **kw: SGD(**{"momentum": 0.9, "nesterov": True, **kw}), "adam": Adam}


def get_optimizer(spec: str | Optimizer | dict[str, Any], **kwargs: Any) -> Optimizer:
    """An optimizer from a name (``sgd``, ``momentum``, ``nesterov``, ``adam``), a config dict, or as is."""
    if isinstance(spec, Optimizer):
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        return get_optimizer(spec.pop("name"), **spec, **kwargs)
    if spec not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {spec!r}; choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[spec](**kwargs)


@dataclass(frozen=True)
class StepLR:
    """``lr`` up to iteration ``drop_at``, ``lr * factor`` after it: the tutorial's 1.0 -> 0.1.

    Iterations (epochs) count from 0, as the tutorial's ``i`` in ``if i > 75: learning_rate = 0.1``:
    ``StepLR(1.0, 75)`` trains iterations 0..75 at 1.0 and 76 on at 0.1. ``drop_at=None`` keeps
    the rate constant.
    """

    lr: float = 1.0
    drop_at: int | None = 75
    factor: float = 0.1

    def __call__(self, iteration: int) -> float:
        if self.drop_at is not None and iteration > self.drop_at:
            return self.lr * self.factor
        return self.lr


@dataclass(frozen=True)
class InvScalingLR:
    """scikit-learn's ``learning_rate="invscaling"``: ``lr / (t + 1) ** power_t``, with ``t`` the
    samples seen before the epoch, counted from ``t0`` at epoch ``start`` with ``samples`` per
    epoch. An optimizer's first epoch (``first``) runs at ``lr`` itself, as scikit-learn's does."""

    lr: float
    power_t: float
    samples: int
    t0: int = 0
    start: int = 0
    first: int = 0

    def __call__(self, epoch: int) -> float:
        if epoch == self.first:
            return self.lr
        return self.lr / (self.t0 + (epoch - self.start) * self.samples + 1) ** self.power_t
