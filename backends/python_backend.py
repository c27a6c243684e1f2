"""The ``python`` backend: nested lists and for-loops, the naive baseline.

It runs the very same network code as the fast backends; only the ops below differ.
A matrix is a list of rows (lists of floats), a vector a list of floats. NumPy is touched
only when data crosses in or out (``asarray``, ``to_numpy``), never inside an op.

Python floats are IEEE doubles, so this backend always computes in float64, and says so: its
``dtype`` is float64 whatever was asked for (a float32 request would otherwise hand back rounded
copies of numbers it keeps in double precision).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .base import Backend, activation_code

Matrix = list[list[float]]
Vector = list[float]


def _is_matrix(x: Any) -> bool:
    return len(x) > 0 and isinstance(x[0], list)


class PythonBackend(Backend):
    """Every op of the contract as explicit loops over Python lists."""

    name = "python"
    xp = None

    def __init__(self, dtype: Any = "float64") -> None:
        super().__init__(dtype)  # validates the request...
        self.dtype = np.dtype("float64")  # ...but Python floats are doubles

    def describe(self) -> dict[str, str]:
        return {"computes in": "float64 (Python floats), one core"}

    # -- conversion -------------------------------------------------------------
    def asarray(self, x: Any) -> Any:
        if isinstance(x, list):
            return x
        return np.asarray(x, dtype=np.float64).tolist()

    def take_rows(self, x: Matrix, rows: np.ndarray) -> Matrix:
        return [list(x[r]) for r in rows.tolist()]

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x, dtype=self.dtype)

    def copy(self, x: Any) -> Any:
        return [list(row) for row in x] if _is_matrix(x) else list(x)

    # -- matrix products --------------------------------------------------------
    def matmul(self, a: Matrix, b: Matrix) -> Matrix:
        width = len(b[0])
        out = []
        for a_row in a:
            row = [0.0] * width
            for a_ik, b_row in zip(a_row, b):
                for j in range(width):
                    row[j] += a_ik * b_row[j]
            out.append(row)
        return out

    def matmul_nt(self, a: Matrix, b: Matrix) -> Matrix:
        out = []
        for a_row in a:
            row = []
            for b_row in b:
                s = 0.0
                for x, y in zip(a_row, b_row):
                    s += x * y
                row.append(s)
            out.append(row)
        return out

    def matmul_tn(self, a: Matrix, b: Matrix) -> Matrix:
        out = [[0.0] * len(b[0]) for _ in range(len(a[0]))]
        for a_row, b_row in zip(a, b):
            for i, a_ri in enumerate(a_row):
                out_row = out[i]
                for j, b_rj in enumerate(b_row):
                    out_row[j] += a_ri * b_rj
        return out

    # -- layers -----------------------------------------------------------------
    def add_bias(self, z: Matrix, b: Vector) -> Matrix:
        for row in z:
            for j, b_j in enumerate(b):
                row[j] += b_j
        return z

    def activation(self, z: Matrix, kind: str) -> Matrix:
        if kind == "tanh":
            f = math.tanh
        elif kind == "relu":
            def f(v: float) -> float:
                return v if v > 0.0 else 0.0
        elif kind == "sigmoid":
            def f(v: float) -> float:
                # Branch on the sign so exp() only ever sees a non-positive argument.
                if v >= 0.0:
                    return 1.0 / (1.0 + math.exp(-v))
                e = math.exp(v)
                return e / (1.0 + e)
        else:
            activation_code(kind)  # refuses the unknown name
        for row in z:
            for j, v in enumerate(row):
                row[j] = f(v)
        return z

    def activation_backward(self, a: Matrix, grad: Matrix, kind: str) -> Matrix:
        activation_code(kind)
        for a_row, g_row in zip(a, grad):
            for j, a_j in enumerate(a_row):
                if kind == "tanh":
                    g_row[j] *= 1.0 - a_j * a_j
                elif kind == "relu":
                    if a_j <= 0.0:
                        g_row[j] = 0.0
                else:
                    g_row[j] *= a_j * (1.0 - a_j)
        return grad

    # -- output layer and loss ----------------------------------------------------
    def softmax(self, z: Matrix) -> Matrix:
        out = []
        for row in z:
            top = max(row)
            e = [math.exp(v - top) for v in row]
            total = 0.0
            for v in e:
                total += v
            out.append([v / total for v in e])
        return out

    def cross_entropy(self, z: Matrix, y: Matrix) -> float:
        loss = 0.0
        for z_row, y_row in zip(z, y):
            top = max(z_row)
            total = 0.0
            for v in z_row:
                total += math.exp(v - top)
            log_total = math.log(total)
            for v, t in zip(z_row, y_row):
                if t:
                    loss -= t * (v - top - log_total)
        return loss / len(z)

    def softmax_cross_entropy_delta(self, p: Matrix, y: Matrix) -> Matrix:
        return [[pj - yj for pj, yj in zip(p_row, y_row)] for p_row, y_row in zip(p, y)]

    # -- reductions and updates ---------------------------------------------------
    def sum_rows(self, a: Matrix) -> Vector:
        out = [0.0] * len(a[0])
        for row in a:
            for j, v in enumerate(row):
                out[j] += v
        return out

    def sum_squares(self, a: Any) -> float:
        total = 0.0
        for row in a if _is_matrix(a) else [a]:
            for v in row:
                total += v * v
        return total

    def all_finite(self, a: Any) -> bool:
        return all(math.isfinite(v) for row in (a if _is_matrix(a) else [a]) for v in row)

    def scale(self, a: Any, s: float) -> Any:
        rows = a if _is_matrix(a) else [a]
        for row in rows:
            for j, v in enumerate(row):
                row[j] = s * v
        return a

    def sgd_update(self, param: Any, grad: Any, lr: float) -> None:
        pairs = zip(param, grad) if _is_matrix(param) else [(param, grad)]
        for p_row, g_row in pairs:
            for j, g in enumerate(g_row):
                p_row[j] -= lr * g

    def adam_update(self, param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float, eps: float) -> None:
        rows = zip(param, grad, m, v) if _is_matrix(param) else [(param, grad, m, v)]
        for p_row, g_row, m_row, v_row in rows:
            for j, g in enumerate(g_row):
                m_row[j] = beta1 * m_row[j] + (1 - beta1) * g
                v_row[j] = beta2 * v_row[j] + (1 - beta2) * g * g
                p_row[j] -= lr * m_row[j] / (math.sqrt(v_row[j]) + eps)

    def zeros_like(self, x: Any) -> Any:
        return [[0.0] * len(row) for row in x] if _is_matrix(x) else [0.0] * len(x)

    # -- labels -------------------------------------------------------------------
    def one_hot(self, labels: np.ndarray, n_classes: int) -> Matrix:
        out = []
        for label in labels.tolist():
            row = [0.0] * n_classes
            row[label] = 1.0
            out.append(row)
        return out

    def argmax_rows(self, a: Matrix) -> np.ndarray:
        best = []
        for row in a:
            k = 0
            for j, v in enumerate(row):
                if v > row[k]:
                    k = j
            best.append(k)
        return np.asarray(best, dtype=np.intp)
