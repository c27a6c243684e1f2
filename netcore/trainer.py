"""Training: the :class:`Trainer` (full-batch or mini-batch, any optimizer, callbacks, checkpoints).

Full-batch gradient descent is the tutorial's method: one step over all samples per epoch.
Mini-batch training visits every sample once per epoch, ``batch_size`` at a time, in an order
drawn from the trainer's own seeded generator. A fused backend reads a mini-batch in place from
the data that moved to it once (the batch is a set of row indices, not a copy).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple, Protocol

import numpy as np

from . import checkpoint
from .network import MLP, Batch, Layers
from .optim import SGD, Adam, Optimizer, StepLR, get_optimizer
from .validation import check_non_negative
from .validation import check_positive_int as _positive_int


class TrainingDivergedError(ArithmeticError):
    """Training diverged; the message says when and what to try.

    Diverged means: a step's loss, the validation loss or a parameter is not finite, or a step's
    loss exceeds ``DIVERGENCE_FACTOR`` times ``max(first loss of this fit, 1)`` (finite but useless:
    a rate of 1e6 gives losses near 1e6-1e70, not NaN). The network then keeps the last parameters
    that gave a finite loss, so nothing non-finite is ever saved.
    """


DIVERGENCE_FACTOR = 1e3


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


# -- where gradients come from ----------------------------------------------------------------
class StepResult(NamedTuple):
    """One step's results from a gradient source, before the update."""

    loss: float  # mean loss over the step's rows (without the L2 penalty)
    grads: Layers | None  # mean gradients, on the trainer's backend; None if the step already updated
    correct: int  # rows whose most probable class was right
    logits: Any  # the rows' logits on the backend, where the source has them (else None)


class GradientSource(Protocol):
    """What :meth:`Trainer.fit_source` trains on: how many samples there are, and the loss and
    gradients of any subset of them at the network's current parameters."""

    n_samples: int

    def step(self, rows: np.ndarray | None) -> StepResult: ...


class LocalGradients:
    """Gradients computed here, on data already moved to the network's backend (once)."""

    def __init__(self, net: MLP, data: Batch) -> None:
        self.net, self.data = net, data
        self.n_samples = len(data.labels)

    def count_correct(self, logits: Any, rows: np.ndarray | None) -> int:
        return self.net.count_correct(logits, self.data.labels if rows is None else self.data.labels[rows])

    def step(self, rows: np.ndarray | None) -> StepResult:
        loss, grads, Z = self.net.loss_and_gradients(self.data.X, self.data.Y, rows, self.data.weights)
        return StepResult(self.net.backend.to_float(loss), grads, self.count_correct(Z, rows), Z)




def _optimizer_kind(opt: Optimizer) -> str:
    """``adam``, ``sgd``, ``sgd with momentum`` or ``sgd with nesterov momentum``: what a run cannot switch."""
    if isinstance(opt, SGD) and opt.momentum:
        return "sgd with nesterov momentum" if opt.nesterov else "sgd with momentum"
    return opt.name


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
    divergence_factor : a step's loss above this many times ``max(first loss of the fit, 1)``
        counts as divergence (see :class:`TrainingDivergedError`); None checks finiteness only,
        as scikit-learn does (its estimators use that).
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
        divergence_factor: float | None = DIVERGENCE_FACTOR,
        graph: bool = False,
    ) -> None:
        self.net = net
        self.optimizer = get_optimizer(optimizer, **({} if lr is None else {"lr": lr}))
        self.batch_size = None if batch_size is None else _positive_int(batch_size, "batch_size")
        self.schedule, self.l2, self.shuffle, self.seed = schedule, check_non_negative(l2, "l2"), bool(shuffle), seed
        self.rng = np.random.RandomState(seed)
        self.epoch = 0  # epochs completed
        self.target_epochs = 0  # what the running fit() aims for
        self.history = History()
        self.stop_training = False
        self._last_good: list | None = None  # parameters last seen to give a finite loss
        self.divergence_factor = divergence_factor
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
        sample_weight: Any = None,
    ) -> History:
        """Train on ``(X, y)`` until ``epochs`` epochs are done in all; returns the history.

        ``epochs`` counts every epoch this trainer has run, as Keras' ``epochs`` with
        ``initial_epoch``: a trainer restored from a checkpoint at epoch 6 and asked for 10 runs 4
        more, and a second ``fit(..., epochs=10)`` after a first one runs none, with a warning
        saying so (ask for ``trainer.epoch + k`` to train ``k`` more). ``sample_weight``:
        per-sample weights of the loss (each batch's loss is their weighted mean).
        """
        return self.fit_source(LocalGradients(self.net, self.net.prepare(X, y, sample_weight, batch_size=self.batch_size)), epochs, validation_data, callbacks)

    def fit_source(
        self,
        source: GradientSource,
        epochs: int,
        validation_data: tuple[Any, Any] | None = None,
        callbacks: Sequence[Any] = (),
    ) -> History:
        """The training loop, for gradients from any source (this process, Dask workers, ...).

        Everything else is the same whatever the source: the batch order, the rate schedule, the
        L2 penalty, the divergence check, validation, callbacks and the history.
        """
        self.target_epochs = epochs = _positive_int(epochs, "epochs")
        if self.epoch >= epochs:
            warnings.warn(
                f"this trainer has already run {self.epoch} epochs, so fit(epochs={epochs}) trains none: epochs counts "
                f"every epoch in all (ask for epochs={self.epoch + epochs} to train {epochs} more)",
                stacklevel=3,
            )
        val = None if validation_data is None else self.net.prepare(*validation_data)
        self.stop_training = False
        self._first_loss: float | None = None
        self._batch_callbacks = [cb.on_batch_end for cb in callbacks if hasattr(cb, "on_batch_end")]
        for cb in callbacks:
            getattr(cb, "on_train_begin", lambda t: None)(self)
        try:
            while self.epoch < epochs and not self.stop_training:
                log = self._epoch(source, val)
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

    def _batches(self, n: int) -> list[np.ndarray | None]:
        """This epoch's steps: all rows at once (None), or mini-batches in a fresh seeded order."""
        if self.batch_size is None or self.batch_size >= n:
            return [None]
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        return [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]

    def _epoch(self, source: GradientSource, val: Batch | None) -> EpochLog:
        net, ops = self.net, self.net.backend
        n = source.n_samples
        lr = self.current_lr()
        batches = self._batches(n)
        start_params = self._snapshot()
        if self._last_good is None:
            self._last_good = start_params
        start = time.perf_counter()
        total_loss, correct = 0.0, 0
        squares = None  # each layer's sum(W**2) at the current parameters, where the last update gave it
        for i, rows in enumerate(batches):
            if self.graph:  # a recorded step: it has already updated the parameters
                loss, Z = self._graph_step(source.data, lr)
                step = StepResult(ops.to_float(loss), None, source.count_correct(Z, rows), Z)
            else:
                step = source.step(rows)
            loss = step.loss
            m = n if rows is None else len(rows)
            if self.l2:
                loss += self._l2_penalty(squares, m)
            self._check_loss(loss, lr, i, len(batches))
            if i == 0:
                self._last_good = start_params  # these parameters gave a finite loss
            squares = None
            if step.grads is not None:  # the L2 penalty's gradient is added by the update
                squares = self.optimizer.update(ops, net.layers, step.grads, lr, l2=self.l2 / m if self.l2 else 0.0)
            if self._batch_callbacks:
                squares = None  # a callback may change the parameters
                for on_batch_end in self._batch_callbacks:
                    on_batch_end(self, BatchLog(self.epoch, i, rows, loss, step.logits))
            total_loss += loss * m
            correct += step.correct
        seconds = time.perf_counter() - start
        if not self._parameters_finite():
            self._diverged("the parameters", "stopped being finite", lr)
        log = EpochLog(self.epoch + 1, total_loss / n, correct / n, seconds, lr)
        if val is not None:
            val_loss, val_acc = self._evaluate(val)
            if not math.isfinite(val_loss):
                self._diverged("the validation loss", f"became {val_loss}", lr)
            log = replace(log, val_loss=val_loss, val_accuracy=val_acc)
        return log

    def _check_loss(self, loss: float, lr: float, batch: int, n_batches: int) -> None:
        """Divergence by the loss: not finite, or orders of magnitude above where this fit began."""
        if self._first_loss is None and math.isfinite(loss):
            self._first_loss = loss
        where = f", batch {batch + 1} of {n_batches}" if n_batches > 1 else ""
        if not math.isfinite(loss):
            self._diverged("the loss", f"became {loss}", lr, where)
        factor = self.divergence_factor
        if factor is not None and loss > factor * max(self._first_loss, 1.0):
            self._diverged("the loss", f"reached {loss:.4g}, over {factor:g} times its first value in this fit ({self._first_loss:.4g})", lr, where)

    def _parameters_finite(self) -> bool:
        ops = self.net.backend
        return all(ops.all_finite(p) for layer in self.net.layers for p in layer)

    def _graph_step(self, data: Batch, lr: float) -> tuple[Any, Any]:
        """One full-batch step from the recorded graph; recorded again when the rate or any array it
        replays on changes. Returns the loss and logits before the update.

        A graph replays on the addresses it was recorded with, so the cache is keyed on the arrays
        themselves (inputs, targets, every weight and bias, the optimizer and its state), compared
        by identity, and holds them: none can be freed, and its address reused, while it may replay.
        """
        net, ops = self.net, self.net.backend

        def replayed_on() -> tuple:
            state = tuple(a for slots in self.optimizer.slots for a in slots)
            return (data.X, data.Y, *(a for layer in net.layers for a in layer), self.optimizer, *state)

        if self._replay is not None:
            cached_lr, arrays, replay = self._replay
            now = replayed_on()
            if cached_lr == lr and len(arrays) == len(now) and all(a is b for a, b in zip(arrays, now)):
                self.optimizer.t += 1  # a replay runs no Python: count its step here
                return replay()

        def step():
            loss, grads, Z = net.loss_and_gradients(data.X, data.Y)
            self.optimizer.update(ops, net.layers, grads, lr)
            return loss, Z

        self._replay = None  # let the previous recording go before the new one is made
        first, replay = ops.capture(step)
        self.optimizer.t -= 1  # step() ran twice, once to record: one step was taken
        self._replay = (lr, replayed_on(), replay)  # after the first step, which creates the optimizer's state
        return first

    def _l2_penalty(self, squares: list | None, m: int) -> float:
        """``alpha/(2m) * sum(W**2)`` over every weight (not the biases), as scikit-learn's loss
        has it; ``squares``: each layer's ``sum(W**2)`` where already known (the optimizer adds the
        penalty's gradient ``alpha/m * W`` when it updates)."""
        ops = self.net.backend
        if squares is None:
            squares = [ops.sum_squares(W) for W, _ in self.net.layers]
        penalty = 0.0
        for s in squares:
            penalty += ops.to_float(s)
        return 0.5 * self.l2 * penalty / m

    def _diverged(self, what: str, how: str, lr: float, where: str = "") -> None:
        ops = self.net.backend
        self.net.layers = [(ops.copy(W), ops.copy(b)) for W, b in self._last_good]
        raise TrainingDivergedError(
            f"{what} {how} at epoch {self.epoch + 1}{where}: training diverged. The network keeps the last parameters "
            f"that gave a finite loss. Try a smaller learning rate (this epoch used {lr:g})."
        )

    # -- evaluation ------------------------------------------------------------------------
    def _evaluate(self, data: Batch) -> tuple[float, float]:
        net = self.net
        Z = net.logits(data.X)
        return net.backend.to_float(net.batch_loss(Z, data.Y)), net.count_correct(Z, data.labels) / len(data.labels)

    def evaluate(self, X: Any, y: Any) -> dict[str, float]:
        """Mean cross-entropy and accuracy of the current parameters on ``(X, y)``."""
        loss, acc = self._evaluate(self.net.prepare(X, y))
        return {"loss": loss, "accuracy": acc}

    def predict(self, X: Any) -> np.ndarray:
        return self.net.predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.net.predict_proba(X)

    # -- checkpoints -----------------------------------------------------------------------
    def save(self, path: str, run: dict[str, Any] | None = None) -> None:
        """Network, optimizer state, epoch, history and shuffling RNG position, in one atomic ``.npz``.

        ``run``: a JSON-able record of the run this state belongs to, stored as ``meta["run"]``
        and read back by ``checkpoint.load`` (``netcore train`` keeps its data and schedule there).
        Parameters that are not finite are refused (a diverged run restores its last finite
        parameters before it stops, so this only guards against parameters set from outside).
        """
        ops = self.net.backend
        if not self._parameters_finite():
            raise ValueError(f"not saving {path}: the network's parameters are not all finite")
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
        if run is not None:
            meta["run"] = run
        checkpoint.save(path, arrays, meta)

    def restore(self, path: str) -> Trainer:
        """Load a checkpoint into this trainer, which continues that run.

        The network must have the checkpoint's architecture (its dtype may differ: the parameters
        are converted, with a warning where precision is lost). The optimizer must be of the same
        kind (a run saved with Adam cannot silently continue with SGD); its hyperparameters and
        state, the epoch, the shuffling position and the history come from the checkpoint.
        """
        arrays, meta = checkpoint.load(path)
        if meta.get("kind") != "trainer":
            raise checkpoint.CheckpointError(f"{path} holds a network without training state; load it with MLP.load")
        opt = get_optimizer(meta["optimizer"])
        if _optimizer_kind(opt) != _optimizer_kind(self.optimizer):
            raise checkpoint.CheckpointError(
                f"{path} was trained with {_optimizer_kind(opt)}, but this trainer uses {_optimizer_kind(self.optimizer)}; "
                f"build the Trainer with the same optimizer, or use Trainer.load({str(path)!r})"
            )
        self.net.load_parameter_arrays(arrays, meta, str(path))
        opt.load_state(self.net.backend, {k[4:]: v for k, v in arrays.items() if k.startswith("opt_")})
        self.optimizer = opt
        rng = meta["rng"]
        self.rng.set_state(("MT19937", arrays["rng_keys"], rng["pos"], rng["has_gauss"], rng["cached_gaussian"]))
        self.epoch = int(meta["epoch"])
        self.history = History([EpochLog(**e) for e in meta["history"]])
        t = meta["trainer"]
        self.batch_size, self.l2, self.shuffle, self.seed = t["batch_size"], t["l2"], t["shuffle"], t["seed"]
        if self.graph:
            self._check_capture()
        self._last_good = None
        return self

    @classmethod
    def load(cls, path: str, backend: Any = None, schedule: Callable[[int], float] | None = None) -> Trainer:
        """A trainer (and its network) rebuilt from a checkpoint, ready to ``fit`` on."""
        _, meta = checkpoint.load(path)
        net = MLP(meta["layer_sizes"], meta["activation"], backend=backend, dtype=meta["dtype"], output=meta.get("output", "softmax"))
        return cls(net, meta["optimizer"], schedule=schedule).restore(path)


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
