"""The small pieces the numba kernels stand on: typed constants, cache-line buffers, the
serial/parallel twins, the register tiles of every instruction-set variant and the choice among
them. Each can go wrong silently (a float32 kernel computing in float64, a misaligned buffer, a
twin that drops writes, an edge tile that skips a row), so each is pinned here."""

from __future__ import annotations

import itertools
import platform

import numpy as np
import pytest

pytest.importorskip("numba")

from numba import njit  # noqa: E402

from netcore.backends import numba_intrinsics as intrinsics  # noqa: E402
from netcore.backends import numba_isa as isa  # noqa: E402
from netcore.backends import numba_kernels as kernels  # noqa: E402
from netcore.backends import numba_layout as layout  # noqa: E402
from netcore.backends import numba_tiles as tiles  # noqa: E402


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
    WT, XC, ZS, G, *rest = layout.workspace(threads, sizes, chunk, dtype)
    assert WT.shape == (13, layout.padded(7, dtype)) and (WT == 0).all()  # padding lanes stay 0
    assert G.shape[0] == threads - 1  # thread 0 accumulates in the caller's gradient buffer
    for buffer in (XC, ZS, G, *rest):
        assert buffer.shape[0] >= threads - 1
        assert buffer.ctypes.data % layout.CACHE_LINE == 0
        assert (buffer[0].nbytes % layout.CACHE_LINE) == 0  # so thread 1's part is aligned too
    assert layout.stride(chunk) % layout.VECTOR_COLUMNS == 0 and layout.stride(chunk) >= chunk
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
        out_exp[i] = intrinsics.exp_neg(-abs(x[i]))


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


@njit
def _activate_all(x, kind, out):
    for i in range(x.size):
        out[i] = intrinsics.activate(x[i], kind)


_EDGES = [-np.inf, -1e30, -1.0, -0.0, 0.0, 1e-30, 2.5, np.inf, np.nan]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_is_zero_at_minus_infinity_and_keeps_nan(dtype):
    """relu(-inf) is 0 (``v - v`` or ``v * 0`` made it NaN), NaN stays NaN, as in np.maximum(z, 0):
    the fused pass's form and the generic ops' both."""
    x = np.array(_EDGES, dtype)
    expected = np.maximum(x, 0)
    fused = np.empty_like(x)
    _activate_all(x, kernels.RELU, fused)
    np.testing.assert_array_equal(fused, expected)
    for op in (lambda z: kernels.activation(z, kernels.RELU), lambda z: kernels.bias_activation(z, np.zeros(1, dtype), kernels.RELU)):
        z = x.reshape(-1, 1).copy()
        op(z)
        np.testing.assert_array_equal(z.ravel(), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fused_pass_gives_relu_units_driven_to_minus_infinity_an_output_of_zero(dtype):
    """A hidden pre-activation that overflows to -inf: that relu unit is 0, so the logits and the
    loss stay finite and equal the NumPy path's, which the other units still move."""
    from netcore import MLP
    from netcore.network import generic_loss_and_gradients

    big = 1e200 if dtype == np.float64 else 1e30
    rng = np.random.default_rng(0)
    X = rng.standard_normal((9, 3)).astype(dtype)
    X[::2, 0] = big  # input 0 reaches unit 0 only
    labels = rng.integers(0, 2, 9)
    losses, logits = [], []
    for name in ("numba", "numpy"):
        net = MLP([3, 4, 2], "relu", backend=name, dtype=np.dtype(dtype).name, seed=0)
        W1, b1 = net.layers[0]
        W1[:, 0] = 0
        W1[0, 0] = -big  # unit 0's W1 x overflows to -inf on the rows that hold `big`
        batch = net.prepare(X, labels)
        with np.errstate(over="ignore", invalid="ignore"):
            loss, _, Z = net.backend.loss_and_gradients(net.layers, batch.X, batch.Y, "relu", None, generic_loss_and_gradients)
        losses.append(float(loss))
        logits.append(np.asarray(Z, dtype=np.float64))
    assert np.isfinite(losses[0]) and np.isfinite(logits[0]).all() and np.abs(logits[0]).max() > 0
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    np.testing.assert_allclose(logits[0], logits[1], rtol=1e-5, atol=1e-6)


@pytest.fixture(params=isa.VARIANTS, ids=[v.name for v in isa.VARIANTS])
def variant(request):
    """Every instruction-set variant runs here: LLVM splits vectors wider than the machine's."""
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_rows,n_cols,K", [(8, 48, 29), (31, 37, 5), (1, 1, 1), (27, 16, 784), (13, 112, 3), (6, 100, 0)])
def test_the_rank1_tiles_multiply_like_numpy(variant, dtype, n_rows, n_cols, K):
    """``C (+)= A @ B`` in the ISA's tiles, the edge tiles and the columns short of a vector, on
    shapes that leave every remainder; ``A`` also as a transposed view (the backward pass's
    ``W.T``), each with and without prefetching the rows ahead (which must change nothing, even
    where those rows run past ``A``). Nothing outside ``C[:n_rows, j0:n_cols]`` is touched."""
    rng = np.random.default_rng(n_rows * 1000 + n_cols + K)
    A = rng.standard_normal((n_rows, K)).astype(dtype)
    At = np.ascontiguousarray(A.T)
    B = rng.standard_normal((K, n_cols + 3)).astype(dtype)
    for (a, j0), ahead in itertools.product(((A, 0), (At.T, min(5, n_cols))), (False, True)):
        C = np.full((n_rows + 2, n_cols + 3), np.nan, dtype)
        C[:n_rows, j0:n_cols] = 1
        tiles.rank1(variant, C, a, B, n_rows, j0, n_cols, K, False, ahead)
        expected = 1 + A.astype(np.float64) @ B[:, j0:n_cols]
        np.testing.assert_allclose(C[:n_rows, j0:n_cols], expected, rtol=1e-4, atol=1e-4)
        tiles.rank1(variant, C, a, B, n_rows, j0, n_cols, K, True, ahead)
        np.testing.assert_allclose(C[:n_rows, j0:n_cols], expected - 1, rtol=1e-4, atol=1e-4)
        assert np.isnan(C[n_rows:]).all() and np.isnan(C[:, n_cols:]).all() and np.isnan(C[:, :j0]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_a,n_b,K", [(6, 4, 64), (7, 5, 37), (1, 1, 3), (16, 10, 128), (13, 7, 1)])
def test_the_dot_tiles_multiply_like_numpy(variant, dtype, n_a, n_b, K):
    """``C (+)= A @ B.T`` along contiguous rows, with horizontal sums and the reduction's tail."""
    rng = np.random.default_rng(n_a * 100 + n_b + K)
    A = rng.standard_normal((n_a, K + 5)).astype(dtype)
    B = rng.standard_normal((n_b, K + 5)).astype(dtype)
    C = np.full((n_a, n_b), 2, dtype)
    tiles.dot(variant, C, A, B, n_a, n_b, K, False)
    expected = A[:, :K].astype(np.float64) @ B[:, :K].T
    np.testing.assert_allclose(C, 2 + expected, rtol=1e-4, atol=1e-4)
    tiles.dot(variant, C, A, B, n_a, n_b, K, True)
    np.testing.assert_allclose(C, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("h,nr,d", [(16, 128, 37), (7, 13, 37), (3, 9, 16), (4, 2, 15), (10, 1, 33), (100, 37, 37), (33, 50, 100), (16, 100, 784)])
@pytest.mark.parametrize("uint8", [True, False])
def test_the_first_layer_converts_then_multiplies_like_the_two_steps_apart(variant, dtype, h, nr, d, uint8):
    """The first layer's forward takes the chunk's rows out of order (prefetching the next
    chunk's) and multiplies them, scaled, by the transposed weights: float rows copied into the
    chunk buffer first, uint8 ones converted inside the tiles, a block of 16 columns at a time
    (so d is short of, equal to and past whole blocks, and 0 and 255 are in every row). The
    outputs must be those of a plain gather and product, for any width and any number of rows
    (tiles with fewer rows than their shape), with nothing written past them; the buffer holds
    the floats for the weight gradient, or is left alone for uint8 rows read by the pixel
    tiles (AVX-512, up to 16 neurons; the weight gradient reads their bytes too). Elsewhere uint8
    rows are converted inside the forward's tiles, which leave them in the buffer unscaled (the
    weight gradient scales dZ instead)."""
    rng = np.random.default_rng(h * 100 + nr + d)
    X = rng.integers(0, 256, (200, d), dtype=np.uint8) if uint8 else rng.standard_normal((200, d)).astype(dtype)
    if uint8:
        X[:, 0], X[:, -1] = 255, 0
    scale = dtype(1 / 255 if uint8 else 1)
    order = rng.permutation(200).astype(np.int64)
    rows, upcoming = order[:nr], order[nr:nr + 11]
    W = rng.standard_normal((h, d)).astype(dtype)
    WT = np.zeros((d, layout.padded(h, dtype)), dtype)
    WT[:, :h] = W.T
    xc = np.full((nr + 3, d + 3), np.nan, dtype)
    Z = np.full((nr + 5, WT.shape[1]), np.nan, dtype)
    inputs, in_place = tiles.first_layer(variant, X, rows, scale, xc, WT, Z, nr, upcoming)
    expected_x = X[rows].astype(np.float64) * scale
    if uint8 and variant.registers >= 32 and h <= tiles.PIXEL_NEURONS:  # read by the pixel tiles
        assert not in_place and np.isnan(xc).all()
    elif uint8 and variant.registers < 32:  # converted inside the forward's tiles, unscaled
        np.testing.assert_array_equal(inputs[:nr, :d], X[rows])
        assert np.isnan(xc[nr:]).all() and np.isnan(xc[:, d:]).all()
    else:  # a copy, or X's own row where the "chunk" is one row of floats
        np.testing.assert_allclose(inputs[:nr, :d], expected_x, rtol=1e-6)
        assert np.isnan(xc[nr:]).all() and np.isnan(xc[:, d:]).all()
    np.testing.assert_allclose(Z[:nr, :h], expected_x @ W.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(Z[:nr, h:], 0)  # the padding neurons: zero weights
    assert np.isnan(Z[nr:]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("h,nr,d", [(16, 128, 29), (7, 13, 29), (1, 6, 29), (3, 3, 64), (5, 4, 7), (100, 9, 29), (17, 33, 784), (16, 33, 784), (9, 40, 100)])
@pytest.mark.parametrize("uint8", [True, False])
def test_the_weight_gradient_assigns_or_accumulates(variant, dtype, h, nr, d, uint8):
    """``G (+)= dZT @ (scale * X[rows])``: with ``assign`` the first layer's weight gradient
    overwrites whatever G held (a thread's first chunk writes instead of adding, so nobody
    zeroes G); without, it adds to G. Float inputs are read from the chunk buffer; uint8 rows,
    on AVX-512 up to 16 neurons, where they lie in X, out of order, as bytes widened in the tiles (whole tiles of
    8 x 3 and 8 x 1 vectors, fewer rows than a tile, and columns short of a vector)."""
    rng = np.random.default_rng(h * 1000 + nr + d)
    n = nr + 30
    X = rng.integers(0, 256, (n, d), dtype=np.uint8)
    X[:, 0], X[:, -1] = 255, 0
    rows = rng.permutation(n)[:nr].astype(np.int64)
    scale = dtype(1 / 255 if uint8 else 1)
    xc = np.full((nr + 2, d + 3), np.nan, dtype)
    xc[:nr, :d] = X[rows] * scale  # what the first layer leaves there (where it converts them)
    dZT = rng.standard_normal((h, nr + 5)).astype(dtype)
    x = X[rows].astype(np.float64) * scale
    expected = dZT[:, :nr].astype(np.float64) @ x
    # a sum's rounding grows with its terms' magnitudes, not its own (they cancel)
    atol = 1e-5 * (np.abs(dZT[:, :nr]).astype(np.float64) @ x) + 1e-6
    G = np.full((h, d), np.nan, dtype)
    upcoming = np.arange(7, dtype=np.int64)
    tiles.weight_gradient(variant, G, dZT, xc, nr, True, X if uint8 else xc, rows, scale, upcoming)
    np.testing.assert_array_less(np.abs(G - expected), atol)
    start = rng.standard_normal((h, d)).astype(dtype)
    G[:] = start
    tiles.weight_gradient(variant, G, dZT, xc, nr, False, X if uint8 else xc, rows, scale, upcoming)
    np.testing.assert_array_less(np.abs(G - (start + expected)), atol + 1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("h,nr,d", [(16, 128, 784), (16, 7, 29), (32, 33, 100), (8, 1, 5), (16, 40, 6), (48, 13, 61)])
def test_the_transposed_weight_gradient_assigns_or_accumulates_and_turns_back(variant, dtype, h, nr, d):
    """``GT (+)= (scale * dZT @ xc).T`` in the ISA's full tiles (inputs x neurons: any number of
    inputs, so every edge tile of rows runs), dZ written sample-major on the way; then the
    gradient turned back to neurons x inputs in place, nothing past it touched."""
    rng = np.random.default_rng(h * 1000 + nr + d)
    xc = np.full((nr + 2, d + 3), np.nan, dtype)
    xc[:nr, :d] = rng.integers(0, 256, (nr, d))
    dZT = rng.standard_normal((h, nr + 5)).astype(dtype)
    dZ = np.full((nr + 1, h), np.nan, dtype)
    scale = dtype(1 / 255)
    expected = (scale * dZT[:, :nr].astype(np.float64) @ xc[:nr, :d]).T
    atol = 1e-5 * (np.abs(dZT[:, :nr]).astype(np.float64) @ xc[:nr, :d]).T * scale + 1e-6
    GT = np.full((d, h), np.nan, dtype)
    tiles.weight_gradient_transposed(variant, GT, dZT, dZ, xc[:, :d], nr, True, scale)
    np.testing.assert_array_less(np.abs(GT - expected), atol)
    np.testing.assert_allclose(dZ[:nr], scale * dZT[:, :nr].T, rtol=1e-6)
    assert np.isnan(dZ[nr:]).all()
    start = rng.standard_normal((d, h)).astype(dtype)
    GT[:] = start
    tiles.weight_gradient_transposed(variant, GT, dZT, dZ, xc[:, :d], nr, False, scale)
    np.testing.assert_array_less(np.abs(GT - (start + expected)), atol + 1e-6)
    flat = np.full(d * h + 3, 7, dtype)
    flat[:d * h] = GT.reshape(-1)
    tiles.untranspose(flat, d, h, np.zeros(d * h, dtype))
    np.testing.assert_array_equal(flat[:d * h].reshape(h, d), GT.T)
    np.testing.assert_array_equal(flat[d * h:], 7)


@njit
def _gradient_transposed(isa, X, g, h, chunk):
    return tiles.gradient_transposed(isa, X, g, h, chunk)


def test_the_gradient_is_transposed_where_the_forward_converts_whole_tiles_of_neurons(variant):
    """Transposed where uint8 rows are converted inside the forward (AVX2 and plain), the layer is
    whole tiles wide (16 float32 neurons on AVX2, 8 on plain) and a chunk can hold the gradient."""
    pixels, floats = np.zeros((4, 9), np.uint8), np.zeros((4, 9), np.float32)
    g = np.zeros(3, np.float32)
    width = {"avx2": 16, "plain": 8}.get(variant.name)
    for X, h, chunk in itertools.product((pixels, floats), (8, 16, 32, 100), (8, 16, 128)):
        expected = X is pixels and width is not None and h % width == 0 and chunk >= h
        assert _gradient_transposed(variant, X, g, h, chunk) == expected, (X.dtype, h, chunk)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the probe compiles for x86 CPU names")
def test_the_isa_is_what_llvm_emits_for_the_cpu_and_its_features():
    """The variant follows the code LLVM generates for a CPU name and feature string, so a CPU
    name without features (Numba passes the host's features along with NUMBA_CPU_NAME) cannot
    pick a narrower or wider variant than the code that runs."""
    assert isa.isa_for("haswell", "") == isa.AVX2
    assert isa.isa_for("skylake-avx512", "") == isa.AVX512
    assert isa.isa_for("haswell", "+avx512f,+avx512vl,+avx512bw,+avx512dq") == isa.AVX512
    assert isa.isa_for("x86-64", "") == isa.PLAIN  # SSE2 only
    assert isa.target_isa() in isa.VARIANTS


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
