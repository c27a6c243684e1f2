"""The ``netcore`` command: info, train on each backend, and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from netcore.cli import main
from netcore.datasets import write_idx

from .conftest import backend_params


def test_info_lists_every_backend_and_the_pick(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("numpy", "numba", "cupy", "python", "numba-cuda"):
        assert f"  {name} " in out
    assert "selected: " in out and "auto" in out


@pytest.mark.parametrize("name", backend_params(["numpy", "numba", "python", "cupy"]))
def test_train_prints_progress_on_each_backend(monkeypatch, capsys, name):
    monkeypatch.setenv("NETCORE_BACKEND", name)
    assert main(["train", "--epochs", "3", "--dataset", "digits", "--no-progress"]) == 0
    out = capsys.readouterr().out
    dtype = "float64" if name == "python" else "float32"  # the loop baseline always computes in doubles
    assert f"backend {name} ({dtype}; NETCORE_BACKEND={name})" in out
    assert sum(line.startswith("epoch ") for line in out.splitlines()) == 3 and "epoch 3/3  loss " in out and "test accuracy " in out


def test_train_options_and_idx_folder(tmp_path, capsys):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (60, 28, 28)).astype(np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", (np.arange(60) % 10).astype(np.uint8))
    args = ["train", "--backend", "numpy", "--dtype", "float64", "--epochs", "2", "--lr", "0.5", "--hidden", "8,4", "--activation", "relu",
            "--data", str(tmp_path), "--optimizer", "adam", "--batch-size", "16", "--no-progress"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "holds one split only (test); training on its first 50 samples, testing on the last 10" in captured.err
    assert "network [784, 8, 4, 10] relu, adam, lr 0.5, batches of 16" in captured.out and "epoch 2/2" in captured.out


@pytest.mark.parametrize(
    "args,env,message",
    [
        (["train"], {"NETCORE_BACKEND": "nonsense"}, "unknown backend 'nonsense'; valid names are: numpy, numba, cupy, python, numba-cuda, auto."),
        (["train", "--backend", "numpy", "--data", "/nonexistent"], {}, "data folder /nonexistent does not exist"),
        (["evaluate", "--model", "/nonexistent.npz", "--dataset", "digits"], {}, "checkpoint /nonexistent.npz does not exist"),
    ],
)
def test_errors_are_one_line(monkeypatch, capsys, args, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"netcore: error: {message}"


def test_cupy_without_gpu_exits_nonzero_with_one_line_and_no_traceback():
    from netcore import backends

    if backends.available()["cupy"].ok:
        pytest.skip("a CUDA device answers here")
    env = {"NETCORE_BACKEND": "cupy", "PATH": ""}
    run = subprocess.run([sys.executable, "-m", "netcore", "train", "--epochs", "1", "--dataset", "digits"], capture_output=True, text=True, env=env)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith("netcore: error: backend 'cupy' (NETCORE_BACKEND=cupy) cannot run here: ")


def test_bad_hidden_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--hidden", "16,x"])
    assert exit_.value.code == 2
    assert "--hidden takes comma-separated widths" in capsys.readouterr().err


def test_save_plot_evaluate_and_resume(tmp_path, capsys):
    ckpt, png = tmp_path / "model.npz", tmp_path / "curves.png"
    common = ["--backend", "numpy", "--dataset", "digits", "--no-progress", "--save", str(ckpt)]
    assert main(["train", "--epochs", "4", *common, "--plot", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG" and ckpt.is_file()
    assert main(["train", "--epochs", "6", *common, "--resume", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "resumed" in out and "epoch 5/6" in out and "epoch 1/" not in out.split("resumed")[1]
    assert main(["evaluate", "--model", str(ckpt), "--backend", "numpy", "--dataset", "digits"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "per-class accuracy: 0: " in out and "confusion matrix" in out


def test_default_dataset_falls_back_to_digits_with_a_reason(monkeypatch, tmp_path, capsys):
    from netcore import datasets

    monkeypatch.setenv("NETCORE_CACHE", str(tmp_path))
    monkeypatch.setitem(datasets.SOURCES, "mnist", datasets.Source("mnist", ("http://127.0.0.1:9/",), dict.fromkeys(datasets.FILES, "0" * 32)))
    assert main(["train", "--epochs", "1", "--backend", "numpy", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "note: using scikit-learn's bundled digits, because mnist is not on disk and could not download" in captured.err
    assert main(["train", "--epochs", "1", "--backend", "numpy", "--dataset", "mnist"]) == 1  # explicit: no fallback
    assert "netcore: error: mnist is not on disk" in capsys.readouterr().err


def test_the_network_takes_its_inputs_and_classes_from_the_data(tmp_path, capsys):
    rng = np.random.default_rng(1)
    for split, n in (("train", 40), ("t10k", 12)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 6, 5)).astype(np.uint8))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", (np.arange(n) % 3).astype(np.uint8))
    assert main(["train", "--backend", "numpy", "--data", str(tmp_path), "--epochs", "1", "--hidden", "4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "30 features, 3 classes" in out and "network [30, 4, 3] tanh" in out


def test_a_run_is_one_config_object_handed_to_train(capsys):
    from netcore.cli_train import train
    from netcore.config import ConfigError, TrainConfig

    assert train(TrainConfig(dataset="digits", backend="numpy", epochs=2, hidden=(8,), optimizer="adam", l2=1e-4, progress=False)) == 0
    out = capsys.readouterr().out
    assert "network [64, 8, 10] tanh, adam, lr 0.001, full batch, L2 0.0001, seed 2" in out and "epoch 2/2" in out
    with pytest.raises(ConfigError, match="--optimizer: unknown optimizer 'adamw'; choose one of sgd, momentum, nesterov, adam"):
        TrainConfig(optimizer="adamw")
