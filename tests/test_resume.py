"""A checkpoint carries its run: `--resume` continues it without repeating the options, `evaluate`
scores what it was trained on, and an option that contradicts the checkpoint is an error
(issue 13, items 1 and 4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from netcore import MLP, checkpoint
from netcore.cli import main
from netcore.datasets import write_idx

RUN = ["--backend", "numpy", "--dataset", "digits", "--optimizer", "adam", "--batch-size", "200", "--hidden", "20",
       "--activation", "relu", "--validation", "0.2", "--no-progress"]


def assert_same_parameters(a, b):
    for (W, c), (V, d) in zip(MLP.load(str(a)).get_parameters(), MLP.load(str(b)).get_parameters()):
        np.testing.assert_array_equal(W, V)
        np.testing.assert_array_equal(c, d)


@pytest.fixture
def two_epochs(tmp_path, capsys):
    """A checkpoint after 2 of the run's epochs, and the same run trained straight to 4."""
    assert main(["train", *RUN, "--epochs", "4", "--save", str(tmp_path / "straight.npz")]) == 0
    assert main(["train", *RUN, "--epochs", "2", "--save", str(tmp_path / "run.npz")]) == 0
    capsys.readouterr()
    return tmp_path / "run.npz", tmp_path / "straight.npz"


def test_resume_restores_the_run_not_the_command_lines_defaults(two_epochs, capsys):
    ckpt, straight = two_epochs
    assert main(["train", "--backend", "numpy", "--dataset", "digits", "--epochs", "4", "--resume", str(ckpt), "--save", str(ckpt), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "network [64, 20, 10] relu, adam, lr 0.001, batches of 200, seed 2" in captured.out
    assert "1150 train / 288 validation / 359 test samples" in captured.out  # the recorded hold-out, not the default 10%
    assert "epoch 3/4" in captured.out and "note: --epochs 4 replaces the checkpoint's 2" in captured.err
    assert_same_parameters(ckpt, straight)  # as if never stopped


def test_the_checkpoint_records_the_run(two_epochs):
    _, meta = checkpoint.load(two_epochs[0])
    assert meta["run"] == {"source": {"dataset": "digits"}, "validation": 0.2, "optimizer": "adam", "lr_drop_at": 0, "epochs": 2,
                           "input": {"shape": [8, 8], "dtype": "float64", "range": [0.0, 1.0]}}
    assert (meta["optimizer"]["name"], meta["optimizer"]["lr"], meta["trainer"]["batch_size"], meta["dtype"]) == ("adam", 0.001, 200, "float32")


@pytest.mark.parametrize("option,value,message", [
    ("--optimizer", "sgd", "--optimizer sgd contradicts the checkpoint {ckpt}, which was trained with --optimizer adam; leave --optimizer out"),
    ("--hidden", "16,16", "--hidden 16,16 contradicts the checkpoint {ckpt}, which was trained with --hidden 20"),
    ("--batch-size", "50", "--batch-size 50 contradicts the checkpoint {ckpt}, which was trained with --batch-size 200"),
    ("--activation", "tanh", "--activation tanh contradicts"),
    ("--dtype", "float64", "--dtype float64 contradicts"),
    ("--validation", "0.1", "--validation 0.1 contradicts the checkpoint {ckpt}, which was trained with --validation 0.2"),
    ("--dataset", "mnist", "--dataset mnist contradicts the checkpoint {ckpt}, which was trained with --dataset digits"),
    ("--l2", "0.01", "--l2 0.01 contradicts the checkpoint {ckpt}, which was trained with --l2 0"),
    ("--epochs", "2", "--epochs: {ckpt} is already at epoch 2 of 2; --epochs counts all the epochs of the run, so ask for more than 2"),
])
def test_an_option_that_contradicts_the_checkpoint_is_an_error_naming_both(two_epochs, capsys, option, value, message):
    ckpt, _ = two_epochs
    before = ckpt.read_bytes()
    assert main(["train", "--backend", "numpy", "--resume", str(ckpt), "--save", str(ckpt), option, value, "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("netcore: error: " + message.format(ckpt=ckpt))
    assert "epoch" not in captured.out and ckpt.read_bytes() == before


def test_a_rate_given_when_resuming_is_applied_and_said(two_epochs, capsys):
    ckpt, _ = two_epochs
    assert main(["train", "--backend", "numpy", "--resume", str(ckpt), "--epochs", "3", "--lr", "0.01", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "note: --lr 0.01 replaces the checkpoint's 0.001" in captured.err and "adam, lr 0.01, batches of 200" in captured.out


def test_a_network_file_cannot_be_resumed(tmp_path, capsys):
    MLP([64, 4, 10], backend="numpy").save(str(tmp_path / "net.npz"))
    assert main(["train", "--resume", str(tmp_path / "net.npz")]) == 1
    assert "holds a network without training state; it can be evaluated, not resumed" in capsys.readouterr().err


def test_evaluate_scores_the_recorded_data_and_a_lone_split_whole(tmp_path, capsys):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (60, 28, 28)).astype(np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", (np.arange(60) % 10).astype(np.uint8))
    ckpt = tmp_path / "m.npz"
    assert main(["train", "--backend", "numpy", "--data", str(tmp_path), "--epochs", "1", "--hidden", "8", "--no-progress", "--save", str(ckpt)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(ckpt), "--backend", "numpy"]) == 0  # no --data: the checkpoint's folder
    captured = capsys.readouterr()
    assert f"test set {tmp_path}: 60 samples" in captured.out  # the whole split, not its last sixth
    assert "training on" not in captured.err + captured.out
    assert f"note: {tmp_path} holds one split only (test); scoring all of its 60 samples" in captured.err


def test_evaluate_without_a_dataset_uses_the_one_trained_on(two_epochs, capsys):
    assert main(["evaluate", "--model", str(two_epochs[0]), "--backend", "numpy"]) == 0
    assert "test set scikit-learn digits: 359 samples" in capsys.readouterr().out


@pytest.mark.slow
def test_ctrl_c_advice_resumes_the_run_exactly(tmp_path):
    """Interrupt a run with Ctrl-C, follow the command the message gives word for word, and end
    with the parameters of a run never interrupted."""
    def cmd(save):
        return [sys.executable, "-m", "netcore", "train", "--dataset", "digits", "--hidden", "8", "--optimizer", "momentum",
                "--batch-size", "64", "--epochs", "6", "--no-progress", "--save", str(save)]

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NETCORE_BACKEND": "python"}
    subprocess.run(cmd(tmp_path / "straight.npz"), check=True, capture_output=True, env=env)
    cut = tmp_path / "cut.npz"
    # SIGINT as a terminal's foreground job has it: a suite started in the background has it
    # ignored, and its children inherit that
    proc = subprocess.Popen(cmd(cut), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not cut.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived")
    assert proc.returncode == 130 and err.count("\n") == 1 and "Traceback" not in err
    advice = err.split("continue with: ")[1].split()
    assert advice == ["netcore", "train", "--resume", str(cut), "--save", str(cut)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.npz", "straight.npz"]  # no partial files
    subprocess.run([sys.executable, "-m", *advice], check=True, capture_output=True, env=env)
    assert_same_parameters(cut, tmp_path / "straight.npz")
