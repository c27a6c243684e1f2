"""The GPU code's host-side logic, checked without a GPU through the stand-ins of gpu_standins.py:
the order CUDA runs a graph replay in relative to the host's reads, what the graph cache keeps
alive, restore() into a graph trainer, and the messages for a missing driver and out of memory."""

from __future__ import annotations

import gc
import importlib.util
import sys

import numpy as np
import pytest

from netcore.backends.cupy_backend import CupyBackend, _unavailable_reason
from netcore import MLP, SGD, StepLR, Trainer

from .conftest import make_data
from .gpu_standins import FakeCupy, FakeOutOfMemoryError, FreedMemoryError, TapeGraphBackend, cupy_backend_on, ordered_before

# -- stream ordering of CupyBackend.capture ------------------------------------------------------


def capture_on_fake(fake: FakeCupy):
    """Capture a step that launches one kernel, allocates a temporary and, on its first run, state
    to keep (as momentum does); returns the backend's (first, replay), the nodes and the state."""
    ops = cupy_backend_on(fake)
    state, runs = [], []

    def step():
        temporary = fake.allocate(1024)
        if not state:
            state.append(fake.allocate(64))
        runs.append(fake.launch(f"step {len(runs)}"))
        return temporary

    first, replay = ops.capture(step)
    return first, replay, runs, state


@pytest.mark.parametrize("user_stream", [False, True], ids=["default stream", "a stream of the caller's"])
def test_replays_are_ordered_with_the_host_reads(user_stream):
    fake = FakeCupy()
    stream = fake.cuda.Stream(non_blocking=True) if user_stream else fake.null
    with stream:
        upload = fake.launch("upload")
        _, replay, runs, _ = capture_on_fake(fake)
        first_step = runs[0]
        assert runs[1] is None  # the second run was recorded, not run
        read_first = fake.read()
        assert ordered_before(upload, first_step), "the first step must wait for uploads queued before it"
        assert ordered_before(first_step, read_first), "the host must read the first step's results after it"
        for i in range(3):
            queued = fake.launch(f"upload {i}")
            replay()
            launch = [n for n in fake.log if n.label == "graph replay"][-1]
            read = fake.read()
            assert ordered_before(queued, launch), "a replay must run after the work queued before it"
            assert ordered_before(launch, read), "the host's read must wait for the replay"


def test_capture_keeps_the_state_it_creates_out_of_the_private_pool_and_allocates_nothing_while_capturing():
    fake = FakeCupy()
    _, _, _, state = capture_on_fake(fake)
    (private,) = fake.pools
    assert state[0].pool is fake.default_pool, "state the step keeps must not live in the graph's pool"
    assert private.fresh_while_capturing == 0
    assert private.fresh >= 1  # the recording's temporaries come from it, allocated before the capture


def test_an_uncaptured_replay_stream_would_be_caught():
    """The stand-in itself: a graph launched on a stream of its own is not ordered with the host."""
    fake = FakeCupy()
    side = fake.cuda.Stream(non_blocking=True)
    side.begin_capture()
    graph = side.end_capture()
    graph.launch(side)
    assert not ordered_before(fake.log[-1], fake.read())


# -- the graph cache, with a tape that replays on the arrays it recorded ----------------------------


def separable(rng, n=60, d=8, k=3):
    X, y = make_data(rng, n, d, k)
    X[np.arange(n), y] += 2.0
    return X, y


def pair(momentum=0.0):
    """The same network twice: the plain step on NumPy, and the graph replay on the tape stand-in."""
    nets = [MLP([8, 6, 3], backend=b, dtype="float64", seed=3) for b in ("numpy", TapeGraphBackend())]
    schedule = StepLR(0.5, 5, 0.2)  # a rate drop after epoch 6: recorded again
    return [Trainer(net, SGD(0.5, momentum=momentum), schedule=schedule, graph=g) for net, g in zip(nets, (False, True))]


def assert_same(plain: Trainer, graph: Trainer) -> None:
    np.testing.assert_allclose(graph.history["loss"], plain.history["loss"], rtol=1e-12)
    for (W, b), (V, c) in zip(graph.net.get_parameters(), plain.net.get_parameters()):
        np.testing.assert_allclose(W, V, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b, c, rtol=1e-12, atol=1e-14)
    assert graph.optimizer.t == plain.optimizer.t


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_graph_replay_equals_the_plain_step(rng, momentum):
    X, y = separable(rng)
    plain, graph = pair(momentum)
    for t in (plain, graph):
        t.fit(X, y, 4)
        t.fit(X, y, 7)  # a second fit: new data arrays, a recording on them
    assert_same(plain, graph)


def test_replacing_one_bias_records_again(rng):
    X, y = separable(rng)
    trainers = pair()
    for t in trainers:
        t.fit(X, y, 3)
        W, b = t.net.layers[0]
        t.net.layers[0] = (W, b + 0.25)  # a new bias array; the weights are the same objects
        t.fit(X, y, 6)
    assert_same(*trainers)


def test_new_targets_record_again(rng):
    X, y = separable(rng)
    plain, graph = pair()
    data = graph.net.prepare(X, y)
    graph._graph_step(data, 0.5)
    other = data._replace(Y=graph.net.backend.one_hot((y + 1) % 3, 3))
    loss, _ = graph._graph_step(other, 0.5)
    ref = plain.net.prepare(X, y)
    plain.net.train_step(ref.X, ref.Y, 0.5)
    expect, _, _ = plain.net.loss_and_gradients(ref.X, plain.net.backend.one_hot((y + 1) % 3, 3))
    assert float(loss) == pytest.approx(float(expect), rel=1e-12)


def test_the_cache_keeps_alive_every_array_a_replay_runs_on(rng):
    X, y = separable(rng)
    _, trainer = pair(momentum=0.9)
    trainer.fit(X, y, 3)
    gc.collect()
    assert trainer.net.backend.dangling() == []
    trainer.fit(*separable(rng), 5)  # other data: recorded again, the first recording let go
    gc.collect()
    assert trainer.net.backend.dangling() == []


def test_the_tape_refuses_to_replay_onto_freed_arrays(rng):
    """The stand-in itself: a replay whose arrays were freed fails instead of running."""
    X, y = separable(rng)
    ops = TapeGraphBackend()
    net = MLP([8, 6, 3], backend=ops, dtype="float64", seed=3)
    batch = {"data": net.prepare(X, y)}
    _, replay = ops.capture(lambda: net.train_step(batch["data"].X, batch["data"].Y, 0.1))
    batch.clear()
    gc.collect()
    with pytest.raises(FreedMemoryError):
        replay()


def test_restore_checks_graph_limits_again(rng, tmp_path):
    X, y = separable(rng)
    path = tmp_path / "minibatch.npz"
    source = Trainer(MLP([8, 6, 3], backend="numpy", dtype="float64", seed=3), SGD(0.5), batch_size=16, seed=0)
    source.fit(X, y, 2)
    source.save(path)
    graph = Trainer(MLP([8, 6, 3], backend=TapeGraphBackend(), dtype="float64", seed=3), SGD(0.5), graph=True)
    with pytest.raises(ValueError, match=r"graph=True is not possible here: it replays full-batch steps only"):
        graph.restore(path)


def test_restore_of_a_full_batch_checkpoint_then_replays_on_the_restored_parameters(rng, tmp_path):
    X, y = separable(rng)
    path = tmp_path / "full.npz"
    plain, graph = pair()
    plain.fit(X, y, 3)
    plain.save(path)
    graph.fit(X, y, 2)  # a recording on the parameters the checkpoint replaces
    graph.restore(path)
    plain.fit(X, y, 6)
    graph.fit(X, y, 6)
    assert_same(plain, graph)


# -- messages: no driver, an old driver, out of memory during a step ---------------------------------


def test_no_driver_and_an_old_driver_say_different_things(monkeypatch):
    exc = RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version")
    none = _unavailable_reason(exc, FakeCupy(driver=0))
    assert none.startswith("no NVIDIA driver found") and "too old" not in none
    old = _unavailable_reason(exc, FakeCupy(driver=12020))
    assert old.startswith("the NVIDIA driver (it supports CUDA 12.2) is too old for CuPy 14.0.0 (built for CUDA 13)")
    # the whole check(), with the stand-in imported as cupy
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "cupy" else real(name, *a))
    monkeypatch.setitem(sys.modules, "cupy", FakeCupy(driver=0))
    assert CupyBackend.check().startswith("no NVIDIA driver found")


def test_out_of_memory_during_a_step_is_a_clear_error(rng):
    ops = cupy_backend_on(FakeCupy(free_mib=12, total_mib=143_771))
    X, y = separable(rng, n=20)

    def generic(*args):
        raise FakeOutOfMemoryError("Out of memory allocating 4,194,304 bytes (allocated so far: 0 bytes).")

    with pytest.raises(MemoryError) as err:
        ops.loss_and_gradients([], X, y, "tanh", None, generic)
    assert str(err.value).startswith(
        "the GPU ran out of memory during a training step on 20 samples (Out of memory allocating 4,194,304 bytes"
    )
    assert "with 12 MiB free of 143,771 MiB: use fewer samples, mini-batches" in str(err.value)
    with pytest.raises(MemoryError, match="during a training step on 5 samples"):
        ops.loss_and_gradients([], X, y, "tanh", np.arange(5), lambda *a: generic())


def test_out_of_memory_while_recording_is_a_clear_error():
    fake = FakeCupy()
    ops = cupy_backend_on(fake)

    def step():
        raise FakeOutOfMemoryError("Out of memory allocating 512 bytes")

    with pytest.raises(MemoryError, match=r"^the GPU ran out of memory recording a training step for graph replay \(Out of memory"):
        ops.capture(step)


# -- benchmarks.gpu_check, the script a GPU machine runs -----------------------------------------------


def test_gpu_check_documents_every_option(capsys):
    from benchmarks import gpu_check

    with pytest.raises(SystemExit):
        gpu_check.main(["--help"])
    text = capsys.readouterr().out
    for option in ("--out", "--samples", "--rounds", "--budget", "--test-timeout", "--skip-tests", "--skip-timings", "--skip-agreement"):
        assert option in text
    assert "$OUT" in text and "hypothesis" in text


def test_gpu_check_runs_the_tests_without_hypothesis_or_scikit_learn(monkeypatch, tmp_path):
    from benchmarks import gpu_check

    monkeypatch.setattr(gpu_check, "importable", lambda name: name not in ("hypothesis", "sklearn"))
    cmd, env, notes = gpu_check.test_command(tmp_path)
    assert str(tmp_path) in env["PYTHONPATH"].split(":") and (tmp_path / "hypothesis" / "strategies.py").exists()
    assert cmd[-2:] == ["-o", "filterwarnings=default"] and len(notes) == 2
    assert "NUMBA_ENABLE_CUDASIM" not in env
