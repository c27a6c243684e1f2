"""The ``netcore`` command: ``info``, ``train``, ``evaluate``, ``predict`` and ``bench``.

Every expected failure ends in one line on stderr and a non-zero exit, never a traceback:
``netcore: error: ...`` and status 1 for what the run found (a bad option value or file, a
backend that cannot run, data that does not fit, any OSError), ``netcore train: error: ...`` and
status 2 for arguments that do not parse, one ``netcore: interrupted ...`` line and status 130 for
Ctrl-C (143 for SIGTERM, handled the same way).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from netcore import backends

from . import __version__
from .cli_predict import add_predict_arguments, cmd_predict
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
    add_predict_arguments(sub.add_parser("predict", help="the class of each image or array row in FILES, one a line"))
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
            backend = backends.get_backend(name)
            info = {**backend.describe(), "first layer": backend.first_layer_policy()}  # the sparse path's rule, or the one path
            details = ", ".join(f"{k} {v}" for k, v in info.items())
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


class _Signals:
    """SIGTERM stops a command the way Ctrl-C does (a KeyboardInterrupt where the program is), so
    both save what they can and end in one line; the exit status says which (130 or 143)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.previous = None

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum
        raise KeyboardInterrupt

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            self.previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)

    def status(self, code: int) -> int:
        return 128 + self.received if code == 130 and self.received else code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    with _Signals() as signals:
        try:
            if argv[:1] == ["bench"]:  # everything after `bench` belongs to `python -m benchmarks`
                return cmd_bench(argv[1:])
            args = build_parser().parse_args(argv)
            if args.command == "info":
                return cmd_info()
            if args.command == "evaluate":
                return cmd_evaluate(args)
            if args.command == "predict":
                return cmd_predict(args)
            return signals.status(cmd_train(args))
        except BrokenPipeError:  # the reader went away (`netcore predict ... | head`): nothing left to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush does not fail again
            return 1
        except USER_ERRORS as exc:
            print(f"netcore: error: {one_line(exc)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("netcore: interrupted" + (" (SIGTERM)" if signals.received == signal.SIGTERM else ""), file=sys.stderr)
            return signals.status(130)


if __name__ == "__main__":
    sys.exit(main())
