"""Quality axes for the writing frontier that a judge's perplexity cannot fake with loops (issue 22 part 3):
MAUVE against the books' real continuations, coherence (prompt-continuation embedding cosine), the loop rate,
and the judge perplexity over non-looping samples only; and the frontier test on each of these axes.

    res = quality_analysis("results/writing_frontier", cache=".cache/writing_quality")

Inputs: the arms' results.json (`task_metrics.per_prompt`: Vendi, pairwise cosine, mean judge perplexity),
samples.jsonl (loops), the features of `esamp.analysis.writing_features` (cached per arm), and the per-sample
judge perplexities (`per_prompt[pid].perplexities` of newer runs, else `judge_loopfree.json` written by
`esamp.analysis.writing_rejudge`).

Intervals: one set of bootstrap resamples of the prompts (`bootstrap_weights`, 10,000, seed 0) shared by every
arm and axis, so every difference is paired over prompts. MAUVE is a statistic of the whole set: each arm's
texts and the human texts are quantized once (mauve-text's k-means), and each resample re-weights the two
histograms by the prompts it drew (the interval is conditional on that quantization).

The frontier on a quality axis x: the temperature arms' (x, diversity) points joined in order of temperature;
at the arm's x the frontier is the most diverse point of that polyline with the same x (the upper envelope
where the curve turns back, as MAUVE does at both ends of the temperature range). On perplexity this is the
campaign's registered curve. Beyond = the interval of (arm - frontier) on the diverse side of 0; an arm whose x
the temperature curve never reaches gets no verdict ("outside").
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from esamp.analysis.frontier_arms import load_arms
from esamp.analysis.runs import load_samples
from esamp.analysis.stats import boot_means, bootstrap_weights, finite_interval
from esamp.metrics.mauve import coherence, mauve_from_counts, quantize
from esamp.metrics.repetition import loops

# quality axes: key -> (name, which way is better); diversity metrics: key -> which way is more diverse
AXES = {"perplexity": ("judge perplexity, all samples", "lower"),
        "ppl_loopfree": ("judge perplexity, non-looping samples", "lower"),
        "mauve_smollm2": ("MAUVE (SmolLM2 features, 1 sample/prompt)", "higher"),
        "mauve_minilm": ("MAUVE (MiniLM features, all samples)", "higher"),
        "coherence": ("coherence (prompt-continuation cosine)", "higher")}
DIVERSITY = {"vendi": "higher", "pairwise_cosine": "lower"}


def envelope(xs: np.ndarray, ys: np.ndarray, x0: np.ndarray, better: str = "higher") -> np.ndarray:
    """Rows of polyline points (xs, ys) (rows, points), in curve order, at x0 (rows,): the best y (max for
    `better` higher, min for lower) among the segments whose x-span holds x0; nan where none does."""
    xs, ys = np.atleast_2d(np.asarray(xs, float)), np.atleast_2d(np.asarray(ys, float))
    x0 = np.atleast_1d(np.asarray(x0, float))
    out = np.full(x0.shape, np.nan)
    for j in range(xs.shape[1] - 1):
        xa, xb, ya, yb = xs[:, j], xs[:, j + 1], ys[:, j], ys[:, j + 1]
        inside = (np.minimum(xa, xb) <= x0) & (x0 <= np.maximum(xa, xb))
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(xb != xa, (x0 - xa) / (xb - xa), 0.5)
        y = np.where(inside, ya + t * (yb - ya), np.nan)
        pick = np.fmax if better == "higher" else np.fmin
        out = pick(out, y)
    return out


def _sample_table(run_dir) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in load_samples(run_dir):
        out.setdefault(str(r["problem_id"]), []).append(r)
    return {p: sorted(rs, key=lambda r: int(r["sample_index"])) for p, rs in out.items()}


def _rerun(arm: dict) -> dict[str, list]:
    """pid -> per-sample judge perplexities (None: not judged) of `esamp.analysis.writing_rejudge`, or {}."""
    rerun = Path(arm["dir"]) / "judge_loopfree.json"
    return json.loads(rerun.read_text())["perplexities"] if rerun.exists() else {}


def loopfree_perplexity(arm: dict, samples: dict[str, list[dict]]) -> dict[str, float] | None:
    """pid -> mean judge perplexity over the prompt's judged non-looping samples (nan when all loop); a prompt
    where no sample loops and none was judged one by one keeps its stored mean (the mean over all its samples).
    None when the arm has neither per-sample perplexities nor a rerun file and some prompt needs them. A prompt
    that an unfinished rerun has not reached is nan too (see `loopfree_missing`)."""
    per_sample = _rerun(arm)
    out = {}
    for pid, rs in samples.items():
        flags = [loops(r.get("completion") or "") for r in rs]
        m = arm["per_prompt"].get(pid, {})
        vals = m.get("perplexities") or per_sample.get(pid)
        kept = [v for v, f in zip(vals or [], flags) if not f and v is not None]
        if all(flags):
            out[pid] = math.nan
        elif kept:
            out[pid] = float(np.mean(kept))
        elif not any(flags) and m.get("perplexity") is not None:
            out[pid] = float(m["perplexity"])
        elif not per_sample:
            return None
        else:  # a rerun that has not reached this prompt: it drops out of the loop-free mean
            out[pid] = math.nan
    return out


def judged_perplexity(arm: dict, prompts: Sequence[str]) -> np.ndarray:
    """Per prompt: the stored mean judge perplexity, else (a run made without a judge) the mean over the samples
    `writing_rejudge --first N` judged, looping or not; nan where neither exists."""
    per_sample = _rerun(arm)
    out = []
    for p in prompts:
        stored = arm["per_prompt"].get(p, {}).get("perplexity")
        vals = [v for v in per_sample.get(p) or [] if v is not None]
        out.append(float(stored) if stored is not None else float(np.mean(vals)) if vals else math.nan)
    return np.array(out)


def loopfree_missing(arm: dict, samples: dict[str, list[dict]]) -> int:
    """Mixed prompts (some samples loop, some not) with no per-sample judge value: an unfinished rerun."""
    done = _rerun(arm)
    n = 0
    for pid, rs in samples.items():
        flags = [loops(r.get("completion") or "") for r in rs]
        n += any(flags) and not all(flags) and not arm["per_prompt"].get(pid, {}).get("perplexities") and pid not in done
    return n


def _features(cache: Path, name: str, kind: str):
    path = cache / f"{name}.{kind}.npz"
    return np.load(path) if path.exists() else None


SEEDS = (25, 26, 27)  # mauve-text's default k-means seed first; the others show the clustering's noise


def _mauve_boot(p_feats, p_pids, q_feats, q_pids, prompts, weights, num_buckets="auto"):
    """MAUVE under each of SEEDS (one k-means clustering each; the first is mauve-text's compute_mauve value,
    which `mauve_from_counts` of the full histograms reproduces exactly), and the bootstrap rows of the first
    clustering (prompt resamples re-weight both histograms)."""
    pos = {p: i for i, p in enumerate(prompts)}
    spread, rows = [], None
    for seed in SEEDS:
        pl, ql, k = quantize(p_feats, q_feats, num_buckets=num_buckets, seed=seed)
        cp, cq = np.zeros((len(prompts), k)), np.zeros((len(prompts), k))
        np.add.at(cp, ([pos[p] for p in p_pids], pl), 1)
        np.add.at(cq, ([pos[p] for p in q_pids], ql), 1)
        spread.append(float(mauve_from_counts(cp.sum(0), cq.sum(0))))
        rows = mauve_from_counts(weights @ cp, weights @ cq) if rows is None else rows
    return spread[0], rows, k, spread


def quality_analysis(root: str | Path | Sequence[str | Path], cache: str | Path, resamples: int = 10_000,
                     seed: int = 0, references: Sequence[str] = ("temperature_t1", "temperature_t08")) -> dict[str, Any]:
    """`references`: the arms every other arm is paired against (T 1 and the sharpening control T 0.8 by
    default; add e.g. the frozen Distiller's arm)."""
    arms = load_arms([root] if isinstance(root, (str, Path)) else root)
    cache = Path(cache)
    refs = np.load(cache / "references.npz")
    prompts = sorted(set.intersection(*(set(a["per_prompt"]) for a in arms)) & set(refs["pid"].tolist()))
    weights = bootstrap_weights(len(prompts), resamples, seed)
    notes, rows, boot = [], [], {}
    keep = np.isin(refs["pid"], prompts)
    ref_coh = coherence(refs["prompt_emb"], refs["emb"])
    human = {"coherence": float(ref_coh[keep].mean()), "texts": int(keep.sum())}
    notes += [f"reference arm {ref} is not among the arms: nothing is paired with it"
              for ref in references if ref not in {a["name"] for a in arms}]
    for a in arms:
        samples = _sample_table(a["dir"])
        per = {k: np.array([float(a["per_prompt"][p].get(k, math.nan)) for p in prompts])
               for k in ("vendi", "pairwise_cosine")}
        per["perplexity"] = judged_perplexity(a, prompts)
        per["loop_rate"] = np.array([np.mean([loops(r.get("completion") or "") for r in samples[p]]) for p in prompts])
        lf = loopfree_perplexity(a, samples)
        per["ppl_loopfree"] = np.array([lf[p] for p in prompts]) if lf else np.full(len(prompts), np.nan)
        if lf is None:
            notes.append(f"{a['name']}: no per-sample judge perplexities (not rerun): no loop-free perplexity")
        elif loopfree_missing(a, samples):
            notes.append(f"{a['name']}: the judge rerun did not reach {loopfree_missing(a, samples)} prompt(s) that mix "
                         "looping and clean samples: left out of its loop-free perplexity")
        emb = _features(cache, a["name"], "emb")
        b = {k: boot_means(weights, v) for k, v in per.items()}
        row = {"arm": a["name"], "label": a["label"], "frontier": a["frontier"],
               "temperature": a["sampler"].get("temperature"), "sampler": a["sampler"].get("name"),
               "loopfree_prompts": int(np.isfinite(per["ppl_loopfree"]).sum())}
        if emb is not None:
            coh = coherence(emb["prompt_emb"], emb["emb"])
            pid = emb["pid"]
            per["coherence"] = np.array([coh[pid == p].mean() for p in prompts])
            b["coherence"] = boot_means(weights, per["coherence"])
            sel = np.isin(pid, prompts)
            row["mauve_minilm"], b["mauve_minilm"], row["buckets_minilm"], row["mauve_minilm_seeds"] = _mauve_boot(
                refs["emb"][keep], refs["pid"][keep], emb["emb"][sel], pid[sel], prompts, weights)
        lm = _features(cache, a["name"], "lm")
        if lm is not None:
            sel = np.isin(lm["pid"], prompts) & (lm["sample_index"] == lm["sample_index"].min())
            row["mauve_smollm2"], b["mauve_smollm2"], row["buckets_smollm2"], row["mauve_smollm2_seeds"] = _mauve_boot(
                refs["lm"][keep], refs["pid"][keep], lm["lm"][sel], lm["pid"][sel], prompts, weights)
        for k, v in per.items():
            row.setdefault(k, float(np.nanmean(v)) if np.isfinite(v).any() else math.nan)
        for k, v in b.items():
            row[f"{k}_lo"], row[f"{k}_hi"] = (float(x) for x in finite_interval(v))
        rows.append(row)
        boot[a["name"]] = b
    return {"rows": rows, "verdicts": frontier_verdicts(rows, boot), "prompts": len(prompts), "notes": notes,
            "resamples": resamples, "seed": seed, "human": human, "axes": {k: v[0] for k, v in AXES.items()},
            "paired": paired_differences(rows, boot, references), "references": list(references),
            "max_tokens": int(refs["max_tokens"]) if "max_tokens" in refs else 256}


def frontier_verdicts(rows: list[dict], boot: dict[str, dict[str, np.ndarray]]) -> list[dict]:
    """Each non-temperature arm against the temperature curve, per quality axis and diversity metric."""
    front = sorted([r for r in rows if r["frontier"]], key=lambda r: r["temperature"])
    out = []
    for x in AXES:
        curve = [r for r in front if math.isfinite(r.get(x, math.nan))]
        if len(curve) < 2:
            continue
        for r in rows:
            if r["frontier"] or not math.isfinite(r.get(x, math.nan)):
                continue
            for y, better in DIVERSITY.items():
                fx = np.stack([boot[c["arm"]][x] for c in curve], 1)
                fy = np.stack([boot[c["arm"]][y] for c in curve], 1)
                diff = boot[r["arm"]][y] - envelope(fx, fy, boot[r["arm"]][x], better)
                at = envelope([[c[x] for c in curve]], [[c[y] for c in curve]], [r[x]], better)[0]
                lo, hi = finite_interval(diff)
                outside = not math.isfinite(at)
                if outside:
                    verdict = "outside the temperature curve's range"
                elif lo > 0 or hi < 0:
                    verdict = "beyond the frontier" if (lo > 0) == (better == "higher") else "inside the frontier"
                else:
                    verdict = "on the frontier (interval contains 0)"
                out.append({"arm": r["arm"], "label": r["label"], "axis": x, "metric": y, "x": r[x],
                            "frontier_at_x": float(at), "diff": float(r[y] - at) if not outside else math.nan,
                            "diff_lo": float(lo), "diff_hi": float(hi), "curve": [c["arm"] for c in curve],
                            "outside_fraction": float(1 - np.isfinite(diff).mean()), "verdict": verdict})
    return out


def paired_differences(rows: list[dict], boot: dict, refs: Sequence[str] = ("temperature_t1", "temperature_t08"),
                       keys: Sequence[str] = ("vendi", "mauve_smollm2", "mauve_minilm", "coherence", "loop_rate",
                                              "ppl_loopfree")) -> list[dict]:
    """Each non-temperature arm minus each reference arm (T 1 and T 0.8, the sharpening control, by default),
    paired over prompts."""
    point = {r["arm"]: r for r in rows}
    out = []
    for r in rows:
        if r["frontier"]:
            continue
        for ref in refs:
            if ref not in point or ref == r["arm"]:
                continue
            for k in keys:
                if k not in boot[r["arm"]] or k not in boot[ref]:
                    continue
                if not (math.isfinite(point[r["arm"]].get(k, math.nan)) and math.isfinite(point[ref].get(k, math.nan))):
                    continue
                d = boot[r["arm"]][k] - boot[ref][k]
                lo, hi = finite_interval(d)
                out.append({"arm": r["arm"], "reference": ref, "metric": k,
                            "diff": float(point[r["arm"]][k] - point[ref][k]), "diff_lo": float(lo),
                            "diff_hi": float(hi)})
    return out
