"""One full-batch epoch (forward + backward + update) of the tutorial network, every backend and peer."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from netcore import MLP

from . import tutorial_original as tutorial
from .conftest import TUTORIAL, numba_threads, run, scaled, skip_unless_available
from .report import epoch_flop

GROUP = "full-batch epoch, 784-16-16-10 tanh"

CASES = [
    ("numpy", "float64", "float"),
    ("numpy", "float32", "float"),
    ("numpy", "float32", "uint8"),
    ("numba", "float64", "float"),
    ("numba", "float32", "float"),
    ("numba", "float32", "uint8"),
    ("cupy", "float64", "float"),
    ("cupy", "float32", "float"),
    ("cupy", "float32", "uint8"),
]


def _epoch(net, X, y):
    batch = net.prepare(X, y)
    ops = net.backend

    def epoch():
        loss, _ = net.train_step(batch.X, batch.Y, 0.1)
        return ops.to_float(loss)  # reading the loss back also waits for an asynchronous device

    return epoch


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("backend,dtype,inp", CASES, ids=["-".join(c) for c in CASES])
def test_backend(benchmark, settings, images, backend, dtype, inp):
    skip_unless_available(backend)
    X = images[0] if inp == "uint8" else scaled(settings.samples, settings.data, dtype)
    net = MLP(TUTORIAL, backend=backend, dtype=dtype, seed=2)
    threads = numba_threads() if backend == "numba" else None
    run(
        benchmark, _epoch(net, X, images[1]), settings,
        label=f"{backend} {dtype}, {inp} input", backend=backend, dtype=dtype, input=inp,
        samples=settings.samples, threads=threads, flop=epoch_flop(TUTORIAL, settings.samples),
        reference="numpy" if backend == "numpy" and inp == "float" else None,
    )


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("threads", [1, 2])
def test_numba_threads(benchmark, settings, images, threads):
    """The fused kernel on 1 and 2 threads in the same run (the target: 2 threads >= 1.7x)."""
    skip_unless_available("numba")
    import numba

    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"only {numba.config.NUMBA_NUM_THREADS} Numba threads here")
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        net = MLP(TUTORIAL, backend="numba", dtype="float32", seed=2)
        run(
            benchmark, _epoch(net, images[0], images[1]), settings,
            label=f"numba float32, uint8 input, {threads} thread{'s' if threads > 1 else ''}", backend="numba",
            dtype="float32", input="uint8", samples=settings.samples, threads=threads, flop=epoch_flop(TUTORIAL, settings.samples),
        )
    finally:
        numba.set_num_threads(before)


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("samples", [20, 40])
def test_python_baseline(benchmark, settings, images, samples):
    """The for-loop baseline on a few samples; its epoch time scales linearly and is extrapolated."""
    if settings.quick:
        samples //= 4
    net = MLP(TUTORIAL, backend="python", dtype="float64", seed=2)
    X, y = images[0][:samples], images[1][:samples]
    run(
        benchmark, _epoch(net, X, y), settings, rounds=1 if settings.quick else 3,
        label=f"python (for-loops), measured on {samples} samples", backend="python", dtype="float64", input="uint8",
        samples=samples, epoch_samples=settings.samples, threads=1, flop=epoch_flop(TUTORIAL, samples),
        reference="python" if samples == (40 if not settings.quick else 10) else None,
    )


@pytest.mark.benchmark(group=GROUP)
def test_peer_tutorial_code(benchmark, settings, images):
    """The user's "before": one iteration of the tutorial's own ``model`` loop, as its code does it
    (forward, cost, accuracy, backward, update; float64, column layout, its exp-formula tanh)."""
    X = np.ascontiguousarray(scaled(settings.samples, settings.data, "float64").T)
    y = tutorial.one_hot(images[1], 10).T
    parameters = tutorial.initialize_parameters(TUTORIAL[0], list(TUTORIAL[1:]))

    def iteration():
        nonlocal parameters
        A3, cache = tutorial.forward_propagation(X, parameters)
        cost = -np.mean(y * np.log(A3 + 1e-8))
        y_hat = np.argmax(A3, axis=0)
        Y = np.argmax(y, axis=0)
        accuracy = (y_hat == Y).mean()
        grads = tutorial.backward_propagation(X, y, cache, parameters)
        parameters = tutorial.update_parameters(parameters, grads, 0.1)
        return cost, accuracy

    run(benchmark, iteration, settings, label="peer: the tutorial's NumPy code, float64", backend="tutorial", dtype="float64",
        input="float", samples=settings.samples, flop=epoch_flop(TUTORIAL, settings.samples))


@pytest.mark.benchmark(group=GROUP)
def test_peer_pytorch(benchmark, settings, images):
    if importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed (pip install torch) — the peer is skipped")
    import torch

    X = torch.from_numpy(scaled(settings.samples, settings.data, "float32"))
    y = torch.from_numpy(images[1].astype(np.int64))
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(784, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(X), y)
        loss.backward()
        opt.step()
        return loss.item()

    run(benchmark, step, settings, label=f"peer: PyTorch {torch.__version__} CPU, float32", backend="torch", dtype="float32",
        input="float", samples=settings.samples, threads=torch.get_num_threads(), flop=epoch_flop(TUTORIAL, settings.samples))


@pytest.mark.benchmark(group=GROUP)
def test_peer_jax(benchmark, settings, images):
    """JAX on the CPU: the whole step (forward, cross-entropy, gradient, SGD update) as one
    ``jit``-compiled function, float32, on the scaled images; its compile is in the warm-up."""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is not installed (pip install jax) — the peer is skipped")
    import jax
    import jax.numpy as jnp

    X = jnp.asarray(scaled(settings.samples, settings.data, "float32"))
    Y = jax.nn.one_hot(jnp.asarray(images[1]), 10, dtype=jnp.float32)
    rng = np.random.default_rng(2)
    params = [(jnp.asarray(rng.standard_normal((b, a), dtype=np.float32) * 0.1), jnp.zeros(b, jnp.float32))
              for a, b in zip(TUTORIAL[:-1], TUTORIAL[1:])]

    def loss(params, X, Y):
        a = X
        for W, b in params[:-1]:
            a = jnp.tanh(a @ W.T + b)
        W, b = params[-1]
        return -jnp.mean(jnp.sum(Y * jax.nn.log_softmax(a @ W.T + b), axis=1))

    @jax.jit
    def step(params, X, Y):
        value, grads = jax.value_and_grad(loss)(params, X, Y)
        return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads), value

    def epoch():
        nonlocal params
        params, value = step(params, X, Y)
        return float(value)  # waits for the step

    run(benchmark, epoch, settings, label=f"peer: JAX {jax.__version__} CPU, jit(value_and_grad), float32", backend="jax", dtype="float32",
        input="float", samples=settings.samples, flop=epoch_flop(TUTORIAL, settings.samples))


@pytest.mark.benchmark(group=GROUP)
def test_peer_sklearn(benchmark, settings, images):
    import warnings

    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X = scaled(settings.samples, settings.data, "float32")
    clf = MLPClassifier((16, 16), activation="tanh", solver="sgd", batch_size=len(X), learning_rate_init=0.1, momentum=0.0, random_state=2)
    classes = np.arange(10)

    def epoch():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.partial_fit(X, images[1], classes=classes)

    run(benchmark, epoch, settings, label=f"peer: scikit-learn {sklearn.__version__} MLPClassifier, float32", backend="sklearn",
        dtype="float32", input="float", samples=settings.samples, flop=epoch_flop(TUTORIAL, settings.samples))
