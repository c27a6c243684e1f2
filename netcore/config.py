"""What ``netcore train`` is asked to do, as one checked object: :class:`TrainConfig`.

The command line builds a TrainConfig from its arguments and hands it over; building one checks
every value (a bad one is a :class:`ConfigError` that names the option), so nothing is loaded or
trained on a configuration that cannot run; :meth:`TrainConfig.check_files` checks the files it
writes. The backend name is checked where it is resolved, once, by the command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import backends

from .datasets import check_dataset, check_fraction
from .files import check_destination
from .optim import StepLR, get_optimizer
from .validation import check_activation, check_layer_sizes, check_non_negative, check_positive_int

TUTORIAL_LR = 1.0  # plain gradient descent's default rate: the tutorial's
TUTORIAL_DROP = 75  # and its drop to a tenth after iteration 75
DEFAULT_EPOCHS = 100


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
    workers: int | None = None
    scheduler: str | None = None
    save: str | None = None
    resume: str | None = None
    plot: str | None = None
    progress: bool = True

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
