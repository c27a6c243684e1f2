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
    for name in ("numpy", "numba", "cupy", "python"):
        assert f"  {name} " in out
    assert "selected: " in out and "auto" in out


@pytest.mark.parametrize("name", backend_params(["numpy", "numba", "python", "cupy"]))
def test_train_prints_progress_on_each_backend(monkeypatch, capsys, name):
    monkeypatch.setenv("NETCORE_BACKEND", name)
    assert main(["train", "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert f"backend {name} (float32; NETCORE_BACKEND={name})" in out
    assert sum(line.startswith("epoch ") for line in out.splitlines()) == 3 and "epoch 3/3  loss " in out and "test accuracy " in out


def test_train_options_and_idx_folder(tmp_path, capsys):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (60, 28, 28)).astype(np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", (np.arange(60) % 10).astype(np.uint8))
    args = ["train", "--backend", "numpy", "--dtype", "float64", "--epochs", "2", "--lr", "0.5", "--hidden", "8,4", "--activation", "relu", "--data", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "training on its first 50 samples, testing on the last 10" in out
    assert "network [784, 8, 4, 10] relu" in out and "epoch 2/2" in out


@pytest.mark.parametrize(
    "args,env,message",
    [
        (["train"], {"NETCORE_BACKEND": "nonsense"}, "unknown backend 'nonsense'; valid names are: numpy, numba, cupy, python, auto."),
        (["train", "--backend", "numpy", "--data", "/nonexistent"], {}, "data folder /nonexistent does not exist"),
    ],
)
def test_errors_are_one_line(monkeypatch, capsys, args, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"netcore: error: {message}"


def test_cupy_without_gpu_exits_nonzero_with_one_line_and_no_traceback():
    import backends

    if backends.available()["cupy"].ok:
        pytest.skip("a CUDA device answers here")
    env = {"NETCORE_BACKEND": "cupy", "PATH": ""}
    run = subprocess.run([sys.executable, "-m", "netcore", "train", "--epochs", "1"], capture_output=True, text=True, env=env)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith("netcore: error: backend 'cupy' (NETCORE_BACKEND=cupy) cannot run here: ")


def test_bad_hidden_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--hidden", "16,x"])
    assert exit_.value.code == 2
    assert "--hidden takes comma-separated widths" in capsys.readouterr().err
