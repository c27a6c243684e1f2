"""Callbacks for :meth:`netcore.trainer.Trainer.fit`: early stopping, checkpoints, a progress bar.

A callback is any object with some of ``on_train_begin(trainer)``, ``on_batch_end(trainer,
batch_log)`` (after each step, with its loss and logits: a :class:`~netcore.trainer.BatchLog`),
``on_epoch_end(trainer, log)`` and ``on_train_end(trainer)``; setting ``trainer.stop_training = True`` ends training after the
current epoch.
"""

from __future__ import annotations

import math
from typing import Any


class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``monitor`` is an :class:`~netcore.trainer.EpochLog` field: ``val_loss`` (default; needs
    validation data), ``loss``, ``val_accuracy`` or ``accuracy``. Losses must fall, accuracies
    rise. With ``restore_best`` the network ends with the parameters of its best epoch.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0, restore_best: bool = True) -> None:
        if monitor not in ("val_loss", "loss", "val_accuracy", "accuracy"):
            raise ValueError(f"EarlyStopping cannot monitor {monitor!r}; choose val_loss, loss, val_accuracy or accuracy")
        self.monitor, self.patience, self.min_delta, self.restore_best = monitor, patience, min_delta, restore_best
        self.sign = 1.0 if monitor.endswith("loss") else -1.0  # compare as "smaller is better"

    def on_train_begin(self, trainer: Any) -> None:
        self.best, self.wait, self.best_params, self.best_epoch = math.inf, 0, None, None
        self.stopped_epoch = None

    def on_epoch_end(self, trainer: Any, log: Any) -> None:
        value = getattr(log, self.monitor)
        if value is None:
            raise ValueError(f"EarlyStopping monitors {self.monitor} but fit() was given no validation_data")
        score = self.sign * value
        if score < self.best - self.min_delta:
            self.best, self.wait, self.best_epoch = score, 0, log.epoch
            if self.restore_best:
                self.best_params = trainer.net.get_parameters()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.stop_training = True
                self.stopped_epoch = log.epoch

    def on_train_end(self, trainer: Any) -> None:
        if self.restore_best and self.best_params is not None and self.stopped_epoch is not None:
            trainer.net.set_parameters(self.best_params)


class ModelCheckpoint:
    """Save the trainer (network, optimizer, epoch, RNG) to ``path`` every ``every`` epochs, atomically.

    ``run`` is stored with it (see :meth:`~netcore.trainer.Trainer.save`).
    """

    def __init__(self, path: str, every: int = 1, run: dict[str, Any] | None = None) -> None:
        self.path, self.every, self.run = path, every, run

    def on_epoch_end(self, trainer: Any, log: Any) -> None:
        if log.epoch % self.every == 0:
            trainer.save(self.path, run=self.run)


class ProgressBar:
    """A tqdm bar over the epochs with loss, accuracy, validation metrics and epoch time."""

    def __init__(self, **tqdm_kwargs: Any) -> None:
        self.kwargs = tqdm_kwargs

    def on_train_begin(self, trainer: Any) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=trainer.target_epochs, initial=trainer.epoch, unit="epoch", **self.kwargs)

    def on_epoch_end(self, trainer: Any, log: Any) -> None:
        stats = {"loss": f"{log.loss:.4f}", "acc": f"{log.accuracy:.4f}"}
        if log.val_loss is not None:
            stats.update(val_loss=f"{log.val_loss:.4f}", val_acc=f"{log.val_accuracy:.4f}")
        stats["epoch"] = f"{log.seconds * 1e3:.1f} ms"
        self.bar.set_postfix(stats, refresh=False)
        self.bar.update(1)

    def on_train_end(self, trainer: Any) -> None:
        self.bar.close()
