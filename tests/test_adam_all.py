"""``adam_update_all`` (every parameter array's Adam step in one call) against the per-array ops."""

from __future__ import annotations

import numpy as np
import pytest

from netcore import backends
from netcore.backends.base import Backend

from .conftest import backend_params


def _shapes(rng, layers: int, big: bool) -> list[tuple]:
    """A network's parameter shapes, ``W (out, in), b (out,)`` a layer; ``big`` puts the first
    weights above the numba kernels' parallel size."""
    sizes = [int(rng.integers(1, 40)) for _ in range(layers + 1)]
    if big:
        sizes[:2] = [int(rng.integers(700, 900)), int(rng.integers(80, 120))]
    return [s for n_in, n_out in zip(sizes[:-1], sizes[1:]) for s in ((n_out, n_in), (n_out,))]


def _run(ops, per_array: bool, start, grads, l2):
    """Three steps from ``start`` through one path; returns every array and each step's squares."""
    params, m, v = ([ops.asarray(a.copy()) for a in arrays] for arrays in start)
    squares = []
    for step, g in enumerate(grads, start=1):
        g = [ops.asarray(a.copy()) for a in g]
        lr = 0.01 * np.sqrt(1 - 0.999**step) / (1 - 0.9**step)
        if per_array:
            out = Backend.adam_update_all(ops, params, g, m, v, lr, 0.9, 0.999, 1e-8, l2)
        else:
            out = ops.adam_update_all(params, g, m, v, lr, 0.9, 0.999, 1e-8, l2)
        squares.append(None if out is None else [ops.to_float(s) for s in out])
    return [ops.to_numpy(a) for arrays in (params, m, v) for a in arrays], squares


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("penalty", [None, "weights", "mixed"])
@pytest.mark.parametrize("seed", range(4))
def test_one_call_is_the_per_array_steps_to_the_bit(backend_name, dtype, penalty, seed):
    """Random networks (one to three layers, the first sometimes above the parallel size),
    with no penalty, a penalty on the weights, or a different one on every array: the arrays
    equal the per-array ops' (adam_update, adam_update_l2) exactly, the sums of squares to rounding."""
    rng = np.random.default_rng(seed)
    ops = backends.get_backend(backend_name, dtype)
    shapes = _shapes(rng, int(rng.integers(1, 4)), big=seed % 2 == 1)
    start = [[rng.standard_normal(s).astype(dtype) for s in shapes],
             [rng.standard_normal(s).astype(dtype) * 0.1 for s in shapes],
             [rng.random(s).astype(dtype) * 0.1 for s in shapes]]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(3)]
    l2 = {None: None, "weights": [0.05, 0.0] * (len(shapes) // 2), "mixed": list(rng.random(len(shapes)) * (rng.random(len(shapes)) < 0.7))}[penalty]
    (fused, fused_squares), (each, each_squares) = (_run(ops, per_array, start, grads, l2) for per_array in (False, True))
    exact = backend_name in ("numpy", "numba", "python")  # a GPU may contract a multiply-add
    for a, b in zip(fused, each):
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5)
    if l2 is None:
        assert fused_squares == each_squares == [None] * 3
    else:
        assert all(len(s) == sum(1 for c in l2 if c) for s in fused_squares)
        # equal to rounding: numba's per-array parallel kernel adds its block sums as a parallel
        # reduction, in an order of its own
        np.testing.assert_allclose(fused_squares, each_squares, rtol=1e-14)


@pytest.mark.parametrize("name", backend_params(["numba"]))
def test_numba_steps_arrays_of_another_dtype_one_by_one(name, rng):
    """A parameter of another dtype than the backend's takes the per-array op's step."""
    ops = backends.get_backend(name, "float32")
    p = rng.standard_normal((6, 8))
    g, expected, start = np.ones_like(p), p.copy(), p.copy()
    ops.adam_update(expected, g, np.zeros_like(p), np.zeros_like(p), 0.1, 0.9, 0.999, 1e-8)
    ops.adam_update_all([p], [g], [np.zeros_like(p)], [np.zeros_like(p)], 0.1, 0.9, 0.999, 1e-8)
    np.testing.assert_array_equal(p, expected)
    assert not np.array_equal(p, start)
