"""Input checks that run before any compute, with messages a user can act on.

Every public entry point (network, tutorial functions, trainer, CLI) passes its data through
here, so a bad array fails with a sentence naming the problem instead of a traceback from
deep inside a matrix product or a kernel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from netcore.backends import activation_code
from netcore.backends.base import is_sparse


def check_positive_int(value: Any, name: str) -> int:
    """A positive integer (not a bool), as an ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_non_negative(value: Any, name: str) -> float:
    """A finite number >= 0 (not a bool), as a ``float``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def check_layer_sizes(layer_sizes: Sequence[int], min_outputs: int = 2) -> tuple[int, ...]:
    """At least an input and an output size, all positive integers; 2+ classes at a softmax output
    (``min_outputs=1`` for the other output layers)."""
    try:
        sizes = tuple(layer_sizes)
    except TypeError:
        raise TypeError(f"layer_sizes must be a sequence of integers such as (784, 16, 16, 10), got {layer_sizes!r}") from None
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes needs at least an input and an output size, got {sizes}")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
            raise ValueError(f"layer sizes must be positive integers, got {sizes}")
    if sizes[-1] < min_outputs:
        raise ValueError(f"the softmax output needs at least 2 classes, got {sizes[-1]}")
    return tuple(int(s) for s in sizes)


def check_activation(activation: str) -> str:
    """A hidden activation the backends implement (the contract's table names them)."""
    activation_code(activation)
    return activation


def _first_bad(mask: np.ndarray) -> str:
    where = np.argwhere(mask)[0]
    return "at index " + ", ".join(str(int(i)) for i in where)


def check_X(X: Any, n_features: int | None = None, name: str = "X", layout: str = "(n_samples, n_features)") -> Any:
    """A non-empty, finite, numeric 2-D array; ``n_features`` columns if given. SciPy sparse
    inputs are checked the same way (their stored values) and come back as CSR."""
    if X is None:
        raise TypeError(f"{name} is None; expected a 2-D array of shape {layout}")
    if is_sparse(X):
        check_X(X.data.reshape(1, -1) if X.nnz else np.zeros((1, 1)), name=f"{name}'s stored values", layout="(any)")
        X = X.tocsr()
        if X.ndim != 2 or 0 in X.shape:
            raise ValueError(f"sparse {name} must be 2-D and non-empty with shape {layout}; got shape {X.shape}")
        if n_features is not None and X.shape[1] != n_features:
            raise ValueError(f"{name} has {X.shape[1]} features per sample, but the network expects {n_features} (shape {layout})")
        return X
    arr = np.asarray(X)
    if arr.dtype.kind not in "uif":
        raise TypeError(f"{name} must hold numbers (integer or float); got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = " (for one sample use X.reshape(1, -1))" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D with shape {layout}; got {arr.ndim}-D shape {arr.shape}{hint}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features per sample, but the network expects {n_features} (shape {layout})")
    if arr.dtype.kind == "f" and not _all_finite(arr):
        finite = np.isfinite(arr)
        what = "NaN" if np.isnan(arr).any() else "infinity"
        raise ValueError(f"{name} contains {what} ({_first_bad(~finite)}); clean or impute the data first")
    return arr


def _all_finite(arr: np.ndarray) -> bool:
    """Whether every element is finite, in one pass that allocates nothing of X's size: the sum
    is finite unless an element is NaN or infinite (a float64 sum of float32 values cannot
    overflow; a float64 sum that overflows falls back to the elementwise test). The elementwise
    test builds a boolean array as large as X: 47 MB for Fashion-MNIST in float64, every fit."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(arr.sum(dtype=np.float64)):
            return True
    return bool(np.isfinite(arr).all())


def check_labels(y: Any, n_samples: int, n_classes: int, name: str = "y") -> np.ndarray:
    """Class ids in ``0..n_classes-1`` as an intp array; one-hot rows are accepted too."""
    if y is None:
        raise TypeError(f"{name} is None; expected {n_samples} integer class labels")
    arr = np.asarray(y)
    if arr.dtype.kind not in "uifb":
        raise TypeError(f"{name} must be integer class ids 0..{n_classes - 1} (or one-hot rows); got dtype {arr.dtype}")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        if arr.shape[1] != n_classes:
            raise ValueError(f"one-hot {name} has {arr.shape[1]} columns, but the network has {n_classes} classes")
        if arr.shape[0] != n_samples:
            raise ValueError(f"X has {n_samples} samples but {name} has {arr.shape[0]}")
        if not (np.isin(arr, (0, 1)).all() and (arr.sum(axis=1) == 1).all()):
            raise ValueError(f"2-D {name} must be one-hot: each row a single 1 and zeros elsewhere")
        return arr.argmax(axis=1).astype(np.intp)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D class ids or 2-D one-hot rows; got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"X has {n_samples} samples but {name} has {arr.shape[0]}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise ValueError(f"{name} must be integer class ids; found {arr[bad][0].item()!r} ({_first_bad(bad)})")
    out_of_range = (arr < 0) | (arr >= n_classes)
    if out_of_range.any():
        raise ValueError(
            f"labels must be in 0..{n_classes - 1} for {n_classes} classes; found {arr[out_of_range][0].item()!r} ({_first_bad(out_of_range)})"
        )
    return arr.astype(np.intp)


def check_targets(y: Any, n_samples: int, n_outputs: int, output: str, name: str = "y") -> np.ndarray:
    """Targets of a ``logistic``, ``identity`` or ``exp`` output as a float ``(n_samples, n_outputs)``
    array: finite numbers, in [0, 1] for logistic (probabilities of each output), >= 0 for exp
    (counts or rates). A 1-D ``y`` is one output."""
    if y is None:
        raise TypeError(f"{name} is None; expected {n_samples} targets")
    arr = np.asarray(y)
    if arr.dtype.kind not in "uifb":
        raise TypeError(f"{name} must hold numbers; got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != n_outputs:
        raise ValueError(f"{name} must have shape ({n_samples}, {n_outputs}) for a network with {n_outputs} outputs; got {np.shape(y)}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"X has {n_samples} samples but {name} has {arr.shape[0]}")
    bad = ~np.isfinite(arr)
    if output == "logistic":
        bad |= (arr < 0) | (arr > 1)
        what = "finite values in [0, 1] (0/1 indicators or probabilities)"
    elif output == "exp":
        bad |= arr < 0
        what = "finite non-negative values (the exp output predicts counts or rates)"
    else:
        what = "finite values"
    if bad.any():
        raise ValueError(f"{name} must hold {what}; found {arr[bad][0].item()!r} ({_first_bad(bad)})")
    return arr


def check_sample_weight(sample_weight: Any, n_samples: int) -> np.ndarray:
    """Per-sample weights: ``n_samples`` finite, non-negative numbers, not all zero."""
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == 0:
        w = np.full(n_samples, float(w))
    if w.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},), one weight per sample; got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("sample_weight must hold finite, non-negative numbers")
    if not w.any():
        raise ValueError("sample_weight is zero for every sample: there is nothing to learn from")
    return w
