"""Mostly-zero images with a handwriting-like structure, for the sparse first layer's benchmarks
(when no real images are at hand) and tests.

Pen strokes on a blank square canvas: each stroke is a smooth random walk, drawn with a 3 x 3
brush (the centre at full intensity, the rim fainter), as MNIST's digits are; strokes start in
the middle of the canvas, as MNIST's centred digits do. Where the strokes fall short of the
density asked for (above about half the canvas) random pixels are added, so any density from
0 to 1 can be asked for.
"""

from __future__ import annotations

import math

import numpy as np

#: MNIST's share of nonzero pixels (its 10,000 test images: 19.3%).
MNIST_DENSITY = 0.193

_BRUSH = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def strokes(n: int, n_features: int = 784, density: float = MNIST_DENSITY, seed: int = 0) -> np.ndarray:
    """``(n, n_features)`` uint8 images, about ``density`` of their pixels nonzero (each image's
    own share drawn around it); the canvas is the smallest square that holds ``n_features``."""
    if not 0 <= density <= 1:
        raise ValueError(f"density must be between 0 and 1, got {density}")
    rng = np.random.default_rng(seed)
    side = math.isqrt(n_features - 1) + 1 if n_features > 1 else 1
    canvas = np.zeros((n, side * side), np.uint8)
    if density == 0 or n == 0:
        return canvas[:, :n_features]
    spread = min(density, 1 - density) / 4
    target = np.clip(rng.normal(density, spread, n), 0, 1) * n_features
    rows = np.arange(n)
    lo, hi = max(1.0, side * 0.15), max(1.0, min(side - 2.0, side * 0.85))  # MNIST's digits keep to the middle
    pos = rng.uniform(lo, hi, (n, 2))
    angle = rng.uniform(0, 2 * np.pi, n)
    stroke_length = max(4, side // 2)
    active = rows[target > 0] if side >= 10 else rows[:0]  # a smaller canvas is all edge: ink at random
    step, steps = 0, int(0.6 * target.max()) + stroke_length  # a step marks 1-3 new pixels
    while len(active) and step < steps:
        if step % stroke_length == 0:  # a new stroke
            pos[active] = rng.uniform(lo, hi, (len(active), 2))
            angle[active] = rng.uniform(0, 2 * np.pi, len(active))
        angle[active] += rng.normal(0, 0.35, len(active))
        pos[active] += np.stack([np.sin(angle[active]), np.cos(angle[active])], axis=1)
        out = ((pos[active] < lo) | (pos[active] > hi)).any(axis=1)  # turn back at the edges
        angle[active[out]] += np.pi
        pos[active] = np.clip(pos[active], lo, hi)
        y, x = pos[active, 0].astype(np.int64), pos[active, 1].astype(np.int64)
        for dy, dx in _BRUSH:
            ink = 255 if dy == dx == 0 else rng.integers(40, 256, len(active)).astype(np.uint8)
            flat = np.clip(y + dy, 0, side - 1) * side + np.clip(x + dx, 0, side - 1)
            canvas[active, flat] = np.maximum(canvas[active, flat], ink)
        step += 1
        if step % 8 == 0:  # images that have their ink stop
            active = active[np.count_nonzero(canvas[active, :n_features], axis=1) < target[active]]
    X = np.ascontiguousarray(canvas[:, :n_features])
    short = target - np.count_nonzero(X, axis=1)
    if (short > 0).any():  # dense images: the rest at random
        add = rng.random(X.shape) < np.clip(short / np.maximum(1, n_features - np.count_nonzero(X, axis=1)), 0, 1)[:, None]
        X[add & (X == 0)] = rng.integers(1, 256, int((add & (X == 0)).sum())).astype(np.uint8)
    return X
