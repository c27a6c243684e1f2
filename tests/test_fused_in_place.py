"""The fused pass's first layer reading float inputs where they lie in X.

A chunk whose rows are a run of X already in the compute dtype (a full batch of float inputs)
is read in place by the forward product and the weight gradient; any other chunk (a shuffled
mini-batch, uint8 rows) is first copied into the chunk buffer, converted. All must give the
float64 generic path's numbers, and float inputs the same numbers read in place as copied.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netcore import MLP
from netcore.network import generic_loss_and_gradients

from .conftest import backend_params
from .test_fused import assert_close, chunk_rows, reference, threads  # noqa: F401  (fixtures)

pytest.importorskip("netcore.backends.numba_isa")

pytestmark = pytest.mark.parametrize("name", backend_params(["numba"]))


def fused(net, X, labels, rows=None):
    """The backend's (loss, gradients, logits) on ``X`` as given (not prepared: not made
    contiguous), copied out of the buffers the next call reuses."""
    Y = net.backend.one_hot(labels, net.n_classes)
    loss, grads, Z = net.backend.loss_and_gradients(net.layers, X, Y, net.activation, rows, generic_loss_and_gradients)
    return float(loss), [(dW.copy(), db.copy()) for dW, db in grads], np.array(Z)


def swapped_runs(n, block):
    """``0..n`` with the 2nd and 3rd of every ``block`` rows swapped: each block starts and ends
    where a run would (last - first == block - 1) but is not one, so a check of the ends alone
    would read the wrong rows in place."""
    rows = np.arange(n)
    for b in range(0, n - 2, block):
        rows[b + 1], rows[b + 2] = rows[b + 2], rows[b + 1]
    return rows


def row_orders(n, rng):
    """Row subsets that exercise each path: in place, copied, and both in one batch."""
    half = n // 2
    return {
        "all (None)": None,
        "a run": np.arange(n // 3, n),
        "reversed": np.arange(n)[::-1].copy(),
        "shuffled": rng.permutation(n),
        "swapped in runs of 8": swapped_runs(n, 8),
        "swapped in runs of 32": swapped_runs(n, 32),
        "a run, then shuffled": np.concatenate([np.arange(half), half + rng.permutation(n - half)]),
    }


# d and the first layer's width: odd, short of a vector, and past whole tiles of both dtypes
# (AVX-512: 24 float64 / 48 float32 columns a weight-gradient tile, 16 / 32 neurons a forward one)
SHAPES = [[1, 3, 2], [7, 5, 3], [9, 8, 4], [25, 17, 3], [49, 33, 16, 5], [53, 24, 2], [97, 48, 7, 3], [784, 16, 16, 10]]


def inputs(rng, shape, dtype, uint8):
    return rng.integers(0, 256, shape).astype(np.uint8) if uint8 else (rng.standard_normal(shape) * 2).astype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("uint8", [False, True], ids=["float-input", "uint8-input"])
@pytest.mark.parametrize("sizes", SHAPES, ids=["-".join(map(str, s)) for s in SHAPES])
def test_every_row_order_matches_generic(name, threads, chunk_rows, dtype, uint8, sizes):
    """Float inputs in the compute dtype are read in place where a chunk is a run of rows; uint8
    ones are converted into the chunk buffer whatever the order."""
    rng = np.random.default_rng(sizes[0])
    n = 83  # not a multiple of a chunk, a thread's share or a tile's rows
    X = inputs(rng, (n, sizes[0]), dtype, uint8)
    labels = rng.integers(0, sizes[-1], n)
    net = MLP(sizes, "tanh", backend=name, dtype=dtype, seed=2)
    for label, rows in row_orders(n, rng).items():
        got = fused(net, X, labels, rows)
        try:
            assert_close(net, got, reference(net, X, labels, rows))
        except AssertionError as e:
            raise AssertionError(f"rows {label}: {e}") from None


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("sizes", SHAPES[1:], ids=["-".join(map(str, s)) for s in SHAPES[1:]])
def test_in_place_equals_the_copy_exactly(name, threads, chunk_rows, dtype, sizes):
    """The same samples in the same order, once gathered by ``rows`` (each chunk copied) and once
    laid out in that order in X (each chunk read in place): the products are the same tiles on
    the same numbers, so every result is bit for bit the same."""
    rng = np.random.default_rng(sizes[1])
    n = 75
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    labels = rng.integers(0, sizes[-1], n)
    rows = np.arange(n)[::-1].copy()  # no chunk of two rows or more is a run: all copied
    net = MLP(sizes, "relu", backend=name, dtype=dtype, seed=5)
    copied = fused(net, X, labels, rows)
    in_place = fused(net, np.ascontiguousarray(X[rows]), labels[rows], None)
    assert copied[0] == in_place[0]
    np.testing.assert_array_equal(copied[2], in_place[2])
    for (a, b), (c, d) in zip(copied[1], in_place[1]):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_arrays_that_are_not_c_contiguous(name, threads, dtype):
    """X (and Y) handed over in another layout, bypassing ``prepare``: the kernels assume rows
    laid end to end, so these must be copied, not misread."""
    rng = np.random.default_rng(11)
    n, d = 70, 19
    base = rng.standard_normal((n, 2 * d)).astype(dtype)
    labels = rng.integers(0, 4, n)
    net = MLP([d, 9, 4], "sigmoid", backend=name, dtype=dtype, seed=1)
    Y = np.asfortranarray(net.backend.one_hot(labels, 4))
    cases = {"Fortran order": np.asfortranarray(base[:, :d]), "every other column": base[:, ::2], "a column block": base[:, 3:3 + d]}
    for label, X in cases.items():
        assert not X.flags.c_contiguous
        for rows in (None, rng.permutation(n)[:50]):
            got = net.backend.loss_and_gradients(net.layers, X, Y, net.activation, rows, generic_loss_and_gradients)
            try:
                assert_close(net, got, reference(net, np.array(X, np.float64), labels, rows))
            except AssertionError as e:
                raise AssertionError(f"{label}, rows {'None' if rows is None else 'subset'}: {e}") from None


@settings(max_examples=25, deadline=None)
@given(
    widths=st.lists(st.integers(1, 40), min_size=2, max_size=4),
    n=st.integers(1, 120),
    dtype=st.sampled_from(["float64", "float32"]),
    uint8=st.booleans(),
    order=st.sampled_from(["all (None)", "a run", "reversed", "shuffled", "swapped in runs of 8", "a run, then shuffled"]),
    seed=st.integers(0, 1000),
)
def test_random_networks_and_row_orders(name, widths, n, dtype, uint8, order, seed):
    rng = np.random.default_rng(seed)
    widths[-1] = max(widths[-1], 2)
    X = inputs(rng, (n, widths[0]), dtype, uint8)
    labels = rng.integers(0, widths[-1], n)
    net = MLP(widths, "tanh", backend=name, dtype=dtype, seed=seed)
    rows = row_orders(n, rng)[order]
    if rows is not None and len(rows) == 0:
        rows = None
    assert_close(net, fused(net, X, labels, rows), reference(net, X, labels, rows))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_only_a_run_of_rows_in_the_compute_dtype_is_read_in_place(name, dtype):
    """``first_layer`` hands back X's own rows for a run (no copy: they share memory), and its
    float copy for anything else: rows out of order, a run of another dtype, a scale."""
    from netcore.backends import numba_isa, numba_tiles

    rng = np.random.default_rng(1)
    d, h, nr = 21, 5, 9
    X = rng.standard_normal((40, d)).astype(dtype)
    WT = np.zeros((d, 16), dtype)
    WT[:, :h] = rng.standard_normal((d, h))
    upcoming = np.arange(3, dtype=np.int64)
    cases = [(X, np.arange(7, 7 + nr), 1, True), (X, swapped_runs(nr, nr) + 7, 1, False), (X, np.arange(7, 7 + nr), 0.5, False),
             (X.astype(np.float32 if dtype == np.float64 else np.float64), np.arange(7, 7 + nr), 1, False)]
    for Xi, rows, scale, expected in cases:
        xc = np.full((nr, d), np.nan, dtype)
        Z = np.zeros((nr, 16), dtype)
        inputs, in_place = numba_tiles.first_layer(numba_isa.target_isa(), Xi, rows.astype(np.int64), dtype(scale), xc, WT, Z, nr, upcoming)
        assert in_place == expected and np.shares_memory(inputs, Xi) == expected
        np.testing.assert_allclose(inputs, Xi[rows].astype(dtype) * dtype(scale), rtol=1e-6)
        np.testing.assert_allclose(Z[:, :h], inputs.astype(np.float64) @ WT[:, :h], rtol=1e-4, atol=1e-4)
