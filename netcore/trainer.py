"""Training: the :class:`Trainer` (full-batch or mini-batch, any optimizer, callbacks, checkpoints).

Full-batch gradient descent is the tutorial's method: one step over all samples per epoch.
Mini-batch training visits every sample once per epoch, ``batch_size`` at a time, in an order
drawn from the trainer's own seeded generator. A fused backend reads a mini-batch in place from
the data that moved to it once (the batch is a set of row indices, not a copy).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from . import checkpoint
from .network import MLP, Batch
from .optim import SGD, Adam, Optimizer, StepLR, get_optimizer


class TrainingDivergedError(ArithmeticError):
    """The loss stopped being finite; the message says when and what to try."""


@dataclass(frozen=True)
class EpochLog:
    """One epoch: mean loss and training accuracy over its batches (each before its update),
    wall time, learning rate, and validation metrics when validation data was given."""

    epoch: int
    loss: float
    accuracy: float
    seconds: float
    lr: float
    val_loss: float | None = None
    val_accuracy: float | None = None


class BatchLog(NamedTuple):
    """One step, as callbacks' ``on_batch_end`` sees it: what the step computed before its update.

    ``logits`` is the backend's array and may be a buffer the next step reuses: read it (or copy
    it) during the call.
    """

    epoch: int  # 0-based: the epoch this step belongs to (the tutorial's iteration ``i``)
    batch: int
    rows: np.ndarray | None  # the sample rows of this step; None for the whole batch
    loss: float
    logits: Any


@dataclass
class History:
    """Every epoch's log; ``history["loss"]`` etc. give one metric as a list, as in Keras."""

    epochs: list[EpochLog] = field(default_factory=list)

    def __getitem__(self, metric: str) -> list:
        return [getattr(e, metric) for e in self.epochs]

    def __len__(self) -> int:
        return len(self.epochs)

    @property
    def history(self) -> dict[str, list]:
        return {k: self[k] for k in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds", "lr")}


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class Trainer:
    """Trains an :class:`~netcore.network.MLP`.

    Parameters
    ----------
    net : the network; its backend does the arithmetic.
    optimizer : ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"`` or an Optimizer.
    lr : learning rate (the optimizer's default when None).
    batch_size : samples per step; None means full batch (the tutorial's gradient descent).
    schedule : ``epoch -> learning rate``, e.g. ``StepLR(1.0, 75, 0.1)``; None keeps ``lr``.
    l2 : L2 penalty ``alpha``: adds ``alpha/2 * sum(W**2) / batch`` to the loss, as scikit-learn does.
    shuffle : draw a new sample order every epoch (mini-batch only).
    seed : seeds the shuffling, so runs are reproducible.
    graph : replay each full-batch step as one recorded CUDA graph (cupy backend; plain SGD or
        momentum, full batch, no L2): one launch per epoch instead of dozens.
    """

    def __init__(
        self,
        net: MLP,
        optimizer: str | Optimizer = "sgd",
        lr: float | None = None,
        batch_size: int | None = None,
        schedule: Callable[[int], float] | None = None,
        l2: float = 0.0,
        shuffle: bool = True,
        seed: int | None = None,
        graph: bool = False,
    ) -> None:
        self.net = net
        self.optimizer = get_optimizer(optimizer, **({} if lr is None else {"lr": lr}))
        self.batch_size = None if batch_size is None else _positive_int(batch_size, "batch_size")
        if not (l2 >= 0 and math.isfinite(l2)):
            raise ValueError(f"l2 must be a non-negative number, got {l2!r}")
        self.schedule, self.l2, self.shuffle, self.seed = schedule, float(l2), bool(shuffle), seed
        self.rng = np.random.RandomState(seed)
        self.epoch = 0  # epochs completed
        self.target_epochs = 0  # what the running fit() aims for
        self.history = History()
        self.stop_training = False
        self._last_good: list | None = None  # parameters last seen to give a finite loss
        self.graph, self._replay = bool(graph), None
        self._batch_callbacks: list = []
        if self.graph:
            self._check_capture()

    def _check_capture(self) -> None:
        """graph=True only where the backend can record this trainer's step (its rules, not ours)."""
        reasons = self.net.backend.capture_limits(full_batch=self.batch_size is None, stateless=isinstance(self.optimizer, SGD), l2=self.l2)
        if reasons:
            raise ValueError("graph=True is not possible here: " + "; ".join(reasons))

    # -- the loop -----------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any,
        epochs: int,
        validation_data: tuple[Any, Any] | None = None,
        callbacks: Sequence[Any] = (),
    ) -> History:
        """Train until ``epochs`` epochs are done in all (Keras' meaning: a trainer restored from a
        checkpoint at epoch 6 and asked for 10 runs 4 more). Returns the history."""
        self.target_epochs = epochs = _positive_int(epochs, "epochs")
        data = self.net.prepare(X, y, batch_size=self.batch_size)
        val = None if validation_data is None else self.net.prepare(*validation_data)
        self.stop_training = False
        self._batch_callbacks = [cb.on_batch_end for cb in callbacks if hasattr(cb, "on_batch_end")]
        for cb in callbacks:
            getattr(cb, "on_train_begin", lambda t: None)(self)
        try:
            while self.epoch < epochs and not self.stop_training:
                log = self._epoch(data, val)
                self.epoch += 1
                self.history.epochs.append(log)
                for cb in callbacks:
                    getattr(cb, "on_epoch_end", lambda t, e: None)(self, log)
        finally:
            for cb in callbacks:
                getattr(cb, "on_train_end", lambda t: None)(self)
        return self.history

    def current_lr(self) -> float:
        return self.schedule(self.epoch) if self.schedule is not None else self.optimizer.lr

    def _snapshot(self) -> list:
        ops = self.net.backend
        return [(ops.copy(W), ops.copy(b)) for W, b in self.net.layers]

    def _epoch(self, data: Batch, val: Batch | None) -> EpochLog:
        net, ops = self.net, self.net.backend
        n = len(data.labels)
        lr = self.current_lr()
        if self.batch_size is None or self.batch_size >= n:
            batches = [None]
        else:
            order = self.rng.permutation(n) if self.shuffle else np.arange(n)
            batches = [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
        start_params = self._snapshot()
        if self._last_good is None:
            self._last_good = start_params
        start = time.perf_counter()
        total_loss, correct = 0.0, 0
        for i, rows in enumerate(batches):
            if self.graph:
                loss, Z = self._graph_step(data, lr)
                grads = None
            else:
                loss, grads, Z = net.loss_and_gradients(data.X, data.Y, rows)
            loss = ops.to_float(loss)
            m = n if rows is None else len(rows)
            if self.l2:
                loss += self._l2_penalty(grads, m)
            if not math.isfinite(loss):
                self._diverged(loss, lr, i, len(batches))
            if i == 0:
                self._last_good = start_params  # these parameters gave a finite loss
            if grads is not None:
                self.optimizer.update(ops, net.layers, grads, lr)
            for on_batch_end in self._batch_callbacks:
                on_batch_end(self, BatchLog(self.epoch, i, rows, loss, Z))
            total_loss += loss * m
            labels = data.labels if rows is None else data.labels[rows]
            correct += int(np.sum(ops.argmax_rows(Z) == labels))
        seconds = time.perf_counter() - start
        log = EpochLog(self.epoch + 1, total_loss / n, correct / n, seconds, lr)
        if val is not None:
            val_loss, val_acc = self._evaluate(val)
            log = replace(log, val_loss=val_loss, val_accuracy=val_acc)
        return log

    def _graph_step(self, data: Batch, lr: float) -> tuple[Any, Any]:
        """One full-batch step from the recorded graph; recorded again when the rate, the data or
        the parameter arrays change. Returns the loss and logits before the update."""
        net, ops = self.net, self.net.backend
        key = (lr, id(data.X), tuple(id(W) for W, _ in net.layers))
        if self._replay is not None and self._replay[0] == key:
            return self._replay[1]()

        def step():
            loss, grads, Z = net.loss_and_gradients(data.X, data.Y)
            self.optimizer.update(ops, net.layers, grads, lr)
            return loss, Z

        first, replay = ops.capture(step)
        self._replay = (key, replay)
        return first

    def _l2_penalty(self, grads: list, m: int) -> float:
        """Add ``alpha/m * W`` to each weight gradient; return ``alpha/(2m) * sum(W**2)``."""
        ops = self.net.backend
        penalty = 0.0
        for (W, _), (dW, _) in zip(self.net.layers, grads):
            ops.sgd_update(dW, W, -self.l2 / m)  # dW += (alpha / m) W
            penalty += ops.to_float(ops.sum_squares(W))
        return 0.5 * self.l2 * penalty / m

    def _diverged(self, loss: float, lr: float, batch: int, n_batches: int) -> None:
        ops = self.net.backend
        self.net.layers = [(ops.copy(W), ops.copy(b)) for W, b in self._last_good]
        where = f"epoch {self.epoch + 1}" + (f", batch {batch + 1} of {n_batches}" if n_batches > 1 else "")
        raise TrainingDivergedError(
            f"the loss became {loss} at {where}: training diverged. The network keeps the last parameters "
            f"that gave a finite loss. Try a smaller learning rate (this epoch used {lr:g})."
        )

    # -- evaluation ------------------------------------------------------------------------
    def _evaluate(self, data: Batch) -> tuple[float, float]:
        ops = self.net.backend
        Z = self.net.logits(data.X)
        return ops.to_float(ops.cross_entropy(Z, data.Y)), float(np.mean(ops.argmax_rows(Z) == data.labels))

    def evaluate(self, X: Any, y: Any) -> dict[str, float]:
        """Mean cross-entropy and accuracy of the current parameters on ``(X, y)``."""
        loss, acc = self._evaluate(self.net.prepare(X, y))
        return {"loss": loss, "accuracy": acc}

    def predict(self, X: Any) -> np.ndarray:
        return self.net.predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.net.predict_proba(X)

    # -- checkpoints -----------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Network, optimizer state, epoch, history and shuffling RNG position, in one atomic ``.npz``."""
        ops = self.net.backend
        arrays = self.net.parameter_arrays()
        arrays.update({f"opt_{k}": v for k, v in self.optimizer.state(ops).items()})
        _, keys, pos, has_gauss, gauss = self.rng.get_state()
        arrays["rng_keys"] = keys
        meta = {
            "kind": "trainer",
            **self.net.describe(),
            "epoch": self.epoch,
            "optimizer": self.optimizer.config(),
            "trainer": {"batch_size": self.batch_size, "l2": self.l2, "shuffle": self.shuffle, "seed": self.seed},
            "rng": {"pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
            "history": [asdict(e) for e in self.history.epochs],
        }
        checkpoint.save(path, arrays, meta)

    def restore(self, path: str) -> Trainer:
        """Load a checkpoint into this trainer; its network must have the same architecture and dtype."""
        arrays, meta = checkpoint.load(path)
        if meta.get("kind") != "trainer":
            raise checkpoint.CheckpointError(f"{path} holds a network without training state; load it with MLP.load")
        self.net.load_parameter_arrays(arrays, meta, str(path))
        opt = get_optimizer(meta["optimizer"])
        opt.load_state(self.net.backend, {k[4:]: v for k, v in arrays.items() if k.startswith("opt_")})
        self.optimizer = opt
        rng = meta["rng"]
        self.rng.set_state(("MT19937", arrays["rng_keys"], rng["pos"], rng["has_gauss"], rng["cached_gaussian"]))
        self.epoch = int(meta["epoch"])
        self.history = History([EpochLog(**e) for e in meta["history"]])
        t = meta["trainer"]
        self.batch_size, self.l2, self.shuffle, self.seed = t["batch_size"], t["l2"], t["shuffle"], t["seed"]
        self._last_good = None
        return self

    @classmethod
    def load(cls, path: str, backend: Any = None, schedule: Callable[[int], float] | None = None) -> Trainer:
        """A trainer (and its network) rebuilt from a checkpoint, ready to ``fit`` on."""
        _, meta = checkpoint.load(path)
        net = MLP(meta["layer_sizes"], meta["activation"], backend=backend, dtype=meta["dtype"])
        return cls(net, schedule=schedule).restore(path)


def train_full_batch(
    net: MLP,
    X: Any,
    y: Any,
    epochs: int,
    schedule: Callable[[int], float] = StepLR(),
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> list[EpochLog]:
    """Full-batch gradient descent, the tutorial's way; ``schedule`` maps the epoch to a rate."""
    trainer = Trainer(net, SGD(1.0), schedule=schedule)
    callbacks = [] if on_epoch is None else [_OnEpoch(on_epoch)]
    return trainer.fit(X, y, epochs, callbacks=callbacks).epochs


def train_minibatch(
    net: MLP,
    X: Any,
    y: Any,
    epochs: int,
    batch_size: int = 200,
    optimizer: Optimizer | None = None,
    shuffle: bool = True,
    seed: int | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> list[EpochLog]:
    """Mini-batch training (Adam by default); a shortcut for :class:`Trainer`."""
    trainer = Trainer(net, Adam() if optimizer is None else optimizer, batch_size=batch_size, shuffle=shuffle, seed=seed)
    callbacks = [] if on_epoch is None else [_OnEpoch(on_epoch)]
    return trainer.fit(X, y, epochs, callbacks=callbacks).epochs


class _OnEpoch:
    def __init__(self, fn: Callable[[EpochLog], None]) -> None:
        self.fn = fn

    def on_epoch_end(self, trainer: Trainer, log: EpochLog) -> None:
        self.fn(log)
