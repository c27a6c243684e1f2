"""The multilayer perceptron, written once against the backend contract.

Notation follows the tutorial, with samples as rows (``m`` of them):

    A⁰ = X
    Aˡ = g(Aˡ⁻¹ Wˡᵀ + bˡ)              hidden layers, g = tanh | relu | sigmoid | identity
    Zᴸ = Aᴸ⁻¹ Wᴸᵀ + bᴸ,  P = o(Zᴸ)     the output layer, o = softmax (the tutorial's) | logistic | identity | exp
    loss = (1/m) Σ ℓ(P, Y)            ℓ = o's canonical loss: -Y ⊙ log P for softmax (the tutorial's),
                                      binary cross-entropy, ½ squared error, ½ Poisson deviance

    dZᴸ = P - Y                       (the same for every canonical pair)
    dWˡ = (1/m) dZˡᵀ Aˡ⁻¹,   dbˡ = (1/m) Σ_rows dZˡ
    dZˡ⁻¹ = (dZˡ Wˡ) ⊙ g'(Aˡ⁻¹)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from netcore.backends import Backend, get_backend
from netcore.backends.base import check_output

from . import checkpoint
from .optim import sgd_step
from .validation import check_activation, check_labels, check_layer_sizes, check_sample_weight, check_targets, check_X

Layers = list[tuple[Any, Any]]


class Batch(NamedTuple):
    """Validated data on the backend: inputs, targets (one-hot rows for softmax, or None), the host
    labels (class ids for softmax, else the targets), and per-sample weights (a column) or None."""

    X: Any
    Y: Any
    labels: np.ndarray | None
    weights: Any = None


def forward(ops: Backend, layers: Layers, X: Any, activation: str, Z: list[Any] | None = None) -> tuple[list[Any], Any]:
    """The activations ``[A⁰ .. Aᴸ⁻¹]`` of every layer but the last, and the output logits ``Zᴸ``.

    Given a list ``Z``, each hidden layer's pre-activation ``Zˡ`` is appended to it (the
    tutorial's cache keeps them); bias and activation then run as two ops instead of one.
    """
    A = [X]
    for W, b in layers[:-1]:
        if Z is None:
            A.append(ops.dense(A[-1], W, b, activation))
        else:
            Z.append(ops.linear(A[-1], W, b))
            A.append(ops.activation(ops.copy(Z[-1]), activation))
    W, b = layers[-1]
    return A, ops.linear(A[-1], W, b)


def backward(ops: Backend, layers: Layers, A: list[Any], dZ: Any, activation: str) -> Layers:
    """``[(dW¹, db¹) .. (dWᴸ, dbᴸ)]``: the gradient of the mean loss, from ``dZᴸ = P - Y``."""
    m = len(dZ)  # samples (A⁰ may be sparse rows, which have no len)
    grads = []
    for l in reversed(range(len(layers))):
        W, _ = layers[l]
        grads.append((ops.scale(ops.matmul_tn(dZ, A[l]), 1 / m), ops.scale(ops.sum_rows(dZ), 1 / m)))
        if l > 0:
            dZ = ops.activation_backward(A[l], ops.matmul(dZ, W), activation)
    return grads[::-1]


def generic_loss_and_gradients(
    ops: Backend, layers: Layers, X: Any, Y: Any, activation: str, output: str = "softmax", weights: Any = None
) -> tuple[Any, Layers, Any]:
    """``(loss, grads, logits)`` op by op: the single source of truth that fused ops are held to."""
    A, Z = forward(ops, layers, X, activation)
    loss, dZ = ops.output_loss(Z, Y, output, weights)
    return loss, backward(ops, layers, A, dZ, activation), Z


INITS = ("tutorial", "glorot")


def init_parameters(
    layer_sizes: Sequence[int], seed: int | None = None, init: str = "tutorial", rng: Any = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Initial ``[(W, b), ...]`` in float64 on the host.

    ``"tutorial"``: ``randn(out, in) * 0.1`` per layer in order, zero biases. ``RandomState(seed)``
    draws the same stream as ``np.random.seed(seed)`` without touching the global generator, so
    ``seed=2`` gives the tutorial's parameters exactly.
    ``"glorot"``: scikit-learn's MLP initialisation, W and b uniform in ``±sqrt(6 / (in + out))``.
    ``rng`` draws instead of ``RandomState(seed)``: anything with ``randn`` and ``uniform``, such
    as the ``np.random`` module itself, which ``netcore.tutorial`` passes after ``np.random.seed(2)``.
    """
    if rng is None:
        rng = np.random.RandomState(seed)
    pairs = list(zip(layer_sizes[:-1], layer_sizes[1:]))
    if init == "tutorial":
        return [(rng.randn(n_out, n_in) * 0.1, np.zeros(n_out)) for n_in, n_out in pairs]
    if init == "glorot":
        out = []
        for n_in, n_out in pairs:
            bound = np.sqrt(6.0 / (n_in + n_out))
            out.append((rng.uniform(-bound, bound, (n_out, n_in)), rng.uniform(-bound, bound, n_out)))
        return out
    raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")


class MLP:
    """A fully connected network: hidden layers of ``activation``, an output layer and its loss.

    Parameters
    ----------
    layer_sizes : input size, hidden widths..., outputs (classes for softmax), e.g. ``(784, 16, 16, 10)``.
    activation : hidden activation, ``"tanh"``, ``"relu"``, ``"sigmoid"`` or ``"identity"``.
    backend : a backend name, a Backend, or None to follow ``netcore.backends.use()`` / ``NETCORE_BACKEND``.
    dtype : compute dtype, ``"float32"`` or ``"float64"``.
    seed : seed of the initialisation (``seed=2`` with ``init="tutorial"`` reproduces the tutorial).
    init : ``"tutorial"`` (``randn * 0.1``, zero biases) or ``"glorot"`` (scikit-learn's).
    output : the output layer and the loss it trains on: ``"softmax"`` (cross-entropy, the
        tutorial's), ``"logistic"`` (a probability per output, binary cross-entropy: binary and
        multilabel classification), ``"identity"`` (½ squared error: regression) or ``"exp"``
        (½ Poisson deviance: counts).

    Data is laid out with samples as rows, ``X`` of shape ``(n_samples, n_features)``, dense or
    SciPy sparse (kept sparse: the first layer multiplies the CSR rows); uint8 is read as 0..255
    intensities and scaled to 0..1. Targets are integer class ids (one-hot rows accepted) for
    softmax, 0/1 rows for logistic, numbers for identity and exp. Weights are ``(out, in)`` like
    the tutorial's.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activation: str = "tanh",
        backend: str | Backend | None = None,
        dtype: str | np.dtype = "float32",
        seed: int | None = None,
        init: str = "tutorial",
        output: str = "softmax",
    ) -> None:
        self.output = check_output(output)
        self.layer_sizes = check_layer_sizes(layer_sizes, min_outputs=2 if output == "softmax" else 1)
        self.activation = check_activation(activation)
        self.backend = get_backend(backend, dtype)
        params = init_parameters(self.layer_sizes, seed, init)
        self.layers: Layers = [(self.backend.asparameter(W), self.backend.asparameter(b)) for W, b in params]

    def __getstate__(self) -> dict[str, Any]:
        # Pickle the backend by name and the parameters as NumPy: backends hold compiled kernels.
        return {**self.describe(), "backend": self.backend.name, "params": self.get_parameters()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.layer_sizes, self.activation = tuple(state["layer_sizes"]), state["activation"]
        self.output = state.get("output", "softmax")
        self.backend = get_backend(state["backend"], state["dtype"])
        self.layers = [(self.backend.asparameter(W), self.backend.asparameter(b)) for W, b in state["params"]]

    def __repr__(self) -> str:
        out = "" if self.output == "softmax" else f", output={self.output!r}"
        return f"MLP({list(self.layer_sizes)}, activation={self.activation!r}, backend={self.backend.name!r}, dtype={self.dtype.name!r}{out})"

    @property
    def dtype(self) -> np.dtype:
        return self.backend.dtype

    @property
    def n_features(self) -> int:
        return self.layer_sizes[0]

    @property
    def n_classes(self) -> int:
        return self.layer_sizes[-1]

    n_outputs = n_classes

    # -- parameters -------------------------------------------------------------------
    def get_parameters(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Copies of ``[(W¹, b¹), ...]`` as NumPy arrays."""
        return [(self.backend.to_numpy(W).copy(), self.backend.to_numpy(b).copy()) for W, b in self.layers]

    def set_parameters(self, params: Sequence[tuple[Any, Any]]) -> None:
        """Replace the parameters; shapes must match the architecture."""
        params = list(params)
        if len(params) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} (W, b) pairs, got {len(params)}")
        new = []
        for l, ((W, b), n_in, n_out) in enumerate(zip(params, self.layer_sizes[:-1], self.layer_sizes[1:]), start=1):
            W, b = np.asarray(W), np.asarray(b).reshape(-1)
            if W.shape != (n_out, n_in) or b.shape != (n_out,):
                raise ValueError(f"layer {l}: expected W {(n_out, n_in)} and b {(n_out,)}, got {W.shape} and {b.shape}")
            check_X(W, name=f"W{l}")
            new.append((self.backend.asparameter(W), self.backend.asparameter(b)))
        self.layers = new

    # -- saving -----------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The architecture, as stored in checkpoints."""
        return {"layer_sizes": list(self.layer_sizes), "activation": self.activation, "dtype": self.dtype.name, "output": self.output}

    def parameter_arrays(self) -> dict[str, np.ndarray]:
        """``{"W1": ..., "b1": ..., ...}`` as NumPy arrays."""
        out = {}
        for l, (W, b) in enumerate(self.get_parameters(), start=1):
            out[f"W{l}"], out[f"b{l}"] = W, b
        return out

    def load_parameter_arrays(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], source: str = "checkpoint") -> None:
        """Load parameters saved from a network of the same architecture, in any dtype.

        They are converted to this network's dtype (a float32 checkpoint loads into the float64-only
        python backend), with a warning when that loses precision.
        """
        keys = ("layer_sizes", "activation", "output")
        mine = self.describe()
        theirs = {k: meta.get(k) for k in ("layer_sizes", "activation", "dtype")} | {"output": meta.get("output", "softmax")}
        if [mine[k] for k in keys] != [theirs[k] for k in keys]:
            def words(d: dict[str, Any]) -> str:
                return f"{d['layer_sizes']} {d['activation']}" + ("" if d["output"] == "softmax" else f" {d['output']}-output")

            raise checkpoint.CheckpointError(f"{source} holds a {words(theirs)} network; it cannot load into this {words(mine)} one")
        if np.dtype(theirs["dtype"] or "float64").itemsize > self.dtype.itemsize:
            warnings.warn(f"{source} holds {theirs['dtype']} parameters; loading them as {self.dtype.name} rounds them", stacklevel=3)
        self.set_parameters([(arrays[f"W{l}"], arrays[f"b{l}"]) for l in range(1, len(self.layers) + 1)])

    def save(self, path: str) -> None:
        """Write the network (architecture and parameters) to ``path`` atomically."""
        checkpoint.save(path, self.parameter_arrays(), {"kind": "network", **self.describe()})

    @classmethod
    def load(cls, path: str, backend: str | Backend | None = None) -> MLP:
        """A network from a file written by :meth:`save` or by a trainer's checkpoint."""
        arrays, meta = checkpoint.load(path)
        try:
            net = cls(meta["layer_sizes"], meta["activation"], backend=backend, dtype=meta["dtype"], output=meta.get("output", "softmax"))
        except KeyError as exc:
            raise checkpoint.CheckpointError(f"{path} lacks the network description ({exc})") from None
        net.load_parameter_arrays(arrays, meta, str(path))
        return net

    # -- data -------------------------------------------------------------------------
    def prepare(self, X: Any, y: Any = None, sample_weight: Any = None, batch_size: int | None = None) -> Batch:
        """Validate host data and move it to the backend once, in the form this network's steps
        read best in batches of ``batch_size`` rows (None: all at once; SciPy sparse inputs stay
        sparse, and the numba backend compresses mostly-zero inputs where that pays)."""
        ops = self.backend
        X = check_X(X, self.n_features)
        Xb = ops.prepare_inputs(X, self.layer_sizes, batch_size)
        n = X.shape[0]
        if y is None:
            labels = Y = None
        elif self.output == "softmax":
            labels = check_labels(y, n, self.n_classes)
            Y = ops.one_hot(labels, self.n_classes)
        else:
            labels = check_targets(y, n, self.n_outputs, self.output)
            Y = ops.asarray(labels)
        weights = None if sample_weight is None else ops.asarray(check_sample_weight(sample_weight, n).reshape(-1, 1))
        return Batch(Xb, Y, labels, weights)

    # -- backend-level steps (data already prepared) -------------------------------------
    def loss_and_gradients(self, X: Any, Y: Any, rows: np.ndarray | None = None, weights: Any = None) -> tuple[Any, Layers, Any]:
        """``(loss, grads, logits)`` for prepared data (the rows ``rows`` of it if given).

        The backend's fused op runs the whole batch where it has one; otherwise the generic
        forward/backward does. The loss stays a backend scalar. A fused op may reuse its output
        buffers on the next call: consume (or copy) the results first.
        """
        return self.backend.loss_and_gradients(
            self.layers, X, Y, self.activation, rows, generic_loss_and_gradients, output=self.output, weights=weights
        )

    def train_step(self, X: Any, Y: Any, lr: float, rows: np.ndarray | None = None) -> tuple[Any, Any]:
        """One gradient-descent step on prepared data; returns the loss and logits before it."""
        loss, grads, Z = self.loss_and_gradients(X, Y, rows)
        sgd_step(self.backend, self.layers, grads, lr)
        return loss, Z

    def logits(self, X: Any) -> Any:
        """Output logits ``Zᴸ`` for prepared (backend) inputs."""
        return forward(self.backend, self.layers, X, self.activation)[1]

    def batch_loss(self, Z: Any, Y: Any) -> Any:
        """The mean loss of logits ``Z`` against prepared targets ``Y`` (a backend scalar)."""
        if self.output == "softmax":
            return self.backend.cross_entropy(Z, Y)
        return self.backend.output_loss(Z, Y, self.output)[0]

    def count_correct(self, Z: Any, labels: np.ndarray) -> float:
        """How many samples the logits ``Z`` classify right: the class id (softmax), or every
        output's 0/1 (logistic). NaN for the regression outputs, which have no classes."""
        ops = self.backend
        if self.output == "softmax":
            return int(np.count_nonzero(ops.argmax_rows(Z) == labels))  # (np.sum's reduction: 1.3 us more a batch)
        if self.output == "logistic":
            return int(np.sum(np.all((ops.to_numpy(Z) > 0) == (labels > 0.5), axis=1)))
        return math.nan

    # -- host-level API -------------------------------------------------------------------
    def forward(self, X: Any) -> np.ndarray:
        """The output layer's values, ``(n_samples, n_outputs)``: class probabilities for softmax
        and logistic outputs, predictions for identity and exp."""
        ops = self.backend
        return ops.to_numpy(ops.output(self.logits(self.prepare(X).X), self.output))

    predict_proba = forward

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class id of each sample (softmax); each output's 0/1 (logistic);
        the predictions (identity, exp)."""
        ops = self.backend
        Z = self.logits(self.prepare(X).X)
        if self.output == "softmax":
            return ops.argmax_rows(Z)
        if self.output == "logistic":
            return (ops.to_numpy(Z) > 0).astype(np.intp)
        return ops.to_numpy(ops.output(Z, self.output))

    def loss(self, X: Any, y: Any) -> float:
        """Mean loss of the current parameters on ``(X, y)``."""
        batch = self.prepare(X, y)
        return self.backend.to_float(self.batch_loss(self.logits(batch.X), batch.Y))

    def gradients(self, X: Any, y: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(dW¹, db¹), ...]`` of the mean loss, as NumPy arrays."""
        batch = self.prepare(X, y)
        _, grads, _ = self.loss_and_gradients(batch.X, batch.Y)
        return [(np.array(self.backend.to_numpy(dW)), np.array(self.backend.to_numpy(db))) for dW, db in grads]  # copies

    def step(self, X: Any, y: Any, lr: float) -> float:
        """One gradient-descent step on ``(X, y)``; returns the loss before the step."""
        batch = self.prepare(X, y)
        loss, _ = self.train_step(batch.X, batch.Y, lr)
        return self.backend.to_float(loss)

    def accuracy(self, X: Any, y: Any) -> float:
        """Fraction of samples classified right (see :meth:`count_correct`; NaN for regression)."""
        batch = self.prepare(X, y)
        return self.count_correct(self.logits(batch.X), batch.labels) / len(batch.labels)
