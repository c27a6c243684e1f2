"""scikit-learn estimators computed by netcore: :class:`MLPClassifier` and :class:`MLPRegressor`,
drop-ins for ``sklearn.neural_network``'s (importing this package imports scikit-learn)."""

from .classifier import MLPClassifier
from .regressor import MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
