"""``netcore train`` and ``netcore evaluate``: arguments in, one :class:`TrainConfig` out, the run.

The data comes from :func:`netcore.datasets.load_data`, the checks from the config and the
library; what is here is the command line's own: its options, the lines it prints, and the
order of the steps (everything is checked before any data is loaded or any epoch runs).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from netcore import backends

from . import checkpoint
from .callbacks import ModelCheckpoint, ProgressBar
from .config import TrainConfig
from .datasets import DATASETS, Data, load_data
from .network import MLP
from .optim import OPTIMIZERS
from .trainer import EpochLog, Trainer


def add_data_arguments(parser: argparse.ArgumentParser, default: str = "mnist, else digits") -> None:
    parser.add_argument("--dataset", help=f"{', '.join(DATASETS)}: MNIST and Fashion-MNIST are found on disk or downloaded, "
                                          f"the digits come with scikit-learn (default: {default})")
    parser.add_argument("--data", metavar="DIR", help="a folder of MNIST-format IDX files, gzipped or not (instead of --dataset)")


def _widths(text: str) -> tuple[int, ...]:
    """``16,16`` -> (16, 16); the values are checked with the rest of the run's options."""
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden takes comma-separated widths such as 16,16; got {text!r}") from None


def add_train_arguments(train: argparse.ArgumentParser) -> None:
    train.add_argument("--backend", help=f"one of {', '.join([*backends.BACKENDS, 'auto'])} (default: $NETCORE_BACKEND, else auto)")
    train.add_argument("--first-layer", metavar="{auto,dense,sparse}",
                       help="the numba backend's first layer: auto takes the sparse path (over the inputs' nonzeros) where their measured "
                            "density pays for this width, dtype and batch size; dense or sparse forces either (default auto)")
    train.add_argument("--dtype", help=f"compute dtype: {' or '.join(backends.DTYPES)} (default float32)")
    train.add_argument("--epochs", type=int, help="epochs in all, counting those of a resumed checkpoint (default 100, or the resumed run's)")
    train.add_argument("--optimizer", help=f"{', '.join(OPTIMIZERS)} (default sgd)")
    train.add_argument("--lr", type=float, help="learning rate (default: 1.0 for sgd, the tutorial's; else the optimizer's: 0.1 with momentum, 0.001 for adam)")
    train.add_argument("--lr-drop-at", type=int, metavar="N", help="multiply the rate by 0.1 once the 0-based epoch exceeds N, the tutorial's `if i > 75` "
                                                                   "(default: 75 for full-batch sgd, as in the tutorial; 0 = never)")
    train.add_argument("--batch-size", type=int, help="samples per step (default: the full batch)")
    train.add_argument("--l2", type=float, metavar="ALPHA", help="L2 penalty, alpha/2 * sum(W**2) / batch as in scikit-learn (default 0)")
    train.add_argument("--hidden", type=_widths, help="hidden layer widths (default 16,16)")
    train.add_argument("--activation", help=f"hidden activation: {', '.join(backends.ACTIVATIONS)} (default tanh)")
    train.add_argument("--seed", type=int, help="seed of the initialisation and shuffling (default 2, the tutorial's)")
    train.add_argument("--validation", type=float, metavar="FRACTION", help="fraction of the training set held out for validation, in [0, 1) (default 0.1; 0 = none)")
    add_data_arguments(train, "mnist, else digits; when resuming, the checkpoint's")
    train.add_argument("--save", metavar="FILE.npz", help="checkpoint after every epoch (atomically); Ctrl-C keeps the last one")
    train.add_argument("--resume", metavar="FILE.npz", help="continue the run of a checkpoint written by --save: options not given come from it, "
                                                            "and one that contradicts it is an error (--epochs, --lr, --lr-drop-at, --data may change)")
    train.add_argument("--plot", metavar="FILE.png", help="write the loss and accuracy curves, training and validation (the extension picks the format)")
    train.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bar (the per-epoch lines stay)")
    train.add_argument("--workers", type=int, help="train data-parallel on a new local Dask cluster of N single-threaded workers")
    train.add_argument("--scheduler", metavar="tcp://HOST:8786", help="train data-parallel on an existing Dask cluster")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The one config of a run: the options given, and for the rest the defaults, or the resumed
    checkpoint's values; checked on creation."""
    return TrainConfig.from_options({f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None})


class _EpochLines:
    """One line per epoch, written above the progress bar."""

    def __init__(self, width: int, note: Callable[[Trainer], str] = lambda trainer: "") -> None:
        self.width, self.note = width, note

    def on_epoch_end(self, trainer: Trainer, e: EpochLog) -> None:
        from tqdm.auto import tqdm

        val = f"  val_loss {e.val_loss:.4f}  val_accuracy {e.val_accuracy:.4f}" if e.val_loss is not None else ""
        tqdm.write(f"epoch {e.epoch:>{self.width}}/{trainer.target_epochs}  loss {e.loss:.4f}  accuracy {e.accuracy:.4f}{val}  {e.seconds * 1e3:8.2f} ms{self.note(trainer)}")
        sys.stdout.flush()


def _notes(notes: Sequence[str]) -> None:
    for note in notes:
        print(f"note: {note}", file=sys.stderr)


def _threads(backend: backends.Backend) -> str:
    """The threads a run computes with: the backend's own pool (where it has one) and the BLAS library's."""
    from threadpoolctl import threadpool_info

    own = backend.describe().get("threads")
    blas = dict.fromkeys(f"BLAS {p['num_threads']} ({p['internal_api']})" for p in threadpool_info() if p.get("user_api") == "blas")
    return ", ".join([*([f"{backend.name} {own}"] if own else []), *blas]) or "1"


def cmd_train(args: argparse.Namespace) -> int:
    return train(config_from_args(args))


@dataclass
class _Setup:
    """What differs between a run in this process and one on Dask workers; the rest of
    :func:`train` (lines, progress, checkpoints, validation, plot, test score) is shared."""

    trainer: Trainer
    data: Data  # on the workers' runs, ``train`` is None: those rows stay on the workers
    n_train: int
    first_line: str
    fit: Callable[[list], object]  # callbacks -> history
    epoch_note: Callable[[Trainer], str] = lambda trainer: ""  # appended to each epoch's line
    first_layer: str = ""  # which first-layer path the steps take, and why


def train(cfg: TrainConfig) -> int:
    """Run ``cfg``: check its files, resolve its backend, load its data, train, report."""
    cfg.check_files()
    _notes(cfg.notes)
    if not cfg.distributed:
        return _run(cfg, _local_setup(cfg))
    client = _connect(cfg)
    try:
        return _run(cfg, _distributed_setup(cfg, client), stop_logs=True)
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None and cfg.workers:
            cluster.close()


def _resume_or_start(cfg: TrainConfig, make: Callable[..., Trainer], net: MLP) -> Trainer:
    trainer = make(net)
    if cfg.resume:
        trainer.restore(cfg.resume)
        trainer.optimizer.lr = cfg.learning_rate  # the checkpoint's, unless --lr replaced it
        print(f"resumed {cfg.resume} at epoch {trainer.epoch} of {cfg.target_epochs}")
    return trainer


def _local_setup(cfg: TrainConfig) -> _Setup:
    backend = backends.get_backend(cfg.backend, cfg.dtype)  # one that cannot run fails before any data is loaded
    _with_first_layer(backend, cfg.first_layer, backends.resolve(cfg.backend, dtype=cfg.dtype).why)  # and --first-layer sparse on one without it
    data = load_data(cfg.dataset, cfg.data, cfg.validation)
    _notes(data.notes)
    # The run's floating-point work (forward 2, backward 4 per weight and sample) lets `auto` keep
    # a small run on numpy rather than compile numba's kernels for it.
    sizes = [data.n_features, *cfg.hidden, data.n_classes]
    work = 6.0 * len(data.train[0]) * sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) * cfg.target_epochs
    backend = backends.get_backend(cfg.backend, cfg.dtype, work=work)
    why = backends.resolve(cfg.backend, work=work, dtype=cfg.dtype).why  # the rule that made that choice, for the first line
    backend = _with_first_layer(backend, cfg.first_layer, why)
    net = MLP([data.n_features, *cfg.hidden, data.n_classes], cfg.activation, backend=backend, dtype=cfg.dtype, seed=cfg.seed)
    trainer = _resume_or_start(cfg, lambda n: Trainer(n, _optimizer_for(cfg), batch_size=cfg.batch_size, schedule=cfg.schedule(), l2=cfg.l2, seed=cfg.seed), net)
    X, y = data.train
    first = f"backend {net.backend.name} ({net.dtype.name}; {why}), threads: {_threads(net.backend)}"
    path, reason = net.backend.first_layer_choice(X, net.layer_sizes, trainer.batch_size)  # what the trainer's prepare will choose
    return _Setup(trainer, data, len(X), first,
                  lambda callbacks: trainer.fit(X, y, cfg.target_epochs, validation_data=data.validation, callbacks=callbacks),
                  first_layer=f"first layer: {path} ({reason})")


def _with_first_layer(backend: backends.Backend, first_layer: str, why: str) -> backends.Backend:
    """``backend`` with its first-layer path forced where ``--first-layer`` asks (a new numba
    backend: the shared one stays ``auto``); a one-line error where the backend has no sparse
    path. Every backend has the dense one."""
    if first_layer == "auto" or backend.name != "numba" and first_layer == "dense":
        return backend
    if backend.name != "numba":
        raise ValueError(f"--first-layer sparse: only the numba backend has a sparse first layer, and this run's backend is "
                         f"{backend.name} ({why}); add --backend numba")
    from netcore.backends.numba_backend import NumbaBackend

    return NumbaBackend(backend.dtype.name, first_layer=first_layer)


def _optimizer_for(cfg: TrainConfig):
    from .optim import get_optimizer

    return get_optimizer(cfg.optimizer, lr=cfg.learning_rate)


def _distributed_setup(cfg: TrainConfig, client) -> _Setup:
    """Workers read their own rows of the training IDX files; validation rows (the last
    ``--validation`` of them, as in one process) and the test set are read here."""
    from pathlib import Path

    from .datasets import dataset_folder, find_split, hold_out_count, open_idx, read_idx, read_idx_header
    from .distributed import DistributedTrainer, IDXRows, idx_partitions

    if cfg.backend:
        backends.get_backend(cfg.backend, cfg.dtype)  # the name is checked here; the workers pick their own device
    folder = Path(cfg.data) if cfg.data else (dataset_folder(cfg.dataset) if cfg.dataset not in (None, "digits") else None)
    if folder is None:
        raise ValueError("distributed training reads IDX files on the workers: give --data DIR or --dataset mnist|fashion-mnist")
    images, labels = find_split(folder, "train", "images"), find_split(folder, "train", "labels")
    if images is None or labels is None:
        raise FileNotFoundError(f"{folder} has no train-images / train-labels files for the workers to read")
    test_images, test_labels = find_split(folder, "t10k", "images"), find_split(folder, "t10k", "labels")
    train_labels = read_idx(labels)  # small: the classes are counted from every split
    n = len(train_labels)
    notes: tuple[str, ...] = ()
    if test_images is None or test_labels is None:  # one split only: its last sixth is the test set, as in one process
        n -= hold_out_count(n, 1 / 6, "test fraction")
        test = IDXRows(str(images), str(labels), n, len(train_labels)).load()
        notes = (f"{folder} holds one split only (training); training on its first {n} samples, testing on the last {len(test[1])}",)
    else:
        test_X = read_idx(test_images)
        test = (test_X.reshape(len(test_X), -1), read_idx(test_labels))
    n_train = n - hold_out_count(n, cfg.validation) if cfg.validation else n
    validation = IDXRows(str(images), str(labels), n_train, n).load() if n_train < n else None
    with open_idx(images) as fh:
        shape = read_idx_header(fh, images)[1][1:]  # the header only: the rows stay on the workers
    data = Data(cfg.dataset or str(folder), {"dataset": cfg.dataset} if cfg.dataset else {"data": str(folder.resolve())}, None, validation,
                test, tuple(shape), notes)
    _notes(notes)
    n_classes = max(data.n_classes, int(train_labels.max()) + 1)
    n_workers = len(client.scheduler_info()["workers"])
    parts = idx_partitions(str(images), str(labels), n_workers, stop=n_train)
    net = MLP([data.n_features, *cfg.hidden, n_classes], cfg.activation, backend="numpy", dtype=cfg.dtype, seed=cfg.seed)
    trainer = _resume_or_start(cfg, lambda n: DistributedTrainer(n, client, parts, _optimizer_for(cfg), batch_size=cfg.batch_size,
                                                                  schedule=cfg.schedule(), l2=cfg.l2, seed=cfg.seed, worker_backend=cfg.backend), net)
    where = cfg.scheduler or f"a local cluster of {n_workers} single-threaded workers"
    first = f"data-parallel on {where}; each worker reads its rows of {images.name} and computes with backend {cfg.backend or 'auto'}"
    first_layer = "first layer: chosen on each worker by its backend (numba: by its rows' density)"

    def fit(callbacks: list) -> object:
        with trainer:
            return trainer.fit(cfg.target_epochs, validation_data=validation, callbacks=callbacks)

    return _Setup(trainer, data, n_train, first, fit, lambda t: f" (communication and scheduling {t.comm_seconds[-1] * 1e3:.1f} ms)", first_layer)


def _run(cfg: TrainConfig, setup: _Setup, stop_logs: bool = False) -> int:
    trainer, data, net = setup.trainer, setup.data, setup.trainer.net
    print(setup.first_line)
    val_note = f" / {len(data.validation[0])} validation" if data.validation else ""
    print(f"data {data.name}: {setup.n_train} train{val_note} / {len(data.test[0])} test samples, {data.n_features} features, {net.n_classes} classes")
    steps = "full batch" if trainer.batch_size is None else f"batches of {trainer.batch_size}"
    rate = f"lr {trainer.optimizer.lr:g}" + (f" (x0.1 from epoch {cfg.drop_at + 2})" if cfg.drop_at else "")
    l2 = f", L2 {trainer.l2:g}" if trainer.l2 else ""
    print(f"network {list(net.layer_sizes)} {net.activation}, {cfg.optimizer}, {rate}, {steps}{l2}, seed {cfg.seed}")
    print(setup.first_layer)
    callbacks: list = [_EpochLines(len(str(cfg.target_epochs)), setup.epoch_note)]
    if cfg.progress:
        callbacks.append(ProgressBar(file=sys.stderr, leave=False, disable=None))
    if cfg.save:
        callbacks.append(ModelCheckpoint(cfg.save, run=cfg.run_record(data)))
    try:
        setup.fit(callbacks)
    except KeyboardInterrupt:
        if stop_logs:
            import logging

            for name in ("asyncio", "distributed", "tornado"):  # the step cut short logs its cancelled calls as they are collected
                logging.getLogger(name).setLevel(logging.CRITICAL)
        kept = (f"; {cfg.save} holds epoch {trainer.epoch}, continue with: netcore train --resume {cfg.save} --save {cfg.save}"
                if cfg.save and trainer.epoch else "")
        print(f"netcore: interrupted during epoch {trainer.epoch + 1}{kept}", file=sys.stderr)
        return 130
    X_test, y_test = data.test
    print(f"test accuracy {net.accuracy(X_test, y_test):.4f} ({len(X_test)} samples)")
    if cfg.plot:
        from .plots import plot_history

        plot_history(trainer.history, cfg.plot, f"{data.name}: {list(net.layer_sizes)} {net.activation}, {cfg.optimizer}")
        print(f"curves written to {cfg.plot}")
    return 0


def add_evaluate_arguments(evaluate: argparse.ArgumentParser) -> None:
    evaluate.add_argument("--model", required=True, metavar="FILE.npz", help="a network or checkpoint written by netcore")
    evaluate.add_argument("--backend", help="backend to evaluate on (default: $NETCORE_BACKEND, else auto)")
    add_data_arguments(evaluate, "the data the model was trained on, else mnist, else digits")


def recorded_data(meta: dict) -> tuple[str | None, str | None]:
    """``(dataset, data folder)`` a checkpoint written by ``netcore train`` records; Nones if none."""
    source = (meta.get("run") or {}).get("source") or {}
    return source.get("dataset"), source.get("data")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from sklearn.metrics import confusion_matrix

    _, meta = checkpoint.load(args.model)  # fails fast on a bad model file
    net = MLP.load(args.model, backend=args.backend)  # ... or backend
    dataset, folder = (args.dataset, args.data) if args.dataset or args.data else recorded_data(meta)
    data = load_data(dataset, folder, for_training=False)  # the test split; a folder's only split, whole
    _notes(data.notes)
    X, y = data.test
    predicted = net.predict(X)
    labels = np.arange(net.n_classes)
    matrix = confusion_matrix(y, predicted, labels=labels)
    print(f"model {args.model}: {list(net.layer_sizes)} {net.activation} {net.dtype.name} on {net.backend.name}")
    print(f"test set {data.name}: {len(X)} samples, accuracy {np.mean(predicted == y):.4f}")
    print("per-class accuracy: " + "  ".join(f"{c}: {matrix[c, c] / max(1, matrix[c].sum()):.3f}" for c in labels))
    print("confusion matrix (rows: true class, columns: predicted):")
    width = max(5, len(str(matrix.max())) + 1)
    print("      " + "".join(f"{c:>{width}}" for c in labels))
    for c in labels:
        print(f"{c:>5} " + "".join(f"{v:>{width}}" for v in matrix[c]))
    return 0


def _connect(cfg: TrainConfig):
    """A Dask client for the run. A new local cluster's worker processes are started with Ctrl-C
    ignored: the terminal sends it to the whole process group, and the command stops them itself
    (each would otherwise print its own traceback)."""
    import signal
    import threading
    import warnings

    from .distributed import connect

    quiet = cfg.workers is not None and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if quiet else None
    try:
        with warnings.catch_warnings():  # another cluster on this machine holds Dask's default HTTP port: harmless
            warnings.filterwarnings("ignore", message="Port .* is already in use")
            return connect(cfg.scheduler, cfg.workers)
    finally:
        if quiet:
            signal.signal(signal.SIGINT, previous)
