"""Benchmark reporting: pytest-benchmark JSON -> a table of epoch times and a log-scale bar chart.

Used by ``python -m benchmarks`` (and ``netcore bench``, which runs it) and by the suites, for
:func:`epoch_flop`. It belongs to the benchmarks, not the product: ``netcore`` never imports it.

Each benchmark records in ``extra_info`` what it ran: ``label``, ``backend``, ``dtype``, ``input``,
``samples``, ``threads``, ``flop`` (per timed call), ``reference`` (``"python"`` for the naive
baseline, ``"numpy"`` for the NumPy backend's row of its dtype) and, for the naive baseline run on
a few samples, ``epoch_samples`` (the full epoch its time is extrapolated to, linearly).
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from netcore.plots import save_figure


def epoch_flop(layer_sizes: Sequence[int], n_samples: int) -> int:
    """Floating-point operations of one forward + backward pass (multiply-add = 2).

    Forward ``2·in·out`` per layer, weight gradient ``2·in·out``, and the gradient passed down
    ``2·in·out`` for every layer but the first. The tutorial network on 60,000 samples: 3.16 GFLOP.
    """
    pairs = list(zip(layer_sizes[:-1], layer_sizes[1:]))
    per_sample = sum(6 * a * b for a, b in pairs) - 2 * pairs[0][0] * pairs[0][1]
    return per_sample * n_samples


@dataclass
class Row:
    """One benchmark, normalised to milliseconds per full epoch."""

    label: str
    group: str
    ms: float
    gflops: float | None
    extrapolated: bool
    info: dict[str, Any]


def load_rows(data: dict[str, Any]) -> list[Row]:
    """Rows from a pytest-benchmark JSON document, medians scaled to a full epoch."""
    rows = []
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        seconds = bench["stats"]["median"]
        samples, epoch = info.get("samples"), info.get("epoch_samples")
        extrapolated = bool(epoch and samples and epoch != samples)
        if extrapolated:
            seconds *= epoch / samples
        flop = info.get("flop")
        if flop and extrapolated:
            flop *= epoch / samples
        label = info.get("label") or bench["name"]
        rows.append(Row(label, bench.get("group") or "", seconds * 1e3, flop / seconds / 1e9 if flop else None, extrapolated, info))
    return rows


def _reference(rows: list[Row], group: str, name: str, dtype: str | None = None) -> Row | None:
    """The row a benchmark marked ``reference=name`` (the naive baseline, or NumPy per dtype)."""
    for r in rows:
        if r.group == group and r.info.get("reference") == name and (dtype is None or r.info.get("dtype") == dtype):
            return r
    return None


def table(rows: list[Row]) -> str:
    """A Markdown table: ms/epoch, GFLOP/s, speedup over the naive baseline and over NumPy."""
    lines = []
    for group in dict.fromkeys(r.group for r in rows):
        members = sorted((r for r in rows if r.group == group), key=lambda r: r.ms)
        naive = _reference(rows, group, "python")
        lines += [
            f"**{group}**" if group else "",
            "",
            "| benchmark | ms/epoch | GFLOP/s | vs python | vs numpy (same dtype) |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in members:
            numpy = _reference(rows, group, "numpy", r.info.get("dtype"))
            ms = f"{r.ms:,.1f}" + (" (extrapolated)" if r.extrapolated else "")
            gflops = f"{r.gflops:.1f}" if r.gflops else ""
            vs_naive = f"{naive.ms / r.ms:,.0f}x" if naive else ""
            vs_numpy = (f"{numpy.ms / r.ms:.2f}x" if numpy.ms >= 0.01 * r.ms else f"{numpy.ms / r.ms:.1e}x") if numpy else ""
            lines.append(f"| {r.label} | {ms} | {gflops} | {vs_naive} | {vs_numpy} |")
        lines.append("")
    return "\n".join(lines).strip() + "\n"


def plot(rows: list[Row], path: str | os.PathLike) -> None:
    """A horizontal bar chart of ms/epoch, log scale, one panel per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    groups = list(dict.fromkeys(r.group for r in rows))
    heights = [max(2.0, 0.35 * sum(r.group == g for r in rows) + 1) for g in groups]
    fig, axes = plt.subplots(len(groups), 1, figsize=(12, sum(heights)), gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, group in zip(axes[:, 0], groups):
        members = sorted((r for r in rows if r.group == group), key=lambda r: r.ms, reverse=True)
        colors = ["#bbbbbb" if r.extrapolated else "#3b75af" for r in members]
        # Bars on a log axis all start from the decade below the fastest, so their lengths compare
        # honestly (matplotlib would otherwise start them wherever the axis happens to begin).
        base = 10 ** math.floor(math.log10(min(r.ms for r in members)))
        ax.barh([r.label + (" (extrap.)" if r.extrapolated else "") for r in members], [r.ms - base for r in members], left=base, color=colors)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # a narrow range labels its minor ticks, on top of each other
        ax.set_xlim(base, 10 ** math.ceil(math.log10(max(r.ms for r in members) * 3)))  # room for the labels
        ax.set_xlabel("ms (log scale)")
        ax.set_title(textwrap.fill(group or "benchmarks", 50), fontsize=10)
        for i, r in enumerate(members):
            ax.text(r.ms, i, f" {r.ms:,.1f}", va="center", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)  # atomically: never a half-written plot


def read_json(path: str | os.PathLike) -> list[Row]:
    """Rows of a pytest-benchmark JSON file; a ValueError naming the file if it is not one."""
    with open(path) as fh:
        try:
            data = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not a pytest-benchmark JSON file ({exc})") from None
    try:
        return load_rows(data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is not a pytest-benchmark JSON file (no {exc} where a benchmark's timings go)") from None
