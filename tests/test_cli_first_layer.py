"""``netcore train`` and ``netcore info`` say which first-layer path runs and why, and
``--first-layer`` forces it (the numba backend's sparse first layer; every other backend has
one, dense, path). The data is generated: mostly-zero and full images written as IDX files."""

from __future__ import annotations

import numpy as np
import pytest

from netcore import backends
from netcore.cli import main
from netcore.config import ConfigError, TrainConfig
from netcore.datasets import write_idx

from .conftest import backend_params

NUMBA = backend_params(["numba"])


def idx_folder(folder, density: float, n_train: int = 300, side: int = 8):
    """A train and a test split of ``side`` x ``side`` uint8 images, about ``density`` of their
    pixels nonzero (at random), labels 0-3."""
    rng = np.random.default_rng(7)
    for split, n in (("train", n_train), ("t10k", 40)):
        X = (rng.random((n, side, side)) < density) * rng.integers(1, 256, (n, side, side))
        write_idx(folder / f"{split}-images-idx3-ubyte", X.astype(np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte", (np.arange(n) % 4).astype(np.uint8))
    return folder


def train(folder, *args):
    return main(["train", "--data", str(folder), "--epochs", "2", "--hidden", "16", "--no-progress", *args])


def first_layer_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("first layer: ")]
    assert len(lines) == 1, out
    return lines[0]


@pytest.fixture
def prepared_paths(monkeypatch):
    """The (path, reason) of every input the numba backend prepares while the test runs: what
    the steps really read, to hold the printed line to."""
    from netcore.backends.numba_backend import NumbaBackend

    seen = []
    prepare = NumbaBackend.prepare_inputs

    def recording(self, X, layer_sizes=None, batch_size=None):
        out = prepare(self, X, layer_sizes, batch_size)
        seen.append((batch_size, self.first_layer_path(out)))
        return out

    monkeypatch.setattr(NumbaBackend, "prepare_inputs", recording)
    return seen


@pytest.mark.parametrize("name", NUMBA)
@pytest.mark.parametrize("density,batch,path,why", [
    (0.05, [], "sparse", "below the"),
    (0.05, ["--batch-size", "100"], "sparse", "below the"),
    (0.9, [], "dense", "at or above the"),
])
def test_train_says_which_path_auto_takes_and_why(tmp_path, capsys, prepared_paths, name, density, batch, path, why):
    from netcore.backends.numba_sparse_choice import sparse_below

    assert main(["train", "--backend", "numba", "--data", str(idx_folder(tmp_path, density)), "--epochs", "2", "--hidden", "16",
                 "--no-progress", *batch]) == 0
    line = first_layer_line(capsys.readouterr().out)
    n_train, batch_size = 270, int(batch[1]) if batch else None  # 300 less the validation tenth
    threshold = sparse_below(16, "float32", n_train, batch_size)
    assert line.startswith(f"first layer: {path} (auto: ") and f"{why} {threshold:.0%} where the sparse pass pays" in line
    steps = f"batches of {batch_size or n_train:,}"
    assert f"for a first layer of 16 neurons in {steps} (float32) on this machine)" in line
    training = [reason for size, reason in prepared_paths if size == batch_size]  # the training set's (validation: batch None)
    assert training and training[0] == (path, line[len(f"first layer: {path} ("):-1])


@pytest.mark.parametrize("name", NUMBA)
@pytest.mark.parametrize("forced", ["sparse", "dense"])
def test_first_layer_forces_either_path_on_numba(tmp_path, capsys, prepared_paths, name, forced):
    density = 0.9 if forced == "sparse" else 0.05  # against what auto would take
    assert train(idx_folder(tmp_path, density), "--backend", "numba", "--first-layer", forced) == 0
    out = capsys.readouterr().out
    assert first_layer_line(out) == f"first layer: {forced} (forced: first_layer='{forced}')"
    assert "epoch 2/2" in out
    assert prepared_paths and all(path == (forced, f"forced: first_layer='{forced}'") for _, path in prepared_paths)
    assert backends.get_backend("numba", "float32").first_layer == "auto"  # the shared backend is left as it was


@pytest.mark.parametrize("name", backend_params(["numpy", "python"]))
def test_other_backends_say_they_have_one_path(tmp_path, capsys, name):
    assert train(idx_folder(tmp_path, 0.05, n_train=60), "--backend", name) == 0
    assert first_layer_line(capsys.readouterr().out) == f"first layer: dense (the {name} backend has one first-layer path)"
    assert train(idx_folder(tmp_path, 0.05, n_train=60), "--backend", name, "--first-layer", "dense") == 0  # its one path
    assert first_layer_line(capsys.readouterr().out) == f"first layer: dense (the {name} backend has one first-layer path)"


def test_forcing_sparse_where_there_is_none_is_one_line_before_any_data_is_read(tmp_path, capsys):
    # the folder does not exist: the error must come from the option, before the data is looked for
    assert main(["train", "--backend", "numpy", "--data", str(tmp_path / "missing"), "--first-layer", "sparse", "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert captured.err == ("netcore: error: --first-layer sparse: only the numba backend has a sparse first layer, and this run's "
                            "backend is numpy (argument 'numpy'); add --backend numba\n")
    assert captured.out == ""


def test_an_unknown_first_layer_is_one_line_naming_the_option(capsys):
    assert main(["train", "--backend", "numpy", "--dataset", "digits", "--first-layer", "spares"]) == 1
    captured = capsys.readouterr()
    assert captured.err == "netcore: error: --first-layer: unknown first_layer 'spares'; choose one of auto, sparse, dense\n"
    assert captured.out == ""


def test_data_parallel_runs_cannot_force_a_path():
    with pytest.raises(ConfigError, match="--first-layer: 'sparse' cannot be forced in data-parallel training"):
        TrainConfig(first_layer="sparse", workers=2)
    assert TrainConfig(first_layer="auto", workers=2).first_layer == "auto"


def test_info_says_how_each_backend_runs_the_first_layer(capsys):
    from netcore.backends.numba_sparse_choice import sparse_below

    assert main(["info"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert lines["numpy"].endswith("first layer dense (the numpy backend has one first-layer path)")
    if backends.available()["numba"].ok:
        rule = lines["numba"].split("first layer ", 1)[1]
        assert rule.startswith(f"auto: sparse below a measured share of nonzero inputs, {sparse_below(16, 'float32', 60_000):.0%} "
                               "for a first layer of 16 neurons")
        assert "--first-layer sparse|dense" in rule
