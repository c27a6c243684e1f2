"""The numba-cuda backend's kernels, on tiny shapes: on a GPU where there is one, otherwise on
Numba's CUDA simulator (set up in conftest.py), so CI checks the kernel logic without a GPU."""

from __future__ import annotations

import numpy as np
import pytest

from netcore import backends
from netcore import MLP, Adam, Trainer

from .conftest import backend_params, make_data
from .test_ops import check_ops

pytestmark = pytest.mark.parametrize("name", backend_params(["numba-cuda"]))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 3, 2), (9, 7, 4)], ids=lambda s: "x".join(map(str, s)))
def test_every_op_matches_numpy_float64(name, dtype, shape):
    check_ops(backends.get_backend(name, dtype), *shape, seed=sum(shape))


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 1e-4)])
def test_training_steps_agree_with_numpy_float64(name, rng, dtype, rtol):
    X, y = make_data(rng, 9, 5, 3)
    X = (X * 255).astype(np.uint8)  # uint8 images, uploaded once and scaled on the device
    results = []
    for backend, dt in (("numpy", "float64"), (name, dtype)):
        net = MLP([5, 4, 3], "tanh", backend=backend, dtype=dt, seed=0)
        Trainer(net, Adam(0.05), batch_size=4, seed=1).fit(X, y, 3)
        results.append(net.get_parameters())
    for (W, b), (V, c) in zip(results[1], results[0]):
        np.testing.assert_allclose(W, V, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(b, c, rtol=rtol, atol=rtol)


def test_loss_and_gradients_stay_on_the_device(name, rng):
    X, y = make_data(rng, 6, 4, 3)
    net = MLP([4, 3], backend=name, dtype="float64", seed=0)
    batch = net.prepare(X, y)
    loss, grads, Z = net.loss_and_gradients(batch.X, batch.Y)
    assert all(hasattr(a, "copy_to_host") for a in (loss, Z, grads[0][0], grads[0][1]))
    assert net.backend.to_float(loss) == pytest.approx(MLP([4, 3], backend="numpy", dtype="float64", seed=0).loss(X, y), rel=1e-12)


class _Recorder:
    """Stands for a kernel: notes the arguments of every launch, then launches the real one."""

    def __init__(self, name, kernel, seen):
        self.name, self.kernel, self.seen = name, kernel, seen

    def __getitem__(self, config):
        def launch(*args):
            self.seen.append((self.name, args))
            return self.kernel[config](*args)

        return launch


def _matches(arg, expected) -> bool:
    from numba import from_dtype, types

    if hasattr(expected, "ndim"):  # an array type
        return (hasattr(arg, "copy_to_host") and arg.ndim == expected.ndim and from_dtype(arg.dtype) == expected.dtype
                and (expected.layout != "C" or arg.is_c_contiguous()))
    if isinstance(arg, (bool, np.bool_)):
        return expected == types.boolean
    if isinstance(arg, int):
        return expected == types.int64
    return isinstance(arg, np.generic) and from_dtype(arg.dtype) == expected


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_launch_has_the_types_the_ptx_check_compiles(name, rng, dtype, monkeypatch):
    """The PTX compile check (test_cuda_sources.py) compiles each kernel with the types listed in
    numba_cuda_kernels.signatures; every launch the backend makes must have exactly those types
    (a Python float, say, would compile a float32 kernel in double precision)."""
    from types import SimpleNamespace

    from netcore.backends import numba_cuda_kernels

    ops = backends.get_backend(name, dtype)
    seen: list = []
    recorded = SimpleNamespace(**{k: _Recorder(k, v, seen) for k, v in vars(ops.k).items()})
    monkeypatch.setattr(ops, "_k", recorded)
    check_ops(ops, 5, 3, 2, seed=1)
    X = ops.input_array(rng.integers(0, 256, (4, 3)).astype(np.uint8))
    rows = ops.take_rows(X, np.array([2, 0]))
    m, v = ops.zeros_like(rows), ops.zeros_like(rows)
    ops.adam_update(rows, ops.copy(rows), m, v, 0.1, 0.9, 0.999, 1e-8)
    signatures = numba_cuda_kernels.signatures(dtype)
    assert {k for k, _ in seen} == set(signatures), "every kernel launched at least once"
    wrong = sorted({(k, i) for k, args in seen for i, (a, t) in enumerate(zip(args, signatures[k])) if not _matches(a, t)})
    assert wrong == []
    assert all(len(args) == len(signatures[k]) for k, args in seen)


# The simulator runs the tile's idle threads on NumPy scalars too: 0 * inf there warns, unused.
@pytest.mark.filterwarnings("ignore:invalid value encountered in scalar multiply:RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_relu_of_minus_infinity_is_zero_and_nan_stays_nan(name, dtype):
    ops = backends.get_backend(name, dtype)
    z = np.array([[-np.inf, -1.0, 0.0, 2.5, np.nan, np.inf]])
    expect = np.maximum(z, 0)  # NumPy's: [0, 0, 0, 2.5, nan, inf]
    np.testing.assert_array_equal(ops.to_numpy(ops.activation(ops.asarray(z), "relu")), expect)
    dense = ops.dense(ops.asarray(np.ones((1, 1))), ops.asarray(z.T.copy()), ops.asarray(np.zeros(6)), "relu")  # 1 @ z + 0
    np.testing.assert_array_equal(ops.to_numpy(dense), expect)


def test_matrix_product_grids_stay_within_cuda_limits(name, monkeypatch):
    from netcore.backends import numba_cuda_kernels as m

    rows, cols = m.gemm_grid(2_000_000, 16)
    assert rows == -(-2_000_000 // m.TILE) and cols == -(-16 // m.TILE)  # rows on x: up to 2**31 - 1 blocks
    assert m.gemm_grid(8, 16 * 70_000)[1] == 65_535
    # Fewer column blocks than column tiles: each block loops over the tiles it is given.
    monkeypatch.setattr(m, "MAX_GRID_Y", 1)
    ops = backends.get_backend(name, "float64")
    a, w = np.random.default_rng(0).standard_normal((2, 9, 7))[0], np.random.default_rng(1).standard_normal((11, 7))
    np.testing.assert_allclose(ops.to_numpy(ops.matmul_nt(ops.asarray(a), ops.asarray(w))), a @ w.T, rtol=1e-12)
