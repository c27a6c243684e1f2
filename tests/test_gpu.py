"""GPU-only behaviour of the cupy backend: graph replay, no host synchronisation inside a step,
uint8 uploads, out-of-memory messages. Skipped with the reason where no CUDA device answers."""

from __future__ import annotations

import numpy as np
import pytest

from netcore import backends
from netcore import MLP, SGD, StepLR, Trainer

from .conftest import backend_params, make_data

pytestmark = pytest.mark.parametrize("name", backend_params(["cupy"]))


def separable(rng, n=300, d=20, k=4):
    X, y = make_data(rng, n, d, k)
    X[np.arange(n), y] += 2.0
    return X, y


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_graph_replay_equals_the_uncaptured_path(name, rng, momentum):
    """Also across a rate drop (recorded again: the momentum state made by the first recording
    must outlive it) and a second fit (new data arrays), reading every result on the host."""
    X, y = separable(rng)
    runs = []
    for graph in (False, True):
        net = MLP([20, 16, 16, 4], backend=name, dtype="float64", seed=2)
        trainer = Trainer(net, SGD(0.5, momentum=momentum), schedule=StepLR(0.5, 5, 0.2), graph=graph)
        trainer.fit(X, y, 8)
        history = trainer.fit(X, y, 12)
        runs.append((net.get_parameters(), history["loss"]))
    (p0, l0), (p1, l1) = runs
    np.testing.assert_allclose(l1, l0, rtol=1e-12)
    for (W, b), (V, c) in zip(p1, p0):
        np.testing.assert_allclose(W, V, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b, c, rtol=1e-12, atol=1e-14)


def test_a_replay_under_a_stream_of_the_callers_is_ordered_with_its_reads(name, rng):
    import cupy as cp

    X, y = separable(rng)
    net = MLP([20, 16, 4], backend=name, dtype="float32", seed=0)
    batch = net.prepare(X, y)
    ref = MLP([20, 16, 4], backend=name, dtype="float32", seed=0)
    ref_batch = ref.prepare(X, y)
    with cp.cuda.Stream(non_blocking=True):
        (loss, Z), replay = net.backend.capture(lambda: net.train_step(batch.X, batch.Y, 0.1))
        for _ in range(3):
            expect, expect_Z = ref.train_step(ref_batch.X, ref_batch.Y, 0.1)
            assert net.backend.to_float(loss) == pytest.approx(ref.backend.to_float(expect), rel=1e-5)
            np.testing.assert_allclose(net.backend.to_numpy(Z), ref.backend.to_numpy(expect_Z), rtol=1e-4, atol=1e-5)
            loss, Z = replay()


def test_a_step_never_synchronises_with_the_host(name, rng):
    import cupyx

    X, y = separable(rng)
    net = MLP([20, 16, 4], backend=name, dtype="float32", seed=0)
    batch = net.prepare(X, y)
    net.train_step(batch.X, batch.Y, 0.1)  # compile the kernels first
    with cupyx.allow_synchronize(False):
        loss, Z = net.train_step(batch.X, batch.Y, 0.1)
    assert np.isfinite(net.backend.to_float(loss))


def test_uint8_images_are_scaled_on_the_device(name, rng):
    X = rng.integers(0, 256, (7, 5)).astype(np.uint8)
    ops = backends.get_backend(name, "float32")
    np.testing.assert_allclose(ops.to_numpy(ops.input_array(X)), X / 255.0, rtol=1e-6)


def test_out_of_device_memory_says_how_much(name):
    ops = backends.get_backend(name, "float32")
    with pytest.raises(MemoryError, match=r"the GPU ran out of memory placing a test array \([\d,]+ MiB\) with [\d,]+ MiB free"):
        ops._device(lambda: ops.xp.empty(2**50, dtype=ops.xp.uint8), 2**50, "a test array")


def test_graph_needs_a_full_batch_sgd_setup(name):
    net = MLP([4, 3], backend=name)
    with pytest.raises(ValueError, match="graph=True is not possible here: .*full-batch steps only.*Adam's step size"):
        Trainer(net, "adam", batch_size=8, graph=True)
