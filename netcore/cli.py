"""The ``netcore`` command: ``info``, ``train``, ``evaluate`` and ``bench``."""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence

import numpy as np

import backends

from . import __version__
from .cli_train import add_evaluate_arguments, add_train_arguments, cmd_evaluate, cmd_train
from .datasets import IDXFormatError

# Errors a user can fix from the message alone: printed as one line, no traceback.
USER_ERRORS = (backends.BackendUnavailableError, ValueError, TypeError, FileNotFoundError, IDXFormatError, ArithmeticError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netcore", description="Train multilayer perceptrons on swappable compute backends.")
    parser.add_argument("--version", action="version", version=f"netcore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, each backend's availability, and what auto would pick")
    add_train_arguments(sub.add_parser("train", help="train a network (full batch by default, the tutorial's way)"))
    add_evaluate_arguments(sub.add_parser("evaluate", help="accuracy, per-class accuracy and confusion matrix of a saved network"))
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
            print(f"  {name:<10} available    {details}")
        else:
            print(f"  {name:<10} unavailable  {status.reason}")
    selection = backends.resolve()
    print(f"selected: {selection.name} ({selection.why})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            return cmd_info()
        if args.command == "bench":
            return cmd_bench(args)
        if args.command == "evaluate":
            return cmd_evaluate(args)
        return cmd_train(args)
    except USER_ERRORS as exc:
        print(f"netcore: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("netcore: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
