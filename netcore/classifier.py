"""``netcore.MLPClassifier``: a scikit-learn estimator with ``sklearn.neural_network.MLPClassifier``'s
interface, trained by netcore on the selected backend.

Swap the import and a scikit-learn script runs unchanged. It keeps scikit-learn's meaning of
every parameter it shares (``alpha`` is the L2 penalty, ``batch_size="auto"`` is
``min(200, n_samples)``, the stopping rule on ``tol`` / ``n_iter_no_change``, Glorot
initialisation), adds ``solver="gd"`` (full-batch gradient descent, the tutorial's), ``backend``
and ``dtype``, and uses softmax outputs for every number of classes.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from .network import MLP
from .optim import SGD, Adam
from .trainer import EpochLog, Trainer

ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "logistic": "sigmoid"}
SOLVERS = ("adam", "sgd", "gd")


class _StoppingRule:
    """scikit-learn's rule: stop once the training loss (or, with early stopping, the validation
    accuracy) has not improved by ``tol`` for more than ``n_iter_no_change`` epochs."""

    def __init__(self, clf: MLPClassifier) -> None:
        self.clf = clf

    def on_epoch_end(self, trainer: Trainer, log: EpochLog) -> None:
        clf = self.clf
        clf.loss_curve_.append(log.loss)
        clf.n_iter_ += 1
        clf.t_ += clf._n_train
        if clf.verbose:
            print(f"Iteration {clf.n_iter_}, loss = {log.loss:.8f}")
        if clf.early_stopping:
            score = log.val_accuracy
            clf.validation_scores_.append(score)
            if score > clf.best_validation_score_:
                clf.best_validation_score_ = score
                clf._best_params = trainer.net.get_parameters()
            improved = score > clf._best_for_tol + clf.tol
            clf._best_for_tol = max(clf._best_for_tol, score)
        else:
            improved = log.loss < clf.best_loss_ - clf.tol
            clf.best_loss_ = min(clf.best_loss_, log.loss)
        clf._no_improvement = 0 if improved else clf._no_improvement + 1
        if clf._no_improvement > clf.n_iter_no_change:
            clf._converged = True
            trainer.stop_training = True


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """Multilayer perceptron classifier, scikit-learn compatible, computed by netcore.

    Parameters are scikit-learn's (see its ``MLPClassifier``) plus:

    solver : ``"adam"``, ``"sgd"`` (with ``momentum`` / ``nesterovs_momentum``) or ``"gd"``
        (full-batch gradient descent; ``batch_size`` is ignored).
    backend : netcore backend name or None (``NETCORE_BACKEND``, else auto).
    dtype : compute dtype, ``"float32"`` or ``"float64"``; None follows X (float32 stays float32,
        anything else computes in float64, as scikit-learn does).
    """

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate_init: float = 0.001,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        backend: str | None = None,
        dtype: str | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.dtype = dtype

    # -- checks -----------------------------------------------------------------------------
    def _check_params(self) -> tuple[int, ...]:
        hidden = (self.hidden_layer_sizes,) if isinstance(self.hidden_layer_sizes, Integral) else tuple(self.hidden_layer_sizes)
        if not hidden or any(not isinstance(h, Integral) or isinstance(h, bool) or h < 1 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not supported; choose one of {', '.join(ACTIVATIONS)}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver {self.solver!r} is not supported; choose one of {', '.join(SOLVERS)}")
        checks = [
            ("alpha", self.alpha, Real, lambda v: v >= 0),
            ("learning_rate_init", self.learning_rate_init, Real, lambda v: v > 0),
            ("max_iter", self.max_iter, Integral, lambda v: v >= 1),
            ("tol", self.tol, Real, lambda v: v >= 0),
            ("momentum", self.momentum, Real, lambda v: 0 <= v <= 1),
            ("validation_fraction", self.validation_fraction, Real, lambda v: 0 < v < 1),
            ("n_iter_no_change", self.n_iter_no_change, Integral, lambda v: v >= 1),
        ]
        for name, value, kind, ok in checks:
            if not isinstance(value, kind) or isinstance(value, bool) or not ok(value):
                raise ValueError(f"{name} has an invalid value {value!r}")
        if not (self.batch_size == "auto" or (isinstance(self.batch_size, Integral) and self.batch_size >= 1)):
            raise ValueError(f"batch_size must be 'auto' or a positive integer, got {self.batch_size!r}")
        return hidden

    def _validate(self, X: Any, y: Any = None, reset: bool = True) -> tuple[np.ndarray, Any]:
        dtype = [np.float64, np.float32] if self.dtype is None else np.dtype(self.dtype).type
        if y is None:
            return validate_data(self, X, reset=reset, dtype=dtype), None
        X, y = validate_data(self, X, y, reset=reset, dtype=dtype, multi_output=False)
        return X, y

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Train from scratch for up to ``max_iter`` epochs; returns ``self``."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One epoch on ``(X, y)``, continuing from the current state; ``classes`` is required on the first call."""
        if not hasattr(self, "classes_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        return self._fit(X, y, incremental=True, classes=classes)

    def _fit(self, X: Any, y: Any, incremental: bool, classes: Any = None) -> MLPClassifier:
        hidden = self._check_params()
        first = not (incremental and hasattr(self, "net_"))
        X, y = self._validate(X, y, reset=first)
        check_classification_targets(y)
        if type_of_target(y) == "multilabel-indicator":
            raise ValueError("multilabel targets are not supported; y must be one label per sample")
        if first:
            self.classes_ = np.unique(y) if classes is None else np.unique(np.asarray(classes))
        unknown = ~np.isin(y, self.classes_)
        if unknown.any():
            raise ValueError(f"y contains labels not in classes_: {np.unique(y[unknown])[:5].tolist()}")
        y_ids = np.searchsorted(self.classes_, y)
        if len(self.classes_) < 2:
            raise ValueError(f"the classifier needs samples of at least 2 classes; got 1 class: {self.classes_[0]!r}")
        if first:
            self._init_model(hidden, X)
        X_train, y_train, validation = X, y_ids, None
        if self.early_stopping and not incremental:
            stratify = y_ids if np.bincount(y_ids).min() >= 2 else None
            X_train, X_val, y_train, y_val = train_test_split(
                X, y_ids, test_size=self.validation_fraction, random_state=self._split_seed, stratify=stratify
            )
            validation = (X_val, y_val)
        self._n_train = len(X_train)
        if self.solver != "gd":
            self.trainer_.batch_size = min(200, len(X_train)) if self.batch_size == "auto" else min(self.batch_size, len(X_train))
        self._converged = False
        rule = _StoppingRule(self)
        epochs = 1 if incremental else self.max_iter
        self.trainer_.fit(X_train, y_train, self.trainer_.epoch + epochs, validation_data=validation, callbacks=[rule])
        if self.early_stopping and not incremental and self._best_params is not None:
            self.net_.set_parameters(self._best_params)
        if not incremental and not self._converged:
            warnings.warn(f"the optimizer did not converge within max_iter={self.max_iter} epochs", ConvergenceWarning, stacklevel=3)
        self.loss_ = self.loss_curve_[-1]
        return self

    def _init_model(self, hidden: tuple[int, ...], X: np.ndarray) -> None:
        rng = check_random_state(self.random_state)
        seed, self._split_seed = (int(s) for s in rng.randint(0, 2**31 - 1, size=2))
        dtype = self.dtype or ("float32" if X.dtype == np.float32 else "float64")
        self.net_ = MLP([X.shape[1], *hidden, len(self.classes_)], ACTIVATIONS[self.activation], backend=self.backend,
                        dtype=dtype, seed=seed, init="glorot")
        if self.solver == "adam":
            optimizer = Adam(self.learning_rate_init)
        else:
            momentum = self.momentum if self.solver == "sgd" else 0.0
            optimizer = SGD(self.learning_rate_init, momentum=momentum, nesterov=self.nesterovs_momentum and momentum > 0)
        self.trainer_ = Trainer(self.net_, optimizer, l2=self.alpha, shuffle=self.shuffle, seed=seed, divergence_factor=None)
        self.loss_curve_, self.n_iter_, self.t_ = [], 0, 0
        self.best_loss_, self._no_improvement = np.inf, 0
        self.n_layers_, self.n_outputs_, self.out_activation_ = len(hidden) + 2, len(self.classes_), "softmax"
        if self.early_stopping:
            self.validation_scores_, self.best_validation_score_, self._best_for_tol = [], -np.inf, -np.inf
            self.best_loss_ = None
        self._best_params = None

    # -- learned attributes ------------------------------------------------------------------------
    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weight matrices ``(n_in, n_out)`` per layer, scikit-learn's orientation."""
        check_is_fitted(self, "net_")
        return [W.T for W, _ in self.net_.get_parameters()]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        check_is_fitted(self, "net_")
        return [b for _, b in self.net_.get_parameters()]

    # -- prediction -----------------------------------------------------------------------------------
    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "net_")
        X, _ = self._validate(X, reset=False)
        return self.net_.predict_proba(X).astype(np.float64, copy=False)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "net_")
        X, _ = self._validate(X, reset=False)
        return self.classes_[self.net_.predict(X)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.classifier_tags.multi_label = False
        tags.classifier_tags.poor_score = False
        return tags
