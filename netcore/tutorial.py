"""The tutorial's own functions, names and signatures, running on the selected backend.

A drop-in for the tutorial's code: swap its import for ``from netcore.tutorial import *`` and
the script runs unchanged. Everything keeps the tutorial's conventions: column layout (X is
``(n_features, n_samples)``, Y one-hot ``(n_classes, n_samples)``), parameter keys ``W1, b1, ...``
with ``b`` of shape ``(out, 1)``, gradient keys ``dW1, db1, ...``, float64, tanh hidden layers, a
softmax output and the tutorial's progress line. Arrays in and out are NumPy; the arithmetic runs
on the backend chosen by ``backends.use()`` or ``NETCORE_BACKEND`` through the same
forward/backward as :class:`netcore.MLP`. Any number of layers works, not only the tutorial's
three; the cache holds ``A1 .. AL`` and the output logits ``ZL``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from backends import Backend, get_backend

from .network import MLP, backward, forward, init_parameters
from .validation import check_labels, check_layer_sizes, check_X

__all__ = [
    "initialize_parameters",
    "tanh",
    "softmax",
    "forward_propagation",
    "backward_propagation",
    "update_parameters",
    "one_hot",
    "model",
]

ACTIVATION = "tanh"
COLUMNS = "(n_features, n_samples)"


def _ops() -> Backend:
    """The selected backend in float64, the tutorial's precision."""
    return get_backend(None, "float64")


def _n_layers(parameters: dict[str, Any]) -> int:
    n = 0
    while f"W{n + 1}" in parameters:
        n += 1
    if n == 0:
        raise ValueError("parameters has no 'W1'; build it with initialize_parameters(layer_dims)")
    for l in range(1, n + 1):
        if f"b{l}" not in parameters:
            raise ValueError(f"parameters has 'W{l}' but no 'b{l}'")
    return n


def _layers(ops: Backend, parameters: dict[str, Any]) -> list[tuple[Any, Any]]:
    layers = []
    for l in range(1, _n_layers(parameters) + 1):
        W = check_X(parameters[f"W{l}"], name=f"W{l}", layout="(out, in)")
        b = np.asarray(parameters[f"b{l}"]).reshape(-1)
        if b.shape[0] != W.shape[0] or (layers and W.shape[1] != len(layers[-1][1])):
            raise ValueError(f"parameters W{l} {W.shape} and b{l} {np.shape(parameters[f'b{l}'])} do not fit the layers before")
        layers.append((ops.asarray(W), ops.asarray(b)))
    return layers


def _columns(ops: Backend, X: Any, n_features: int | None = None, name: str = "X") -> Any:
    """Validate column-layout data and hand the backend its transpose (samples as rows)."""
    return ops.asarray(check_X(np.asarray(X).T, n_features, name=name, layout=COLUMNS))


def _one_hot_rows(ops: Backend, Y: Any, n_samples: int, n_classes: int) -> Any:
    labels = check_labels(np.asarray(Y).T, n_samples, n_classes, name="Y")
    return ops.one_hot(labels, n_classes)


def initialize_parameters(layer_dims: Sequence[int]) -> dict[str, np.ndarray]:
    """``W{l} = randn(out, in) * 0.1`` after ``seed(2)``, ``b{l} = zeros((out, 1))``."""
    params = init_parameters(check_layer_sizes(layer_dims), seed=2)
    out: dict[str, np.ndarray] = {}
    for l, (W, b) in enumerate(params, start=1):
        out[f"W{l}"], out[f"b{l}"] = W, b.reshape(-1, 1)
    return out


def tanh(Z: Any) -> np.ndarray:
    """Elementwise tanh of a 2-D array."""
    ops = _ops()
    z = ops.copy(ops.asarray(check_X(Z, name="Z", layout="(units, n_samples)")))
    return ops.to_numpy(ops.activation(z, ACTIVATION))


def softmax(Z: Any) -> np.ndarray:
    """Softmax of each column."""
    ops = _ops()
    return ops.to_numpy(ops.softmax(_columns(ops, Z, name="Z"))).T


def forward_propagation(X: Any, parameters: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(A_L, cache)``: output probabilities ``(n_classes, n_samples)`` and the layer outputs."""
    ops = _ops()
    layers = _layers(ops, parameters)
    A, Z = forward(ops, layers, _columns(ops, X, np.shape(parameters["W1"])[1]), ACTIVATION)
    L = len(layers)
    cache = {f"A{l}": ops.to_numpy(A[l]).T for l in range(1, L)}
    cache[f"Z{L}"] = ops.to_numpy(Z).T
    cache[f"A{L}"] = ops.to_numpy(ops.softmax(Z)).T
    return cache[f"A{L}"], cache


def backward_propagation(X: Any, Y: Any, parameters: dict[str, Any], cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """Gradients ``dW{l}``, ``db{l}`` of the mean cross-entropy, from ``forward_propagation``'s cache."""
    ops = _ops()
    layers = _layers(ops, parameters)
    L = len(layers)
    missing = [f"A{l}" for l in range(1, L + 1) if f"A{l}" not in cache]
    if missing:
        raise ValueError(f"cache is missing {', '.join(missing)}; pass the cache returned by forward_propagation")
    X = _columns(ops, X, np.shape(parameters["W1"])[1])
    A = [X] + [ops.asarray(np.asarray(cache[f"A{l}"]).T) for l in range(1, L)]
    Yb = _one_hot_rows(ops, Y, len(X), np.shape(parameters[f"W{L}"])[0])
    dZ = ops.softmax_cross_entropy_delta(ops.asarray(np.asarray(cache[f"A{L}"]).T), Yb)  # dZᴸ = A_L - Y
    grads = backward(ops, layers, A, dZ, ACTIVATION)
    out: dict[str, np.ndarray] = {}
    for l, (dW, db) in enumerate(grads, start=1):
        out[f"dW{l}"], out[f"db{l}"] = ops.to_numpy(dW), ops.to_numpy(db).reshape(-1, 1)
    return out


def update_parameters(parameters: dict[str, Any], grads: dict[str, Any], learning_rate: float) -> dict[str, np.ndarray]:
    """``W -= learning_rate * dW`` and ``b -= learning_rate * db`` for every layer; returns ``parameters``."""
    ops = _ops()
    for l in range(1, _n_layers(parameters) + 1):
        for key in (f"W{l}", f"b{l}"):
            if f"d{key}" not in grads:
                raise ValueError(f"grads is missing 'd{key}'; pass the dict returned by backward_propagation")
            p, g = np.asarray(parameters[key]), np.asarray(grads[f"d{key}"])
            if p.shape != g.shape:
                raise ValueError(f"{key} has shape {p.shape} but d{key} has shape {g.shape}")
            p = ops.copy(ops.asarray(p))
            ops.sgd_update(p, ops.asarray(g), learning_rate)
            parameters[key] = ops.to_numpy(p)
    return parameters


def one_hot(Y: Any, n_classes: int = 10) -> np.ndarray:
    """Class ids ``(n_samples,)`` -> one-hot columns ``(n_classes, n_samples)``, float64."""
    labels = np.asarray(Y).reshape(-1) if np.ndim(Y) == 2 and 1 in np.shape(Y) else Y
    ids = check_labels(labels, len(np.asarray(labels)), n_classes, name="Y")
    out = np.zeros((n_classes, len(ids)))
    out[ids, np.arange(len(ids))] = 1.0
    return out


def model(
    X: Any,
    Y: Any,
    layer_dims: Sequence[int],
    learning_rate: float = 1.0,
    num_iterations: int = 100,
    print_cost: bool = True,
) -> tuple[dict[str, np.ndarray], list[float]]:
    """Full-batch gradient descent from ``initialize_parameters``; the rate drops to 0.1 at iteration 75.

    Prints the tutorial's progress line every 10 iterations; returns ``(parameters, costs)``.
    The data moves to the backend once and the loop stays there; only the costs come back.
    """
    net = MLP(layer_dims, ACTIVATION, backend=_ops(), dtype="float64", seed=2)
    ops = net.backend
    Xb = _columns(ops, X, net.n_features)
    labels = check_labels(np.asarray(Y).T, len(Xb), net.n_classes, name="Y")
    Yb = ops.one_hot(labels, net.n_classes)
    costs = []
    for i in range(num_iterations):
        if i == 75:
            learning_rate = 0.1
        loss, Z = net.train_step(Xb, Yb, learning_rate)
        costs.append(ops.to_float(loss))
        if print_cost and i % 10 == 0:
            accuracy = np.mean(ops.argmax_rows(Z) == labels)
            print("Cost after iteration %i: %f, accuracy: %.4f" % (i, costs[-1], accuracy))
    parameters: dict[str, np.ndarray] = {}
    for l, (W, b) in enumerate(net.get_parameters(), start=1):
        parameters[f"W{l}"], parameters[f"b{l}"] = W, b.reshape(-1, 1)
    return parameters, costs
