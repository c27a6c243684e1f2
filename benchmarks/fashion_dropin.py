"""A scikit-learn script on Fashion-MNIST, run as written and with its import swapped for netcore's.

    python -m benchmarks.fashion_dropin            # needs Fashion-MNIST on disk or downloadable

The script body is the same function for both, given the MLPClassifier class, so nothing but the
import differs. Prints test accuracy and fit time of each, in the same run.
"""

from __future__ import annotations

import time
import warnings

from sklearn.exceptions import ConvergenceWarning


def script(MLPClassifier, X_train, y_train, X_test, y_test):
    """What a scikit-learn user writes."""
    clf = MLPClassifier(hidden_layer_sizes=(100,), max_iter=10, random_state=0)
    clf.fit(X_train / 255.0, y_train)
    return clf.score(X_test / 255.0, y_test)


def main() -> None:
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    from netcore import MLPClassifier as NetcoreMLP
    from netcore.datasets import load_fashion_mnist

    (X_train, y_train), (X_test, y_test) = load_fashion_mnist()
    for name, cls in (("scikit-learn", SklearnMLP), ("netcore", NetcoreMLP)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            accuracy = script(cls, X_train, y_train, X_test, y_test)
            seconds = time.perf_counter() - start
        print(f"{name:>12}: test accuracy {accuracy:.4f}, fit + score {seconds:.1f} s ({seconds / 10 * 1e3:.0f} ms per epoch)")


if __name__ == "__main__":
    main()
