"""Every argument is checked before any work, and every expected failure ends in one line and a
non-zero exit, never a traceback (issue 13, items 5 and 7)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from netcore import MLP
from netcore.cli import main
from netcore.datasets import write_idx

BASE = ["train", "--backend", "numpy", "--dataset", "digits", "--epochs", "2", "--no-progress"]


def one_line_error(captured):
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    assert "epoch" not in captured.out  # nothing was trained
    return captured.err.strip()


@pytest.mark.parametrize("args,message", [
    (["--validation", "1.5"], r"--validation: the validation fraction must be a number in \[0, 1\), got 1.5"),
    (["--validation", "1"], r"--validation: the validation fraction must be a number in \[0, 1\), got 1.0"),
    (["--validation", "nan"], r"--validation: .* got nan"),
    (["--lr-drop-at", "-5"], r"--lr-drop-at: the epoch of the rate drop must be an integer >= 0 \(0 = never\), got -5"),
    (["--hidden", ""], "--hidden: no hidden layer given; give widths such as 16,16"),
    (["--hidden", "16,0"], "--hidden: layer sizes must be positive integers"),
    (["--lr", "-1"], "--lr: learning rate must be a positive number, got -1.0"),
    (["--lr", "inf"], "--lr: learning rate must be a positive number, got inf"),
    (["--l2", "-0.1"], "--l2: the L2 penalty must be a non-negative number, got -0.1"),
    (["--epochs", "0"], "--epochs: the number of epochs must be a positive integer, got 0"),
    (["--batch-size", "0"], "--batch-size: the batch size must be a positive integer, got 0"),
    (["--seed", "-1"], r"--seed: the seed must be an integer in 0..2\*\*32-1, got -1"),
    (["--activation", "gelu"], "--activation: unknown activation 'gelu'; choose one of tanh, relu, sigmoid"),
    (["--dtype", "float16"], "--dtype: unsupported dtype 'float16': netcore computes in float32 or float64"),
    (["--data", "somewhere"], "give --dataset or --data, not both"),
])
def test_a_bad_option_value_is_one_line_naming_the_option_before_any_work(capsys, args, message):
    assert main([*BASE, *args]) == 1
    text = one_line_error(capsys.readouterr())
    assert text.startswith("netcore: error: ") and re.search(message, text), text


def test_output_files_are_checked_before_training(tmp_path, capsys):
    (tmp_path / "afile").write_bytes(b"")
    cases = [
        (["--plot", str(tmp_path / "missing" / "curves.png")], f"--plot: cannot write {tmp_path}/missing/curves.png: folder {tmp_path}/missing does not exist"),
        (["--plot", str(tmp_path / "curves.txt")], f"--plot: cannot write a plot to {tmp_path}/curves.txt: extension .txt; use one of "),
        (["--plot", str(tmp_path / "curves")], f"--plot: cannot write a plot to {tmp_path}/curves: no extension; use one of "),
        (["--save", str(tmp_path)], f"--save: cannot write {tmp_path}: it is a folder"),
        (["--save", str(tmp_path / "afile" / "m.npz")], f"--save: cannot write {tmp_path}/afile/m.npz: folder {tmp_path}/afile is not a folder"),
    ]
    for args, message in cases:
        assert main([*BASE, *args]) == 1
        assert one_line_error(capsys.readouterr()).startswith("netcore: error: " + message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_the_plot_is_written_in_the_format_its_extension_names(tmp_path, capsys):
    assert main([*BASE, "--plot", str(tmp_path / "curves.svg")]) == 0
    assert b"<svg" in (tmp_path / "curves.svg").read_bytes()[:400]  # not PNG bytes under an .svg name


def test_test_images_of_another_size_fail_before_training(tmp_path, capsys):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, (30, 28, 28)).astype(np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", (np.arange(30) % 10).astype(np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (10, 20, 20)).astype(np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", (np.arange(10) % 10).astype(np.uint8))
    assert main(["train", "--backend", "numpy", "--data", str(tmp_path), "--epochs", "2", "--no-progress"]) == 1
    assert "holds 20x20 images but" in one_line_error(capsys.readouterr())


def test_an_oserror_is_one_line_that_says_what_is_wrong(tmp_path, capsys):
    (tmp_path / "afile").write_bytes(b"")
    for args, message in ((["evaluate", "--model", str(tmp_path)], f"checkpoint {tmp_path} is a folder, not a file"),
                          (["train", "--backend", "numpy", "--data", str(tmp_path / "afile")], f"data folder {tmp_path}/afile is not a folder"),
                          (["predict", "--model", str(tmp_path / "m.npz"), "x.png"], f"checkpoint {tmp_path}/m.npz does not exist")):
        assert main(args) == 1
        assert one_line_error(capsys.readouterr()) == f"netcore: error: {message}"


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    ckpt = tmp_path / "m.npz"
    assert main([*BASE, "--save", str(ckpt)]) == 0
    before = ckpt.read_bytes()

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    capsys.readouterr()
    assert main([*BASE, "--epochs", "3", "--save", str(ckpt)]) == 1
    err = capsys.readouterr().err
    assert err == f"netcore: error: cannot write {ckpt}: No space left on device\n"
    assert ckpt.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_train_says_what_it_computes_with(capsys):
    assert main(BASE) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("backend numpy (float32; argument 'numpy'), threads: BLAS ")


def test_numba_runs_say_their_thread_count(capsys):
    import numba

    assert main(["train", "--backend", "numba", "--dataset", "digits", "--epochs", "1", "--no-progress"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert f"threads: numba {numba.config.NUMBA_NUM_THREADS} (NUMBA_NUM_THREADS=" in first and ", BLAS " in first


def _ctrl_c_default():
    """In the child: SIGINT as a terminal's foreground job has it. A suite started in the
    background (``cmd &``, ``nohup``) has SIGINT ignored, which its children inherit; a run
    started so rightly ignores Ctrl-C, and a test of Ctrl-C would wait for nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_netcore(*args, **kwargs):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-m", "netcore", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs)


@pytest.mark.slow
def test_sigterm_stops_a_run_like_ctrl_c(tmp_path):
    ckpt = tmp_path / "m.npz"
    proc = run_netcore("train", "--backend", "python", "--dataset", "digits", "--hidden", "8", "--epochs", "50", "--no-progress", "--save", str(ckpt))
    deadline = time.monotonic() + 60
    while not ckpt.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.count("\n") == 1 and err.startswith("netcore: interrupted during epoch") and f"continue with: netcore train --resume {ckpt}" in err
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"] and MLP.load(str(ckpt)).layer_sizes == (64, 8, 10)


def idx_folder(folder, n=400, side=6):
    rng = np.random.default_rng(0)
    write_idx(folder / "train-images-idx3-ubyte", rng.integers(0, 256, (n, side, side)).astype(np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte", (np.arange(n) % 3).astype(np.uint8))


@pytest.mark.slow
def test_an_unreachable_scheduler_is_one_line(tmp_path):
    pytest.importorskip("distributed")
    idx_folder(tmp_path)
    proc = run_netcore("train", "--scheduler", "tcp://127.0.0.1:1", "--data", str(tmp_path))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("netcore: error: could not reach the Dask scheduler at tcp://127.0.0.1:1")


@pytest.mark.slow
def test_ctrl_c_during_a_local_cluster_run_is_one_line(tmp_path):
    pytest.importorskip("distributed")
    idx_folder(tmp_path, n=2000)
    proc = run_netcore("train", "--workers", "2", "--data", str(tmp_path), "--epochs", "100000", "--backend", "numpy", "--hidden", "8",
                       start_new_session=True,  # its own process group, as a terminal's foreground job
                       preexec_fn=_ctrl_c_default)
    deadline = time.monotonic() + 120
    line = ""
    while not line.startswith("epoch") and time.monotonic() < deadline:
        line = proc.stdout.readline()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole group, workers included
    _, err = proc.communicate(timeout=60)
    assert line.startswith("epoch") and proc.returncode == 130
    lines = [line for line in err.splitlines() if not line.startswith("note: ")]  # the note says where the test split came from
    assert len(lines) == 1 and lines[0].startswith("netcore: interrupted during epoch "), err
