"""What :class:`MLPClassifier` and :class:`MLPRegressor` share: scikit-learn's constructor and
parameter checks, the network behind ``coefs_`` / ``intercepts_``, ``fit`` / ``partial_fit`` and
the choice of solver.

``coefs_`` and ``intercepts_`` are plain attributes in scikit-learn's layout (``coefs_[i]`` is
``(fan_in, fan_out)``), so a script may read them, replace them or edit them in place. They are
the truth between calls: every fit, partial_fit and prediction loads them into the netcore
:class:`~netcore.network.MLP` (weights ``(out, in)``, on the chosen backend), and training writes
the result back.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from netcore.backends.base import is_sparse

from ..network import MLP
from ..validation import check_sample_weight
from .lbfgs import fit_lbfgs
from .stochastic import NON_FINITE, NoImprovementRule, fit_stochastic

#: scikit-learn's hidden activation names -> netcore's.
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
#: ``gd`` is netcore's: full-batch gradient descent (the tutorial's), batch_size ignored.
SOLVERS = ("lbfgs", "sgd", "adam", "gd")
LEARNING_RATES = ("constant", "invscaling", "adaptive")


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


class BaseMLP(BaseEstimator):
    """The shared part of the two estimators; see :class:`~netcore.MLPClassifier` for the parameters."""

    def __init__(
        self,
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
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype

    # -- what the subclasses supply ---------------------------------------------------------------
    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[Any, np.ndarray]:
        """``(X, Y)``: validated inputs and the targets as a 2-D array (one column per output)."""
        raise NotImplementedError

    def _output_kind(self) -> str:
        """The network's output layer (``out_activation_``) for the targets just validated."""
        raise NotImplementedError

    def _network_targets(self, Y: np.ndarray) -> np.ndarray:
        """What the network trains on: ``Y`` itself, or class ids for a softmax output."""
        return Y

    def _loss_scale(self) -> float:
        """scikit-learn's loss figure over the network's loss (which is what the gradient is of)."""
        return 1.0

    def _stratify(self, Y: np.ndarray) -> Any:
        """The labels an early-stopping split keeps in proportion (None: a plain split)."""
        return None

    def _score_outputs(self, outputs: np.ndarray, Y: np.ndarray, sample_weight: np.ndarray | None) -> float:
        """scikit-learn's score (accuracy, R²) of network outputs against targets ``Y`` (2-D)."""
        raise NotImplementedError

    # -- checks -----------------------------------------------------------------------------------
    def _check_params(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        hidden = [sizes] if not hasattr(sizes, "__iter__") else list(sizes)
        if not hidden or any(not isinstance(h, Integral) or _is_bool(h) or h <= 0 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes!r}.")
        for name, allowed in (("activation", ACTIVATIONS), ("solver", SOLVERS), ("learning_rate", LEARNING_RATES)):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                raise ValueError(f"The '{name}' parameter must be one of {', '.join(map(repr, allowed))}; got {value!r}.")
        checks = [
            ("alpha", Real, lambda v: v >= 0, ">= 0"),
            ("learning_rate_init", Real, lambda v: v > 0, "> 0"),
            ("power_t", Real, lambda v: v >= 0, ">= 0"),
            ("max_iter", Integral, lambda v: v >= 1, ">= 1"),
            ("tol", Real, lambda v: v >= 0, ">= 0"),
            ("momentum", Real, lambda v: 0 <= v <= 1, "in [0, 1]"),
            ("validation_fraction", Real, lambda v: 0 <= v < 1, "in [0, 1)"),
            ("beta_1", Real, lambda v: 0 <= v < 1, "in [0, 1)"),
            ("beta_2", Real, lambda v: 0 <= v < 1, "in [0, 1)"),
            ("epsilon", Real, lambda v: v > 0, "> 0"),
            ("max_fun", Integral, lambda v: v >= 1, ">= 1"),
        ]
        for name, kind, ok, rule in checks:
            value = getattr(self, name)
            if not isinstance(value, kind) or _is_bool(value) or not ok(value):
                raise ValueError(f"The '{name}' parameter must be a number {rule}; got {value!r}.")
        n = self.n_iter_no_change
        if _is_bool(n) or not ((isinstance(n, Integral) and n >= 1) or (isinstance(n, Real) and n == math.inf)):
            raise ValueError(f"The 'n_iter_no_change' parameter must be an integer >= 1 or np.inf; got {n!r}.")
        if not (self.batch_size == "auto" or (isinstance(self.batch_size, Integral) and not _is_bool(self.batch_size) and self.batch_size >= 1)):
            raise ValueError(f"The 'batch_size' parameter must be 'auto' or an integer >= 1; got {self.batch_size!r}.")
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not _is_bool(getattr(self, name)):
                raise ValueError(f"The '{name}' parameter must be a bool; got {getattr(self, name)!r}.")
        return [int(h) for h in hidden]

    def _check_X(self, X: Any, y: Any = "no_validation", reset: bool = True, **kwargs: Any) -> Any:
        """scikit-learn's validation of X (and y, unless "no_validation"), keeping float32 and
        float64, and keeping uint8: the network reads uint8 as 0..255 intensities and scales them to
        0..1, as netcore's MLP does."""
        dtype = None if getattr(X, "dtype", None) == np.uint8 else (np.float64, np.float32)
        kwargs = dict(accept_sparse=["csr", "csc"], dtype=dtype, reset=reset, **kwargs)
        if isinstance(y, str) and y == "no_validation":
            X = validate_data(self, X, **kwargs)
            return X.tocsr() if is_sparse(X) else X
        X, y = validate_data(self, X, y, multi_output=True, **kwargs)
        return (X.tocsr() if is_sparse(X) else X), y

    # -- fitting ------------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> BaseMLP:
        """Train on ``(X, y)`` (from scratch, or from the last solution with ``warm_start``); returns ``self``."""
        return self._fit(X, y, sample_weight, incremental=False)

    def _check_solver(self) -> bool:
        """``partial_fit`` exists for the epoch-wise solvers only (``available_if``)."""
        if self.solver == "lbfgs":
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {self.solver} is not stochastic.")
        return True

    def _fit(self, X: Any, y: Any, sample_weight: Any, incremental: bool) -> BaseMLP:
        hidden = self._check_params()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        sw = None if sample_weight is None else check_sample_weight(sample_weight, X.shape[0])
        self.n_outputs_ = Y.shape[1]
        rng = check_random_state(self.random_state)
        if first_pass:
            self._initialize(X, [X.shape[1], *hidden, self.n_outputs_], rng)
        elif not hasattr(self, "out_activation_"):  # coefs_ set by hand
            self.out_activation_, self.n_layers_ = self._output_kind(), len(self.coefs_) + 1
        net = self._network()
        if self.solver == "lbfgs":
            fit_lbfgs(self, net, X, self._network_targets(Y), sw)
        else:
            self._fit_stochastic(net, X, Y, sw, incremental, rng)
        self._store(net)
        if not all(np.isfinite(p).all() for p in (*self.coefs_, *self.intercepts_)):
            raise ValueError(NON_FINITE)
        return self

    def _initialize(self, X: Any, layer_units: list[int], rng: np.random.RandomState) -> None:
        """First fit: scikit-learn's attributes and its Glorot initialisation, drawn the same way
        (``coefs_[i]`` then ``intercepts_[i]``, uniform in ±sqrt(factor / (fan_in + fan_out)),
        factor 2 for logistic hidden units and 6 otherwise)."""
        self.n_iter_, self.t_ = 0, 0
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._output_kind()
        dtype = np.dtype(self.dtype) if self.dtype is not None else (np.dtype(np.float32) if X.dtype == np.float32 else np.dtype(np.float64))
        factor = 2.0 if self.activation == "logistic" else 6.0
        self.coefs_, self.intercepts_ = [], []
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            self.coefs_.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype, copy=False))
            self.intercepts_.append(rng.uniform(-bound, bound, fan_out).astype(dtype, copy=False))
        self._rule = self._trainer = None

    def _network(self) -> MLP:
        """The netcore network holding ``coefs_`` / ``intercepts_`` (built once, loaded every call)."""
        sizes = (self.coefs_[0].shape[0], *(c.shape[1] for c in self.coefs_))
        dtype = self.dtype or ("float32" if np.asarray(self.coefs_[0]).dtype == np.float32 else "float64")
        key = (sizes, self.activation, self.out_activation_, dtype, self.backend)
        if getattr(self, "_net_key", None) != key:
            self._net = MLP(sizes, ACTIVATIONS[self.activation], backend=self.backend, dtype=dtype, output=self.out_activation_)
            self._net_key = key
        self._net.set_parameters([(np.asarray(c).T, b) for c, b in zip(self.coefs_, self.intercepts_)])
        return self._net

    def _store(self, net: MLP) -> None:
        params = net.get_parameters()
        self.coefs_ = [np.ascontiguousarray(W.T) for W, _ in params]
        self.intercepts_ = [b for _, b in params]

    def _fit_stochastic(self, net: MLP, X: Any, Y: np.ndarray, sw: np.ndarray | None, incremental: bool, rng: Any) -> None:
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        rule = getattr(self, "_rule", None)
        if rule is None or rule.early_stopping != self.early_stopping:  # a warm start may switch early stopping on or off
            rule = self._rule = NoImprovementRule(self.early_stopping, net.get_parameters(), t=getattr(self, "t_", 0))
        validation_score = None
        if self.early_stopping:
            X, Y, sw, validation_score = self._split(X, Y, sw, rng)
        fit_stochastic(self, net, X, self._network_targets(Y), sw, incremental, rule, validation_score, rng)
        self.n_iter_, self.t_, self.loss_ = rule.n_iter, rule.t, rule.loss
        self.loss_curve_ = list(rule.loss_curve)
        self.best_loss_ = rule.best_loss
        self.validation_scores_ = None if rule.validation_scores is None else list(rule.validation_scores)
        self.best_validation_score_ = rule.best_validation_score

    def _split(self, X: Any, Y: np.ndarray, sw: np.ndarray | None, rng: Any) -> tuple:
        """Hold out ``validation_fraction`` of the samples for early stopping (stratified where
        :meth:`_stratify` says); returns the training part and a scorer of the held-out part."""
        arrays = [X, Y] + ([] if sw is None else [sw])
        parts = train_test_split(*arrays, random_state=rng, test_size=self.validation_fraction, stratify=self._stratify(Y))
        X_train, X_val, Y_train, Y_val = parts[:4]
        sw_train, sw_val = (None, None) if sw is None else parts[4:]
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of your dataset.")

        def validation_score(net: MLP) -> float:
            with np.errstate(all="ignore"):
                outputs = net.forward(X_val)
            if not np.isfinite(outputs).all():
                return math.nan
            return float(self._score_outputs(outputs, Y_val, sw_val))

        return X_train, Y_train, sw_train, validation_score

    # -- prediction -----------------------------------------------------------------------------------
    def _outputs(self, X: Any) -> np.ndarray:
        """The output layer's values for ``X``: probabilities, or the predictions."""
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        return self._network().forward(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
