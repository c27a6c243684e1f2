"""The small pieces the numba kernels stand on: typed constants, cache-line buffers, the
serial/parallel twins and the prefetch hint. Each can go wrong silently (a float32 kernel
computing in float64, a misaligned buffer, a twin that drops writes), so each is pinned here."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from numba import njit  # noqa: E402

from backends import numba_intrinsics as intrinsics  # noqa: E402
from backends import numba_kernels as kernels  # noqa: E402
from backends import numba_layout as layout  # noqa: E402
from backends import numba_tiles as tiles  # noqa: E402


@njit
def _derivative_and_constants(a):
    return kernels._dg(a, kernels.TANH), kernels.like(0.5, a) * a, kernels.like(1, a) - a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constants_take_the_type_of_the_value_they_meet(dtype):
    """A bare literal would promote float32 arithmetic to float64: slower, and not what the
    float32 kernels claim to compute."""
    from numba import from_dtype, types

    out = _derivative_and_constants(dtype(0.25))
    (signature,) = [s for s in _derivative_and_constants.nopython_signatures if s.args == (from_dtype(np.dtype(dtype)),)]
    assert signature.return_type == types.UniTuple(from_dtype(np.dtype(dtype)), 3)
    np.testing.assert_allclose(out, [1 - 0.25**2, 0.125, 0.75])


@pytest.mark.parametrize("shape,dtype", [((7,), np.float32), ((3, 5, 11), np.float64), ((2, 784), np.uint8)])
def test_aligned_buffers_start_on_a_cache_line(shape, dtype):
    for _ in range(20):  # where NumPy puts an allocation varies; alignment must not
        a = layout.aligned_empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
        assert a.ctypes.data % layout.CACHE_LINE == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_workspace_rows_are_padded_to_whole_lines(dtype):
    threads, sizes, chunk = 2, (13, 7, 5, 3), 8
    XC, G, *rest = layout.workspace(threads, sizes, chunk, dtype)
    assert G.shape[0] == threads - 1  # thread 0 accumulates in the caller's gradient buffer
    for buffer in (XC, G, *rest):
        assert buffer.shape[0] >= threads - 1
        assert buffer.ctypes.data % layout.CACHE_LINE == 0
        assert (buffer[0].nbytes % layout.CACHE_LINE) == 0  # so thread 1's part is aligned too
    assert layout.padded(13, np.float32) == 16 and layout.padded(16, np.float32) == 16 and layout.padded(9, np.float64) == 16


@pytest.mark.parametrize("rows", [5, kernels.PARALLEL_MIN // 4 + 3])
def test_serial_and_parallel_twins_agree_on_both_sides_of_the_threshold(rows):
    rng = np.random.default_rng(rows)
    z = rng.standard_normal((rows, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    results = []
    for kernel in (kernels.bias_activation.serial, kernels.bias_activation.parallel, kernels.bias_activation):
        out = z.copy()
        kernel(out, b, kernels.TANH)
        results.append(out)
    np.testing.assert_allclose(results[0], np.tanh(z + b), rtol=1e-6)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


@njit
def _fast_functions(x, out_tanh, out_exp):
    for i in range(x.size):
        out_tanh[i] = intrinsics.tanh32(x[i])
        out_exp[i] = intrinsics.exp_neg(-abs(x[i]), True)


def test_the_vectorisable_tanh_and_exp_hold_their_stated_error():
    """The fused float32 path swaps libm's tanh and exp for a rational fit (vectorisable); its
    error must stay at a few float32 ulps across the whole range, saturation included."""
    x = np.concatenate([np.linspace(-12, 12, 200_001), [0.0, -0.0, 1e-30, 7.9053111, -7.9053111, 40.0]]).astype(np.float32)
    t, e = np.empty_like(x), np.empty_like(x)
    _fast_functions(x, t, e)
    x64 = x.astype(np.float64)
    assert np.abs(t - np.tanh(x64)).max() < 4e-7
    assert np.abs(t).max() <= 1.0
    assert np.abs(e - np.exp(-np.abs(x64))).max() < 2e-7
    assert (e >= 0).all()


@pytest.mark.parametrize("h,nr", [(16, 128), (7, 13), (3, 9), (4, 2), (10, 1)])
@pytest.mark.parametrize("uint8", [True, False])
def test_the_first_layer_converts_while_it_multiplies_like_the_two_steps_apart(h, nr, uint8):
    """The first layer's forward converts the rows (uint8 scaled, or float) while its first
    tile multiplies them, prefetching rows ahead; the floats it leaves behind (for the weight
    gradient) and its outputs must be those of a plain gather and product, for any width, any
    number of rows, and rows taken out of order."""
    rng = np.random.default_rng(h * 100 + nr)
    d = 37
    X = rng.integers(0, 256, (200, d), dtype=np.uint8) if uint8 else rng.standard_normal((200, d)).astype(np.float32)
    scale = np.float32(1 / 255 if uint8 else 1)
    rows = rng.permutation(200)[:nr].astype(np.int64)
    W = rng.standard_normal((h, d)).astype(np.float32)
    b = rng.standard_normal(h).astype(np.float32)
    xc = np.full((nr + 3, d + 3), np.nan, np.float32)
    outT = np.full((h, nr + 5), np.nan, np.float32)
    tiles.linear_rows(X, rows, scale, xc, W, b, outT)
    expected_x = X[rows].astype(np.float64) * scale
    np.testing.assert_allclose(xc[:nr, :d], expected_x, rtol=1e-6)
    np.testing.assert_allclose(outT[:, :nr], (expected_x @ W.T + b).T, rtol=1e-4, atol=1e-4)
    assert np.isnan(outT[:, nr:]).all() and np.isnan(xc[nr:]).all()  # nothing written past the batch


@pytest.mark.parametrize("h,nr", [(16, 128), (7, 13), (1, 6), (3, 3), (4, 0), (5, 4)])
def test_the_weight_gradient_assigns_or_accumulates(h, nr):
    """With ``assign`` the first layer's weight gradient overwrites whatever G held (its first
    sweep writes instead of adding, so nobody zeroes G); without, it adds to G."""
    rng = np.random.default_rng(h * 1000 + nr)
    d = 29
    X = rng.standard_normal((nr + 2, d + 3)).astype(np.float32)
    dZT = rng.standard_normal((h, nr + 5)).astype(np.float32)
    expected = dZT[:, :nr].astype(np.float64) @ X[:nr, :d]
    G = np.full((h, d), np.nan, np.float32)
    tiles.grad_rows(dZT, X, nr, G, True)
    np.testing.assert_allclose(G, expected, rtol=1e-4, atol=1e-4)
    start = rng.standard_normal((h, d)).astype(np.float32)
    G[:] = start
    tiles.grad_rows(dZT, X, nr, G, False)
    np.testing.assert_allclose(G, start + expected, rtol=1e-4, atol=1e-4)


def test_the_flat_layout_packs_and_unpacks_the_same_way():
    """One definition of the flat parameter vector: what the packer writes after W¹ and what the
    unpacked views read are the parameters, in place, at the offsets the kernel is given."""
    rng = np.random.default_rng(0)
    sizes = (7, 5, 4, 3)
    layers = [(rng.standard_normal((b, a)), rng.standard_normal(b)) for a, b in zip(sizes[:-1], sizes[1:])]
    flat = layout.FlatLayout.of(sizes)
    assert flat.size == sum(W.size + b.size for W, b in layers) and flat.first_weights == 35
    vector = np.empty(flat.size)
    vector[:flat.first_weights] = layers[0][0].reshape(-1)
    flat.pack_after_first(layers, vector[flat.first_weights:])
    for (W, b), (dW, db), w_off, b_off in zip(layers, flat.unpack(vector, layers), flat.w_off, flat.b_off):
        np.testing.assert_array_equal(dW, W)
        np.testing.assert_array_equal(db, b)
        np.testing.assert_array_equal(vector[w_off:w_off + W.size], W.reshape(-1))
        np.testing.assert_array_equal(vector[b_off:b_off + b.size], b)
        assert np.shares_memory(dW, vector) and np.shares_memory(db, vector)


def test_network_parameters_start_on_a_cache_line_and_are_their_own():
    """The fused kernel reads W¹ where it lies, so the backend places parameters on a cache line,
    at creation and when set or loaded; they are copies, never views of the caller's arrays."""
    from netcore import MLP

    net = MLP([37, 9, 3], backend="numba", dtype="float32", seed=0)
    theirs = [(np.ones((9, 37)), np.zeros(9)), (np.ones((3, 9)), np.zeros(3))]
    for layers in (net.layers, (net.set_parameters(theirs), net.layers)[1]):
        for W, b in layers:
            assert W.ctypes.data % layout.CACHE_LINE == 0 and W.dtype == np.float32 and W.flags.c_contiguous
    net.layers[0][0][:] = 5
    assert (theirs[0][0] == 1).all()
