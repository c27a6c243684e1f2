"""netcore: multilayer perceptrons from scratch, one forward/backward on swappable backends.

Three ways in:

- ``netcore.tutorial``: the tutorial's own functions, on the selected backend;
- :class:`MLP` and :class:`Trainer`: the native network and its training loop;
- :class:`MLPClassifier` and :class:`MLPRegressor`: drop-ins for scikit-learn's.

Backends are chosen with an argument, a ``netcore.backends.use(...)`` block or ``NETCORE_BACKEND``.
"""

from typing import Any

from ._checkout import mount_backends

mount_backends()  # a no-op once installed

from netcore.backends import BackendUnavailableError, available, get_backend, use  # noqa: E402

from .callbacks import EarlyStopping, ModelCheckpoint, ProgressBar  # noqa: E402
from .network import MLP, backward, forward, init_parameters  # noqa: E402
from .optim import SGD, Adam, StepLR  # noqa: E402
from .trainer import History, Trainer, TrainingDivergedError  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "MLPClassifier",
    "MLPRegressor",
    "Trainer",
    "History",
    "TrainingDivergedError",
    "SGD",
    "Adam",
    "StepLR",
    "EarlyStopping",
    "ModelCheckpoint",
    "ProgressBar",
    "BackendUnavailableError",
    "available",
    "backward",
    "forward",
    "get_backend",
    "init_parameters",
    "use",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # The estimators import scikit-learn (half a second); only pay for it when one is used.
    if name in ("MLPClassifier", "MLPRegressor"):
        from . import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'netcore' has no attribute {name!r}")
