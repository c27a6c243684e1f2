"""netcore: multilayer perceptrons from scratch, one forward/backward on swappable backends.

    >>> from netcore import MLP
    >>> net = MLP([784, 16, 16, 10], activation="tanh", backend="numba", seed=2)

Backends are chosen with an argument, a ``backends.use(...)`` block or ``NETCORE_BACKEND``.
"""

from backends import BackendUnavailableError, available, get_backend, use

from .network import MLP, backward, forward, init_parameters
from .optim import StepLR

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "BackendUnavailableError",
    "StepLR",
    "available",
    "backward",
    "forward",
    "get_backend",
    "init_parameters",
    "use",
    "__version__",
]
