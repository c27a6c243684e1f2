"""``netcore train`` and ``netcore evaluate``: data selection, the training run, the report."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

import backends

from .callbacks import ModelCheckpoint, ProgressBar
from .datasets import SOURCES, DatasetUnavailableError, Split, load_dataset, load_digits, load_idx_folder
from .network import MLP
from .optim import StepLR
from .trainer import EpochLog, Trainer

DATASETS = (*SOURCES, "digits")
DEFAULT_LR = {"sgd": 1.0, "momentum": 0.1, "nesterov": 0.1, "adam": 0.001}


@dataclass
class Data:
    name: str
    train: Split
    validation: Split | None
    test: Split


def _hold_out(split: Split, fraction: float) -> tuple[Split, Split]:
    X, y = split
    cut = len(X) - int(round(len(X) * fraction))
    return (X[:cut], y[:cut]), (X[cut:], y[cut:])


def load_data(dataset: str | None, data_dir: str | None, validation: float) -> Data:
    """The training, validation and test splits the command asked for.

    ``--data DIR`` reads that folder; ``--dataset`` names one (never falling back); with neither,
    MNIST is used when it is on disk or can be downloaded, else scikit-learn's bundled digits,
    with a notice that says why.
    """
    if data_dir is not None:
        train, test = load_idx_folder(data_dir)
        name = data_dir
        if train is None or test is None:
            one = train if train is not None else test
            train, test = _hold_out(one, 1 / 6)
            print(f"note: {data_dir} holds one split only; training on its first {len(train[0])} samples, testing on the last {len(test[0])}")
    elif dataset == "digits":
        name, (train, test) = "scikit-learn digits", load_digits()
    elif dataset is not None:
        name, (train, test) = dataset, load_dataset(dataset)
    else:
        try:
            name, (train, test) = "mnist", load_dataset("mnist", timeout=5.0)
        except DatasetUnavailableError as exc:
            print(f"note: training on scikit-learn's bundled digits, because {str(exc).split('. To use it offline')[0]}", file=sys.stderr)
            name, (train, test) = "scikit-learn digits (MNIST unavailable)", load_digits()
    val = None
    if validation > 0:
        train, val = _hold_out(train, validation)
    return Data(name, train, val, test)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--dataset", choices=DATASETS, help="mnist, fashion-mnist (found on disk or downloaded) or digits (bundled); default: mnist, else digits")
    group.add_argument("--data", metavar="DIR", help="a folder of MNIST-format IDX files, gzipped or not")


def add_train_arguments(train: argparse.ArgumentParser) -> None:
    train.add_argument("--backend", help=f"one of {', '.join([*backends.BACKENDS, 'auto'])} (default: $NETCORE_BACKEND, else auto)")
    train.add_argument("--dtype", default="float32", choices=backends.DTYPES, help="compute dtype (default float32)")
    train.add_argument("--epochs", type=_positive_int, default=100, help="epochs in all, counting those of a resumed checkpoint (default 100)")
    train.add_argument("--optimizer", default="sgd", choices=list(DEFAULT_LR), help="sgd (default), momentum, nesterov or adam")
    train.add_argument("--lr", type=float, help="learning rate (default: 1.0 for sgd, the tutorial's; 0.1 with momentum; 0.001 for adam)")
    train.add_argument("--lr-drop-at", type=int, help="multiply the rate by 0.1 once the 0-based epoch exceeds N, the tutorial's `if i > 75` (default: 75 for full-batch sgd, as in the tutorial; 0 = never)")
    train.add_argument("--batch-size", type=_positive_int, help="samples per step (default: the full batch)")
    train.add_argument("--hidden", type=_hidden, default=[16, 16], help="hidden layer widths (default 16,16)")
    train.add_argument("--activation", default="tanh", choices=backends.ACTIVATIONS, help="hidden activation (default tanh)")
    train.add_argument("--seed", type=int, default=2, help="seed of the initialisation and shuffling (default 2, the tutorial's)")
    train.add_argument("--validation", type=float, default=0.1, help="fraction of the training set held out for validation (default 0.1; 0 = none)")
    add_data_arguments(train)
    train.add_argument("--save", metavar="FILE.npz", help="checkpoint after every epoch (atomically); Ctrl-C keeps the last one")
    train.add_argument("--resume", metavar="FILE.npz", help="continue from a checkpoint written by --save")
    train.add_argument("--plot", metavar="FILE.png", help="write the loss and accuracy curves, training and validation")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (the per-epoch lines stay)")
    cluster = train.add_mutually_exclusive_group()
    cluster.add_argument("--workers", type=_positive_int, help="train data-parallel on a new local Dask cluster of N single-threaded workers")
    cluster.add_argument("--scheduler", metavar="tcp://HOST:8786", help="train data-parallel on an existing Dask cluster")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text}")
    return value


def _hidden(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden takes comma-separated widths such as 16,16; got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"hidden widths must be positive; got {text!r}")
    return sizes


class _EpochLines:
    """One line per epoch, written above the progress bar."""

    def __init__(self, width: int) -> None:
        self.width = width

    def on_epoch_end(self, trainer: Trainer, e: EpochLog) -> None:
        from tqdm.auto import tqdm

        val = f"  val_loss {e.val_loss:.4f}  val_accuracy {e.val_accuracy:.4f}" if e.val_loss is not None else ""
        tqdm.write(f"epoch {e.epoch:>{self.width}}/{trainer.target_epochs}  loss {e.loss:.4f}  accuracy {e.accuracy:.4f}{val}  {e.seconds * 1e3:8.2f} ms")
        sys.stdout.flush()


def cmd_train(args: argparse.Namespace) -> int:
    if args.workers or args.scheduler:
        return cmd_train_distributed(args)
    backends.get_backend(args.backend, args.dtype)  # an unknown or unavailable backend fails before any data is loaded
    data = load_data(args.dataset, args.data, args.validation)
    (X, y), (X_test, y_test) = data.train, data.test
    full_batch = args.batch_size is None
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    drop = args.lr_drop_at if args.lr_drop_at is not None else (75 if args.optimizer == "sgd" and full_batch else 0)
    schedule = StepLR(lr, drop) if drop else None
    if args.resume:
        trainer = Trainer.load(args.resume, backend=args.backend, schedule=schedule)
        net = trainer.net
        print(f"resumed {args.resume} at epoch {trainer.epoch}")
    else:
        n_classes = int(max(y.max(), y_test.max())) + 1
        net = MLP([X.shape[1], *args.hidden, n_classes], args.activation, backend=args.backend, dtype=args.dtype, seed=args.seed)
        trainer = Trainer(net, args.optimizer, lr=lr, batch_size=args.batch_size, schedule=schedule, seed=args.seed)
    selection = backends.resolve(args.backend)
    print(f"backend {net.backend.name} ({net.dtype.name}; {selection.why})")
    val_note = f" / {len(data.validation[0])} validation" if data.validation else ""
    print(f"data {data.name}: {len(X)} train{val_note} / {len(X_test)} test samples, {X.shape[1]} features, {net.n_classes} classes")
    steps = "full batch" if trainer.batch_size is None else f"batches of {trainer.batch_size}"
    rate = f"lr {lr:g}" + (f" (x0.1 from epoch {drop + 2})" if drop else "")
    print(f"network {list(net.layer_sizes)} {net.activation}, {trainer.optimizer.name}, {rate}, {steps}, seed {args.seed}")
    if net.backend.name == "numba":
        print("the first epoch includes compiling the Numba kernels (cached on disk for later runs)")
    callbacks = [_EpochLines(len(str(args.epochs)))]
    if not args.no_progress:
        callbacks.append(ProgressBar(file=sys.stderr, leave=False, disable=None))
    if args.save:
        callbacks.append(ModelCheckpoint(args.save))
    try:
        trainer.fit(X, y, args.epochs, validation_data=data.validation, callbacks=callbacks)
    except KeyboardInterrupt:
        kept = f"; {args.save} holds epoch {trainer.epoch} (continue with --resume {args.save})" if args.save and trainer.epoch else ""
        print(f"netcore: interrupted during epoch {trainer.epoch + 1}{kept}", file=sys.stderr)
        return 130
    print(f"test accuracy {net.accuracy(X_test, y_test):.4f} ({len(X_test)} samples)")
    if args.plot:
        from .plots import plot_history

        plot_history(trainer.history, args.plot, f"{data.name}: {list(net.layer_sizes)} {net.activation}, {trainer.optimizer.name}")
        print(f"curves written to {args.plot}")
    return 0


def add_evaluate_arguments(evaluate: argparse.ArgumentParser) -> None:
    evaluate.add_argument("--model", required=True, metavar="FILE.npz", help="a network or checkpoint written by netcore")
    evaluate.add_argument("--backend", help="backend to evaluate on (default: $NETCORE_BACKEND, else auto)")
    add_data_arguments(evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from sklearn.metrics import confusion_matrix

    net = MLP.load(args.model, backend=args.backend)  # fails fast on a bad model file or backend
    data = load_data(args.dataset, args.data, 0.0)
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


def cmd_train_distributed(args: argparse.Namespace) -> int:
    """Full-batch (or synchronous mini-batch) training on Dask workers that read their own rows."""
    from pathlib import Path

    from .datasets import dataset_folder, find_split, read_idx
    from .distributed import DistributedTrainer, connect, idx_partitions

    if args.save or args.resume or args.plot:
        raise ValueError("--save, --resume and --plot are not available with --workers / --scheduler yet")
    if args.backend:
        backends.get_backend(args.backend, args.dtype)  # the name is checked here; the workers pick their own device
    folder = Path(args.data) if args.data else (dataset_folder(args.dataset) if args.dataset not in (None, "digits") else None)
    if folder is None:
        raise ValueError("distributed training reads IDX files on the workers: give --data DIR or --dataset mnist|fashion-mnist")
    images, labels = find_split(folder, "train", "images"), find_split(folder, "train", "labels")
    if images is None or labels is None:
        raise FileNotFoundError(f"{folder} has no train-images / train-labels files for the workers to read")
    client = connect(args.scheduler, args.workers)
    try:
        n_workers = len(client.scheduler_info()["workers"])
        parts = idx_partitions(str(images), str(labels), n_workers)
        test_images, test_labels = find_split(folder, "t10k", "images"), find_split(folder, "t10k", "labels")
        n_classes = 10
        net = MLP([784, *args.hidden, n_classes], args.activation, backend="numpy", dtype=args.dtype, seed=args.seed)
        lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
        drop = args.lr_drop_at if args.lr_drop_at is not None else (75 if args.optimizer == "sgd" and args.batch_size is None else 0)
        trainer = DistributedTrainer(net, client, parts, args.optimizer, lr=lr, batch_size=args.batch_size,
                                     schedule=StepLR(lr, drop) if drop else None, seed=args.seed, worker_backend=args.backend)
        where = args.scheduler or f"a local cluster of {n_workers} single-threaded workers"
        print(f"data-parallel on {where}; each worker reads its rows of {images.name} and computes with backend {args.backend or 'auto'}")
        print(f"network {list(net.layer_sizes)} {net.activation}, {trainer.optimizer.name}, lr {lr:g}, "
              + ("full batch" if args.batch_size is None else f"batches of {args.batch_size}") + f", {trainer.n} samples")
        width = len(str(args.epochs))

        class Lines:
            def on_epoch_end(self, t, e):
                print(f"epoch {e.epoch:>{width}}/{args.epochs}  loss {e.loss:.4f}  accuracy {e.accuracy:.4f}  "
                      f"{e.seconds * 1e3:8.1f} ms (communication and scheduling {t.comm_seconds[-1] * 1e3:.1f} ms)", flush=True)

        with trainer:
            trainer.fit(args.epochs, callbacks=[Lines()])
        if test_images is not None and test_labels is not None:
            X_test, y_test = read_idx(test_images), read_idx(test_labels)
            print(f"test accuracy {net.accuracy(X_test.reshape(len(X_test), -1), y_test):.4f} ({len(X_test)} samples)")
    except KeyboardInterrupt:
        print("netcore: interrupted", file=sys.stderr)
        return 130
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None and args.workers:
            cluster.close()
    return 0
