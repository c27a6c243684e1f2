"""The numba backend's sparse first layer: one full-batch step of the tutorial network on
mostly-zero images, the dense and sparse paths side by side, with the dense floor.

- MNIST-density images: the 10,000 MNIST test images from ``--netcore-data DIR`` if given, else
  ``../shared/data/mnist/`` (from the repository root), tiled to ``--samples``; where neither
  has them, generated pen strokes at MNIST's density (``benchmarks/sparse_data.py``), with a
  warning; the row names say which.
- Fashion-MNIST's 60,000 training images from Debian's ``dataset-fashion-mnist`` package
  (``/usr/share/datasets/fashion-mnist``); skipped, with the reason, where it is not installed.
- The floor: the step's dense FLOPs (3.16 GFLOP for 60,000 samples) at the speed of a large
  float32 matrix product (2048 x 2048, NumPy's OpenBLAS, all cores), timed in the same run.
  Its row is that product's time scaled by the FLOP ratio.
- The crossover: both paths on generated strokes at densities 10-70%, where ``auto`` changes
  sides for this network (``backends/numba_sparse_choice.py`` holds the measured rule for
  other widths and batch sizes; ``benchmarks/sparse_crossover.py`` measures it).
- The compression itself (once per fit): its time, and the memory the sparse fit holds beyond
  the images (in ``extra_info``: the compressed form and the step's buffers, traced).

    netcore bench -- -k test_sparse
"""

from __future__ import annotations

import tracemalloc
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from netcore import MLP
from netcore.datasets import load_idx_folder, read_idx
from .report import epoch_flop

from .conftest import TUTORIAL, Settings, numba_threads, run, skip_unless_available
from .sparse_data import MNIST_DENSITY, strokes

MNIST_TEST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
FASHION = Path("/usr/share/datasets/fashion-mnist")
SGEMM = 2048


@cache
def mnist_density(samples: int, folder: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """``(X uint8, labels, what)``: MNIST's test images tiled to ``samples``, or generated ones.

    The images come from ``folder`` (``--netcore-data``) if given, which must then hold them,
    else from the checkout's ``../shared/data/mnist``; without either the rows time generated
    strokes, say so in their names, and a warning names the path that was looked for."""
    images = MNIST_TEST
    if folder:  # gzipped or not, as the dataset loader takes them
        found = [p for p in (Path(folder) / MNIST_TEST.name, Path(folder) / MNIST_TEST.stem) if p.exists()]
        images = found[0] if found else Path(folder) / MNIST_TEST.name
    if images.exists():
        X = read_idx(images).reshape(-1, 784)
        labels = read_idx(images.with_name(images.name.replace("images-idx3", "labels-idx1"))).astype(np.intp)
        reps = -(-samples // len(X))
        what = f"MNIST t10k tiled to {samples:,}"
        return np.ascontiguousarray(np.tile(X, (reps, 1))[:samples]), np.tile(labels, reps)[:samples], what
    if folder:
        pytest.fail(f"--netcore-data {folder}: no {MNIST_TEST.name} there for the sparse benchmark's MNIST rows", pytrace=False)
    warnings.warn(f"MNIST's test images are not at {images.resolve()}: the sparse rows time generated strokes at MNIST's density "
                  "(pass --netcore-data DIR to time the real images)", stacklevel=2)
    X = strokes(samples, 784, MNIST_DENSITY, seed=0)
    return X, np.arange(samples) % 10, f"generated strokes at MNIST's density, {samples:,}"


@cache
def fashion(samples: int) -> tuple[np.ndarray, np.ndarray, str]:
    train, _ = load_idx_folder(FASHION)
    X, y = train
    X = np.ascontiguousarray(X.reshape(len(X), -1)[:samples])
    return X, np.asarray(y[:samples], np.intp), f"Fashion-MNIST train, {len(X):,}"


def _data(kind: str, settings: Settings):
    if kind == "fashion":
        if not (FASHION / "train-images-idx3-ubyte.gz").exists():
            pytest.skip(f"Fashion-MNIST is not installed in {FASHION} (apt-get install dataset-fashion-mnist)")
        return fashion(settings.samples)
    return mnist_density(settings.samples, settings.data)


def _net(path: str):
    from netcore.backends.numba_backend import NumbaBackend

    return MLP(TUTORIAL, "tanh", backend=NumbaBackend("float32", first_layer=path), dtype="float32", seed=2)


def _step(net, batch):
    ops = net.backend

    def step():
        loss, _ = net.train_step(batch.X, batch.Y, 0.1)
        return ops.to_float(loss)

    return step


def _group(kind: str, settings: Settings) -> str:
    what = _data(kind, settings)[2]
    return f"full-batch step, 784-16-16-10 tanh, {what}"


@pytest.mark.parametrize("kind", ["mnist", "fashion"])
@pytest.mark.parametrize("path,threads", [("dense", None), ("sparse", None), ("auto", None), ("dense", 1), ("sparse", 1)],
                         ids=["dense", "sparse", "auto", "dense-1-thread", "sparse-1-thread"])
def test_step(benchmark, settings, kind, path, threads):
    skip_unless_available("numba")
    import numba

    X, y, what = _data(kind, settings)
    benchmark.group = _group(kind, settings)
    before = numba.get_num_threads()
    if threads is not None:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        net = _net(path)
        batch = net.prepare(X, y)
        taken, reason = net.backend.first_layer_path(batch.X)
        density = float(np.count_nonzero(X) / X.size)
        label = f"numba float32, {path} path" + (f" (took {taken})" if path == "auto" else "") + (f", {threads} thread" if threads else "")
        run(benchmark, _step(net, batch), settings, label=label, backend="numba", dtype="float32", input="uint8", samples=len(X),
            threads=numba_threads(), flop=epoch_flop(TUTORIAL, len(X)), first_layer=taken, reason=reason, density=density, data=what)
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("kind", ["mnist", "fashion"])
def test_dense_floor(benchmark, settings, kind):
    """The step's dense FLOPs at large-sgemm speed: a 2048 x 2048 float32 product, timed, its time
    scaled by the FLOP ratio (recorded as an extrapolation)."""
    X, _, _ = _data(kind, settings)
    benchmark.group = _group(kind, settings)
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((2, SGEMM, SGEMM), dtype=np.float32)
    out = np.empty_like(A)
    sgemm_flop, step_flop = 2 * SGEMM**3, epoch_flop(TUTORIAL, len(X))
    run(benchmark, lambda: np.matmul(A, B, out=out), settings,
        label=f"floor: the step's {step_flop / 1e9:.2f} GFLOP at float32 sgemm speed ({SGEMM}x{SGEMM}, NumPy's BLAS)",
        backend="sgemm", dtype="float32", input="float", samples=sgemm_flop, epoch_samples=step_flop, flop=sgemm_flop)


DENSITIES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]


@pytest.mark.benchmark(group="crossover: full-batch step, 784-16-16-10 tanh, generated strokes")
@pytest.mark.parametrize("density", DENSITIES, ids=[f"{d:.0%}" for d in DENSITIES])
@pytest.mark.parametrize("path", ["dense", "sparse"])
def test_crossover(benchmark, settings, density, path):
    skip_unless_available("numba")
    X = _strokes(settings.samples, density)
    net = _net(path)
    batch = net.prepare(X, np.arange(len(X)) % 10)
    real = float(np.count_nonzero(X) / X.size)
    run(benchmark, _step(net, batch), settings, label=f"numba float32, {path} path, {real:.0%} nonzero", backend="numba",
        dtype="float32", input="uint8", samples=len(X), threads=numba_threads(), flop=epoch_flop(TUTORIAL, len(X)), density=real)


@cache
def _strokes(samples: int, density: float) -> np.ndarray:
    return strokes(samples, 784, density, seed=0)


@pytest.mark.benchmark(group="sparse first layer: compressing the inputs (once per fit)")
@pytest.mark.parametrize("kind", ["mnist", "fashion"])
def test_compress(benchmark, settings, kind):
    """Counting and compressing the images, timed; and, traced, what a sparse fit holds beyond
    the images: the compressed form, the one-hot targets and every buffer of a step."""
    skip_unless_available("numba")
    X, y, what = _data(kind, settings)
    net = _net("sparse")
    net.loss_and_gradients(*net.prepare(X[:64], y[:64])[:2])  # compile outside the trace and timing
    tracemalloc.start()
    try:
        batch = net.prepare(X, y)
        for _ in range(2):
            net.train_step(batch.X, batch.Y, 0.1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    S = batch.X
    run(benchmark, lambda: net.prepare(X, y), settings, label=f"compress {what} ({S.density:.1%} nonzero)", backend="numba",
        dtype="float32", input="uint8", samples=len(X), dataset_mb=X.nbytes / 1e6, compressed_mb=S.nbytes / 1e6,
        held_mb=peak / 1e6, target_mb=X.nbytes / 1e6 + 10)
