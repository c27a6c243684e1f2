"""What ``netcore train`` is asked to do, as one checked object: :class:`TrainConfig`.

The command line builds a TrainConfig from its arguments and hands it over; building one checks
every value (a bad one is a :class:`ConfigError` that names the option), so nothing is loaded or
trained on a configuration that cannot run; :meth:`TrainConfig.check_files` checks the files it
writes. The backend name is checked where it is resolved, once, by the command.

A checkpoint records the run it belongs to: the trainer stores the architecture, dtype, optimizer
and its rate, batch size, L2 and seed itself, and :meth:`TrainConfig.run_record` adds the data,
how its samples were given to the network, the rate's schedule and the epochs aimed for. With
``resume``, :meth:`TrainConfig.from_options` continues that run: an option not given comes from
the checkpoint; one given with another value is an error naming both, except those that can
change mid-run (:data:`CHANGEABLE`), which are applied and said so in ``notes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from netcore import backends
from netcore.backends.numba_sparse_choice import check_first_layer

from . import checkpoint
from .datasets import Data, check_dataset, check_fraction
from .files import check_destination
from .optim import StepLR, get_optimizer
from .validation import check_activation, check_layer_sizes, check_non_negative, check_positive_int

TUTORIAL_LR = 1.0  # plain gradient descent's default rate: the tutorial's
TUTORIAL_DROP = 75  # and its drop to a tenth after iteration 75
DEFAULT_EPOCHS = 100

# What a resumed run may change (and says so); another recorded option given with a different
# value is an error. The rate and its drop can change mid-run, and a data folder can move.
CHANGEABLE = ("epochs", "lr", "lr_drop_at", "data")


class ConfigError(ValueError):
    """An option of a run is invalid, or contradicts the checkpoint it resumes; the message names it."""


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


class _checking:
    """``with _checking("lr"):`` turns a library's ValueError or TypeError into a ConfigError naming ``--lr``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, (ValueError, TypeError)) and not isinstance(exc, ConfigError):
            raise ConfigError(f"{_option(self.name)}: {exc}") from None
        return False


@dataclass(frozen=True)
class TrainConfig:
    """One training run: its data, network, optimisation, where it runs and what it writes.

    ``None`` means "the default": ``lr`` 1.0 for sgd (the tutorial's) and the optimizer's own
    otherwise; ``lr_drop_at`` 75 for full-batch sgd (the tutorial's drop) and never otherwise;
    ``batch_size`` the full batch; ``epochs`` 100, or the resumed checkpoint's target;
    ``dataset`` and ``data`` both None: MNIST, else the bundled digits.
    """

    dataset: str | None = None
    data: str | None = None
    validation: float = 0.1
    hidden: tuple[int, ...] = (16, 16)
    activation: str = "tanh"
    dtype: str = "float32"
    seed: int = 2
    optimizer: str = "sgd"
    lr: float | None = None
    lr_drop_at: int | None = None
    batch_size: int | None = None
    l2: float = 0.0
    epochs: int | None = None
    backend: str | None = None
    first_layer: str = "auto"  # the numba backend's first-layer path: by the inputs' density, or forced
    workers: int | None = None
    scheduler: str | None = None
    save: str | None = None
    resume: str | None = None
    plot: str | None = None
    progress: bool = True
    notes: tuple[str, ...] = ()  # how the options were settled (a resumed run's changes), for the person

    def __post_init__(self) -> None:
        if self.dataset is not None and self.data is not None:
            raise ConfigError("give --dataset or --data, not both")
        if self.workers is not None and self.scheduler is not None:
            raise ConfigError("give --workers or --scheduler, not both")
        with _checking("dataset"):
            if self.dataset is not None:
                check_dataset(self.dataset)
        with _checking("validation"):
            check_fraction(self.validation)
        with _checking("hidden"):
            if not self.hidden:
                raise ValueError("no hidden layer given; give widths such as 16,16")
            check_layer_sizes((1, *self.hidden, 2))
        with _checking("activation"):
            check_activation(self.activation)
        with _checking("dtype"):
            backends.check_dtype(self.dtype)
        with _checking("seed"):
            if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
                raise ValueError(f"the seed must be an integer in 0..2**32-1, got {self.seed!r}")
        with _checking("optimizer"):
            get_optimizer(self.optimizer)
        with _checking("lr"):
            if self.lr is not None:
                get_optimizer(self.optimizer, lr=self.lr)
        with _checking("lr_drop_at"):
            if self.lr_drop_at is not None and (isinstance(self.lr_drop_at, bool) or not isinstance(self.lr_drop_at, int) or self.lr_drop_at < 0):
                raise ValueError(f"the epoch of the rate drop must be an integer >= 0 (0 = never), got {self.lr_drop_at!r}")
        with _checking("batch_size"):
            if self.batch_size is not None:
                check_positive_int(self.batch_size, "the batch size")
        with _checking("l2"):
            check_non_negative(self.l2, "the L2 penalty")
        with _checking("epochs"):
            if self.epochs is not None:
                check_positive_int(self.epochs, "the number of epochs")
        with _checking("workers"):
            if self.workers is not None:
                check_positive_int(self.workers, "the number of workers")
        with _checking("first_layer"):
            check_first_layer(self.first_layer)
            if self.first_layer != "auto" and self.distributed:
                raise ValueError(f"{self.first_layer!r} cannot be forced in data-parallel training (each worker's backend chooses for its rows); "
                                 "leave --first-layer out with --workers or --scheduler")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> TrainConfig:
        """The config of the ``options`` given, defaults for the rest; with ``resume``, the rest
        come from the checkpoint instead (see the module's docstring)."""
        cfg = cls(**options)
        if cfg.resume is None:
            return cfg
        _, meta = checkpoint.load(cfg.resume)
        if meta.get("kind") != "trainer":
            raise ConfigError(f"--resume: {cfg.resume} holds a network without training state; it can be evaluated, not resumed")
        return cfg._resumed(meta, set(options))

    def _resumed(self, meta: dict[str, Any], given: set[str]) -> TrainConfig:
        recorded = recorded_options(meta)
        changes: dict[str, Any] = {}
        notes = list(self.notes)
        for name, value in recorded.items():
            if name not in given:
                changes[name] = value
            elif not _same(name, getattr(self, name), value):
                if name not in CHANGEABLE:
                    raise ConfigError(f"{_option(name)} {_show(getattr(self, name))} contradicts the checkpoint {self.resume}, which was trained "
                                      f"with {_option(name)} {_show(value)}; leave {_option(name)} out to continue that run")
                notes.append(f"{_option(name)} {_show(getattr(self, name))} replaces the checkpoint's {_show(value)}")
        if "dataset" in given and "data" in recorded:
            raise ConfigError(f"--dataset {self.dataset} contradicts the checkpoint {self.resume}, which was trained on the folder {recorded['data']}")
        if "data" in given:  # a folder given replaces a recorded dataset name too (it may hold the same files)
            changes.pop("dataset", None)
            if "dataset" in recorded:
                notes.append(f"--data {self.data} replaces the checkpoint's dataset {recorded['dataset']}")
        if not isinstance(meta.get("run"), dict):
            notes.append(f"{self.resume} does not record its data and schedule (it was not written by netcore train); the command line's apply")
        cfg = replace(self, **changes, notes=tuple(notes))
        done = int(meta.get("epoch", 0))
        if done >= cfg.target_epochs:
            raise ConfigError(f"--epochs: {self.resume} is already at epoch {done} of {cfg.target_epochs}; "
                              f"--epochs counts all the epochs of the run, so ask for more than {done}")
        return cfg

    # -- defaults that depend on other options -----------------------------------------------
    @property
    def full_batch(self) -> bool:
        return self.batch_size is None

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        return TUTORIAL_LR if self.optimizer == "sgd" else get_optimizer(self.optimizer).lr

    @property
    def drop_at(self) -> int:
        """The 0-based epoch after which the rate is a tenth; 0 = never."""
        if self.lr_drop_at is not None:
            return self.lr_drop_at
        return TUTORIAL_DROP if self.optimizer == "sgd" and self.full_batch else 0

    def schedule(self) -> StepLR | None:
        return StepLR(self.learning_rate, self.drop_at) if self.drop_at else None

    @property
    def target_epochs(self) -> int:
        return DEFAULT_EPOCHS if self.epochs is None else self.epochs

    @property
    def distributed(self) -> bool:
        return self.workers is not None or self.scheduler is not None

    # -- files ----------------------------------------------------------------------------------
    def check_files(self) -> None:
        """The files this run writes can be written (checked before any work, not after it)."""
        for name in ("save", "plot"):
            path = getattr(self, name)
            if path is None:
                continue
            try:
                if name == "plot":
                    from .plots import check_plot_path

                    check_plot_path(path)
                else:
                    check_destination(path)
            except ValueError as exc:
                raise ConfigError(f"{_option(name)}: {exc}") from None
            except OSError as exc:
                raise type(exc)(f"{_option(name)}: {exc}") from None

    # -- checkpoints: the run a checkpoint belongs to -------------------------------------------
    def run_record(self, data: Data) -> dict[str, Any]:
        """What ``netcore train`` stores in its checkpoints besides the trainer's own state."""
        return {"source": data.source, "validation": self.validation, "input": data.input_record(),
                "optimizer": self.optimizer, "lr_drop_at": self.drop_at, "epochs": self.target_epochs}


def _same(name: str, a: Any, b: Any) -> bool:
    if name == "data":
        return Path(a).resolve() == Path(b).resolve()
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9)
    return a == b


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "the full batch" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _optimizer_name(config: dict[str, Any]) -> str:
    """The command line's name for a stored optimizer configuration."""
    if config.get("name") != "sgd":
        return config["name"]
    if config.get("nesterov"):
        return "nesterov"
    return "momentum" if config.get("momentum") else "sgd"


def recorded_options(meta: dict[str, Any]) -> dict[str, Any]:
    """The options a trainer checkpoint's ``meta`` records, by :class:`TrainConfig` field."""
    try:
        sizes, optimizer, trainer = meta["layer_sizes"], meta["optimizer"], meta["trainer"]
        out = {"hidden": tuple(sizes[1:-1]), "activation": meta["activation"], "dtype": meta["dtype"],
               "optimizer": _optimizer_name(optimizer), "lr": float(optimizer["lr"]),
               "batch_size": trainer["batch_size"], "l2": float(trainer["l2"])}
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise ConfigError(f"--resume: the checkpoint lacks its training configuration ({exc!r})") from None
    if trainer.get("seed") is not None:
        out["seed"] = trainer["seed"]
    run = meta.get("run")
    if isinstance(run, dict):
        source = run.get("source") or {}
        out.update({k: source[k] for k in ("dataset", "data") if k in source})
        out.update({k: run[k] for k in ("validation", "lr_drop_at", "epochs", "optimizer") if k in run})
    names = {f.name for f in fields(TrainConfig)}
    return {k: v for k, v in out.items() if k in names}
