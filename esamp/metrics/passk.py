"""Pass@k with the unbiased estimator of Chen et al. (2021), curves, and bootstrap intervals."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) is correct:
    1 - C(n-c, k) / C(n, k), in the stable product form 1 - prod_{i=n-c+1}^{n} (1 - k / i)."""
    if not (0 <= c <= n) or n < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and n >= 1, got n={n}, c={c}")
    if not (1 <= k <= n):
        raise ValueError(f"pass_at_k needs 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def default_ks(n: int) -> list[int]:
    """k = 1, 2, 4, ..., up to n, plus n itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


def passk_curve(counts: Sequence[tuple[int, int]], ks: Sequence[int] | None = None,
                bootstrap: int = 1000, seed: int = 0) -> dict:
    """Mean Pass@k over problems for each k, with a 95% bootstrap interval over problems.

    counts: one (n, c) per problem. Problems may have different n (e.g. a resumed run); a k is reported
    only over problems with n >= k, and its `problems` field says how many that is."""
    if not counts:
        return {"k": [], "pass_at_k": [], "ci_low": [], "ci_high": [], "problems": []}
    n_min = min(n for n, _ in counts)
    ks = list(ks) if ks else default_ks(n_min)
    rng = np.random.default_rng(seed)
    out = {"k": [], "pass_at_k": [], "ci_low": [], "ci_high": [], "problems": []}
    for k in ks:
        vals = np.array([pass_at_k(n, c, k) for n, c in counts if n >= k])
        if vals.size == 0:
            continue
        boot = rng.choice(vals, size=(bootstrap, vals.size), replace=True).mean(1) if bootstrap else vals
        out["k"].append(int(k))
        out["pass_at_k"].append(float(vals.mean()))
        out["ci_low"].append(float(np.percentile(boot, 2.5)))
        out["ci_high"].append(float(np.percentile(boot, 97.5)))
        out["problems"].append(int(vals.size))
    return out


def mean_accuracy(counts: Sequence[tuple[int, int]], bootstrap: int = 1000, seed: int = 0) -> dict:
    """Mean per-problem fraction of correct samples, with a 95% bootstrap interval over problems."""
    if not counts:
        return {"accuracy": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    acc = np.array([c / n for n, c in counts])
    boot = np.random.default_rng(seed).choice(acc, size=(bootstrap, acc.size), replace=True).mean(1)
    return {"accuracy": float(acc.mean()), "ci_low": float(np.percentile(boot, 2.5)),
            "ci_high": float(np.percentile(boot, 97.5))}
