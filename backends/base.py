"""The Backend contract: the small op vocabulary the network is written against.

Arrays are laid out with samples as rows: activations are ``(n_samples, width)``,
a weight matrix is ``(out, in)`` (the tutorial's orientation) and a bias is ``(out,)``.
Every op has a default written once against ``self.xp`` (NumPy or CuPy); a backend
overrides only the ops it can do better.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Hidden-layer activations every backend implements (the output is always softmax).
ACTIVATIONS = ("tanh", "relu", "sigmoid")

#: Compute dtypes a backend can be bound to.
DTYPES = ("float32", "float64")


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run here; the message says why and how to fix it."""


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
        """``a.T @ b``: the weight gradient, summed over the sample rows."""
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
        raise ValueError(f"unknown activation {kind!r}; choose one of {', '.join(ACTIVATIONS)}")

    def dense(self, a: Any, w: Any, b: Any, kind: str) -> Any:
        """A hidden layer's output ``g(a @ w.T + b)``; backends fuse bias and activation here."""
        return self.activation(self.linear(a, w, b), kind)

    def activation_backward(self, a: Any, grad: Any, kind: str) -> Any:
        """``grad * g'(z)`` written with the layer's output ``a = g(z)``; may reuse ``grad``.

        tanh' = 1 - a², sigmoid' = a (1 - a), relu' = [a > 0]: no pre-activation is kept.
        """
        if kind == "tanh":
            grad *= 1 - a * a
        elif kind == "relu":
            grad *= a > 0
        elif kind == "sigmoid":
            grad *= a * (1 - a)
        else:
            raise ValueError(f"unknown activation {kind!r}; choose one of {', '.join(ACTIVATIONS)}")
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

    # -- reductions and updates ---------------------------------------------------
    def sum_rows(self, a: Any) -> Any:
        """Sum over the sample axis: ``(n, k) -> (k,)``."""
        return a.sum(axis=0)

    def sum_squares(self, a: Any) -> Any:
        """``sum(a**2)`` over every element (for the L2 penalty)."""
        return (a * a).sum()

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

    def zeros_like(self, x: Any) -> Any:
        return self.xp.zeros_like(x)

    # -- fused paths -----------------------------------------------------------------
    def fused_loss_and_gradients(self, layers: list, X: Any, Y: Any, activation: str, rows: np.ndarray | None = None) -> tuple | None:
        """``(loss, grads, logits)`` of the batch ``X[rows]`` (all rows if None) in one op, or None.

        A backend overrides this when it can do the whole batch better than op by op; the result
        must equal the generic forward/backward in :mod:`netcore.network` (the tests hold it to
        that). None means "no fused path here": the network then runs the generic one.
        """
        return None

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
