"""The numba backend's sparse first layer against the generic path and the dense fused pass.

The compressed rows (``netcore.backends.numba_sparse_rows.SparseRows``) must give the float64 generic
path's loss, gradients and logits within float32 tolerance, and the dense pass's, on generated
images of every density from 0 to 100% (pen strokes, as handwriting has, and random pixels),
odd widths, every activation, one and two threads, whole batches and row subsets, chunk
boundaries crossed; the automatic choice must follow the measured density and say why.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netcore import backends
from benchmarks.sparse_data import strokes
from netcore import MLP, Trainer
from netcore.network import generic_loss_and_gradients

from .conftest import backend_params

pytestmark = pytest.mark.parametrize("name", backend_params(["numba"]))

REF = backends.get_backend("numpy", "float64")
TOL = {"float64": 1e-10, "float32": 2e-4}


def numba_net(sizes, activation="tanh", dtype="float32", first_layer="auto", seed=1):
    from netcore.backends.numba_backend import NumbaBackend

    return MLP(sizes, activation, backend=NumbaBackend(dtype, first_layer=first_layer), dtype=dtype, seed=seed)


def run(net, X, labels, rows=None):
    batch = net.prepare(X, labels)
    loss, grads, Z = net.backend.loss_and_gradients(net.layers, batch.X, batch.Y, net.activation, rows, generic_loss_and_gradients)
    return batch, float(loss), [(dW.copy(), db.copy()) for dW, db in grads], np.array(Z)


def assert_close(result, expected, dtype, what=""):
    loss, grads, Z = result
    ref_loss, ref_grads, ref_Z = expected
    tol = TOL[dtype]
    np.testing.assert_allclose(loss, ref_loss, rtol=tol, err_msg=f"loss {what}")
    np.testing.assert_allclose(Z, ref_Z, rtol=tol, atol=tol * max(np.abs(ref_Z).max(), 1), err_msg=f"logits {what}")
    for l, ((dW, db), (rW, rb)) in enumerate(zip(grads, ref_grads), start=1):
        # a gradient that is exactly 0 in float64 (zero inputs, balanced labels) comes out of the
        # other dtype as rounding of its O(1) terms, probabilities minus targets (1.5e-8 seen in
        # float32): the floor covers that, far below any real error
        scale = max(np.abs(rW).max(), np.abs(rb).max(), 1e-3)
        np.testing.assert_allclose(dW, rW, rtol=tol, atol=tol * scale, err_msg=f"dW{l} {what}")
        np.testing.assert_allclose(db, rb, rtol=tol, atol=tol * scale, err_msg=f"db{l} {what}")


def reference(net, X, labels, rows):
    """The float64 generic path on the same rows."""
    Xf = X / 255.0 if X.dtype == np.uint8 else np.asarray(X, np.float64)
    layers = [(REF.asarray(W), REF.asarray(b)) for W, b in net.get_parameters()]
    Y = REF.one_hot(labels, net.n_classes)
    if rows is not None:
        Xf, Y = Xf[rows], Y[rows]
    return generic_loss_and_gradients(REF, layers, Xf, Y, net.activation)


def images(n, d, density, seed, kind="uint8"):
    X = strokes(n, d, density, seed)
    if kind == "float":  # the same pattern of zeros, other values (and signs)
        rng = np.random.default_rng(seed)
        X = np.where(X != 0, rng.standard_normal(X.shape) * 2, 0.0)
    return X


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(request.param, numba.config.NUMBA_NUM_THREADS))
    yield request.param
    numba.set_num_threads(before)


@pytest.fixture(params=[None, 16], ids=["default-chunk", "16-row-chunks"])
def chunk_rows(request, monkeypatch):
    """Small chunks, so small tests cross chunk boundaries (16: the sparse pass's smallest)."""
    if request.param is not None:
        from netcore.backends import numba_sparse_path

        monkeypatch.setattr(numba_sparse_path, "CHUNK", request.param)
    return request.param


NETWORKS = [
    ([784, 16, 16, 10], "tanh"), ([13, 7, 5, 3], "relu"), ([40, 37, 3], "sigmoid"), ([6, 9, 2], "sigmoid"), ([5, 4], "tanh"),
    ([30, 33, 17, 4], "relu"), ([50, 100, 10], "relu"), ([20, 70, 3], "tanh"),  # 100, 70: four blocks of 16 at once, then one
]


@pytest.mark.parametrize("density", [0.0, 0.03, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("sizes,activation", NETWORKS, ids=["-".join(map(str, s)) + f"-{a}" for s, a in NETWORKS])
def test_sparse_matches_generic_and_dense(name, threads, chunk_rows, density, sizes, activation):
    n = 61  # not a multiple of the 4-nonzero steps, the 16-sample blocks or the chunks
    X = images(n, sizes[0], density, seed=len(sizes) + int(100 * density))
    labels = np.random.default_rng(n).integers(0, sizes[-1], n)
    sparse, dense = numba_net(sizes, activation, first_layer="sparse"), numba_net(sizes, activation, first_layer="dense")
    rows = np.random.default_rng(1).permutation(n)[:37]
    for subset in (None, rows):
        batch, *got = run(sparse, X, labels, subset)
        assert type(batch.X).__name__ == "SparseRows"
        assert_close(got, reference(sparse, X, labels, subset), "float32", "vs generic")
        assert_close(got, run(dense, X, labels, subset)[1:], "float32", "vs dense")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["uint8", "float"])
def test_sparse_matches_generic_in_both_dtypes_and_input_kinds(name, threads, dtype, kind):
    sizes = [50, 19, 7, 3]
    X = images(83, sizes[0], 0.25, seed=5, kind=kind)
    labels = np.arange(83) % 3
    net = numba_net(sizes, "tanh", dtype=dtype, first_layer="sparse")
    for rows in (None, np.arange(83)[::-2].copy(), np.array([4, 4, 9])):  # reversed, repeated rows
        batch, *got = run(net, X, labels, rows)
        assert batch.X.dtype == (np.uint8 if kind == "uint8" else np.dtype(dtype))  # uint8 kept as uint8
        assert_close(got, reference(net, X, labels, rows), dtype)


@settings(max_examples=25, deadline=None)
@given(
    widths=st.lists(st.integers(1, 150), min_size=2, max_size=4),
    n=st.integers(1, 70),
    density=st.floats(0, 1),
    activation=st.sampled_from(list(backends.ACTIVATIONS)),
    subset=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_sparse_matches_generic_on_random_networks(name, widths, n, density, activation, subset, seed):
    widths[-1] = max(widths[-1], 2)  # the output layer needs two classes
    rng = np.random.default_rng(seed)
    X = images(n, widths[0], density, seed)
    labels = rng.integers(0, widths[-1], n)
    rows = rng.integers(0, n, max(1, n // 2)) if subset else None
    net = numba_net(widths, activation, first_layer="sparse", seed=seed)
    assert_close(run(net, X, labels, rows)[1:], reference(net, X, labels, rows), "float32")


@pytest.mark.parametrize("n", [61, 5])
def test_reused_buffers_carry_nothing_over(name, threads, chunk_rows, n):
    """A second batch of the same shape reuses the first one's buffers; its results are its own."""
    X = images(2 * n, 20, 0.3, seed=n)
    labels = np.random.default_rng(n).integers(0, 3, 2 * n)
    net = numba_net([20, 6, 5, 3], "tanh", first_layer="sparse", seed=2)
    run(net, X, labels, np.arange(n))
    second = np.arange(n, 2 * n)
    assert_close(run(net, X, labels, second)[1:], reference(net, X, labels, second), "float32")


def test_training_takes_the_same_steps_on_either_path(name):
    """Whole fits, full batch and shuffled mini-batches: the same history on either path."""
    X = images(300, 64, 0.15, seed=3)
    y = np.random.default_rng(3).integers(0, 4, 300)
    for batch_size in (None, 32):
        histories = []
        for path in ("sparse", "dense"):
            net = numba_net([64, 12, 4], "relu", first_layer=path, seed=4)
            trainer = Trainer(net, "sgd", lr=0.5, batch_size=batch_size, seed=0)
            histories.append(trainer.fit(X, y, epochs=3, validation_data=(X[:50], y[:50])))
            assert net.backend.first_layer_path(net.prepare(X).X)[0] == path
        (a, b) = histories
        np.testing.assert_allclose([e.loss for e in a.epochs], [e.loss for e in b.epochs], rtol=1e-4)
        np.testing.assert_allclose([e.val_loss for e in a.epochs], [e.val_loss for e in b.epochs], rtol=1e-4)


def test_prediction_and_the_op_by_op_products_on_compressed_rows(name):
    X = images(45, 30, 0.2, seed=8)
    y = np.arange(45) % 3
    sparse, dense = numba_net([30, 20, 3], first_layer="sparse"), numba_net([30, 20, 3], first_layer="dense")
    np.testing.assert_allclose(sparse.predict_proba(X), dense.predict_proba(X), rtol=1e-5, atol=1e-7)
    assert (sparse.predict(X) == dense.predict(X)).all()
    ops = sparse.backend
    S = sparse.prepare(X).X
    W = np.random.default_rng(0).standard_normal((20, 30)).astype(np.float32)
    A = np.random.default_rng(1).standard_normal((45, 20)).astype(np.float32)
    np.testing.assert_allclose(ops.matmul_nt(S, W), (X / 255) @ W.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ops.matmul_tn(A, S), A.T @ (X / 255), rtol=1e-5, atol=1e-5)
    # the generic forward/backward runs on compressed rows too (and agrees with the fused pass)
    batch = sparse.prepare(X, y)
    assert_close(generic_loss_and_gradients(ops, sparse.layers, batch.X, batch.Y, "tanh"), reference(sparse, X, y, None), "float32")


@pytest.mark.parametrize("kind", ["uint8", "float"])
def test_every_count_of_nonzeros_a_row_can_end_on(name, threads, kind):
    """Rows of 0 to 20 nonzeros (random columns), each count twice: the products go 4 and 8
    nonzeros at a time and then one by one, so every remainder of 4 and 8 is taken."""
    rng = np.random.default_rng(5)
    n, d = 42, 30
    X = np.zeros((n, d), np.uint8 if kind == "uint8" else np.float32)
    for i in range(n):
        cols = rng.choice(d, i % 21, replace=False)
        X[i, cols] = rng.integers(1, 256, len(cols)) if kind == "uint8" else rng.standard_normal(len(cols))
    labels = np.arange(n) % 3
    sparse, dense = numba_net([d, 20, 3], first_layer="sparse"), numba_net([d, 20, 3], first_layer="dense")
    for subset in (None, rng.permutation(n)[:29]):
        assert_close(run(sparse, X, labels, subset)[1:], reference(sparse, X, labels, subset), "float32", "vs generic")
        assert_close(run(sparse, X, labels, subset)[1:], run(dense, X, labels, subset)[1:], "float32", "vs dense")
    S = sparse.prepare(X).X
    Xf = X / 255 if kind == "uint8" else X
    W = rng.standard_normal((20, d)).astype(np.float32)
    A = rng.standard_normal((n, 20)).astype(np.float32)
    np.testing.assert_allclose(sparse.backend.matmul_nt(S, W), Xf @ W.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sparse.backend.matmul_tn(A, S), A.T @ Xf, rtol=1e-5, atol=1e-4)


# -- the compressed form ---------------------------------------------------------------------


def test_the_compressed_form_keeps_uint8_and_narrow_columns(name):
    from netcore.backends.numba_sparse_rows import SparseRows

    X = images(100, 784, 0.19, seed=0)
    S = SparseRows.from_dense(X)
    assert (S.values.dtype, S.indices.dtype, S.indptr.dtype) == (np.uint8, np.uint16, np.int64)
    assert S.nnz == np.count_nonzero(X) and S.nbytes == 3 * S.nnz + 8 * 101
    assert S.density == pytest.approx(np.count_nonzero(X) / X.size)
    np.testing.assert_array_equal(S.to_dense(), X)
    wide = np.zeros((3, 70_000), np.float32)
    wide[1, 69_999] = 2.5
    W = SparseRows.from_dense(wide)
    assert W.indices.dtype == np.int32 and W.indices.tolist() == [69_999] and W.indptr.tolist() == [0, 0, 1, 1]


def test_all_zero_rows_and_an_all_zero_batch(name, threads):
    X = images(40, 25, 0.2, seed=2)
    X[::3] = 0
    labels = np.arange(40) % 2
    net = numba_net([25, 6, 2], first_layer="sparse")
    assert_close(run(net, X, labels)[1:], reference(net, X, labels, None), "float32")
    zero = np.zeros_like(X)
    batch, *got = run(net, zero, labels)
    assert batch.X.nnz == 0
    assert_close(got, reference(net, zero, labels, None), "float32")


# -- the choice ------------------------------------------------------------------------------


def test_auto_takes_the_sparse_path_below_the_measured_density_and_says_why(name):
    from netcore.backends.numba_sparse_choice import sparse_below
    from netcore.backends.numba_sparse_rows import SparseRows

    net = numba_net([784, 16, 10])
    n = 2000
    threshold = sparse_below(16, "float32", n)
    below, above = images(n, 784, threshold * 0.7, seed=1), images(n, 784, min(1, threshold * 1.4), seed=1)
    assert np.count_nonzero(below) / below.size < threshold <= np.count_nonzero(above) / above.size
    S = net.prepare(below).X
    assert isinstance(S, SparseRows)
    path, reason = net.backend.first_layer_path(S)
    assert path == "sparse" and reason.startswith("auto: ") and f"below the {threshold:.0%}" in reason
    assert "first layer of 16 neurons in batches of 2,000 (float32)" in reason
    D = net.prepare(above).X
    assert isinstance(D, np.ndarray) and D.dtype == np.uint8
    path, reason = net.backend.first_layer_path(D)
    assert path == "dense" and reason.startswith("auto: ") and "at or above" in reason
    # mini-batches: a lower crossover, which the trainer's batch size reaches prepare with
    assert sparse_below(16, "float32", n, batch_size=32) < threshold
    between = images(n, 784, sparse_below(16, "float32", n, batch_size=32) * 1.3, seed=2)
    assert isinstance(net.prepare(between).X, SparseRows)
    assert isinstance(net.prepare(between, batch_size=32).X, np.ndarray)
    assert "in batches of 32" in net.backend.first_layer_path(net.prepare(between, batch_size=32).X)[1]
    assert "first layer" in net.backend.describe()
    # the same answer before preparing (what netcore train prints), without compressing anything
    assert net.backend.first_layer_choice(below, net.layer_sizes) == net.backend.first_layer_path(S)
    assert net.backend.first_layer_choice(above, net.layer_sizes) == net.backend.first_layer_path(D)
    assert net.backend.first_layer_choice(between, net.layer_sizes, 32) == net.backend.first_layer_path(net.prepare(between, batch_size=32).X)
    # without a network to choose for, input_array leaves dense arrays dense
    plain = net.backend.input_array(below)
    assert isinstance(plain, np.ndarray)
    assert net.backend.first_layer_path(plain) == ("dense", "auto: prepared without a network to choose for")


def test_the_measured_rule_follows_the_costs(name):
    """Narrower than a whole vector of 16 lanes costs the sparse pass as much as 16 (not the dense
    pass); a step's fixed costs and shuffled rows weigh on it; float64 pays less."""
    from netcore.backends.numba_sparse_choice import MINI_BATCH, sparse_below

    full = sparse_below(16, "float32", 60_000)
    assert sparse_below(10, "float32", 60_000) == pytest.approx(full * 10 / 16)
    assert sparse_below(4, "float32", 60_000) < sparse_below(8, "float32", 60_000) < full
    assert sparse_below(512, "float32", 60_000) < sparse_below(64, "float32", 60_000) < full
    assert sparse_below(16, "float64", 60_000) < full
    assert sparse_below(16, "float32", 60_000, 200) == pytest.approx(full * MINI_BATCH[200])
    assert sparse_below(16, "float32", 60_000, 32) < sparse_below(16, "float32", 60_000, 64) < sparse_below(16, "float32", 60_000, 200)
    assert sparse_below(16, "float32", 100) < full  # a small whole batch: its fixed costs weigh


def test_either_path_can_be_forced(name):
    from netcore.backends.numba_sparse_rows import SparseRows

    dense_data, sparse_data = images(20, 30, 1.0, seed=0), images(20, 30, 0.05, seed=0)
    forced_sparse = numba_net([30, 4, 2], first_layer="sparse")
    forced_dense = numba_net([30, 4, 2], first_layer="dense")
    assert isinstance(forced_sparse.prepare(dense_data).X, SparseRows)
    assert forced_sparse.backend.first_layer_path(forced_sparse.prepare(dense_data).X) == ("sparse", "forced: first_layer='sparse'")
    assert isinstance(forced_dense.prepare(sparse_data).X, np.ndarray)
    assert forced_dense.backend.first_layer_path(forced_dense.prepare(sparse_data).X) == ("dense", "forced: first_layer='dense'")
    assert forced_sparse.backend.first_layer_choice(dense_data, [30, 4, 2]) == ("sparse", "forced: first_layer='sparse'")
    assert forced_dense.backend.first_layer_choice(sparse_data, [30, 4, 2]) == ("dense", "forced: first_layer='dense'")
    assert forced_sparse.backend.first_layer_policy() == "sparse (forced: first_layer='sparse')"
    assert forced_dense.backend.describe()["first layer"] == "dense (forced: first_layer='dense')"


def test_trainer_prepares_for_its_batch_size(name):
    from netcore.backends.numba_sparse_choice import sparse_below

    n = 2000
    X = images(n, 64, sparse_below(16, "float32", n, batch_size=32) * 1.3, seed=3)
    y = np.arange(n) % 4
    seen = []
    net = numba_net([64, 16, 4])
    prepare = net.prepare
    net.prepare = lambda *a, **k: seen.append(k.get("batch_size")) or prepare(*a, **k)
    Trainer(net, lr=0.1, batch_size=32).fit(X, y, epochs=1)
    assert seen == [32]


def test_an_unknown_first_layer_is_refused_with_the_choices(name):
    from netcore.backends.numba_backend import NumbaBackend

    with pytest.raises(ValueError, match="unknown first_layer 'spares'; choose one of auto, sparse, dense"):
        NumbaBackend("float32", first_layer="spares")


def test_other_backends_have_one_path(name):
    ops = backends.get_backend("numpy", "float32")
    assert ops.first_layer_path(np.zeros((2, 3))) == ("dense", "the numpy backend has one first-layer path")
    assert ops.first_layer_choice(np.zeros((2, 3)), [3, 4, 2]) == ("dense", "the numpy backend has one first-layer path")
    assert ops.first_layer_policy() == "dense (the numpy backend has one first-layer path)"


# -- SciPy CSR input ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_csr_input_is_taken_as_it_is(name, threads, dtype):
    sp = pytest.importorskip("scipy.sparse")
    X = images(70, 40, 0.2, seed=4, kind="float")
    labels = np.arange(70) % 3
    csr = sp.csr_matrix(X.astype(dtype))
    net = numba_net([40, 9, 3], "tanh", dtype=dtype)
    S = net.backend.input_array(csr)
    assert type(S).__name__ == "SparseRows" and S.reason.startswith("the input is a SciPy CSR matrix")
    assert S.values is csr.data and S.indices is csr.indices  # not copied, not densified
    Y = net.backend.one_hot(labels, 3)
    for rows in (None, np.arange(0, 70, 3)):
        loss, grads, Z = net.backend.loss_and_gradients(net.layers, S, Y, "tanh", rows, generic_loss_and_gradients)
        assert_close((float(loss), grads, np.array(Z)), reference(net, X, labels, rows), dtype)


def test_csr_with_unsorted_and_repeated_columns_and_other_dtypes(name):
    """Duplicates add up (as SciPy's products read them); float64 data for a float32 network is
    converted (the data only); forcing the dense path densifies."""
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(6)
    n, d = 30, 12
    rows = np.repeat(np.arange(n), 5)
    cols = rng.integers(0, d, rows.size)  # repeats within a row, in no order
    data = rng.standard_normal(rows.size)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    csr = sp.csr_matrix((data, cols.astype(np.int32), indptr), shape=(n, d))
    assert not csr.has_canonical_format
    X = csr.toarray()  # duplicates summed
    labels = np.arange(n) % 2
    net = numba_net([d, 5, 2], "relu")
    S = net.backend.input_array(csr)
    assert S.values.dtype == np.float32 and S.indices is csr.indices
    Y = net.backend.one_hot(labels, 2)
    loss, grads, Z = net.backend.loss_and_gradients(net.layers, S, Y, "relu", None, generic_loss_and_gradients)
    assert_close((float(loss), grads, np.array(Z)), reference(net, X, labels, None), "float32")
    dense = numba_net([d, 5, 2], "relu", first_layer="dense")
    D = dense.backend.input_array(csr)
    assert isinstance(D, np.ndarray)
    np.testing.assert_allclose(D, X.astype(np.float32))
    # what netcore train prints before preparing: CSR (or another SciPy format) stays sparse unless dense is forced
    assert net.backend.first_layer_choice(csr, net.layer_sizes) == ("sparse", "the input is a SciPy CSR matrix, taken as it is")
    assert net.backend.first_layer_choice(csr.tocoo(), net.layer_sizes) == net.backend.first_layer_path(net.prepare(csr.tocoo()).X)
    assert dense.backend.first_layer_choice(csr, dense.layer_sizes) == ("dense", "forced: first_layer='dense'")
    assert dense.backend.first_layer_path(dense.prepare(csr).X) == dense.backend.first_layer_choice(csr, dense.layer_sizes)
