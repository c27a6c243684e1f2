"""``netcore.MLPClassifier``: scikit-learn's ``MLPClassifier``, trained by netcore."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import column_or_1d

from .base import BaseMLP


class MLPClassifier(ClassifierMixin, BaseMLP):
    """Multilayer perceptron classifier with scikit-learn's interface, computed by netcore.

    Swap the import (``from netcore import MLPClassifier``) and a scikit-learn script runs
    unchanged: every parameter, attribute and method of ``sklearn.neural_network.MLPClassifier``
    keeps its meaning. Binary targets train one logistic output, multiclass a softmax,
    multilabel (an indicator matrix ``y``) one logistic output per label, as scikit-learn's.
    X may be dense or sparse (CSR / CSC matrices and arrays; the first layer multiplies the
    sparse rows). What netcore adds:

    solver : also ``"gd"``, full-batch gradient descent (the tutorial's; ``batch_size`` ignored).
    backend : netcore backend name or Backend (None: ``NETCORE_BACKEND``, else auto).
    dtype : compute dtype, ``"float32"`` or ``"float64"``; None follows X as scikit-learn does
        (float32 stays float32, anything else computes in float64).

    and one rule of netcore's: a uint8 X is read as 0..255 intensities and scaled to 0..1 (as
    :class:`~netcore.MLP` reads it), where scikit-learn would use the raw values.
    """

    # -- targets ----------------------------------------------------------------------------------
    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[Any, np.ndarray]:
        X, y = self._check_X(X, y, reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the previous call to fit. "
                        f"Previously got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. 'y' has {classes}.")
        return X, self._label_binarizer.transform(y).astype(bool)

    def _output_kind(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _network_targets(self, Y: np.ndarray) -> np.ndarray:
        return Y.argmax(axis=1) if self.out_activation_ == "softmax" else Y

    def _stratify(self, Y: np.ndarray) -> Any:
        # scikit-learn's rule, kept so that a seeded fit holds out the same samples: binary targets
        # (one output) are split stratified, multiclass and multilabel ones plainly.
        return Y if Y.shape[1] == 1 else None

    def _labels(self, outputs: np.ndarray) -> np.ndarray:
        return self._label_binarizer.inverse_transform(outputs.ravel() if self.n_outputs_ == 1 else outputs)

    def _score_outputs(self, outputs: np.ndarray, Y: np.ndarray, sample_weight: np.ndarray | None) -> float:
        return accuracy_score(self._label_binarizer.inverse_transform(Y), self._labels(outputs), sample_weight=sample_weight)

    # -- fitting ----------------------------------------------------------------------------------
    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None) -> MLPClassifier:
        """One epoch over ``(X, y)``, continuing from the current state. ``classes`` (every class
        of all calls) is required on the first call, and may not change later."""
        if getattr(self, "classes_", None) is None and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None:
            if getattr(self, "classes_", None) is not None:
                if not np.array_equal(self.classes_, unique_labels(classes)):
                    raise ValueError(f"`classes={classes!r}` is not the same as on last call to partial_fit, was: {self.classes_!r}")
            else:
                self.classes_ = unique_labels(classes)
                self._label_binarizer = LabelBinarizer().fit(y if type_of_target(y).startswith("multilabel") else classes)
        return self._fit(X, y, sample_weight, incremental=True)

    # -- prediction ---------------------------------------------------------------------------------
    def predict(self, X: Any) -> np.ndarray:
        """The class of each sample (each label's 0/1 for multilabel targets)."""
        return self._labels(self._outputs(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability of each class (of each label, for multilabel), columns in ``classes_`` order."""
        p = self._outputs(X)
        if self.n_outputs_ == 1:
            p = p.ravel()
            return np.vstack([1 - p, p]).T
        return p

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """``log(predict_proba(X))``."""
        p = self.predict_proba(X)
        return np.log(p, out=p)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags
