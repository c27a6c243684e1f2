"""The Backend contract: the small op vocabulary the network is written against.

Arrays are laid out with samples as rows: activations are ``(n_samples, width)``,
a weight matrix is ``(out, in)`` (the tutorial's orientation) and a bias is ``(out,)``.
Every op has a default written once against ``self.xp`` (NumPy or CuPy); a backend
overrides only the ops it can do better.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: The hidden activations every backend implements, each with the integer code that compiled
#: kernels switch on: one table for every backend.
ACTIVATIONS: dict[str, int] = {"tanh": 0, "relu": 1, "sigmoid": 2, "identity": 3}
TANH, RELU, SIGMOID, IDENTITY = ACTIVATIONS["tanh"], ACTIVATIONS["relu"], ACTIVATIONS["sigmoid"], ACTIVATIONS["identity"]

#: The output layers every backend implements, each with the loss it is trained on. Every pair is
#: canonical (the loss's link is the output's activation), so for all of them dZᴸ = output − Y.
OUTPUTS: dict[str, str] = {
    "softmax": "categorical cross-entropy",
    "logistic": "binary cross-entropy of each output",
    "identity": "half squared error, summed over the outputs",
    "exp": "half Poisson deviance, summed over the outputs",
}

#: Compute dtypes a backend can be bound to.
DTYPES = ("float32", "float64")


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run here; the message says why and how to fix it."""


def activation_code(kind: str) -> int:
    """The kernel code of a hidden activation; the one place an unknown name is refused."""
    try:
        return ACTIVATIONS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {kind!r}; choose one of {', '.join(ACTIVATIONS)}") from None


def check_output(kind: str) -> str:
    """An output layer of :data:`OUTPUTS`; the one place an unknown name is refused."""
    if not isinstance(kind, str) or kind not in OUTPUTS:
        raise ValueError(f"unknown output {kind!r}; choose one of {', '.join(OUTPUTS)}")
    return kind


def is_sparse(x: Any) -> bool:
    """A SciPy sparse matrix or array (without importing SciPy: if it is not loaded, x is not one)."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(x)


def check_dtype(dtype: Any) -> np.dtype:
    """Return ``dtype`` as a NumPy dtype, or raise a ValueError naming the supported ones."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}: netcore computes in {' or '.join(DTYPES)}")
    return dt


class Backend:
    """Array ops for one compute device and one floating dtype.

    Subclasses set ``name`` and ``xp`` and may override any op. ``check()`` says whether the
    backend can run on this machine (None) or why not (a message that ends with the fix).
    """

    name: str = "base"
    xp: Any = np

    def __init__(self, dtype: Any = "float64") -> None:
        self.dtype = check_dtype(dtype)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.dtype.name}>"

    @classmethod
    def check(cls) -> str | None:
        """None if this backend can run here, else the reason and the fix."""
        return None

    def describe(self) -> dict[str, str]:
        """Versions and settings worth printing in ``netcore info``."""
        return {"numpy": np.__version__}

    # -- conversion -------------------------------------------------------------
    def asarray(self, x: Any) -> Any:
        """Host data -> this backend's array in its dtype (a no-op when already so)."""
        return self.xp.asarray(x, dtype=self.dtype)

    def asparameter(self, x: Any) -> Any:
        """A network parameter as this backend's array: a copy of its own, which the optimizer
        updates in place. A backend whose kernels care where parameters lie places them here."""
        return self.asarray(np.array(x, dtype=self.dtype))

    def input_array(self, X: np.ndarray) -> Any:
        """Validated host inputs -> backend array; uint8 is read as 0..255 intensities, scaled to 0..1."""
        if X.dtype == np.uint8:
            return self.scale(self.asarray(X), 1 / 255)
        return self.asarray(X)

    def sparse_input(self, X: Any) -> Any:
        """Validated SciPy sparse inputs -> this backend's sparse rows, never densified whole.

        The default keeps a CSR matrix on the host in this backend's dtype: the first layer's
        products (:meth:`matmul_nt`, :meth:`matmul_tn`) and :meth:`take_rows` run on it as sparse
        products. uint8 is scaled to 0..1 as in :meth:`input_array`.
        """
        import scipy.sparse

        scale = 1 / 255 if X.dtype == np.uint8 else 1
        X = scipy.sparse.csr_matrix(X, dtype=self.dtype)
        if scale != 1:
            X.data *= self.dtype.type(scale)
        return X

    def take_rows(self, x: Any, rows: np.ndarray) -> Any:
        """The rows ``x[rows]`` (a mini-batch), as a new array."""
        return x[self.xp.asarray(rows)]

    def to_numpy(self, x: Any) -> np.ndarray:
        """This backend's array -> NumPy array."""
        return np.asarray(x)

    def to_float(self, x: Any) -> float:
        """A scalar result (loss) -> Python float; the one place a device value is read back."""
        return float(x)

    def copy(self, x: Any) -> Any:
        return x.copy()

    # -- matrix products --------------------------------------------------------
    def matmul(self, a: Any, b: Any) -> Any:
        """``a @ b``."""
        return a @ b

    def matmul_nt(self, a: Any, b: Any) -> Any:
        """``a @ b.T``: inputs times a weight matrix stored (out, in)."""
        return a @ b.T

    def matmul_tn(self, a: Any, b: Any) -> Any:
        """``a.T @ b``: the weight gradient, summed over the sample rows. ``b`` may be the sparse
        input rows (the first layer's gradient); the result is then made C-contiguous too."""
        if is_sparse(b):
            return self.xp.ascontiguousarray((b.T @ a).T)
        return a.T @ b

    # -- layers -----------------------------------------------------------------
    def add_bias(self, z: Any, b: Any) -> Any:
        """``z + b`` with ``b`` broadcast over the rows; may reuse ``z``'s memory."""
        z += b
        return z

    def linear(self, a: Any, w: Any, b: Any) -> Any:
        """``a @ w.T + b``."""
        return self.add_bias(self.matmul_nt(a, w), b)

    def activation(self, z: Any, kind: str) -> Any:
        """``g(z)`` for a hidden activation; may reuse ``z``'s memory."""
        xp = self.xp
        activation_code(kind)
        if kind == "tanh":
            # Not in place: NumPy's SIMD tanh rounds differently with out=z, and this path is
            # held bit for bit to the tutorial's np.tanh(Z).
            return xp.tanh(z)
        if kind == "relu":
            return xp.maximum(z, 0, out=z)
        if kind == "sigmoid":
            # 1 / (1 + e^-z) overflows to inf in the exp for z << 0 and still gives the right 0.
            with np.errstate(over="ignore"):
                return xp.reciprocal(xp.exp(-z) + 1, out=z)
        return z  # identity

    def dense(self, a: Any, w: Any, b: Any, kind: str) -> Any:
        """A hidden layer's output ``g(a @ w.T + b)``; backends fuse bias and activation here."""
        return self.activation(self.linear(a, w, b), kind)

    def activation_backward(self, a: Any, grad: Any, kind: str) -> Any:
        """``grad * g'(z)`` written with the layer's output ``a = g(z)``; may reuse ``grad``.

        tanh' = 1 - a², sigmoid' = a (1 - a), relu' = [a > 0], identity' = 1: no pre-activation is
        kept.
        """
        activation_code(kind)
        if kind == "tanh":
            grad *= 1 - a * a
        elif kind == "relu":
            grad *= a > 0
        elif kind == "sigmoid":
            grad *= a * (1 - a)
        return grad

    # -- output layer and loss ----------------------------------------------------
    def softmax(self, z: Any) -> Any:
        """Row-wise softmax; subtracting the row max keeps exp() finite for any logits."""
        xp = self.xp
        e = xp.exp(z - z.max(axis=1, keepdims=True))
        e /= e.sum(axis=1, keepdims=True)
        return e

    def cross_entropy(self, z: Any, y: Any) -> Any:
        """Mean categorical cross-entropy from logits ``z`` and one-hot (or soft) targets ``y``.

        Uses log-softmax, ``z - max - log(sum exp(z - max))``, so it stays finite where
        ``log(softmax(z))`` would take the log of an underflowed 0.
        """
        xp = self.xp
        shifted = z - z.max(axis=1, keepdims=True)
        log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        return -(y * log_p).sum() / z.shape[0]

    def softmax_cross_entropy_delta(self, p: Any, y: Any) -> Any:
        """d(sum of per-sample losses)/dz for softmax + cross-entropy: ``p - y``."""
        return p - y

    def softmax_cross_entropy(self, z: Any, y: Any) -> tuple[Any, Any]:
        """``(mean loss, softmax(z) - y)`` from the logits: the output layer's forward and backward.
        Backends fuse the two (one pass over the logits)."""
        return self.cross_entropy(z, y), self.softmax_cross_entropy_delta(self.softmax(z), y)

    # -- output layers beyond softmax (OUTPUTS) -------------------------------------
    def output(self, z: Any, kind: str) -> Any:
        """The output layer's values from its logits: class probabilities (``softmax``, or
        ``logistic``, one probability per output) or predictions (``identity``, ``exp``). New array."""
        check_output(kind)
        if kind == "softmax":
            return self.softmax(z)
        if kind == "logistic":
            return self.activation(self.copy(z), "sigmoid")
        if kind == "exp":
            return self.xp.exp(z)
        return self.copy(z)

    def output_loss(self, z: Any, y: Any, kind: str, weights: Any = None) -> tuple[Any, Any]:
        """``(mean loss, dZ)`` of the output layer ``kind`` and its loss (:data:`OUTPUTS`), from
        the logits ``z`` and targets ``y``: the network's whole output layer, forward and backward.

        ``dZ = output - y``, the gradient of the sum of the per-sample losses. With per-sample
        ``weights`` (a column, one row per sample) the loss is the weighted mean ``Σ wᵢ lᵢ / Σ w``
        and row i of dZ is scaled by ``n wᵢ / Σ w`` (the network divides by n), so the gradient is
        the weighted mean's.
        """
        check_output(kind)
        if kind == "softmax" and weights is None:
            return self.softmax_cross_entropy(z, y)  # the op backends fuse
        xp, n = self.xp, z.shape[0]
        if kind == "softmax":
            shifted = z - z.max(axis=1, keepdims=True)
            log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
            rows, delta = -(y * log_p).sum(axis=1), xp.exp(log_p) - y
        elif kind == "logistic":
            # -[y log σ(z) + (1 - y) log(1 - σ(z))] = max(z, 0) - y z + log(1 + e^-|z|): finite for any z
            rows = (xp.maximum(z, 0) - y * z + xp.log1p(xp.exp(-xp.abs(z)))).sum(axis=1)
            delta = self.output(z, "logistic") - y
        elif kind == "identity":
            delta = z - y
            rows = 0.5 * (delta * delta).sum(axis=1)
        else:  # exp: half Poisson deviance, y log(y / μ) - y + μ with μ = e^z and 0 log 0 = 0
            mu = xp.exp(z)
            rows = (y * (xp.log(xp.where(y > 0, y, 1)) - z) - y + mu).sum(axis=1)
            delta = mu - y
        if weights is None:
            return rows.sum() / n, delta
        w = weights[:, 0] * (n / weights.sum())
        return (w * rows).sum() / n, delta * w[:, None]

    # -- reductions and updates ---------------------------------------------------
    def sum_rows(self, a: Any) -> Any:
        """Sum over the sample axis: ``(n, k) -> (k,)``."""
        return a.sum(axis=0)

    def sum_squares(self, a: Any) -> Any:
        """``sum(a**2)`` over every element (for the L2 penalty)."""
        return (a * a).sum()

    def all_finite(self, a: Any) -> bool:
        """Whether every element is finite (no NaN or infinity), as a host bool."""
        return bool(self.xp.isfinite(a).all())

    def scale(self, a: Any, s: float) -> Any:
        """``s * a``; may reuse ``a``'s memory."""
        a *= s
        return a

    def sgd_update(self, param: Any, grad: Any, lr: float) -> None:
        """``param -= lr * grad``, in place."""
        param -= lr * grad

    def adam_update(self, param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float, eps: float) -> None:
        """One Adam step, in place: ``m, v`` are the moment estimates, ``lr`` already bias-corrected."""
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad
        param -= lr * m / (self.xp.sqrt(v) + eps)

    def adam_update_l2(self, param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float, eps: float, l2: float) -> Any:
        """:meth:`adam_update` on the gradient plus an L2 penalty's, ``grad + l2 * param`` (``grad``
        may be overwritten), then ``sum(param**2)`` of the updated parameters as a backend scalar:
        the next step's penalty. A backend may do it all in one pass over the four arrays."""
        self.sgd_update(grad, param, -l2)
        self.adam_update(param, grad, m, v, lr, beta1, beta2, eps)
        return self.sum_squares(param)

    def zeros_like(self, x: Any) -> Any:
        return self.xp.zeros_like(x)

    # -- optional capabilities ----------------------------------------------------------
    # Declared here with their generic behaviour; a backend overrides what it does better and
    # calls super() for the cases its kernels do not cover.
    def loss_and_gradients(
        self, layers: list, X: Any, Y: Any, activation: str, rows: np.ndarray | None, generic: Callable,
        output: str = "softmax", weights: Any = None,
    ) -> tuple[Any, list, Any]:
        """``(loss, grads, logits)`` of the batch ``X[rows]`` (all rows if None): the whole step's math.

        ``generic(ops, layers, X, Y, activation, output, weights)`` is the network's op-by-op
        forward/backward (the backends know no networks, so the network hands it in); this default
        runs it. ``output`` names the output layer and its loss (:data:`OUTPUTS`); ``weights`` are
        optional per-sample weights, a column (see :meth:`output_loss`). A backend with a fused pass
        overrides this for the cases its kernels cover and calls ``super()`` for the others; its
        results must equal ``generic``'s (the tests hold them to it).

        Ownership: ``grads`` and ``logits`` may live in buffers that the next call on this
        backend overwrites (so a step allocates nothing); use or copy them before calling again.
        The loss is a backend scalar (read it with :meth:`to_float`).
        """
        if rows is not None:
            X, Y = self.take_rows(X, rows), self.take_rows(Y, rows)
            weights = None if weights is None else self.take_rows(weights, rows)
        return generic(self, layers, X, Y, activation, output, weights)

    def capture_limits(self, *, full_batch: bool, stateless: bool, l2: float) -> list[str]:
        """Why a training step with these settings cannot be recorded and replayed with
        :meth:`capture` (empty when it can). ``stateless``: the update rule reads no step count
        (plain SGD or momentum, not Adam)."""
        return [f"the {self.name} backend cannot record a step for replay (CUDA graphs: use cupy)"]

    def capture(self, step: Callable[[], Any]) -> tuple[Any, Callable[[], Any]]:
        """Run ``step`` once and record it: ``(first result, replay)``, where ``replay()`` runs the
        recorded step again, ordered after all work queued before it, and returns its results.
        Only where :meth:`capture_limits` is empty."""
        raise NotImplementedError(" ".join(self.capture_limits(full_batch=True, stateless=True, l2=0.0)))

    # -- the first layer's path ------------------------------------------------------------
    # A backend may run the first layer over compressed rows where the inputs are mostly zero
    # (numba: backends/numba_sparse_path.py), chosen when a network's data is prepared; what it
    # chose is printed by ``netcore train``.
    def prepare_inputs(self, X: Any, layer_sizes: Sequence[int], batch_size: int | None = None) -> Any:
        """Validated host inputs -> what the steps of a network of ``layer_sizes`` read, in batches
        of ``batch_size`` rows (None: all at once). By default :meth:`sparse_input` for SciPy sparse
        inputs and :meth:`input_array` for the others."""
        return self.sparse_input(X) if is_sparse(X) else self.input_array(X)

    def first_layer_path(self, X: Any) -> tuple[str, str]:
        """``(path, reason)`` for inputs prepared by :meth:`input_array`: ``"dense"`` or
        ``"sparse"``, and why that path runs."""
        return "dense", f"the {self.name} backend has one first-layer path"

    def first_layer_choice(self, X: Any, layer_sizes: Sequence[int], batch_size: int | None = None) -> tuple[str, str]:
        """What :meth:`prepare_inputs` will choose for host inputs ``X`` and why, without preparing
        them (``netcore train`` prints it before training)."""
        return self.first_layer_path(X)

    def first_layer_policy(self) -> str:
        """How this backend runs the first layer, in words (``netcore info``)."""
        return f"dense (the {self.name} backend has one first-layer path)"

    # -- labels -------------------------------------------------------------------
    def one_hot(self, labels: np.ndarray, n_classes: int) -> Any:
        """Integer class ids (host array, already validated) -> one-hot rows."""
        xp = self.xp
        y = xp.zeros((len(labels), n_classes), dtype=self.dtype)
        y[xp.arange(len(labels)), xp.asarray(labels)] = 1
        return y

    def argmax_rows(self, a: Any) -> np.ndarray:
        """Index of each row's maximum, as a host array."""
        return self.to_numpy(a.argmax(axis=1))
