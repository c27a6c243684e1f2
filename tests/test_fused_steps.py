"""Consecutive fused steps on one numba backend: what a step keeps from the last one (the
workspace, the gradient's views, the first weights it last found placed right) must never give
a later step stale numbers."""

from __future__ import annotations

import numpy as np
import pytest

from netcore import MLP
from netcore.network import generic_loss_and_gradients

from .conftest import backend_params
from .test_fused import assert_close, reference

pytest.importorskip("netcore.backends.numba_isa")

pytestmark = pytest.mark.parametrize("name", backend_params(["numba"]))


def step(net, batch, rows):
    return net.backend.loss_and_gradients(net.layers, batch.X, batch.Y, net.activation, rows, generic_loss_and_gradients)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_first_weights_changed_or_replaced_between_steps(name, dtype):
    """W¹ changed in place, replaced by an aligned array, then by a misaligned one (not on a
    cache line, so the step places a copy): every step is the reference's on the weights of
    that moment."""
    rng = np.random.default_rng(5)
    X, labels = rng.integers(0, 256, (60, 23)).astype(np.uint8), rng.integers(0, 3, 60)
    net = MLP([23, 12, 3], "tanh", backend=name, dtype=dtype, seed=2)
    batch, rows = net.prepare(X, labels), rng.permutation(60)[:40]
    assert_close(net, step(net, batch, rows), reference(net, X, labels, rows))
    W1, b1 = net.layers[0]
    W1 *= 0.5  # the same array, new values
    assert_close(net, step(net, batch, rows), reference(net, X, labels, rows))
    net.layers[0] = (net.backend.asparameter(rng.standard_normal(W1.shape)), b1)
    assert_close(net, step(net, batch, rows), reference(net, X, labels, rows))
    raw = np.empty(W1.size + 1, dtype)[1:].reshape(W1.shape)  # one element past an allocation: off the line
    raw[...] = rng.standard_normal(W1.shape)
    assert raw.ctypes.data % 64 != 0
    net.layers[0] = (raw, b1)
    assert_close(net, step(net, batch, rows), reference(net, X, labels, rows))


def test_gradients_come_in_a_new_list_over_the_same_buffers(name):
    """Each step returns its own list (changing one does not change the next), of views of the
    buffers every step of the shape writes (as the contract allows)."""
    rng = np.random.default_rng(6)
    X, labels = rng.standard_normal((50, 9)), rng.integers(0, 4, 50)
    net = MLP([9, 7, 5, 4], "relu", backend=name, dtype="float64", seed=3)
    batch = net.prepare(X, labels)
    _, first, _ = step(net, batch, np.arange(25))
    first[0] = None
    got = step(net, batch, np.arange(25, 50))  # as many rows: the same workspace
    assert got[1] is not first and got[1][0] is not None
    assert all(np.shares_memory(a, b) for (a, _), (b, _) in zip(got[1][1:], first[1:]))
    assert_close(net, got, reference(net, X, labels, np.arange(25, 50)))
