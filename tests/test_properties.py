"""Property tests: random invalid arguments and files, given to the command line and to the Python
API, always end in a one-line error (and a non-zero exit), never a traceback, and never leave a
changed or partial file behind (issue 13, "done when")."""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from netcore.backends import check_dtype
from netcore import MLP, Trainer
from netcore.cli import main
from netcore.datasets import load_data, load_idx_folder, read_idx, write_idx

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# -- a workspace of good and bad files, made once ------------------------------------------------

def _idx_folder(folder: Path, images_dtype=np.uint8, test_side=28, label=None, n=30, drop=None) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, count, side in (("train", n, 28), ("t10k", 10, test_side)):
        write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 100, (count, side, side)).astype(images_dtype))
        labels = (np.arange(count) % 10).astype(np.uint8)
        if label is not None and split == "train":
            labels[3] = label
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels)
    if drop:
        (folder / drop).unlink()


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("ws")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["train", "--backend", "numpy", "--dataset", "digits", "--epochs", "1", "--hidden", "4", "--no-progress", "--save", str(ws / "keep.npz")]) == 0
    MLP([64, 4, 10], backend="numpy", seed=0).save(str(ws / "net.npz"))
    full = (ws / "keep.npz").read_bytes()
    (ws / "truncated.npz").write_bytes(full[: len(full) // 2])
    (ws / "junk.bin").write_bytes(bytes(range(256)) * 3)
    (ws / "empty").write_bytes(b"")
    np.save(ws / "arr.npy", np.zeros((3, 64)))
    np.save(ws / "wrong.npy", np.zeros((3, 10)))
    np.save(ws / "unscaled.npy", np.full((2, 64), 1000.0))
    np.save(ws / "text.npy", np.array(["x"] * 64))
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(ws / "big.png")
    (ws / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x01" * 40)
    (ws / "folder").mkdir()
    (ws / "folder" / "inside").write_bytes(b"x")
    _idx_folder(ws / "int8", images_dtype=np.int8)
    _idx_folder(ws / "sizes", test_side=20)
    _idx_folder(ws / "label200", label=200)
    _idx_folder(ws / "nolabels", drop="t10k-labels-idx1-ubyte")
    (ws / "corrupt").mkdir()
    (ws / "corrupt" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 5)
    (ws / "corrupt" / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09")
    (ws / "gen").mkdir()
    return ws


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root``: its content hash and modification time."""
    return {str(p.relative_to(root)): (hashlib.md5(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


# -- strategies: one invalid element in an otherwise valid command -------------------------------

def not_in(valid, case_fold=True):
    key = (lambda t: t.strip().lower()) if case_fold else (lambda t: t)
    return st.text(min_size=0, max_size=12).filter(lambda t: key(t) not in valid)


bad_float_fraction = st.one_of(st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not 0 <= v < 1), st.just(0.0001))
bad_positive_float = st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not (math.isfinite(v) and v > 0))
bad_non_negative = st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not (math.isfinite(v) and v >= 0))
junk_text = st.text(alphabet="abcxyz,;:. -_0", min_size=1, max_size=8).filter(lambda t: not _is_number(t))


def _not_a_dtype(text: str) -> bool:
    try:
        check_dtype(text)
    except ValueError:
        return True
    return False


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def option_values(ws: Path):
    """(option, value) pairs that must each make `netcore train` fail."""
    paths = [str(ws / p) for p in ("missing/x.npz", "folder", "junk.bin/x.npz")]
    return st.one_of(
        st.tuples(st.just("--validation"), st.one_of(bad_float_fraction.map(repr), junk_text)),
        st.tuples(st.just("--lr"), st.one_of(bad_positive_float.map(repr), junk_text)),
        st.tuples(st.just("--l2"), st.one_of(bad_non_negative.map(repr), junk_text)),
        st.tuples(st.sampled_from(["--epochs", "--batch-size", "--workers"]), st.one_of(st.integers(max_value=0).map(str), junk_text)),
        st.tuples(st.just("--lr-drop-at"), st.one_of(st.integers(max_value=-1).map(str), junk_text)),
        st.tuples(st.just("--seed"), st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32)).map(str)),
        st.tuples(st.just("--hidden"), st.one_of(st.just(""), st.lists(st.integers(-5, 0), min_size=1, max_size=3).map(lambda w: ",".join(map(str, w))), junk_text)),
        st.tuples(st.just("--optimizer"), not_in({"sgd", "momentum", "nesterov", "adam"}, case_fold=False)),
        st.tuples(st.just("--activation"), not_in({"tanh", "relu", "sigmoid"}, case_fold=False)),
        st.tuples(st.just("--dtype"), st.text(max_size=8).filter(_not_a_dtype)),
        st.tuples(st.just("--backend"), not_in({"numpy", "numba", "cupy", "python", "numba-cuda", "auto"})),
        st.tuples(st.just("--dataset"), not_in({"mnist", "fashion-mnist", "digits"}, case_fold=False)),
        st.tuples(st.just("--save"), st.sampled_from(paths)),
        st.tuples(st.just("--plot"), st.one_of(st.sampled_from([*paths, str(ws / "x.txt"), str(ws / "noext")]),
                                                st.text(alphabet="abcxyz", min_size=1, max_size=4).map(lambda e: str(ws / f"x.{e}q")))),
        st.tuples(st.just("--resume"), st.sampled_from([str(ws / p) for p in ("missing.npz", "folder", "junk.bin", "truncated.npz", "arr.npy", "net.npz", "empty", "big.png")])),
        st.tuples(st.just("--data"), st.sampled_from([str(ws / p) for p in ("missing", "junk.bin", "folder", "int8", "sizes", "label200", "nolabels", "corrupt")])),
    )


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: arguments that do not parse
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def assert_one_line_failure(code, out: str, err: str, argv) -> None:
    assert code not in (0, None), (argv, out, err)
    assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err, (argv, err)
    assert err.startswith(("netcore: error: ", "netcore train: error: ", "netcore evaluate: error: ", "netcore predict: error: ")), (argv, err)
    assert "epoch" not in out, (argv, out)  # failed before any work


def test_random_invalid_train_arguments_fail_in_one_line_and_touch_no_file(ws):
    before = snapshot(ws)

    @SETTINGS
    @given(option_values(ws), st.booleans())
    def check(option, with_save):
        name, value = option
        argv = ["train", "--backend", "numpy", "--epochs", "1", "--no-progress"]
        if name not in ("--dataset", "--data"):
            argv += ["--dataset", "digits"]
        if with_save and name != "--save":
            argv += ["--save", str(ws / "new.npz")]
        code, out, err = run_cli([*argv, f"{name}={value}"])
        assert_one_line_failure(code, out, err, argv + [name, value])
        assert snapshot(ws) == before  # nothing written, changed or left half-written

    check()


def test_random_invalid_files_for_evaluate_and_predict_fail_in_one_line(ws):
    before = snapshot(ws)
    models = [str(ws / p) for p in ("missing.npz", "folder", "junk.bin", "truncated.npz", "arr.npy", "empty", "big.png")]
    inputs = [str(ws / p) for p in ("missing.png", "folder", "junk.bin", "empty", "wrong.npy", "unscaled.npy", "text.npy", "big.png", "broken.png",
                                    "keep.npz", "int8/train-images-idx3-ubyte", "corrupt/train-images-idx3-ubyte")]

    @SETTINGS
    @given(st.one_of(
        st.tuples(st.just("evaluate"), st.sampled_from(models), st.none()),
        st.tuples(st.just("predict"), st.sampled_from(models), st.just(str(ws / "arr.npy"))),
        st.tuples(st.just("predict"), st.just(str(ws / "keep.npz")), st.sampled_from(inputs)),
        st.tuples(st.just("evaluate"), st.just(str(ws / "keep.npz")), st.sampled_from([str(ws / p) for p in ("int8", "sizes", "label200", "corrupt", "junk.bin")])),
    ))
    def check(case):
        command, model, extra = case
        argv = [command, "--model", model, "--backend", "numpy"]
        if command == "predict":
            argv += [str(ws / "arr.npy"), extra]
        elif extra is not None:
            argv += ["--data", extra]
        elif model.endswith("keep.npz"):
            argv += ["--dataset", "digits"]
        code, out, err = run_cli(argv)
        assert_one_line_failure(code, out, err, argv)
        assert out == ""  # predict prints nothing before every file is read
        assert snapshot(ws) == before

    check()


@given(st.binary(max_size=300))
@SETTINGS
def test_random_bytes_are_never_a_model_or_a_dataset(ws, blob):
    digest = hashlib.md5(blob).hexdigest()
    path = ws / "gen" / digest
    path.write_bytes(blob)
    folder = ws / "gen" / f"d{digest}"
    folder.mkdir(exist_ok=True)
    (folder / "train-images-idx3-ubyte").write_bytes(blob)
    (folder / "train-labels-idx1-ubyte").write_bytes(blob)
    before = snapshot(ws)
    for argv in (["evaluate", "--model", str(path), "--dataset", "digits"], ["predict", "--model", str(ws / "keep.npz"), str(path)],
                 ["train", "--backend", "numpy", "--data", str(folder), "--epochs", "1", "--no-progress"], ["train", "--resume", str(path)]):
        code, out, err = run_cli(argv)
        assert_one_line_failure(code, out, err, argv)
    assert snapshot(ws) == before


# -- the Python API ---------------------------------------------------------------------------

API_ERRORS = (ValueError, TypeError, OSError)


def api_calls(ws: Path):
    """Calls of the Python API with one invalid argument or file each."""
    X, y = np.zeros((6, 4)), np.arange(6) % 2
    bad_sizes = st.one_of(st.lists(st.integers(-3, 0), min_size=2, max_size=4), st.just([4]), st.just([4, 1]), st.just([]),
                          st.lists(st.sampled_from([1.5, "8", None]), min_size=2, max_size=3))
    bad_files = st.sampled_from([str(ws / p) for p in ("missing.npz", "folder", "junk.bin", "truncated.npz", "arr.npy", "empty", "big.png")])
    bad_dest = st.sampled_from([str(ws / p) for p in ("missing/x.npz", "folder", "junk.bin/x.npz")])
    bad_X = st.sampled_from([np.zeros((6, 3)), np.full((6, 4), np.nan), np.zeros((0, 4)), np.zeros(4), np.array([["a"] * 4] * 6), None])
    bad_y = st.sampled_from([np.arange(6) + 5, np.full(6, 0.5), np.arange(5), -np.arange(6), np.array(["a"] * 6), None])
    net = lambda: MLP([4, 3, 2], backend="numpy", seed=0)  # noqa: E731
    return st.one_of(
        bad_sizes.map(lambda s: lambda: MLP(s, backend="numpy")),
        not_in({"tanh", "relu", "sigmoid"}, case_fold=False).map(lambda a: lambda: MLP([4, 3, 2], a, backend="numpy")),
        not_in({"numpy", "numba", "cupy", "python", "numba-cuda", "auto"}).map(lambda b: lambda: MLP([4, 3, 2], backend=b)),
        not_in({"sgd", "momentum", "nesterov", "adam"}, case_fold=False).map(lambda o: lambda: Trainer(net(), o)),
        bad_positive_float.map(lambda lr: lambda: Trainer(net(), "sgd", lr=lr)),
        st.integers(max_value=0).map(lambda b: lambda: Trainer(net(), batch_size=b)),
        bad_non_negative.map(lambda a: lambda: Trainer(net(), l2=a)),
        st.integers(max_value=0).map(lambda e: lambda: Trainer(net()).fit(X, y, e)),
        bad_X.map(lambda bx: lambda: Trainer(net()).fit(bx, y, 1)),
        bad_y.map(lambda by: lambda: Trainer(net()).fit(X, by, 1)),
        bad_files.map(lambda f: lambda: MLP.load(f)),
        bad_files.map(lambda f: lambda: Trainer.load(f)),
        bad_dest.map(lambda d: lambda: net().save(d)),
        bad_dest.map(lambda d: lambda: Trainer(net()).save(d)),
        st.sampled_from([str(ws / p) for p in ("junk.bin", "empty", "arr.npy", "folder", "missing")]).map(lambda f: lambda: read_idx(f)),
        st.sampled_from([str(ws / p) for p in ("int8", "sizes", "label200", "nolabels", "corrupt", "folder", "junk.bin", "missing")]).map(
            lambda f: lambda: load_idx_folder(f)),
        st.one_of(bad_float_fraction, st.just("0.1")).map(lambda v: lambda: load_data("digits", validation=v)),
        not_in({"mnist", "fashion-mnist", "digits"}, case_fold=False).map(lambda d: lambda: load_data(d)),
    )


def test_random_invalid_api_calls_raise_one_line_errors_and_touch_no_file(ws):
    before = snapshot(ws)

    @SETTINGS
    @given(api_calls(ws))
    def check(call):
        with pytest.raises(API_ERRORS) as err:
            call()
        assert str(err.value).strip() and "\n" not in str(err.value).strip(), repr(err.value)
        assert snapshot(ws) == before

    check()
