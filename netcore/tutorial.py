"""The tutorial's own functions, with its names, signatures and printed lines, on any backend.

A drop-in for the code of "Building Your First Neural Network From Scratch" (784 -> 16 tanh ->
16 tanh -> 10 softmax on MNIST): replace the tutorial's function definitions with
``from netcore.tutorial import *`` and its script runs unchanged. Everything keeps the tutorial's
conventions: column layout (``X`` is ``(n_features, n_samples)``, targets one-hot
``(n_classes, n_samples)``), parameter keys ``W1, b1, ...`` with each ``b`` of shape
``(out, 1)``, gradient keys ``dW1, db1, ...``, float64, tanh hidden layers and a softmax output.

What it adds: ``initialize_parameters(n_in, n_outs)`` builds as many layers as ``n_outs`` has
(the tutorial hard-codes three); the arithmetic runs on the selected backend (``netcore.backends.use()``
or ``NETCORE_BACKEND``) through the same forward/backward as :class:`netcore.MLP`, and ``model``
trains with :class:`netcore.Trainer`, the data moved to the backend once.

Where it differs from the original, only where the original's arithmetic breaks down:
``tanh`` is the backend's (the tutorial's ``(e^x - e^-x) / (e^x + e^-x)`` agrees to the last bit
or two, and is NaN past |x| = 710 where this gives ±1); ``softmax`` subtracts each column's
maximum, not the array's (the same values, and no 0/0 for a column far below the rest); bad
input (wrong shapes, NaN, labels out of range, which the original may index with silently)
is a ``ValueError`` that names the problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from netcore.backends import Backend, get_backend

from .network import MLP, backward, forward, init_parameters
from .optim import SGD
from .trainer import BatchLog, Trainer
from .validation import check_labels, check_layer_sizes, check_X

__all__ = [
    "initialize_parameters",
    "tanh",
    "softmax",
    "forward_propagation",
    "backward_propagation",
    "update_parameters",
    "model",
    "one_hot",
]

ACTIVATION = "tanh"
COLUMNS = "(n_features, n_samples)"
HIDDEN = (16, 16)  # the tutorial's two hidden layers
DROP_AFTER, DROPPED_RATE = 75, 0.1  # the tutorial's `if i > 75: learning_rate = 0.1`
EPSILON = 1e-8  # inside the tutorial's cost, log(A3 + 1e-8)


def _ops() -> Backend:
    """The selected backend in float64, the tutorial's precision."""
    return get_backend(None, "float64")


# -- between the tutorial's dicts and columns and the backend's rows -----------------------------
def _n_layers(parameters: dict[str, Any]) -> int:
    n = 0
    while f"W{n + 1}" in parameters:
        n += 1
    if n == 0:
        raise ValueError("parameters has no 'W1'; build it with initialize_parameters(n_in, n_outs)")
    for l in range(1, n + 1):
        if f"b{l}" not in parameters:
            raise ValueError(f"parameters has 'W{l}' but no 'b{l}'")
    return n


def _layers(ops: Backend, parameters: dict[str, Any]) -> list[tuple[Any, Any]]:
    """``[(W, b), ...]`` on the backend, each ``b`` flat, the layers checked to chain."""
    layers: list[tuple[Any, Any]] = []
    for l in range(1, _n_layers(parameters) + 1):
        W = check_X(parameters[f"W{l}"], name=f"W{l}", layout="(out, in)")
        b = np.asarray(parameters[f"b{l}"]).reshape(-1)
        if b.shape[0] != W.shape[0] or (layers and W.shape[1] != len(layers[-1][1])):
            raise ValueError(f"parameters W{l} {W.shape} and b{l} {np.shape(parameters[f'b{l}'])} do not fit the layers before")
        layers.append((ops.asarray(W), ops.asarray(b)))
    return layers


def _as_dict(pairs: Sequence[tuple[np.ndarray, np.ndarray]], prefix: str = "") -> dict[str, np.ndarray]:
    """``[(W, b), ...]`` -> ``{"W1": W, "b1": b as (out, 1), ...}`` (``prefix="d"`` for gradients)."""
    out: dict[str, np.ndarray] = {}
    for l, (W, b) in enumerate(pairs, start=1):
        out[f"{prefix}W{l}"], out[f"{prefix}b{l}"] = np.asarray(W), np.asarray(b).reshape(-1, 1)
    return out


def _rows(X: Any, n_features: int | None = None, name: str = "X") -> np.ndarray:
    """Validate column-layout data and return its transpose: samples as rows, as the backends hold them."""
    return check_X(np.asarray(X).T, n_features, name=name, layout=COLUMNS)


def _labels(y: Any, n_samples: int, n_classes: int) -> np.ndarray:
    """Class ids from the tutorial's one-hot columns ``(n_classes, n_samples)``."""
    y = np.asarray(y)
    if y.ndim != 2:
        raise ValueError(f"y must be one-hot columns of shape (n_classes, n_samples), as one_hot(a, num_classes).T gives; got shape {y.shape}")
    if y.shape[1] != n_samples and y.shape[0] == n_samples:
        raise ValueError(f"y has shape {y.shape}: one sample per row, but the tutorial's y is one-hot columns (n_classes, n_samples); transpose it, as in one_hot(a, num_classes).T")
    return check_labels(y.T, n_samples, n_classes, name="y")


# -- the tutorial's functions ----------------------------------------------------------------------
def initialize_parameters(n_in: int, n_outs: Sequence[int]) -> dict[str, np.ndarray]:
    """``np.random.seed(2)``, then ``W{l} = randn(n_outs[l-1], previous) * 0.1`` and ``b{l} = zeros``.

    One layer per entry of ``n_outs``: ``(784, [16, 16, 10])`` is the tutorial's network.
    """
    sizes = check_layer_sizes([n_in, *n_outs])
    np.random.seed(2)  # the tutorial seeds NumPy's global generator and draws from it
    return _as_dict(init_parameters(sizes, rng=np.random))


def tanh(x: Any) -> np.ndarray:
    """Elementwise tanh of an array of any shape (on the backend)."""
    ops = _ops()
    arr = np.asarray(x, dtype=np.float64)
    z = ops.copy(ops.asarray(check_X(arr.reshape(1, -1), name="x", layout="any shape")))  # activations work in place
    return ops.to_numpy(ops.activation(z, ACTIVATION)).reshape(arr.shape)


def softmax(x: Any) -> np.ndarray:
    """Softmax of each column (of the vector, for 1-D input): the output layer's probabilities."""
    ops = _ops()
    arr = np.asarray(x)
    rows = _rows(arr.reshape(len(arr), -1) if arr.ndim == 1 else arr, name="x")
    return ops.to_numpy(ops.softmax(ops.asarray(rows))).T.reshape(arr.shape)


def forward_propagation(X: Any, parameters: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(A3, cache)``: output probabilities ``(n_classes, n_samples)`` and every layer's ``Z`` and ``A``."""
    ops = _ops()
    layers = _layers(ops, parameters)
    Z: list[Any] = []
    A, logits = forward(ops, layers, ops.asarray(_rows(X, np.shape(parameters["W1"])[1])), ACTIVATION, Z)
    Z.append(logits)
    A = [*A[1:], ops.softmax(logits)]
    cache: dict[str, np.ndarray] = {}
    for l, (z, a) in enumerate(zip(Z, A), start=1):
        cache[f"Z{l}"], cache[f"A{l}"] = ops.to_numpy(z).T, ops.to_numpy(a).T
    return cache[f"A{len(layers)}"], cache


def backward_propagation(X: Any, y: Any, cache: dict[str, Any], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
    """Gradients ``dW{l}``, ``db{l}`` of the mean cross-entropy, from ``forward_propagation``'s cache."""
    ops = _ops()
    layers = _layers(ops, parameters)
    L = len(layers)
    missing = [f"A{l}" for l in range(1, L + 1) if f"A{l}" not in cache]
    if missing:
        raise ValueError(f"cache is missing {', '.join(missing)}; pass the cache returned by forward_propagation")
    X = _rows(X, np.shape(parameters["W1"])[1])
    Y = ops.one_hot(_labels(y, len(X), np.shape(parameters[f"W{L}"])[0]), np.shape(parameters[f"W{L}"])[0])
    A = [ops.asarray(X)] + [ops.asarray(np.asarray(cache[f"A{l}"]).T) for l in range(1, L)]
    dZ = ops.softmax_cross_entropy_delta(ops.asarray(np.asarray(cache[f"A{L}"]).T), Y)  # dZᴸ = Aᴸ - y
    return _as_dict([(ops.to_numpy(dW), ops.to_numpy(db)) for dW, db in backward(ops, layers, A, dZ, ACTIVATION)], "d")


def update_parameters(parameters: dict[str, Any], grads: dict[str, Any], learning_rate: float = 0.001) -> dict[str, np.ndarray]:
    """A new dict with ``W - dW * learning_rate`` and ``b - db * learning_rate`` for every layer."""
    ops = _ops()
    new: dict[str, np.ndarray] = {}
    for l in range(1, _n_layers(parameters) + 1):
        for key in (f"W{l}", f"b{l}"):
            if f"d{key}" not in grads:
                raise ValueError(f"grads is missing 'd{key}'; pass the dict returned by backward_propagation")
            p, g = np.asarray(parameters[key]), np.asarray(grads[f"d{key}"])
            if p.shape != g.shape:
                raise ValueError(f"{key} has shape {p.shape} but d{key} has shape {g.shape}")
            shape, p = p.shape, ops.copy(ops.asarray(p.reshape(len(p), -1)))  # 2-D, as the ops take; updated in place
            ops.sgd_update(p, ops.asarray(g.reshape(len(g), -1)), learning_rate)
            new[key] = ops.to_numpy(p).reshape(shape)
    return new


def one_hot(a: Any, num_classes: int) -> np.ndarray:
    """Class ids -> one-hot rows ``(n_samples, num_classes)``, float64; the script transposes them."""
    labels = np.asarray(a).reshape(-1)
    ids = check_labels(labels, len(labels), num_classes, name="a")
    return np.squeeze(np.eye(num_classes)[ids])


class _PrintCost:
    """The tutorial's progress line every 10 iterations, from the step's own logits (before its update)."""

    def __init__(self, y: np.ndarray) -> None:
        self.y = y  # one-hot columns, as the tutorial's cost reads them

    def on_batch_end(self, trainer: Trainer, log: BatchLog) -> None:
        if log.epoch % 10:
            return
        ops = trainer.net.backend
        A3 = np.ascontiguousarray(ops.to_numpy(ops.softmax(log.logits)).T)  # the tutorial's layout and sum order
        cost = -np.mean(self.y * np.log(A3 + EPSILON))
        accuracy = (np.argmax(A3, axis=0) == np.argmax(self.y, axis=0)).mean()
        print("Cost after iteration %i: %f Accuracy: %f" % (log.epoch, cost, accuracy * 100))


def model(
    X: Any,
    y: Any,
    learning_rate: float,
    num_iterations: int = 150,
    print_cost: bool = True,
    n_outs: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Full-batch gradient descent from ``initialize_parameters``; returns the trained parameters.

    The rate is ``learning_rate`` up to iteration 75 and 0.1 after it, as in the tutorial, which
    prints its cost (``-mean(y * log(A3 + 1e-8))``) and accuracy every 10 iterations.
    ``n_outs`` sets the layers after the input (default ``[16, 16, n_classes]``, the tutorial's).
    """
    X = _rows(X)
    y = np.asarray(y)
    n_classes = y.shape[0] if y.ndim == 2 else 0
    labels = _labels(y, len(X), n_classes)
    parameters = initialize_parameters(X.shape[1], [*HIDDEN, n_classes] if n_outs is None else n_outs)
    net = MLP([X.shape[1], *(len(parameters[f"b{l}"]) for l in range(1, _n_layers(parameters) + 1))], ACTIVATION, backend=_ops(), dtype="float64")
    net.set_parameters([(parameters[f"W{l}"], parameters[f"b{l}"]) for l in range(1, len(net.layers) + 1)])
    if num_iterations > 0:
        trainer = Trainer(net, SGD(learning_rate), schedule=lambda i: learning_rate if i <= DROP_AFTER else DROPPED_RATE)
        trainer.fit(X, labels, num_iterations, callbacks=[_PrintCost(y)] if print_cost else [])
    return _as_dict(net.get_parameters())
