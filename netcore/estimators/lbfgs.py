"""The ``lbfgs`` solver of the scikit-learn estimators: SciPy's L-BFGS-B on the network's whole-batch
loss and gradient.

Not an epoch loop (so not the :class:`~netcore.trainer.Trainer`'s job): SciPy decides where to
evaluate, and each evaluation is one :meth:`MLP.loss_and_gradients` over all samples, which is the
backend's fused pass where it has one. The objective is scikit-learn's: the mean loss plus
``alpha / 2 * Σ W² / Σw`` (``Σw`` = the number of samples, or the sum of the sample weights).

L-BFGS-B's own work is level-1 BLAS on vectors of all the parameters (80,000 for a 784-100-10
network). Threaded, those calls cost more in waking and waiting threads than they save (15-50 ms
a step against 3-5 ms on one thread, measured on this project's busy 2-core machine), and a BLAS
thread left spinning after them slows the next evaluation (the numba fused pass: 160 ms instead of
115). So everything here runs with BLAS on one thread, except the network's evaluation itself.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import ThreadpoolController

from ..network import MLP, Batch


class Objective:
    """scikit-learn's L-BFGS objective on a network and its prepared data, as SciPy wants it: a
    function of one float64 vector of all the parameters, returning the loss and its gradient."""

    def __init__(self, net: MLP, data: Batch, alpha: float, network_context: Callable[[], Any] = contextlib.nullcontext) -> None:
        self.net, self.data, self.network_context = net, data, network_context
        total = len(data.labels) if data.weights is None else float(np.sum(net.backend.to_numpy(data.weights), dtype=np.float64))
        self.l2 = alpha / total
        self.slices, pos = [], 0
        for W, b in net.layers:
            shape_W, shape_b = np.shape(W), np.shape(b)
            n_W, n_b = int(np.prod(shape_W)), int(np.prod(shape_b))
            self.slices.append((slice(pos, pos + n_W), shape_W, slice(pos + n_W, pos + n_W + n_b), shape_b))
            pos += n_W + n_b
        self.grad = np.empty(pos)

    def pack(self, pairs: list[tuple[Any, Any]], out: np.ndarray | None = None) -> np.ndarray:
        """``[(W, b), ...]`` (backend arrays) -> one float64 vector."""
        ops = self.net.backend
        out = np.empty(len(self.grad)) if out is None else out
        for (W, b), (sW, _, sb, _) in zip(pairs, self.slices):
            out[sW] = np.asarray(ops.to_numpy(W)).reshape(-1)
            out[sb] = np.asarray(ops.to_numpy(b)).reshape(-1)
        return out

    def load(self, theta: np.ndarray) -> None:
        """Make ``theta`` the network's parameters (unchecked: L-BFGS may probe any point)."""
        ops = self.net.backend
        self.net.layers = [(ops.asparameter(theta[sW].reshape(shW)), ops.asparameter(theta[sb])) for sW, shW, sb, _ in self.slices]

    def penalty(self, theta: np.ndarray) -> float:
        """The L2 term, ``alpha / 2 * Σ W² / Σw``."""
        return sum(0.5 * self.l2 * float(theta[sW] @ theta[sW]) for sW, _, _, _ in self.slices)

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        self.load(theta)
        net, data = self.net, self.data
        with self.network_context():
            loss, grads, _ = net.loss_and_gradients(data.X, data.Y, None, data.weights)
        grad = self.pack(grads, out=self.grad)
        for sW, _, _, _ in self.slices:
            grad[sW] += self.l2 * theta[sW]
        return net.backend.to_float(loss) + self.penalty(theta), grad.copy()  # SciPy keeps it; the next call refills self.grad


def fit_lbfgs(est: Any, net: MLP, X: Any, targets: Any, sample_weight: np.ndarray | None) -> None:
    """Minimise with L-BFGS-B for at most ``max_iter`` iterations and ``max_fun`` evaluations,
    until the projected gradient is below ``tol``; sets ``n_iter_`` and ``loss_``."""
    blas = ThreadpoolController()
    blas_threads = max((p["num_threads"] for p in blas.select(user_api="blas").info()), default=1)
    objective = Objective(net, net.prepare(X, targets, sample_weight), est.alpha, lambda: blas.limit(limits=blas_threads, user_api="blas"))
    iteration = [0]

    def report(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        iteration[0] += 1
        print(f"Iteration {iteration[0]}, loss = {intermediate_result.fun:.8f}")

    with blas.limit(limits=1, user_api="blas"):
        result = scipy.optimize.minimize(
            objective,
            objective.pack(net.layers),
            method="L-BFGS-B",
            jac=True,
            callback=report if est.verbose else None,
            options={"maxfun": est.max_fun, "maxiter": est.max_iter, "gtol": est.tol},
        )
    objective.load(result.x)
    est.n_iter_ = min(int(result.nit), est.max_iter)
    penalty = objective.penalty(result.x)
    est.loss_ = (float(result.fun) - penalty) * est._loss_scale() + penalty  # scikit-learn's figure
    if result.status != 0:
        message = result.message.decode() if isinstance(result.message, bytes) else result.message
        warnings.warn(
            f"lbfgs failed to converge after {est.n_iter_} iteration(s) (status={result.status}):\n{message}.\n\n"
            f"Increase the number of iterations to improve the convergence (max_iter={est.max_iter}), "
            "or max_fun; you might also want to scale the data.",
            ConvergenceWarning,
            stacklevel=4,
        )
