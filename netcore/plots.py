"""Training curves: loss and accuracy per epoch, training and validation, written atomically.

The file format follows the destination's extension (``.png``, ``.svg``, ``.pdf``, ...);
:func:`check_plot_path` refuses an extension matplotlib cannot write, or a destination that
cannot be written, before any training starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .files import atomic_write, check_destination
from .trainer import History

# Formats matplotlib writes without external tools (its "pgf" needs a LaTeX installation).
UNSUPPORTED = ("pgf",)


def plot_formats() -> list[str]:
    """The file extensions :func:`save_figure` can write here."""
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(f for f in FigureCanvasBase.get_supported_filetypes() if f not in UNSUPPORTED)


def check_plot_path(path: str | os.PathLike) -> Path:
    """``path`` if a plot can be written there in the format its extension names, else a ValueError
    (the extension) or OSError (the destination) that says why."""
    path = Path(path)
    ext = path.suffix[1:].lower()
    formats = plot_formats()
    if ext not in formats:
        got = f"extension .{ext}" if ext else "no extension"
        raise ValueError(f"cannot write a plot to {path}: {got}; use one of " + ", ".join(f".{f}" for f in formats))
    return check_destination(path)


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> None:
    """Write a matplotlib figure atomically, in the format of ``path``'s extension, and close it."""
    import matplotlib.pyplot as plt

    path = check_plot_path(path)
    try:
        atomic_write(path, lambda fh: fig.savefig(fh, format=path.suffix[1:].lower(), dpi=dpi))
    finally:
        plt.close(fig)


def plot_history(history: History, path: str | os.PathLike, title: str = "") -> None:
    """Two panels (loss, accuracy), training and (when present) validation, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = history["epoch"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, label in ((ax_loss, "loss", "cross-entropy"), (ax_acc, "accuracy", "accuracy")):
        ax.plot(epochs, history[metric], label="training")
        val = history[f"val_{metric}"]
        if any(v is not None for v in val):
            ax.plot(epochs, val, label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
