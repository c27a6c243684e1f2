"""``python -m benchmarks``: run the benchmark suites (or read a run's JSON) and print the table.

    python -m benchmarks                                  # every suite, then the table
    python -m benchmarks --plot bench.png -- -k numba     # after --, options for pytest
    python -m benchmarks --benchmark-json run.json        # the table of an earlier run

``netcore bench`` is an alias that runs this module from a source checkout.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from netcore.plots import check_plot_path

from . import report

SUITES = Path(__file__).resolve().parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="Run netcore's benchmark suites and print the table of epoch times.")
    parser.add_argument("--benchmark-json", metavar="FILE", help="report this pytest-benchmark JSON instead of running the suites")
    parser.add_argument("--save", metavar="FILE", help="where the run's JSON goes (default: a temporary file)")
    parser.add_argument("--plot", metavar="FILE.png", help="also write a bar chart (log scale); the extension picks the format")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --, options for pytest (e.g. -- --quick, -k numba, --netcore-data DIR)")
    return parser


def run_suites(json_path: str, pytest_args: Sequence[str]) -> int:
    """pytest over this folder, its pytest-benchmark JSON written to ``json_path``; the exit code."""
    extra = [a for a in pytest_args if a != "--"]
    cmd = [sys.executable, "-m", "pytest", str(SUITES), f"--benchmark-json={os.path.abspath(json_path)}", "-q", *extra]
    print("running:", " ".join(cmd), flush=True)
    return subprocess.run(cmd).returncode


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.plot:
            check_plot_path(args.plot)  # before a run of several minutes, not after it
        path = args.benchmark_json
        if path is None:
            path = args.save or str(Path(tempfile.mkdtemp(prefix="netcore-bench-")) / "benchmarks.json")
            code = run_suites(path, args.pytest_args)
            if code != 0:
                print(f"python -m benchmarks: error: the benchmark run failed (pytest exit {code})", file=sys.stderr)
                return 1
        rows = report.read_json(path)
        if not rows:
            raise ValueError(f"{path} holds no benchmarks (was the run made with --benchmark-disable?)")
        print(report.table(rows))
        if args.plot:
            report.plot(rows, args.plot)
            print(f"plot written to {args.plot}")
    except (ValueError, OSError) as exc:
        print(f"python -m benchmarks: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
