"""The tutorial's script: train on a folder of MNIST IDX files and print its progress lines.

Run it as written for the tutorial's own code, or change only the import line to
``from netcore.tutorial import *`` to run the same script on netcore's selected backend::

    python -m benchmarks.tutorial_script ../shared/data/mnist
"""

import sys

from benchmarks.tutorial_original import *  # noqa: F403  (the line a user swaps for netcore.tutorial)
from netcore.datasets import read_idx  # noqa: E402

folder = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/mnist"
images = read_idx(f"{folder}/t10k-images-idx3-ubyte.gz")
labels = read_idx(f"{folder}/t10k-labels-idx1-ubyte.gz")

X = images.reshape(images.shape[0], -1).T / 255.0
Y = one_hot(labels)  # noqa: F405
parameters, costs = model(X, Y, [784, 16, 16, 10], learning_rate=1.0, num_iterations=100, print_cost=True)  # noqa: F405
