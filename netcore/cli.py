"""The ``netcore`` command: ``netcore info`` and ``netcore train``."""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence

import numpy as np

import backends

from . import __version__
from .datasets import IDXFormatError, load_digits, load_idx_folder
from .network import MLP
from .optim import StepLR
from .trainer import EpochLog, train_full_batch

# Errors a user can fix from the message alone: printed as one line, no traceback.
USER_ERRORS = (backends.BackendUnavailableError, ValueError, TypeError, FileNotFoundError, IDXFormatError)


def _hidden(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden takes comma-separated widths such as 16,16; got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"hidden widths must be positive; got {text!r}")
    return sizes


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netcore", description="Train multilayer perceptrons on swappable compute backends.")
    parser.add_argument("--version", action="version", version=f"netcore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("info", help="versions, each backend's availability, and what auto would pick")

    train = sub.add_parser("train", help="full-batch gradient descent, the tutorial's way")
    train.add_argument("--backend", help=f"one of {', '.join([*backends.BACKENDS, 'auto'])} (default: $NETCORE_BACKEND, else auto)")
    train.add_argument("--dtype", default="float32", choices=backends.DTYPES, help="compute dtype (default float32)")
    train.add_argument("--epochs", type=_positive_int, default=100, help="full-batch iterations (default 100)")
    train.add_argument("--lr", type=float, default=1.0, help="learning rate (default 1.0)")
    train.add_argument("--lr-drop-at", type=int, default=75, help="epoch after which the rate is multiplied by 0.1, as in the tutorial (default 75; 0 = never)")
    train.add_argument("--hidden", type=_hidden, default=[16, 16], help="hidden layer widths (default 16,16)")
    train.add_argument("--activation", default="tanh", choices=backends.ACTIVATIONS, help="hidden activation (default tanh)")
    train.add_argument("--seed", type=int, default=2, help="initialisation seed (default 2, the tutorial's)")
    train.add_argument("--data", metavar="DIR", help="folder of MNIST-format IDX files, gzipped or not (default: scikit-learn's bundled digits)")
    bench = sub.add_parser("bench", help="run the benchmark suites (or read a run's JSON) and print the table")
    bench.add_argument("--benchmark-json", metavar="FILE", help="report this pytest-benchmark JSON instead of running the suites")
    bench.add_argument("--save", metavar="FILE", help="where the run's JSON goes (default: a temporary file)")
    bench.add_argument("--plot", metavar="FILE.png", help="also write a bar chart (log scale)")
    bench.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --, options for pytest (e.g. -- --quick, -k numba, --netcore-data DIR)")
    return parser


def cmd_bench(args: argparse.Namespace) -> int:
    import subprocess
    import tempfile
    from pathlib import Path

    from . import report

    path = args.benchmark_json
    if path is None:
        suites = Path(__file__).resolve().parents[1] / "benchmarks"
        if not (suites / "conftest.py").is_file():
            raise FileNotFoundError("netcore bench runs the suites in a source checkout's benchmarks/ folder, which this install lacks; "
                                    "pass --benchmark-json FILE to report an existing run")
        path = args.save or str(Path(tempfile.mkdtemp(prefix="netcore-bench-")) / "benchmarks.json")
        extra = [a for a in args.pytest_args if a != "--"]
        cmd = [sys.executable, "-m", "pytest", str(suites), f"--benchmark-json={path}", "-q", *extra]
        print("running:", " ".join(cmd), flush=True)
        result = subprocess.run(cmd, cwd=suites.parent)
        if result.returncode != 0:
            print(f"netcore: error: the benchmark run failed (pytest exit {result.returncode})", file=sys.stderr)
            return 1
    rows = report.read_json(path)
    if not rows:
        raise ValueError(f"{path} holds no benchmarks (was the run made with --benchmark-disable?)")
    print(report.table(rows))
    if args.plot:
        report.plot(rows, args.plot)
        print(f"plot written to {args.plot}")
    return 0


def cmd_info() -> int:
    print(f"netcore {__version__} (Python {platform.python_version()}, NumPy {np.__version__}, {platform.machine()})")
    for name, status in backends.available().items():
        if status.ok:
            details = ", ".join(f"{k} {v}" for k, v in backends.get_backend(name).describe().items())
            print(f"  {name:<7} available    {details}")
        else:
            print(f"  {name:<7} unavailable  {status.reason}")
    selection = backends.resolve()
    print(f"selected: {selection.name} ({selection.why})")
    return 0


def _load(data: str | None) -> tuple[str, tuple, tuple]:
    if data is None:
        train, test = load_digits()
        return "scikit-learn digits", train, test
    train, test = load_idx_folder(data)
    if train is None or test is None:
        # One split on disk (say, only the t10k files): hold out its last sixth for testing.
        X, y = train or test
        cut = len(X) - len(X) // 6
        print(f"note: {data} holds one split only; training on its first {cut} samples, testing on the last {len(X) - cut}")
        train, test = (X[:cut], y[:cut]), (X[cut:], y[cut:])
    scale = 255.0 if train[0].dtype == np.uint8 else 1.0
    return data, (train[0] / scale, train[1]), (test[0] / scale, test[1])


def cmd_train(args: argparse.Namespace) -> int:
    source, (X, y), (X_test, y_test) = _load(args.data)
    n_classes = int(max(y.max(), y_test.max())) + 1
    net = MLP([X.shape[1], *args.hidden, n_classes], args.activation, backend=args.backend, dtype=args.dtype, seed=args.seed)
    selection = backends.resolve(args.backend)
    print(f"backend {net.backend.name} ({args.dtype}; {selection.why})")
    print(f"data {source}: {len(X)} train / {len(X_test)} test samples, {X.shape[1]} features, {n_classes} classes")
    drop = args.lr_drop_at or None
    print(f"network {list(net.layer_sizes)} {args.activation}, seed {args.seed}, lr {args.lr}" + (f" (x0.1 after epoch {drop})" if drop else ""))
    if net.backend.name == "numba":
        print("the first epoch includes compiling the Numba kernels (cached on disk for later runs)")
    width = len(str(args.epochs))

    def report(e: EpochLog) -> None:
        print(f"epoch {e.epoch:>{width}}/{args.epochs}  loss {e.loss:.4f}  accuracy {e.accuracy:.4f}  {e.seconds * 1e3:8.2f} ms", flush=True)

    train_full_batch(net, X, y, args.epochs, StepLR(args.lr, drop), report)
    print(f"test accuracy {net.accuracy(X_test, y_test):.4f} ({len(X_test)} samples)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            return cmd_info()
        if args.command == "bench":
            return cmd_bench(args)
        return cmd_train(args)
    except USER_ERRORS as exc:
        print(f"netcore: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("netcore: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
