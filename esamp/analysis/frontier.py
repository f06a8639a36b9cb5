"""The creative-writing frontier: is a sampler more diverse than temperature sampling at equal perplexity?

    from esamp.analysis.frontier import frontier_analysis
    from esamp.analysis.frontier_report import write_frontier
    res = frontier_analysis(["results/writing_frontier/temperature_t06", ..., "results/writing_frontier/esamp_b025"])
    write_frontier(res, "experiments/writing_frontier")          # frontier.md / .csv / .png, divergence.png

Evidence protocol §3: the temperature arms trace a curve of diversity (Vendi, mean pairwise cosine) against
quality (the judge's perplexity); another arm is better only if it lies beyond that curve. Everything here is
computed from what the creative-writing task stores per prompt (`task_metrics.per_prompt` of results.json:
vendi, pairwise_cosine, perplexity, divergence_curve, ...), so every interval is a bootstrap over prompts:

* per arm: the mean over prompts of each metric with a 95% percentile interval;
* the resamples are paired: one set of prompt resamples (`esamp.analysis.stats.bootstrap_weights`, the
  same weights for every arm) on the prompts all arms share;
* the frontier test: in each resample, the temperature arms' (perplexity, diversity) means, sorted by
  perplexity, make a piecewise-linear curve; the curve's diversity at the arm's perplexity is subtracted from
  the arm's diversity (`arm - frontier`). The percentile interval of that difference decides: above 0 on
  Vendi (below 0 on cosine, where lower = more diverse) = beyond the frontier; the other side = inside it;
  containing 0 = on it. An arm whose perplexity falls outside the temperature arms' range gets no verdict
  (the fraction of resamples outside is reported), since extrapolating the curve would decide it;
* the divergence curve (the paper's Fig. 4a): mean pairwise cosine of the partial generations against the
  token position, per arm with a band, and the paired difference of two arms per position.

The arms are loaded by `esamp.analysis.frontier_arms` (which can also recompute the embedding metrics with
another embedder, e.g. all-MiniLM-L6-v2 reading 512 word pieces instead of 256, without rerunning generation);
the report (Markdown, CSVs, figures) is `esamp.analysis.frontier_report`; the command line
`python -m esamp.cli.frontier`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from esamp.analysis.frontier_arms import RELEVANCE, load_arms
from esamp.analysis.stats import boot_means, bootstrap_weights, finite_interval

DIVERSITY = ("vendi", "pairwise_cosine")
# which way is "more diverse" ("more on topic" for the relevance); the lexical metrics are optional extras
BETTER = {"vendi": "higher", "pairwise_cosine": "lower", RELEVANCE: "higher", "distinct_1": "higher",
          "distinct_2": "higher", "distinct_3": "higher", "self_bleu": "lower"}


def frontier_at(xs: np.ndarray, ys: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """Piecewise-linear curve through the points (xs, ys) evaluated at x0, row by row: xs, ys (rows, points),
    x0 (rows,). Each row's points are sorted by x; nan where x0 lies outside [min x, max x] of its row. Tied
    x values (a vertical step) give the mean of their y."""
    xs, ys = np.atleast_2d(np.asarray(xs, dtype=float)), np.atleast_2d(np.asarray(ys, dtype=float))
    x0 = np.atleast_1d(np.asarray(x0, dtype=float))
    if xs.shape != ys.shape or xs.shape[0] != x0.shape[0]:
        raise ValueError(f"shapes differ: xs {xs.shape}, ys {ys.shape}, x0 {x0.shape}")
    if xs.shape[1] < 2:
        raise ValueError("the frontier needs at least two temperature arms")
    order = np.argsort(xs, axis=1, kind="stable")
    xs, ys = np.take_along_axis(xs, order, 1), np.take_along_axis(ys, order, 1)
    m = xs.shape[1]
    j = np.clip((xs <= x0[:, None]).sum(1) - 1, 0, m - 2)  # the segment [j, j+1] holding x0
    rows = np.arange(xs.shape[0])
    xa, xb, ya, yb = xs[rows, j], xs[rows, j + 1], ys[rows, j], ys[rows, j + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(xb > xa, (x0 - xa) / (xb - xa), 0.5)
    out = ya + t * (yb - ya)
    # x0 equal to the last x sits in the last segment with t = 1; beyond either end: no frontier there
    return np.where((x0 < xs[:, 0]) | (x0 > xs[:, -1]) | ~np.isfinite(x0), np.nan, out)


def _verdict(lo: float, hi: float, better: str, outside: bool, metric: str = "vendi") -> str:
    if outside:
        return "outside the temperature range"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "undecided"
    above, below = lo > 0, hi < 0
    if metric == RELEVANCE:  # not a diversity: say what it means
        if not (above or below):
            return "as on topic as temperature (interval contains 0)"
        return "more on topic than temperature" if above else "less on topic than temperature"
    if not (above or below):
        return "on the frontier (interval contains 0)"
    return "beyond the frontier" if above == (better == "higher") else "inside the frontier"


def frontier_analysis(run_dirs: Sequence[str | Path], metrics: Sequence[str] = DIVERSITY,
                      ppl_key: str = "perplexity", resamples: int = 10_000, seed: int = 0, embedder=None,
                      divergence: Sequence[str] | None = None, relevance=None) -> dict[str, Any]:
    """Per arm: mean over prompts of each metric and perplexity with 95% bootstrap intervals; for each arm that
    is not a temperature arm, the paired difference (arm - temperature frontier at the arm's perplexity) with
    its interval and a verdict; the divergence curves (see `divergence_analysis`).

    `divergence`: the arm names (folder names) whose curves to compare, the reference first; default: the
    temperature arm at T = 1 and the ESamp arms at beta 0.25, T = 1 (the paper's Fig. 4a). `relevance`: an
    embedder; each arm's prompt relevance is then compared with the temperature curve the same way (a check of
    what the diversity costs in staying on topic; it does not enter the verdict on diversity)."""
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    unknown = [m for m in metrics if m not in BETTER or m == RELEVANCE]
    if unknown or not metrics:
        raise ValueError(f"metrics {list(metrics)}: unknown {unknown}; allowed: "
                         + ", ".join(k for k in BETTER if k != RELEVANCE))
    arms = load_arms(run_dirs, embedder=embedder, relevance=relevance)
    front = [a for a in arms if a["frontier"]]
    tested = [*metrics, *([RELEVANCE] if relevance is not None else [])]
    keys = [ppl_key, *tested]
    for a in arms:
        missing = [k for k in keys if not any(k in m for m in a["per_prompt"].values())]
        if missing:
            hint = (" (a run summarized before esamp stored per-prompt perplexity, or one without a judge: "
                    "task.ppl_model=null)" if ppl_key in missing else "")
            raise ValueError(f"{a['name']}: task_metrics.per_prompt has no {missing}{hint}")
    common = sorted(set.intersection(*(set(a["per_prompt"]) for a in arms)))
    notes = [f"{a['name']}: {len(a['per_prompt']) - len(common)} prompts not in every arm, left out"
             for a in arms if len(a["per_prompt"]) > len(common)]
    if not common:
        raise ValueError("the arms share no prompt")
    weights = bootstrap_weights(len(common), resamples, seed)

    def values(arm, key):
        return np.array([_num(arm["per_prompt"][p].get(key)) for p in common])

    boot: dict[str, dict[str, np.ndarray]] = {}
    rows = []
    for a in arms:
        boot[a["name"]] = {}
        row = {"arm": a["name"], "label": a["label"], "frontier": a["frontier"], "prompts": len(common),
               "sampler": a["sampler"].get("name"), "temperature": a["sampler"].get("temperature"),
               "beta": a["sampler"].get("beta"), "min_p": a["sampler"].get("min_p")}
        for k in keys:
            v = values(a, k)
            b = boot_means(weights, v)
            boot[a["name"]][k] = b
            lo, hi = finite_interval(b)
            row[k] = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
            row[f"{k}_lo"], row[f"{k}_hi"] = float(lo), float(hi)
        for k in ("embed_truncated", "embed_tokens", "distinct_2", "self_bleu"):
            v = values(a, k)
            row[k] = float(np.nanmean(v)) if np.isfinite(v).any() else None
        rows.append(row)

    verdicts = []
    if len(front) >= 2:
        point = {r["arm"]: r for r in rows}
        fx = np.stack([boot[a["name"]][ppl_key] for a in front], 1)
        fx0 = np.array([[point[a["name"]][ppl_key] for a in front]])
        for a in arms:
            if a["frontier"]:
                continue
            x, x0 = boot[a["name"]][ppl_key], np.array([point[a["name"]][ppl_key]])
            for k in tested:
                fy = np.stack([boot[f["name"]][k] for f in front], 1)
                fy0 = np.array([[point[f["name"]][k] for f in front]])
                diff = boot[a["name"]][k] - frontier_at(fx, fy, x)
                est = float(point[a["name"]][k] - frontier_at(fx0, fy0, x0)[0])
                ok = np.isfinite(diff)
                lo, hi = finite_interval(diff)
                verdicts.append({"arm": a["name"], "label": a["label"], "metric": k, "better": BETTER.get(k, "higher"),
                                 "ppl": point[a["name"]][ppl_key], "frontier_at_ppl": float(point[a["name"]][k] - est),
                                 "diff": est, "diff_lo": float(lo), "diff_hi": float(hi),
                                 "outside_fraction": float(1 - ok.mean()),
                                 "verdict": _verdict(float(lo), float(hi), BETTER.get(k, "higher"), not math.isfinite(est),
                                                     k)})
    else:
        notes.append(f"{len(front)} temperature arm(s): the frontier needs at least two; no verdicts")

    return {"rows": rows, "verdicts": verdicts, "notes": notes, "prompts": len(common), "resamples": resamples,
            "seed": seed, "metrics": list(metrics), "tested": tested, "ppl_key": ppl_key, "ppl_model": _ppl_model(arms),
            "embedder": _embedder(arms), "arms": {a["name"]: {"dir": a["dir"], "label": a["label"]} for a in arms},
            "divergence": divergence_analysis(arms, divergence, resamples=resamples, seed=seed)}


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _ppl_model(arms) -> str | None:
    names = {(a["results"].get("task_metrics") or {}).get("ppl_model") for a in arms} - {None}
    return ", ".join(sorted(names)) if names else None


def _embedder(arms) -> str | None:
    names = {a.get("embedder") or (a["results"].get("task_metrics") or {}).get("embedder")
             or "all-MiniLM-L6-v2 (gt wheel)" for a in arms}
    return ", ".join(sorted(names))


# ------------------------------------------------------------------------------------- divergence
def default_divergence_arms(arms: Sequence[Mapping[str, Any]]) -> list[str]:
    """The temperature arm at T = 1 (reference) and every ESamp arm at beta 0.25, T = 1 (Fig. 4a)."""
    def t1(s):
        return isinstance(s.get("temperature"), (int, float)) and abs(s["temperature"] - 1.0) < 1e-9

    ref = [a["name"] for a in arms if a["frontier"] and t1(a["sampler"])]
    es = [a["name"] for a in arms if a["sampler"].get("name") == "esamp" and t1(a["sampler"])
          and a["sampler"].get("beta") == 0.25]
    return ref[:1] + es if ref and es else []


def divergence_analysis(arms: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None,
                        resamples: int = 10_000, seed: int = 0) -> dict[str, Any] | None:
    """Mean pairwise cosine of the partial generations at each token position, per arm, with a 95% band over
    prompts, and the paired difference of each arm with the first one (reference) per position. Uses the
    per-prompt curves (`per_prompt[pid].divergence_curve`); a run without them contributes its averaged
    curve with no band. None when fewer than two arms are named or found."""
    names = list(names) if names else default_divergence_arms(arms)
    by_name = {a["name"]: a for a in arms}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"divergence arms {unknown} are not among the runs {list(by_name)}")
    chosen = [by_name[n] for n in names]
    if len(chosen) < 2:
        return None

    def curves(arm) -> dict[str, dict[int, float]]:
        return {pid: {int(p): _num(v) for p, v in m["divergence_curve"]} for pid, m in arm["per_prompt"].items()
                if m.get("divergence_curve")}

    per = {a["name"]: curves(a) for a in chosen}
    common = sorted(set.intersection(*(set(c) for c in per.values())))
    out: dict[str, Any] = {"arms": names, "labels": {a["name"]: a["label"] for a in chosen}, "curves": {},
                           "differences": {}, "prompts": len(common), "resamples": resamples}
    if not common:  # old runs: only the averaged curve
        for a in chosen:
            c = (a["results"].get("task_metrics") or {}).get("divergence_curve") or []
            out["curves"][a["name"]] = {"position": [int(p) for p, _ in c], "mean": [_num(v) for _, v in c],
                                        "lo": [math.nan] * len(c), "hi": [math.nan] * len(c)}
        return out
    positions = sorted({p for c in per.values() for pid in common for p in c[pid]})
    weights = bootstrap_weights(len(common), resamples, seed)
    mats = {n: np.array([[per[n][pid].get(p, math.nan) for p in positions] for pid in common]) for n in names}
    for n in names:
        m = mats[n]
        mean, lo, hi = [], [], []
        for j in range(len(positions)):
            mean.append(float(np.nanmean(m[:, j])) if np.isfinite(m[:, j]).any() else math.nan)
            l, h = finite_interval(boot_means(weights, m[:, j]))
            lo.append(float(l))
            hi.append(float(h))
        out["curves"][n] = {"position": positions, "mean": mean, "lo": lo, "hi": hi,
                            "prompts": [int(np.isfinite(m[:, j]).sum()) for j in range(len(positions))]}
    ref = names[0]
    for n in names[1:]:
        d = mats[n] - mats[ref]  # nan where either arm lacks the position: the pair drops out
        rows = []
        for j, p in enumerate(positions):
            l, h = finite_interval(boot_means(weights, d[:, j]))
            ok = np.isfinite(d[:, j])
            rows.append({"position": p, "diff": float(d[ok, j].mean()) if ok.any() else math.nan, "lo": float(l),
                         "hi": float(h), "prompts": int(ok.sum())})
        out["differences"][n] = rows
    return out
