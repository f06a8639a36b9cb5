"""The bootstrap every comparison uses: resamples of items (problems, prompts) drawn once and shared by all
arms, so that differences between arms are paired resample by resample.

    w = bootstrap_weights(len(items), resamples, seed)   # (resamples, items)
    lo, hi = interval(w @ (arm - baseline))              # 95% percentile interval of the paired mean difference

`boot_means` is the nan-aware form (a prompt without a value drops out of each mean) and `finite_interval`
the interval of whatever resamples came out finite; `bootstrap_interval` draws and applies in one call.
"""
from __future__ import annotations

import math

import numpy as np


def bootstrap_weights(n_items: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_items) weights: row r times the values = the mean of bootstrap resample r (items drawn
    with replacement). Stored as counts / n_items so that all arms share the same resamples (paired)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_items, size=(resamples, n_items)) + np.arange(resamples)[:, None] * n_items
    counts = np.bincount(idx.ravel(), minlength=resamples * n_items).reshape(resamples, n_items)
    return counts / n_items


def interval(boot: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap means, per column."""
    lo, hi = np.percentile(boot, [50 * (1 - level), 50 * (1 + level)], axis=0)
    return lo, hi


def bootstrap_interval(values: np.ndarray, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile interval, per column, of the mean of `values` (items, columns) over `resamples`
    bootstrap resamples of the items; pass `arm - baseline` for a paired difference."""
    return interval(bootstrap_weights(len(values), resamples, seed) @ values)


def boot_means(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(resamples,) bootstrap means of per-item `values` under `weights` (resamples, items); items whose
    value is missing (nan) are left out of each mean (nan where a resample holds none)."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    if ok.all():
        return weights @ v
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ np.where(ok, v, 0.0)) / (weights @ ok.astype(float))


def finite_interval(boot: np.ndarray) -> tuple[float, float]:
    """The 95% interval of the finite bootstrap means in `boot` (1-D); (nan, nan) when none is finite."""
    ok = np.isfinite(boot)
    return interval(boot[ok]) if ok.any() else (math.nan, math.nan)
