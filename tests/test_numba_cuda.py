"""The numba-cuda backend's kernels, on tiny shapes: on a GPU where there is one, otherwise on
Numba's CUDA simulator (set up in conftest.py), so CI checks the kernel logic without a GPU."""

from __future__ import annotations

import numpy as np
import pytest

import backends
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
