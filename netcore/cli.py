"""The ``netcore`` command: ``info``, ``train``, ``evaluate`` and ``bench``.

Every expected failure ends in one line on stderr and a non-zero exit, never a traceback:
``netcore: error: ...`` and status 1 for what the run found (a bad file, a backend that cannot
run, data that does not fit), ``netcore train: error: ...`` and status 2 for arguments that do
not parse, ``netcore: interrupted`` and status 130 for Ctrl-C.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import backends

from . import __version__
from .cli_train import add_evaluate_arguments, add_train_arguments, cmd_evaluate, cmd_train

# Errors a user can act on from the message alone: printed as one line, no traceback.
USER_ERRORS = (backends.BackendUnavailableError, ValueError, TypeError, OSError, ArithmeticError, MemoryError)


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (argparse prints the whole usage first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> Parser:
    parser = Parser(prog="netcore", description="Train multilayer perceptrons on swappable compute backends.")
    parser.add_argument("--version", action="version", version=f"netcore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, each backend's availability, and what auto would pick")
    add_train_arguments(sub.add_parser("train", help="train a network (full batch by default, the tutorial's way)"))
    add_evaluate_arguments(sub.add_parser("evaluate", help="accuracy, per-class accuracy and confusion matrix of a saved network"))
    sub.add_parser("bench", add_help=False, help="alias of `python -m benchmarks` in a source checkout: run the benchmark suites, "
                                                 "print the table (its options: netcore bench --help)")
    return parser


# `netcore bench ARGS` runs `python -m benchmarks ARGS` with the checkout first on the path, so a
# `benchmarks` folder in the working directory cannot stand in for it; relative paths in ARGS
# still mean the working directory.
_RUN_BENCHMARKS = "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); runpy.run_module('benchmarks', run_name='__main__', alter_sys=True)"


def checkout_root() -> Path | None:
    """The source checkout this netcore runs from, if any (its ``benchmarks/`` sit beside the package)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "benchmarks" / "__main__.py").is_file() else None


def cmd_bench(argv: Sequence[str]) -> int:
    """``python -m benchmarks`` in a subprocess: the product runs the benchmarks, never imports them."""
    root = checkout_root()
    if root is None:
        raise FileNotFoundError("netcore bench runs `python -m benchmarks` from a source checkout, and this install has none "
                                "(no benchmarks/ folder beside the netcore package); clone the repository and run it there")
    return subprocess.run([sys.executable, "-c", _RUN_BENCHMARKS, str(root), *argv]).returncode


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


def one_line(exc: BaseException) -> str:
    """An exception as one line: an OSError's own words and file (not ``[Errno 2] ...``)."""
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    elif isinstance(exc, MemoryError):
        text = f"out of memory ({exc})" if str(exc) else "out of memory"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["bench"]:  # everything after `bench` belongs to `python -m benchmarks`
            return cmd_bench(argv[1:])
        args = build_parser().parse_args(argv)
        if args.command == "info":
            return cmd_info()
        if args.command == "evaluate":
            return cmd_evaluate(args)
        return cmd_train(args)
    except USER_ERRORS as exc:
        print(f"netcore: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("netcore: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
