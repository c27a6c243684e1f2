"""The tutorial's script, with MNIST read by netcore instead of ``tensorflow.keras``.

Run as it is, it uses the tutorial's own functions (``benchmarks.tutorial_original``); change only
the import line to ``from netcore.tutorial import *`` and the same script runs on netcore's
selected backend::

    python -m benchmarks.tutorial_script                             # MNIST, found or downloaded
    python -m benchmarks.tutorial_script ../shared/data/mnist        # a folder of MNIST IDX files

Two edits besides the loader, both so that the script runs on any folder: the reshapes take the
number of images from the data (the tutorial writes 60000 and 10000), and the final notebook cell
prints ``y_hat`` and shows the digit only where a window can open. A folder that holds only the
test set (like ``../shared/data/mnist``) is trained on as the training set.
"""

import sys

import matplotlib
import numpy as np

from benchmarks.tutorial_original import *  # noqa: F403  (the one line a user swaps for netcore.tutorial)
from netcore.datasets import find_split, load_mnist, read_idx


def load_data(folder=None):
    """``mnist.load_data()``'s ``(train_X, train_y), (test_X, test_y)``: uint8 images (n, 28, 28) and labels."""
    if folder is None:
        (train_X, train_y), (test_X, test_y) = load_mnist()
        return (train_X.reshape(-1, 28, 28), train_y), (test_X.reshape(-1, 28, 28), test_y)
    from pathlib import Path

    splits = {}
    for split in ("train", "t10k"):
        images, labels = find_split(Path(folder), split, "images"), find_split(Path(folder), split, "labels")
        splits[split] = None if images is None or labels is None else (read_idx(images), read_idx(labels))
    if splits["t10k"] is None and splits["train"] is None:
        sys.exit(f"{folder} holds no MNIST IDX files (train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and labels)")
    return splits["train"] or splits["t10k"], splits["t10k"] or splits["train"]


# Load dataset
(train_X, train_y), (test_X, test_y) = load_data(sys.argv[1] if len(sys.argv) > 1 else None)
print('X_train: ' + str(train_X.shape))
print('Y_train: ' + str(train_y.shape))
print('X_test: ' + str(test_X.shape))
print('Y_test: ' + str(test_y.shape))
# Flatten images and one_hot_encode
train_X = train_X.reshape(len(train_X), 784).T
train_X = train_X / 255
train_y = one_hot(train_y, 10).T  # noqa: F405
# Running the network
parameters = model(train_X, train_y, 1)  # noqa: F405

# To test on one of the test images:
from matplotlib import pyplot as plt  # noqa: E402

test_X.reshape(len(test_X), 784)
test_X = test_X / 255
im = test_X[0]
pixels = im.reshape((28, 28))
plt.imshow(pixels, cmap='gray')
if matplotlib.get_backend().lower() != "agg":  # headless, there is no window to show
    plt.show()  # an image of 7
A3, _ = forward_propagation(im.reshape(784, 1), parameters)  # noqa: F405
y_hat = np.argmax(A3, axis=0)
print(repr(y_hat))  # output: array([7])
