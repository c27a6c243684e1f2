"""When the ``numba`` backend runs the first layer over compressed rows: the measured rule.

The sparse pass costs about the same per nonzero input whatever the density, the dense one the
same per input; so the sparse pass pays below a crossover density, which depends on the
first layer's width (the sparse pass works in vectors of 16 neurons: 10 neurons cost it as
much as 16, where the dense pass pays for 10), on the dtype, and on the batch (a step's fixed
costs, and mini-batch rows read from anywhere in memory, weigh more on the sparse pass).

The numbers below are crossovers measured on 2 cores of an AMD EPYC (Zen 5, LLVM ``znver5``,
AVX-512), 784 inputs, generated pen-stroke images (``benchmarks/sparse_data.py``), one step
timed on each path at densities 7-70% (``benchmarks/test_sparse.py::test_crossover`` repeats
the measurement; the README's "Sparse first layer" has the run). ``auto`` takes the sparse path
below 95% of the crossover, so that it never picks the slower path by more than a few percent.
"""

from __future__ import annotations

import math
from typing import Any

#: The ways a backend may run the first layer: chosen by the inputs' density, or forced.
FIRST_LAYER = ("auto", "sparse", "dense")

#: Full-batch crossover density by the first layer's width rounded up to whole 16-lane vectors
#: (float32, 60,000 samples, 1 thread; 2 threads measured within 0.01 at 16, 100 and 256). At a
#: width that is not a multiple of 16 the crossover scales by width / padded width (measured:
#: 4 -> 0.12, 8 -> 0.23, 10 -> 0.33, 24 -> 0.32, 100 -> 0.36).
FULL_BATCH = {16: 0.48, 32: 0.44, 64: 0.42, 128: 0.40, 256: 0.335, 512: 0.33}

#: The share of the full-batch crossover that still pays in shuffled mini-batches, by batch
#: size; between, interpolated on log2(batch). Measured crossovers on both cores (widths 16 /
#: 100; ``benchmarks/results/cpu-2026-11-30-znver5-sparse-crossover.txt``): 64 rows 0.29 /
#: 0.19, 200 rows 0.32 / 0.21, 1,000 rows 0.26 / 0.26, i.e. 0.53-0.72 of the table above; on
#: one thread, earlier: 32 rows 0.15 / 0.16. The sparse step's fixed costs (a pass each over W¹
#: and its gradient to transpose them) and a mini-batch's scattered rows weigh on it.
MINI_BATCH = {32: 0.3, 64: 0.5, 200: 0.55}

#: Whole batches smaller than this are treated as mini-batches of their size (the step's fixed
#: costs: the transposed weights and their gradient, a pass each over W¹).
SMALL = 1000

#: float64's crossovers are 0.9x float32's or more (16: 0.45, 100: 0.36).
FLOAT64 = 0.9

#: ``auto`` takes the sparse path below this share of the crossover.
MARGIN = 0.95


def check_first_layer(value: Any) -> str:
    """``value`` if it is one of :data:`FIRST_LAYER`, else a ValueError naming them."""
    if value not in FIRST_LAYER:
        raise ValueError(f"unknown first_layer {value!r}; choose one of {', '.join(FIRST_LAYER)}")
    return value


def _interpolate(table: dict[int, float], x: float) -> float:
    """``table`` at ``x``, linear in log2 between its keys, flat beyond them."""
    keys = sorted(table)
    if x <= keys[0]:
        return table[keys[0]]
    for lo, hi in zip(keys, keys[1:]):
        if x <= hi:
            f = (math.log2(x) - math.log2(lo)) / (math.log2(hi) - math.log2(lo))
            return table[lo] + f * (table[hi] - table[lo])
    return table[keys[-1]]


def sparse_below(width: int, dtype: Any, n_samples: int, batch_size: int | None = None) -> float:
    """The density below which ``auto`` takes the sparse path for a first layer of ``width``
    neurons in ``dtype``, on ``n_samples`` samples in batches of ``batch_size`` (None: all)."""
    padded = -(-width // 16) * 16
    crossover = _interpolate(FULL_BATCH, padded) * width / padded
    batch = n_samples if batch_size is None else min(batch_size, n_samples)
    if batch < n_samples or batch < SMALL:  # shuffled rows, or a step whose fixed costs weigh
        crossover *= _interpolate(MINI_BATCH, batch)
    if str(dtype) == "float64":
        crossover *= FLOAT64
    return MARGIN * crossover


def choose(density: float, width: int, dtype: Any, n_samples: int, batch_size: int | None = None) -> tuple[str, str]:
    """``("sparse" | "dense", why)`` for inputs with this share of nonzeros."""
    threshold = sparse_below(width, dtype, n_samples, batch_size)
    batches = f"batches of {n_samples:,}" if batch_size is None or batch_size >= n_samples else f"batches of {batch_size:,}"
    where = f"for a first layer of {width} neurons in {batches} ({dtype}) on this machine"
    if density < threshold:
        return "sparse", f"auto: {density:.1%} of the inputs are nonzero, below the {threshold:.0%} where the sparse pass pays {where}"
    return "dense", f"auto: {density:.1%} of the inputs are nonzero, at or above the {threshold:.0%} where the sparse pass pays {where}"


def policy() -> str:
    """The rule ``auto`` follows, in words (for ``netcore info``)."""
    return (f"sparse below a measured share of nonzero inputs, {sparse_below(16, 'float32', 60_000):.0%} for a first layer of "
            f"16 neurons to {sparse_below(512, 'float32', 60_000):.0%} for 512 in whole batches of float32, less in mini-batches "
            "(netcore train --first-layer sparse|dense, or first_layer=, forces either)")
