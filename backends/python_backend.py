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

from .base import Backend, activation_code, check_output

Matrix = list[list[float]]
Vector = list[float]


def _is_matrix(x: Any) -> bool:
    return len(x) > 0 and isinstance(x[0], list)


class SparseRows:
    """Sparse inputs as Python lists: per row, its column indices and values (CSR, unpacked).
    Only the first layer's products and ``take_rows`` ever see one."""

    def __init__(self, rows: list[tuple[list[int], list[float]]], n_cols: int) -> None:
        self.rows, self.n_cols = rows, n_cols

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.rows), self.n_cols)


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

    def sparse_input(self, X: Any) -> SparseRows:
        X = super().sparse_input(X)  # CSR in float64, uint8 scaled; unpacked into lists once
        indptr, indices, data = X.indptr.tolist(), X.indices.tolist(), X.data.tolist()
        return SparseRows([(indices[indptr[i]:indptr[i + 1]], data[indptr[i]:indptr[i + 1]]) for i in range(X.shape[0])], X.shape[1])

    def take_rows(self, x: Any, rows: np.ndarray) -> Any:
        if isinstance(x, SparseRows):
            return SparseRows([x.rows[r] for r in rows.tolist()], x.n_cols)
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

    def matmul_nt(self, a: Matrix | SparseRows, b: Matrix) -> Matrix:
        if isinstance(a, SparseRows):  # each row's stored values against the weights' columns
            return [[sum(v * b_row[c] for c, v in zip(cols, vals)) for b_row in b] for cols, vals in a.rows]
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

    def matmul_tn(self, a: Matrix, b: Matrix | SparseRows) -> Matrix:
        if isinstance(b, SparseRows):
            out = [[0.0] * b.n_cols for _ in range(len(a[0]))]
            for a_row, (cols, vals) in zip(a, b.rows):
                for i, a_ri in enumerate(a_row):
                    out_row = out[i]
                    for c, v in zip(cols, vals):
                        out_row[c] += a_ri * v
            return out
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
            return z  # identity
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
                elif kind == "sigmoid":
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

    def output(self, z: Matrix, kind: str) -> Matrix:
        check_output(kind)
        if kind == "softmax":
            return self.softmax(z)
        if kind == "logistic":
            return self.activation(self.copy(z), "sigmoid")
        if kind == "exp":
            return [[math.exp(v) for v in row] for row in z]
        return self.copy(z)

    def output_loss(self, z: Matrix, y: Matrix, kind: str, weights: Matrix | None = None) -> tuple[float, Matrix]:
        check_output(kind)
        if kind == "softmax" and weights is None:
            return self.softmax_cross_entropy(z, y)
        out = self.output(z, kind)
        delta = [[o - t for o, t in zip(o_row, y_row)] for o_row, y_row in zip(out, y)]
        rows = []
        for z_row, y_row, o_row in zip(z, y, out):
            loss = 0.0
            if kind == "softmax":
                top = max(z_row)
                log_total = math.log(sum(math.exp(v - top) for v in z_row))
                for v, t in zip(z_row, y_row):
                    loss -= t * (v - top - log_total)
            else:
                for v, t, o in zip(z_row, y_row, o_row):
                    if kind == "logistic":  # max(z, 0) - y z + log(1 + e^-|z|): finite for any z
                        loss += max(v, 0.0) - t * v + math.log1p(math.exp(-abs(v)))
                    elif kind == "identity":
                        loss += 0.5 * (o - t) * (o - t)
                    else:  # exp: y log(y / μ) - y + μ, 0 log 0 = 0
                        loss += (t * (math.log(t) - v) if t > 0 else 0.0) - t + o
            rows.append(loss)
        n = len(z)
        if weights is None:
            return sum(rows) / n, delta
        total = sum(w_row[0] for w_row in weights)
        w = [w_row[0] * n / total for w_row in weights]
        for w_i, d_row in zip(w, delta):
            for j, d in enumerate(d_row):
                d_row[j] = w_i * d
        return sum(w_i * r for w_i, r in zip(w, rows)) / n, delta

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
