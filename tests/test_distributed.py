"""Data-parallel training on a Dask LocalCluster: same numbers as one process, a worker killed
mid-run, an unreachable scheduler, data read by the workers themselves."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'netcore[dask]')")

from netcore import MLP, SGD, Trainer  # noqa: E402
from netcore.datasets import write_idx  # noqa: E402
from netcore.distributed import DistributedTrainer, connect, dask_array_partitions, idx_partitions, npy_partitions, shard_to_npy  # noqa: E402

from .conftest import make_data  # noqa: E402

SIZES = [12, 8, 6, 3]


@pytest.fixture(scope="module")
def client():
    c = connect(workers=2)
    yield c
    cluster = c.cluster
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X, y = make_data(rng, 150, 12, 3)
    X = (X * 255).astype(np.uint8)
    X[np.arange(150), y * 4] = 255
    return X, y


def single_process(X, y, epochs, batch_size=None, seed=3):
    net = MLP(SIZES, backend="numpy", dtype="float64", seed=1)
    Trainer(net, SGD(0.5), batch_size=batch_size, seed=seed).fit(X, y, epochs)
    return net


def assert_same(a, b, rtol=1e-10):
    for (W, c), (V, d) in zip(a.get_parameters(), b.get_parameters()):
        np.testing.assert_allclose(W, V, rtol=rtol, atol=1e-12)
        np.testing.assert_allclose(c, d, rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("batch_size", [None, 32], ids=["full-batch", "mini-batch"])
def test_matches_one_process_with_workers_reading_npy_shards(client, data, tmp_path, batch_size):
    X, y = data
    xp, yp = shard_to_npy(X, y, str(tmp_path))
    net = MLP(SIZES, backend="numpy", dtype="float64", seed=1)
    with DistributedTrainer(net, client, npy_partitions(xp, yp, 3), SGD(0.5), batch_size=batch_size, seed=3) as trainer:
        history = trainer.fit(4)

    def shards_held(dask_worker):  # runs on each worker (a nested function travels by value)
        return len(dask_worker.state.actors)

    deadline = time.monotonic() + 10
    while set(client.run(shards_held).values()) != {0} and time.monotonic() < deadline:
        time.sleep(0.05)  # releasing an actor's future reaches its worker asynchronously
    assert set(client.run(shards_held).values()) == {0}  # close() released the shards
    reference = single_process(X, y, 4, batch_size)
    assert_same(net, reference)
    assert len(history) == 4 and len(trainer.comm_seconds) == 4
    np.testing.assert_allclose(history["loss"][-1], Trainer(reference).evaluate(X, y)["loss"], rtol=0.5)  # same scale


def test_workers_read_their_rows_of_idx_files(client, data, tmp_path):
    X, y = data
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", X.reshape(-1, 3, 4))
    write_idx(tmp_path / "train-labels-idx1-ubyte", y.astype(np.uint8))
    parts = idx_partitions(str(tmp_path / "train-images-idx3-ubyte.gz"), str(tmp_path / "train-labels-idx1-ubyte"), 4)
    assert [(p.start, p.stop) for p in parts] == [(0, 38), (38, 75), (75, 112), (112, 150)]
    np.testing.assert_array_equal(parts[1].load()[0], X[38:75])
    net = MLP(SIZES, backend="numpy", dtype="float64", seed=1)
    DistributedTrainer(net, client, parts, SGD(0.5), worker_backend="numba").fit(3)
    assert_same(net, single_process(X, y, 3), rtol=1e-9)  # numba on the workers, numpy here


def test_dask_array_input(client, data):
    import dask.array as da

    X, y = data
    net = MLP(SIZES, backend="numpy", dtype="float64", seed=1)
    DistributedTrainer(net, client, dask_array_partitions(da.from_array(X, chunks=(50, 12)), da.from_array(y, chunks=50)), SGD(0.5)).fit(2)
    assert_same(net, single_process(X, y, 2))


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_replaced_and_the_result_is_the_same(client, data, tmp_path):
    X, y = data
    xp, yp = shard_to_npy(X, y, str(tmp_path))
    net = MLP(SIZES, backend="numpy", dtype="float64", seed=1)
    killed = []

    class KillAWorker:
        def on_epoch_end(self, trainer, log):
            if log.epoch == 2:
                victim = sorted(client.scheduler_info()["workers"])[0]
                pid = client.run(os.getpid, workers=[victim])[victim]
                os.kill(pid, signal.SIGKILL)  # the worker process dies without any cleanup
                killed.append(victim)

    DistributedTrainer(net, client, npy_partitions(xp, yp, 2), SGD(0.5)).fit(5, callbacks=[KillAWorker()])
    assert killed
    assert_same(net, single_process(X, y, 5))
    deadline = time.monotonic() + 30
    while len(client.scheduler_info()["workers"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)  # leave the module's cluster whole again


def test_unreachable_scheduler_is_a_clear_error_not_a_hang():
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match=r"could not reach the Dask scheduler at tcp://127.0.0.1:9 within 2 s .*is it running"):
        connect("tcp://127.0.0.1:9", timeout=2)
    assert time.perf_counter() - start < 15


def test_cli_trains_on_a_local_cluster(tmp_path, data, capsys):
    from netcore.cli import main

    X, y = data
    big = np.repeat(X, 1, axis=0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.pad(big, ((0, 0), (0, 784 - 12))).reshape(-1, 28, 28))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y.astype(np.uint8))
    assert main(["train", "--workers", "2", "--data", str(tmp_path), "--epochs", "2", "--backend", "numpy", "--hidden", "8"]) == 0
    out = capsys.readouterr().out
    assert "data-parallel on a local cluster of 2 single-threaded workers" in out
    assert "epoch 2/2" in out and "communication and scheduling" in out


def test_the_trainers_loop_serves_the_workers_too(client, data, tmp_path, capsys):
    """Validation, early stopping, the progress bar, checkpoints and resuming, and divergence: the
    Trainer's, with gradients from the workers."""
    import sys

    from netcore import EarlyStopping, ModelCheckpoint, ProgressBar, TrainingDivergedError

    X, y = data
    xp, yp = shard_to_npy(X, y, str(tmp_path))
    path = str(tmp_path / "run.npz")
    net = MLP(SIZES, backend="numpy", dtype="float64", seed=1)
    stop = EarlyStopping("val_loss", patience=1, min_delta=10.0)  # nothing improves by 10: stops after 2 epochs
    with DistributedTrainer(net, client, npy_partitions(xp, yp, 2), SGD(0.5)) as trainer:
        history = trainer.fit(6, validation_data=(X, y), callbacks=[stop, ModelCheckpoint(path), ProgressBar(file=sys.stdout)])
    assert len(history) == 2 and stop.stopped_epoch == 2
    assert history["val_loss"][0] is not None and "epoch" in capsys.readouterr().out
    reference = single_process(X, y, 4)
    net2 = MLP(SIZES, backend="numpy", dtype="float64")
    with DistributedTrainer(net2, client, npy_partitions(xp, yp, 2), SGD(0.5)) as resumed:
        resumed.restore(path)
        assert resumed.epoch == 2  # the checkpoint of epoch 2 (written before early stopping restored epoch 1's)
        resumed.fit(4)
    assert_same(net2, reference)
    with DistributedTrainer(MLP(SIZES, backend="numpy", dtype="float64", seed=1), client, npy_partitions(xp, yp, 2), SGD(1e200)) as wild:
        with pytest.raises(TrainingDivergedError, match="training diverged"):
            wild.fit(5)
        assert all(np.isfinite(W).all() for W, _ in wild.net.get_parameters())


def test_cli_workers_get_validation_checkpoints_resume_plots_and_divergence_errors(tmp_path, data, capsys):
    from netcore.cli import main

    X, y = data
    for split, rows in (("train", slice(0, 120)), ("t10k", slice(120, 150))):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", np.pad(X[rows], ((0, 0), (0, 784 - 12))).reshape(-1, 28, 28))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", y[rows].astype(np.uint8))
    ckpt, plot = tmp_path / "w.npz", tmp_path / "curves.png"
    common = ["train", "--workers", "2", "--data", str(tmp_path), "--backend", "numpy", "--hidden", "8", "--no-progress"]
    assert main([*common, "--epochs", "2", "--validation", "0.25", "--save", str(ckpt), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "90 train / 30 validation / 30 test samples" in out and "val_loss" in out and "communication and scheduling" in out
    assert ckpt.exists() and plot.stat().st_size > 0
    assert main([*common, "--epochs", "3", "--resume", str(ckpt), "--save", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert f"resumed {ckpt} at epoch 2 of 3" in out and "epoch 3/3" in out and "epoch 1/3" not in out
    assert main([*common, "--epochs", "3", "--lr", "1e30"]) == 1
    err = capsys.readouterr().err
    assert "training diverged" in err and err.count("\n") == 1, err
