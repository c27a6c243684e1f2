"""``netcore.MLPRegressor``: scikit-learn's ``MLPRegressor``, trained by netcore."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import column_or_1d

from .base import BaseMLP

#: scikit-learn's regression losses -> netcore's output layers (each trained on its canonical loss).
LOSSES = {"squared_error": "identity", "poisson": "exp"}


class MLPRegressor(RegressorMixin, BaseMLP):
    """Multilayer perceptron regressor with scikit-learn's interface, computed by netcore.

    Every parameter of ``sklearn.neural_network.MLPRegressor`` keeps its meaning: ``loss`` is
    ``"squared_error"`` (an identity output, half the squared error) or ``"poisson"`` (an exp
    output, half the Poisson deviance; ``y >= 0``); one or several targets. Plus ``backend``,
    ``dtype`` and ``solver="gd"`` as in :class:`~netcore.MLPClassifier`, and its uint8 rule.

    With several targets, scikit-learn's squared-error figure (``loss_``, ``loss_curve_``, what
    ``tol`` is compared with) is the mean over the targets while its gradient is that of their sum.
    netcore trains on the same gradient and reports the mean, except that the stochastic solvers'
    figures also divide the L2 term by the number of targets (they see the loss of each batch as
    one number). L-BFGS, which needs a loss and gradient that agree, minimises the sum.
    """

    def __init__(
        self,
        loss: str = "squared_error",
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        max_fun: int = 15000,
        backend: Any = None,
        dtype: str | None = None,
    ) -> None:
        self.loss = loss
        shared = {name: value for name, value in locals().items() if name not in ("self", "loss", "__class__")}
        super().__init__(**shared)

    def _check_params(self) -> list[int]:
        if not isinstance(self.loss, str) or self.loss not in LOSSES:
            raise ValueError(f"The 'loss' parameter must be one of {', '.join(map(repr, LOSSES))}; got {self.loss!r}.")
        return super()._check_params()

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[Any, np.ndarray]:
        X, y = self._check_X(X, y, reset=reset, y_numeric=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and (y < 0).any():
            raise ValueError("loss='poisson' needs y >= 0 (counts or rates); y has negative values.")
        return X, y.reshape(len(y), -1)

    def _output_kind(self) -> str:
        return LOSSES[self.loss]

    def _loss_scale(self) -> float:
        return 1.0 / self.n_outputs_ if self.loss == "squared_error" else 1.0

    def _score_outputs(self, outputs: np.ndarray, Y: np.ndarray, sample_weight: np.ndarray | None) -> float:
        return r2_score(Y, outputs, sample_weight=sample_weight)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One epoch over ``(X, y)``, continuing from the current state."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: Any) -> np.ndarray:
        """The predicted targets, ``(n_samples,)`` for one target, else ``(n_samples, n_targets)``."""
        y = self._outputs(X)
        return y.ravel() if y.shape[1] == 1 else y
