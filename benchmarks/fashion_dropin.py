"""A scikit-learn script on Fashion-MNIST, run as written and with its import swapped for netcore's.

    python -m benchmarks.fashion_dropin            # needs Fashion-MNIST on disk or downloadable
    python -m benchmarks.fashion_dropin --repeat 3 # each fit three times, the fastest kept

Two scripts, each the same function for both libraries given the MLPClassifier class, so nothing
but the import differs: scikit-learn's default solver (Adam, mini-batches of 200) for 10 epochs,
and L-BFGS for 50 iterations. Prints, in the same run, each fit's time (fit only; netcore on its
default backend, its Numba kernels compiled by a warm-up fit on 1,000 samples that is not timed)
and its test accuracy.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

SCRIPTS = {
    "adam, max_iter=10": dict(hidden_layer_sizes=(100,), max_iter=10, random_state=0),
    "lbfgs, max_iter=50": dict(hidden_layer_sizes=(100,), solver="lbfgs", max_iter=50, random_state=0),
}


def script(MLPClassifier, params: dict, X_train, y_train, X_test, y_test) -> tuple[float, float]:
    """What a scikit-learn user writes; returns (fit seconds, test accuracy)."""
    clf = MLPClassifier(**params)
    start = time.perf_counter()
    clf.fit(X_train / 255.0, y_train)
    seconds = time.perf_counter() - start
    return seconds, clf.score(X_test / 255.0, y_test)


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = {k: os.environ.get(k, "unset") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    return f"{cpu}, {os.cpu_count()} cores; " + ", ".join(f"{k}={v}" for k, v in blas.items())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="fits per library and script; the fastest is reported")
    args = parser.parse_args(argv)

    from sklearn.neural_network import MLPClassifier as SklearnMLP

    from netcore import backends
    from netcore import MLPClassifier as NetcoreMLP
    from netcore.datasets import load_fashion_mnist

    (X_train, y_train), (X_test, y_test) = load_fashion_mnist()
    print(f"Fashion-MNIST {X_train.shape[0]:,} + {X_test.shape[0]:,}; {machine()}")
    print(f"netcore backend: {backends.get_backend().name}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for params in SCRIPTS.values():  # compile netcore's kernels for these shapes' dtypes (not timed)
            NetcoreMLP(**{**params, "max_iter": 1}).fit(X_train[:1000] / 255.0, y_train[:1000])
        for name, params in SCRIPTS.items():
            seconds = {}
            for lib, cls in (("scikit-learn", SklearnMLP), ("netcore", NetcoreMLP)):
                runs = [script(cls, params, X_train, y_train, X_test, y_test) for _ in range(args.repeat)]
                seconds[lib], accuracy = min(runs)
                print(f"{name:>20} {lib:>12}: fit {seconds[lib]:6.2f} s, test accuracy {accuracy:.4f}")
            print(f"{name:>20} {'':>12}  netcore / scikit-learn fit time: {seconds['netcore'] / seconds['scikit-learn']:.2f}")


if __name__ == "__main__":
    main()
