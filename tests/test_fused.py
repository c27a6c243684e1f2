"""The numba backend's fused batch gradient against the generic forward/backward.

The generic path (float64 NumPy) is the single source of truth; the fused kernel must agree on
random shapes, depths and activations, on uint8 and float inputs, on row subsets (mini-batches),
with one thread or several, and across chunk boundaries.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netcore import backends
from netcore import MLP
from netcore.network import generic_loss_and_gradients

from .conftest import backend_params

numba_isa = pytest.importorskip("netcore.backends.numba_isa")

pytestmark = pytest.mark.parametrize("name", backend_params(["numba"]))

REF = backends.get_backend("numpy", "float64")
TOL = {"float64": 1e-10, "float32": 2e-4}


def reference(net, X, labels, rows):
    """Loss, gradients and logits of the float64 generic path on the same rows."""
    Xf = X / 255.0 if X.dtype == np.uint8 else X.astype(np.float64)
    layers = [(REF.asarray(W), REF.asarray(b)) for W, b in net.get_parameters()]
    Y = REF.one_hot(labels, net.n_classes)
    if rows is not None:
        Xf, Y = Xf[rows], Y[rows]
    return generic_loss_and_gradients(REF, layers, Xf, Y, net.activation)


def check(net, X, labels, rows=None):
    batch = net.prepare(X, labels)
    got = net.backend.loss_and_gradients(net.layers, batch.X, batch.Y, net.activation, rows, generic_loss_and_gradients)
    assert_close(net, got, reference(net, X, labels, rows))


def assert_close(net, got, ref):
    """The fused pass's (loss, gradients, logits) against the reference's, at the dtype's tolerance."""
    (loss, grads, Z), (ref_loss, ref_grads, ref_Z) = got, ref
    tol = TOL[net.dtype.name]
    np.testing.assert_allclose(loss, ref_loss, rtol=tol)
    np.testing.assert_allclose(Z, ref_Z, rtol=tol, atol=tol * max(np.abs(ref_Z).max(), 1e-3))
    for l, ((dW, db), (rW, rb)) in enumerate(zip(grads, ref_grads), start=1):
        # the floor: a gradient exactly 0 in float64 comes out of float32 as rounding of its O(1)
        # terms (probabilities minus targets), far below any real error
        scale = max(np.abs(rW).max(), np.abs(rb).max(), 1e-3)
        np.testing.assert_allclose(dW, rW, rtol=tol, atol=tol * scale, err_msg=f"dW{l}")
        np.testing.assert_allclose(db, rb, rtol=tol, atol=tol * scale, err_msg=f"db{l}")


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(request.param, numba.config.NUMBA_NUM_THREADS))
    yield
    numba.set_num_threads(before)


@pytest.fixture(params=[None, 8], ids=["default-chunk", "8-row-chunks"])
def chunk_rows(request, monkeypatch):
    """Force small chunks so even small tests cross many chunk boundaries."""
    if request.param is not None:
        from netcore.backends import numba_backend

        monkeypatch.setattr(numba_backend, "CHUNK_BYTES", 1)  # the floor: 8 rows a chunk
    return request.param


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("input_dtype", ["uint8", "float"])
@pytest.mark.parametrize("sizes,activation", [([784, 16, 16, 10], "tanh"), ([13, 7, 5, 3], "relu"), ([6, 9, 2], "sigmoid"), ([5, 4], "tanh")])
def test_fused_matches_generic(name, threads, chunk_rows, dtype, input_dtype, sizes, activation):
    rng = np.random.default_rng(sum(sizes))
    n = 61  # not a multiple of the 4- and 8-row tiles
    X = rng.integers(0, 256, (n, sizes[0])).astype(np.uint8)
    if input_dtype == "float":
        X = rng.standard_normal((n, sizes[0]))
    labels = rng.integers(0, sizes[-1], n)
    check(MLP(sizes, activation, backend=name, dtype=dtype, seed=1), X, labels)


@settings(max_examples=30, deadline=None)
@given(
    widths=st.lists(st.integers(1, 21), min_size=1, max_size=4),
    n=st.integers(1, 50),
    activation=st.sampled_from(list(backends.ACTIVATIONS)),
    dtype=st.sampled_from(["float64", "float32"]),
    uint8=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_fused_matches_generic_on_random_networks(name, widths, n, activation, dtype, uint8, seed):
    rng = np.random.default_rng(seed)
    widths[-1] = max(widths[-1], 2)  # the output layer needs two classes
    X = rng.integers(0, 256, (n, widths[0])).astype(np.uint8) if uint8 else rng.standard_normal((n, widths[0])) * 2
    sizes = [widths[0], *widths[1:]] if len(widths) > 1 else [widths[0], 2]
    check(MLP(sizes, activation, backend=name, dtype=dtype, seed=seed), X, rng.integers(0, sizes[-1], n))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_on_a_row_subset_equals_the_gathered_batch(name, chunk_rows, dtype):
    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, (90, 30)).astype(np.uint8)
    labels = rng.integers(0, 4, 90)
    rows = rng.permutation(90)[:37]
    check(MLP([30, 8, 4], backend=name, dtype=dtype, seed=0), X, labels, rows)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_soft_targets_on_a_row_subset(name, threads, chunk_rows, dtype):
    """Targets that are not one-hot (each row a distribution), through a row subset, with the
    output layer wider than the hidden one: the softmax gathers each chunk's targets
    class-major into a scratch buffer sized for the widest layer."""
    rng = np.random.default_rng(7)
    X = rng.integers(0, 256, (70, 11)).astype(np.uint8)
    Y = rng.random((70, 9))
    Y /= Y.sum(axis=1, keepdims=True)
    rows = rng.permutation(70)[:45]
    net = MLP([11, 3, 9], "tanh", backend=name, dtype=dtype, seed=4)
    batch = net.prepare(X, rng.integers(0, 9, 70))
    got = net.backend.loss_and_gradients(net.layers, batch.X, net.backend.asarray(Y.astype(dtype)), net.activation, rows,
                                         generic_loss_and_gradients)
    layers = [(REF.asarray(W), REF.asarray(b)) for W, b in net.get_parameters()]
    assert_close(net, got, generic_loss_and_gradients(REF, layers, X[rows] / 255.0, Y[rows], net.activation))


@pytest.mark.parametrize("n", [61, 5])
def test_reused_buffers_carry_nothing_over(name, threads, chunk_rows, n):
    """A second batch of the same shape reuses the first one's gradient and scratch buffers
    (nothing is zeroed that a first write covers); its gradients must be its own."""
    rng = np.random.default_rng(n)
    X = rng.integers(0, 256, (2 * n, 20)).astype(np.uint8)
    labels = rng.integers(0, 3, 2 * n)
    net = MLP([20, 6, 5, 3], "tanh", backend=name, dtype="float32", seed=2)
    batch = net.prepare(X, labels)
    net.backend.loss_and_gradients(net.layers, batch.X, batch.Y, net.activation, np.arange(n), generic_loss_and_gradients)
    check(net, X, labels, np.arange(n, 2 * n))


def test_first_layer_weights_placed_from_outside_still_work(name):
    """W¹ is read in place; one swapped in by hand (misaligned, or float64 in a float32 network)
    is copied to where the kernel wants it rather than misread."""
    rng = np.random.default_rng(7)
    X = rng.integers(0, 256, (30, 11)).astype(np.uint8)
    labels = rng.integers(0, 3, 30)
    net = MLP([11, 5, 3], backend=name, dtype="float32", seed=0)
    W, b = net.layers[0]
    raw = np.empty(W.size + 1, np.float32)[1:]  # 4 bytes past an allocation: off the cache line
    raw[:] = W.reshape(-1)
    net.layers[0] = (raw.reshape(W.shape), b)
    check(net, X, labels)
    net.layers[0] = (W.astype(np.float64), b)
    check(net, X, labels)


@pytest.mark.parametrize("variant", numba_isa.VARIANTS, ids=[v.name for v in numba_isa.VARIANTS])
@pytest.mark.parametrize("dtype,input_dtype", [("float32", "uint8"), ("float64", "float")])
def test_every_isa_variant_matches_generic(name, variant, threads, chunk_rows, dtype, input_dtype, monkeypatch):
    """The tile shapes of every instruction set (AVX-512, AVX2, the plain fallback), whichever this
    machine runs, on networks with odd widths, every activation, one hidden layer to three, and
    first layers of whole tiles (16 and 32 neurons: AVX2 and plain take their uint8 weight
    gradient transposed where a chunk holds at least that many rows)."""
    from netcore.backends.numba_backend import NumbaBackend

    monkeypatch.setattr(NumbaBackend, "isa", property(lambda self: variant))
    rng = np.random.default_rng(5)
    for sizes, activation in [([37, 19, 11, 3], "tanh"), ([23, 5, 7], "relu"), ([31, 13, 9, 5, 4], "sigmoid"), ([17, 100, 10], "relu"),
                               ([29, 16, 7], "tanh"), ([40, 32, 6], "sigmoid")]:
        n = 53
        X = rng.integers(0, 256, (n, sizes[0])).astype(np.uint8) if input_dtype == "uint8" else rng.standard_normal((n, sizes[0]))
        check(MLP(sizes, activation, backend=name, dtype=dtype, seed=3), X, rng.integers(0, sizes[-1], n))


def test_uint8_inputs_stay_uint8_and_train_like_scaled_floats(name):
    rng = np.random.default_rng(4)
    X = rng.integers(0, 256, (40, 12)).astype(np.uint8)
    y = rng.integers(0, 3, 40)
    a = MLP([12, 6, 3], backend=name, dtype="float64", seed=0)
    b = MLP([12, 6, 3], backend="numpy", dtype="float64", seed=0)
    assert a.prepare(X, y).X.dtype == np.uint8  # no float copy of the images
    for _ in range(5):
        np.testing.assert_allclose(a.step(X, y, 0.5), b.step(X / 255.0, y, 0.5), rtol=1e-12)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X / 255.0), rtol=1e-10)


def test_a_slow_first_call_says_it_is_compiling(name, caplog):
    import time

    ops = backends.get_backend(name, "float32")
    unseen = np.dtype("int16")  # no fused kernel takes it, so no earlier test has marked it
    ops._compiled.discard(unseen)
    with caplog.at_level("WARNING", logger="netcore"):
        assert ops._first_call_notice(unseen, lambda x: time.sleep(1.3) or x, 7) == 7
        ops._first_call_notice(unseen, lambda: None)  # second call: silent
    ops._compiled.discard(unseen)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("numba: compiling the fused kernels for float32 compute on int16 inputs")
    assert messages[1].startswith("numba: fused kernels ready after 1.")
    assert len(messages) == 2


def test_an_interrupted_first_call_does_not_say_the_kernels_are_ready(name, caplog):
    import time

    ops = backends.get_backend(name, "float32")
    unseen = np.dtype("int16")
    ops._compiled.discard(unseen)

    def interrupted():
        time.sleep(1.2)
        raise KeyboardInterrupt  # Ctrl-C while Numba compiles

    with caplog.at_level("WARNING", logger="netcore"), pytest.raises(KeyboardInterrupt):
        ops._first_call_notice(unseen, interrupted)
    assert unseen not in ops._compiled  # the next call is a first call again
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith("numba: compiling the fused kernels"), messages


def test_read_only_inputs_reuse_the_compiled_kernel(name, tmp_path):
    """A memory-mapped or otherwise read-only X (np.load(mmap_mode="r"), np.frombuffer) must not
    cost a second compile of the fused kernel: it has the same numbers and the same signature."""
    from netcore.backends import numba_fused

    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, (40, 13)).astype(np.uint8)
    labels = rng.integers(0, 3, 40)
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    assert not mapped.flags.writeable
    net = MLP([13, 7, 3], "tanh", backend=name, dtype="float32", seed=0)
    loss, grads, _ = net.backend.loss_and_gradients(net.layers, *net.prepare(X, labels)[:2], net.activation, None, generic_loss_and_gradients)
    grads = [(dW.copy(), db.copy()) for dW, db in grads]
    before = len(numba_fused._parallel_pass.signatures), len(numba_fused._thread_pass.signatures)
    loss_ro, grads_ro, _ = net.backend.loss_and_gradients(net.layers, *net.prepare(mapped, labels)[:2], net.activation, None, generic_loss_and_gradients)
    assert (len(numba_fused._parallel_pass.signatures), len(numba_fused._thread_pass.signatures)) == before
    assert loss_ro == loss
    for (a, b), (c, d) in zip(grads, grads_ro):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
