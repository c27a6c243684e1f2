"""The ``sgd`` / ``adam`` / ``gd`` solvers of the scikit-learn estimators: netcore's :class:`Trainer`
runs the epochs; this module supplies only what scikit-learn does differently.

- the optimizer (SGD with (Nesterov) momentum, or Adam) and the learning-rate schedule
  (``invscaling`` as the trainer's ``schedule``; ``adaptive`` by :class:`NoImprovementRule`);
- :class:`NoImprovementRule`, scikit-learn's stopping rule as a trainer callback. Its state (loss
  curve, best loss or validation score, the count of epochs without improvement, the best
  parameters, samples seen) lives in it; the estimator keeps it across warm starts and
  ``partial_fit`` calls, as scikit-learn keeps those attributes, and reads it after each fit.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ..network import MLP
from ..optim import SGD, Adam, InvScalingLR, Optimizer
from ..trainer import EpochLog, Trainer, TrainingDivergedError

#: Below this rate, ``learning_rate="adaptive"`` stops instead of dividing the rate again.
ADAPTIVE_FLOOR = 1e-6

NON_FINITE = "Solver produced non-finite parameter weights. The input data may contain large values and need to be preprocessed."


class NoImprovementRule:
    """scikit-learn's rule: an epoch improves when the training loss falls below the best by more
    than ``tol`` (with ``validation_score``, early stopping: when the validation score rises above
    the best by at least ``tol``). After more than ``n_iter_no_change`` epochs in a row without
    improvement, training stops, or with ``adaptive`` the learning rate is divided by 5 (and
    training stops once it is at most 1e-6).
    """

    def __init__(self, early_stopping: bool, initial_params: list, t: int = 0) -> None:
        self.early_stopping = early_stopping
        self.loss_curve: list[float] = []
        self.best_loss: float | None = None if early_stopping else math.inf
        self.validation_scores: list[float] | None = [] if early_stopping else None
        self.best_validation_score: float | None = -math.inf if early_stopping else None
        self.best_params = initial_params  # what early stopping restores if no epoch ever scores better
        self.no_improvement_count = 0
        self.t = t  # samples seen
        self.start(0, None)

    def start(
        self, n_samples: int, validation_score: Callable[[MLP], float] | None, *,
        tol: float = 1e-4, n_iter_no_change: float = 10, adaptive: bool = False, verbose: bool = False, loss_scale: float = 1.0,
    ) -> None:
        """A new fit call on ``n_samples`` training samples, with the estimator's current settings;
        ``validation_score(net)`` scores the network on the held-out set (early stopping);
        ``loss_scale`` turns the trainer's loss into scikit-learn's figure of it."""
        self.n_samples, self.validation_score = n_samples, validation_score
        self.tol, self.n_iter_no_change, self.adaptive, self.verbose, self.loss_scale = tol, n_iter_no_change, adaptive, verbose, loss_scale
        self.n_iter, self.stopped, self.loss = 0, False, math.nan

    def on_epoch_end(self, trainer: Trainer, log: EpochLog) -> None:
        self._record(trainer.net, log.loss * self.loss_scale)
        if self.no_improvement_count > self.n_iter_no_change:
            self._no_improvement(trainer)

    def diverged(self) -> None:
        """The epoch the loss stopped being finite: it counts, with a NaN loss and score (it left no
        finite parameters to score), and training ends there."""
        self.n_iter += 1
        self.t += self.n_samples
        self.loss = math.nan
        self.loss_curve.append(math.nan)
        if self.validation_scores is not None:
            self.validation_scores.append(math.nan)

    def _record(self, net: MLP, loss: float) -> None:
        self.n_iter += 1
        self.t += self.n_samples
        self.loss = loss
        self.loss_curve.append(loss)
        if self.verbose:
            print(f"Iteration {self.n_iter}, loss = {loss:.8f}")
        if self.early_stopping:
            score = self.validation_score(net)
            self.validation_scores.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            improved = not score < self.best_validation_score + self.tol  # NaN counts as improved, as in scikit-learn
            if score > self.best_validation_score:
                self.best_validation_score = score
                self.best_params = net.get_parameters()
        else:
            improved = not loss > self.best_loss - self.tol
            self.best_loss = min(self.best_loss, loss)
        self.no_improvement_count = 0 if improved else self.no_improvement_count + 1

    def _no_improvement(self, trainer: Trainer) -> None:
        what = "Validation score" if self.early_stopping else "Training loss"
        msg = f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} consecutive epochs."
        optimizer = trainer.optimizer
        if self.adaptive and optimizer.lr > ADAPTIVE_FLOOR:
            optimizer.lr /= 5.0
            self.no_improvement_count = 0
            if self.verbose:
                print(f"{msg} Setting learning rate to {optimizer.lr:f}")
            return
        if self.verbose:
            print(f"{msg}{' Learning rate too small.' if self.adaptive else ''} Stopping.")
        self.stopped = trainer.stop_training = True


class SampleOrder:
    """scikit-learn's order of the samples, as the trainer's random generator: every epoch shuffles
    the previous epoch's order with the estimator's RandomState (the one that drew the initial
    weights and the early-stopping split). With it, a seeded fit visits the batches scikit-learn's
    would, in the same order."""

    def __init__(self, rng: np.random.RandomState, n_samples: int) -> None:
        self.rng, self.order = rng, np.arange(n_samples)

    def permutation(self, n: int) -> np.ndarray:
        self.order = self.order[self.rng.permutation(n)]
        return self.order


def make_optimizer(est: Any) -> Optimizer:
    """The estimator's optimizer, new (scikit-learn starts a new one on every ``fit``)."""
    if est.solver == "adam":
        return Adam(est.learning_rate_init, est.beta_1, est.beta_2, est.epsilon)
    momentum = est.momentum if est.solver == "sgd" else 0.0
    return SGD(est.learning_rate_init, momentum=momentum, nesterov=est.nesterovs_momentum and momentum > 0)


def batch_size(est: Any, n_samples: int) -> int | None:
    """scikit-learn's batch size: ``min(200, n)`` for ``"auto"``, else clipped to ``n`` (with its
    warning); None (the full batch) for ``gd``."""
    if est.solver == "gd":
        return None
    if est.batch_size == "auto":
        return min(200, n_samples)
    if est.batch_size > n_samples:
        warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped", stacklevel=6)
    return int(np.clip(est.batch_size, 1, n_samples))


def fit_stochastic(
    est: Any,
    net: MLP,
    X: Any,
    targets: Any,
    sample_weight: np.ndarray | None,
    incremental: bool,
    rule: NoImprovementRule,
    validation_score: Callable[[MLP], float] | None,
    rng: np.random.RandomState,
) -> None:
    """Up to ``max_iter`` epochs (one for ``partial_fit``) of the estimator's solver on ``(X, targets)``.

    A ``fit`` starts a new optimizer and trainer; ``partial_fit`` continues the last ones. The
    trainer's L2 penalty is scikit-learn's ``alpha / batch size`` (with sample weights, ``alpha``
    is scaled so that the penalty is ``alpha / Σw`` over the whole set, scikit-learn's).
    """
    n = X.shape[0]
    trainer = getattr(est, "_trainer", None)
    if not incremental or trainer is None or trainer.net is not net:
        trainer = est._trainer = Trainer(net, make_optimizer(est), divergence_factor=None)  # scikit-learn: only non-finite is divergence
    trainer.rng, trainer.shuffle = SampleOrder(rng, n), est.shuffle
    trainer.l2 = float(est.alpha if sample_weight is None else est.alpha * n / sample_weight.sum())
    trainer.batch_size = batch_size(est, n)
    trainer.schedule = None
    if est.learning_rate == "invscaling" and est.solver != "adam":
        trainer.schedule = InvScalingLR(est.learning_rate_init, est.power_t, n, t0=rule.t, start=trainer.epoch, first=0)
    rule.start(
        n, validation_score, tol=est.tol, n_iter_no_change=est.n_iter_no_change, verbose=est.verbose, loss_scale=est._loss_scale(),
        adaptive=est.learning_rate == "adaptive" and est.solver != "adam",
    )
    epochs = 1 if incremental else est.max_iter
    try:
        trainer.fit(X, targets, trainer.epoch + epochs, callbacks=[rule], sample_weight=sample_weight)
    except TrainingDivergedError as exc:
        rule.diverged()
        if not rule.early_stopping:
            raise ValueError(NON_FINITE) from exc
    if not incremental and not rule.stopped and rule.n_iter == est.max_iter:
        warnings.warn(
            f"Stochastic Optimizer: Maximum iterations ({est.max_iter}) reached and the optimization hasn't converged yet.",
            ConvergenceWarning,
            stacklevel=5,  # the caller of fit
        )
    if rule.early_stopping:
        net.set_parameters(rule.best_params)
