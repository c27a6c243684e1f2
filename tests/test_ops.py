"""Every op of every backend against float64 NumPy, on random shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netcore import backends
from netcore.backends.base import ACTIVATIONS, Backend

from .conftest import ALL, backend_params

REF = backends.get_backend("numpy", "float64")
TOL = {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=2e-5, atol=2e-6)}

# Tutorial-sized and awkward shapes (one sample, one unit, odd widths), plus hypothesis below.
SHAPES = [(1, 1, 1), (1, 7, 3), (5, 3, 2), (33, 17, 10), (64, 784, 16)]


def run(ops: Backend, op: str, *args, **kw):
    """Call an op on backend copies of host arrays and bring the result back as float64."""
    conv = [ops.asarray(a.copy()) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in args]
    out = getattr(ops, op)(*conv, **kw)
    return conv, (None if out is None else np.asarray(ops.to_numpy(out), dtype=np.float64))


def check_ops(ops: Backend, n: int, k: int, p: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    tol = TOL[ops.dtype.name]
    # A product sums k (or n) rounded terms, so its absolute error grows with the length.
    mm_tol = {"rtol": tol["rtol"], "atol": tol["atol"] * max(n, k)}
    a, w, b = rng.standard_normal((n, k)), rng.standard_normal((p, k)), rng.standard_normal(p)
    g, z = rng.standard_normal((n, p)), 3 * rng.standard_normal((n, p))
    # Round inputs to the backend's dtype so both sides see the same numbers.
    a, w, b, g, z = (x.astype(ops.dtype).astype(np.float64) for x in (a, w, b, g, z))
    labels = rng.integers(0, p, n) if p > 1 else np.zeros(n, dtype=int)
    y = REF.one_hot(labels, p)

    np.testing.assert_allclose(run(ops, "matmul_nt", a, w)[1], a @ w.T, **mm_tol)
    np.testing.assert_allclose(run(ops, "matmul", g, w)[1], g @ w, **mm_tol)
    np.testing.assert_allclose(run(ops, "matmul_tn", g, a)[1], g.T @ a, **mm_tol)
    np.testing.assert_allclose(run(ops, "add_bias", z, b)[1], z + b, **tol)
    np.testing.assert_allclose(run(ops, "linear", a, w, b)[1], a @ w.T + b, **mm_tol)
    for kind in ACTIVATIONS:
        expect = REF.activation(z.copy(), kind)
        np.testing.assert_allclose(run(ops, "activation", z, kind)[1], expect, **tol, err_msg=kind)
        np.testing.assert_allclose(run(ops, "dense", a, w, b, kind)[1], REF.dense(a, w, b, kind), **mm_tol, err_msg=kind)
        out = run(ops, "activation_backward", expect, g, kind)[1]
        np.testing.assert_allclose(out, REF.activation_backward(expect, g.copy(), kind), **tol, err_msg=kind)
    p_ref = REF.softmax(z)
    np.testing.assert_allclose(run(ops, "softmax", z)[1], p_ref, **tol)
    np.testing.assert_allclose(ops.to_float(ops.cross_entropy(ops.asarray(z), ops.asarray(y))), REF.cross_entropy(z, y), **tol)
    np.testing.assert_allclose(ops.to_float(ops.sum_squares(ops.asarray(g))), (g * g).sum(), **mm_tol)
    np.testing.assert_allclose(run(ops, "softmax_cross_entropy_delta", p_ref, y)[1], p_ref - y, **tol)
    np.testing.assert_allclose(run(ops, "sum_rows", g)[1], g.sum(axis=0), **mm_tol)
    np.testing.assert_allclose(run(ops, "scale", g, 0.25)[1], 0.25 * g, **tol)
    for param in (w, b):
        conv, _ = run(ops, "sgd_update", param, param * 0.5, 0.1)
        np.testing.assert_allclose(np.asarray(ops.to_numpy(conv[0]), dtype=np.float64), param - 0.1 * (param * 0.5), **tol)
    np.testing.assert_array_equal(ops.to_numpy(ops.one_hot(labels, p)), y)
    np.testing.assert_array_equal(ops.argmax_rows(ops.asarray(z)), z.argmax(axis=1))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_ops_match_numpy_float64(backend_name, dtype, shape):
    if backend_name == "python" and shape[1] == 784:
        shape = (8, 784, 16)  # the loops are slow; the tutorial's widths still get exercised
    check_ops(backends.get_backend(backend_name, dtype), *shape, seed=sum(shape))


@pytest.mark.parametrize("name", backend_params(ALL))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 40), k=st.integers(1, 24), p=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_ops_random_shapes(name, n, k, p, seed):
    check_ops(backends.get_backend(name, "float64"), n, k, p, seed)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_and_loss_finite_for_huge_logits(backend_name, dtype):
    ops = backends.get_backend(backend_name, dtype)
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]])
    y = REF.one_hot(np.array([1, 0, 2]), 3)
    p = ops.to_numpy(ops.softmax(ops.asarray(z)))
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    loss = float(ops.to_float(ops.cross_entropy(ops.asarray(z), ops.asarray(y))))
    assert np.isfinite(loss)
    # Row 1 is confidently wrong by 2e4, row 2 uniform (log 3), row 3 wrong by 2e4 + log 2.
    np.testing.assert_allclose(loss, (2e4 + np.log(3) + 2e4 + np.log(2)) / 3, rtol=1e-6)


def test_sigmoid_saturates_without_nan(backend_name):
    ops = backends.get_backend(backend_name, "float64")
    out = ops.to_numpy(ops.activation(ops.asarray(np.array([[-1e4, 0.0, 1e4]])), "sigmoid"))
    np.testing.assert_allclose(out, [[0.0, 0.5, 1.0]])


def test_unknown_activation_is_rejected(backend_name):
    ops = backends.get_backend(backend_name, "float64")
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        ops.activation(ops.asarray(np.zeros((2, 2))), "gelu")


def test_unsupported_dtype_is_rejected():
    with pytest.raises(ValueError, match="unsupported dtype 'int32'"):
        backends.get_backend("numpy", "int32")


def test_all_finite_sees_nan_and_infinity(backend_name):
    ops = backends.get_backend(backend_name, "float64")
    assert ops.all_finite(ops.asarray(np.array([[1e300, -2.0]])))
    for bad in (np.nan, np.inf, -np.inf):
        assert not ops.all_finite(ops.asarray(np.array([[0.0, bad]])))


@pytest.mark.parametrize("name", ["numpy", "numba"])
@pytest.mark.parametrize("op", ["sgd_update", "scale", "adam_update", "adam_update_l2"])
def test_an_in_place_update_of_a_strided_array_lands_in_it(name, op):
    """An update in place of non-contiguous arrays (a matrix's first two columns: no flat view of
    them exists, so ``reshape(-1)`` copies) lands in them, not in a copy that is then lost."""
    ops = backends.get_backend(name, "float64")
    start = np.arange(1.0, 13.0).reshape(3, 4)
    whole, m_whole, v_whole = (ops.asarray(start.copy()) for _ in range(3))
    view, m, v = whole[:, :2], m_whole[:, :2], v_whole[:, :2]
    m[...], v[...] = 0, 0
    before = np.array(view)
    grad = np.full(view.shape, 2.0)
    adam_step = 0.1 * (0.1 * grad) / (np.sqrt(0.001 * grad * grad) + 1e-8)  # from zero moments
    if op == "sgd_update":
        ops.sgd_update(view, grad, 0.5)
        expect = before - 0.5 * grad
    elif op == "scale":
        ops.scale(view, 3.0)
        expect = 3.0 * before
    else:
        args = (view, grad.copy(), m, v, 0.1, 0.9, 0.999, 1e-8)
        ops.adam_update(*args) if op == "adam_update" else ops.adam_update_l2(*args, 0.0)
        expect = before - adam_step
        np.testing.assert_allclose(m, 0.1 * grad)
        np.testing.assert_allclose(v, 0.001 * grad * grad)
    np.testing.assert_allclose(view, expect, rtol=1e-12)
    for a in (whole, m_whole, v_whole):
        np.testing.assert_array_equal(a[:, 2:], start[:, 2:])
