"""The creative-writing frontier: is a sampler more diverse than temperature sampling at equal perplexity?

    from esamp.frontier import frontier_analysis, write_frontier
    res = frontier_analysis(["results/writing_frontier/temperature_t06", ..., "results/writing_frontier/esamp_b025"])
    write_frontier(res, "experiments/writing_frontier")          # frontier.md / .csv / .png, divergence.png

Evidence protocol §3: the temperature arms trace a curve of diversity (Vendi, mean pairwise cosine) against
quality (the judge's perplexity); another arm is better only if it lies beyond that curve. Everything here is
computed from what the creative-writing task stores per prompt (`task_metrics.per_prompt` of results.json:
vendi, pairwise_cosine, perplexity, divergence_curve, ...), so every interval is a bootstrap over prompts:

* per arm: the mean over prompts of each metric with a 95% percentile interval;
* the resamples are paired: one set of prompt resamples (`esamp.analysis.bootstrap_weights`, the same
  weights for every arm) on the prompts all arms share;
* the frontier test: in each resample, the temperature arms' (perplexity, diversity) means, sorted by
  perplexity, make a piecewise-linear curve; the curve's diversity at the arm's perplexity is subtracted from
  the arm's diversity (`arm - frontier`). The percentile interval of that difference decides: above 0 on
  Vendi (below 0 on cosine, where lower = more diverse) = beyond the frontier; the other side = inside it;
  containing 0 = on it. An arm whose perplexity falls outside the temperature arms' range gets no verdict
  (the fraction of resamples outside is reported), since extrapolating the curve would decide it;
* the divergence curve (the paper's Fig. 4a): mean pairwise cosine of the partial generations against the
  token position, per arm with a band, and the paired difference of two arms per position.

`rescore_embeddings` recomputes the two embedding metrics per prompt from samples.jsonl with another
embedder (for example all-MiniLM-L6-v2 reading 512 word pieces instead of 256), to see what the embedder's
truncation does to the numbers without rerunning generation. `scripts/frontier.py` is the command line.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from esamp.analysis import (_labels, bootstrap_weights, find_results, interval, load_samples, markdown_table,
                            read_results)
from esamp.plotting import MARKERS, colors, finish_figure, pyplot

DIVERSITY = ("vendi", "pairwise_cosine")
RELEVANCE = "prompt_relevance"  # mean cosine between the prompt and each continuation: does the text stay on topic?
# which way is "more diverse" ("more on topic" for the relevance); the lexical metrics are optional extras
BETTER = {"vendi": "higher", "pairwise_cosine": "lower", RELEVANCE: "higher", "distinct_1": "higher",
          "distinct_2": "higher", "distinct_3": "higher", "self_bleu": "lower"}
NAMES = {"vendi": "Vendi", "pairwise_cosine": "pairwise cosine", "perplexity": "perplexity",
         "perplexity_median": "median perplexity", RELEVANCE: "prompt relevance", "distinct_1": "distinct-1",
         "distinct_2": "distinct-2", "distinct_3": "distinct-3", "self_bleu": "self-BLEU"}


# ------------------------------------------------------------------------------------------- runs
def is_temperature_arm(sampler: Mapping[str, Any]) -> bool:
    """Plain temperature sampling: the sampler `temperature` with no top-k / top-p / min-p filter."""
    return sampler.get("name") == "temperature" and not any(sampler.get(k) for k in ("top_k", "top_p", "min_p"))


def arm_label(sampler: Mapping[str, Any]) -> str:
    """A short human name of a sampler setting (`ESamp β=0.25, T=1`, `min-p 0.1, T=1`, `T=0.8`)."""
    name, t = sampler.get("name"), sampler.get("temperature")
    temp = f"T={t:g}" if isinstance(t, (int, float)) else ""
    if is_temperature_arm(sampler):
        return temp or "temperature"
    filters = ", ".join(f"{k.replace('_', '-')} {sampler[k]:g}" for k in ("top_k", "top_p", "min_p")
                        if isinstance(sampler.get(k), (int, float)))
    if name == "esamp":
        extras = [f"{k}={sampler[k]}" for k, default in (("variant", "paper"), ("fusion", "paper"),
                                                          ("error", "distiller"), ("state", "per_prompt"))
                  if sampler.get(k) not in (None, default)]
        head = f"ESamp β={sampler.get('beta'):g}" if isinstance(sampler.get("beta"), (int, float)) else "ESamp"
        return ", ".join([head, *extras, *([filters] if filters else []), *([temp] if temp else [])])
    if name in ("min_p", "top_p", "top_k"):
        return ", ".join([filters or str(name), *([temp] if temp else [])])
    return ", ".join([str(name), *([filters] if filters else []), *([temp] if temp else [])])


def load_arm(run_dir: str | Path, name: str | None = None) -> dict[str, Any]:
    """One creative-writing run: {name, dir, sampler, label, frontier (a temperature arm), per_prompt: pid ->
    metrics, results}. Raises ValueError for a run that is not creative writing or stores no per-prompt
    metrics."""
    run_dir = Path(run_dir).resolve()
    res = read_results(run_dir)
    if not res:
        raise FileNotFoundError(f"{run_dir} has no results.json (a run still generating?)")
    tm = res.get("task_metrics") or {}
    per_prompt = tm.get("per_prompt")
    if res.get("task") != "creative_writing" or not isinstance(per_prompt, Mapping) or not per_prompt:
        raise ValueError(f"{run_dir}: not a creative_writing run with task_metrics.per_prompt")
    sampler = res.get("sampler") or {}
    return {"name": name or run_dir.name, "dir": str(run_dir), "sampler": sampler, "label": arm_label(sampler),
            "frontier": is_temperature_arm(sampler), "per_prompt": {str(k): dict(v) for k, v in per_prompt.items()},
            "results": res}


def rescore_embeddings(run_dir: str | Path, embedder) -> dict[str, dict[str, float]]:
    """pid -> {vendi, pairwise_cosine} recomputed from the completions in samples.jsonl with `embedder`
    (anything with `encode(list[str]) -> (n, d)`), in sample order."""
    from esamp.metrics.diversity import pairwise_cosine, vendi_score

    by_prompt: dict[str, list[tuple[int, str]]] = {}
    for r in load_samples(run_dir):
        by_prompt.setdefault(str(r["problem_id"]), []).append((int(r["sample_index"]), r.get("completion") or ""))
    out = {}
    for pid, items in by_prompt.items():
        emb = embedder.encode([c for _, c in sorted(items)])
        out[pid] = {"vendi": vendi_score(emb), "pairwise_cosine": pairwise_cosine(emb)}
    return out


def prompt_relevance(run_dir: str | Path, embedder) -> dict[str, float]:
    """pid -> mean cosine between the prompt and each of its continuations (from samples.jsonl, embedded with
    `embedder`): a diversity that comes from leaving the passage's topic shows up here as a drop."""
    by_prompt: dict[str, tuple[str, list[str]]] = {}
    for r in load_samples(run_dir):
        entry = by_prompt.setdefault(str(r["problem_id"]), (r.get("prompt") or "", []))
        entry[1].append(r.get("completion") or "")
    out = {}
    for pid, (prompt, completions) in by_prompt.items():
        emb = np.asarray(embedder.encode([prompt, *completions]), dtype=float)
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        out[pid] = float(np.mean(emb[1:] @ emb[0]))
    return out


def load_arms(run_dirs: Sequence[str | Path], embedder=None, relevance=None) -> list[dict[str, Any]]:
    """The runs (folders, or folders holding run folders), named after their folders; with `embedder` the
    embedding metrics are recomputed from samples.jsonl (the stored ones are kept as `<metric>_stored`); with
    `relevance` (an embedder) each prompt also gets `prompt_relevance`."""
    dirs: list[Path] = []
    for d in run_dirs:
        d = Path(d)
        found = [p.parent for p in find_results(d)] if d.is_dir() and not (d / "results.json").exists() else [d]
        dirs += [p.resolve() for p in found if p.resolve() not in dirs]
    if not dirs:
        raise FileNotFoundError(f"no run folder (with results.json) in {[str(d) for d in run_dirs]}")
    arms = [load_arm(d, nm) for d, nm in zip(dirs, _labels(dirs))]
    if embedder is not None:
        for arm in arms:
            for pid, vals in rescore_embeddings(arm["dir"], embedder).items():
                m = arm["per_prompt"].setdefault(pid, {})
                for k, v in vals.items():
                    m.setdefault(f"{k}_stored", m.get(k))
                    m[k] = v
            arm["embedder"] = repr(embedder)
    if relevance is not None:
        for arm in arms:
            for pid, v in prompt_relevance(arm["dir"], relevance).items():
                arm["per_prompt"].setdefault(pid, {})[RELEVANCE] = v
    return arms


# ------------------------------------------------------------------------------------- statistics
def boot_means(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(resamples,) bootstrap means of per-prompt `values` under `weights` (resamples, prompts); prompts whose
    value is missing (nan) are left out of each mean (nan where a resample holds none)."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    if ok.all():
        return weights @ v
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ np.where(ok, v, 0.0)) / (weights @ ok.astype(float))


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
            lo, hi = interval(b[np.isfinite(b)]) if np.isfinite(b).any() else (math.nan, math.nan)
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
                lo, hi = interval(diff[ok]) if ok.any() else (math.nan, math.nan)
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
            b = boot_means(weights, m[:, j])
            b = b[np.isfinite(b)]
            mean.append(float(np.nanmean(m[:, j])) if np.isfinite(m[:, j]).any() else math.nan)
            l, h = interval(b) if b.size else (math.nan, math.nan)
            lo.append(float(l))
            hi.append(float(h))
        out["curves"][n] = {"position": positions, "mean": mean, "lo": lo, "hi": hi,
                            "prompts": [int(np.isfinite(m[:, j]).sum()) for j in range(len(positions))]}
    ref = names[0]
    for n in names[1:]:
        d = mats[n] - mats[ref]  # nan where either arm lacks the position: the pair drops out
        rows = []
        for j, p in enumerate(positions):
            b = boot_means(weights, d[:, j])
            b = b[np.isfinite(b)]
            l, h = interval(b) if b.size else (math.nan, math.nan)
            ok = np.isfinite(d[:, j])
            rows.append({"position": p, "diff": float(d[ok, j].mean()) if ok.any() else math.nan, "lo": float(l),
                         "hi": float(h), "prompts": int(ok.sum())})
        out["differences"][n] = rows
    return out


# ------------------------------------------------------------------------------------------ report
def _iv(row: Mapping[str, Any], k: str, fmt: str) -> str:
    v, lo, hi = row.get(k), row.get(f"{k}_lo"), row.get(f"{k}_hi")
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def frontier_markdown(res: Mapping[str, Any]) -> str:
    """The table per arm, the frontier verdicts, and the divergence differences, as Markdown."""
    ppl = res["ppl_key"]
    out = ["# Creative-writing frontier: diversity against judge perplexity\n",
           f"{res['prompts']} prompts common to all arms; means over prompts with 95% percentile intervals from "
           f"{res['resamples']} bootstrap resamples of prompts (seed {res['seed']}, the same resamples for every "
           f"arm). Perplexity: the {'median' if ppl == 'perplexity_median' else 'mean'} over each prompt's samples "
           f"under {res['ppl_model'] or 'the judge model'}; embeddings: {res['embedder']}.\n"]
    out += [f"- note: {n}" for n in res["notes"]] + ([""] if res["notes"] else [])
    shown = res.get("tested", res["metrics"])
    arrows = {k: "↑" if BETTER.get(k) == "higher" else "↓" for k in shown}
    head = ["arm", "setting", "frontier", NAMES.get(ppl, ppl),
            *[f"{NAMES.get(k, k)} ({arrows[k]} {'on topic' if k == RELEVANCE else 'diverse'})" for k in shown],
            *(["distinct-2"] if "distinct_2" not in shown else []), "cut by the run's embedder"]
    table = []
    for r in sorted(res["rows"], key=lambda r: (not r["frontier"], r["arm"])):
        table.append([r["arm"], r["label"], "yes" if r["frontier"] else "", _iv(r, ppl, ".2f"),
                      *[_iv(r, k, ".3f") for k in shown],
                      *([f"{r['distinct_2']:.3f}" if r.get("distinct_2") is not None else "–"]
                        if "distinct_2" not in shown else []),
                      f"{r['embed_truncated']:.0%}" if r.get("embed_truncated") is not None else "–"])
    out += ["## Arms\n", markdown_table(head, table, [0, 0, 0, 1] + [1] * (len(head) - 4))]
    if res["verdicts"]:
        head = ["arm", "setting", "metric", "arm perplexity", "frontier at that perplexity", "arm - frontier",
                "95% interval", "resamples outside", "verdict"]
        table = [[v["arm"], v["label"], NAMES.get(v["metric"], v["metric"]), f"{v['ppl']:.2f}",
                  f"{v['frontier_at_ppl']:.3f}" if math.isfinite(v["frontier_at_ppl"]) else "–",
                  f"{v['diff']:+.3f}" if math.isfinite(v["diff"]) else "–",
                  f"[{v['diff_lo']:+.3f}, {v['diff_hi']:+.3f}]" if math.isfinite(v["diff_lo"]) else "–",
                  f"{v['outside_fraction']:.1%}", v["verdict"]] for v in res["verdicts"]]
        out += ["## Against the temperature frontier\n",
                "The frontier: the temperature arms' mean (perplexity, diversity) points joined in order of "
                "perplexity, piecewise linear, rebuilt in every resample. Difference = arm - frontier at the arm's "
                "perplexity, paired over prompts. Beyond = more diverse at equal perplexity (Vendi above, cosine "
                "below the curve) with the whole interval on that side."
                + (" Prompt relevance (mean cosine between the prompt and each continuation) is compared with the "
                   "temperature curve the same way: a check of what the diversity costs in staying on topic, not "
                   "part of the verdict on diversity." if RELEVANCE in res.get("tested", []) else "") + "\n",
                markdown_table(head, table, [0, 0, 0, 1, 1, 1, 0, 1, 0])]
    div = res.get("divergence")
    if div and div.get("differences"):
        ref = div["arms"][0]
        head = ["arm", "token position", "prompts", f"cosine - {ref}", "95% interval"]
        table = [[n, r["position"], r["prompts"], f"{r['diff']:+.4f}", f"[{r['lo']:+.4f}, {r['hi']:+.4f}]"]
                 for n, rs in div["differences"].items() for r in rs]
        out += [f"## Divergence along the generation (Fig. 4a), paired against `{ref}`\n",
                "Mean pairwise cosine of the samples' first p tokens (lower = the samples have drifted apart).\n",
                markdown_table(head, table, [0, 1, 1, 1, 0])]
    return "\n".join(out)


def plot_frontier(res: Mapping[str, Any], path=None):
    """One panel per diversity metric against perplexity: the temperature arms as a line through their points
    (labelled with T), the other arms as points, 95% intervals as error bars on both axes."""
    plt = pyplot()
    ppl, metrics = res["ppl_key"], res.get("tested", res["metrics"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics) + 2.6, 4.4), squeeze=False)
    others = [r for r in res["rows"] if not r["frontier"]]
    color = colors(["temperature"] + [r["arm"] for r in others])
    front = sorted([r for r in res["rows"] if r["frontier"]], key=lambda r: r[ppl])
    for ax, k in zip(axes[0], metrics):
        def bars(rs):
            x = np.array([r[ppl] for r in rs])
            y = np.array([r[k] for r in rs])
            xe = np.array([[r[ppl] - r[f"{ppl}_lo"] for r in rs], [r[f"{ppl}_hi"] - r[ppl] for r in rs]])
            ye = np.array([[r[k] - r[f"{k}_lo"] for r in rs], [r[f"{k}_hi"] - r[k] for r in rs]])
            return x, y, np.nan_to_num(xe), np.nan_to_num(ye)

        if front:
            x, y, xe, ye = bars(front)
            # The frontier exactly as the test uses it: straight in perplexity between the points, drawn densely
            # so that it keeps that shape on a log axis.
            xs = np.concatenate([np.linspace(a, b, 64) for a, b in zip(x[:-1], x[1:])]) if len(x) > 1 else x
            ax.plot(xs, np.interp(xs, x, y), "-", lw=1.4, color=color["temperature"])
            ax.errorbar(x, y, xerr=xe, yerr=ye, fmt="o", ms=4, capsize=2, color=color["temperature"],
                        label="temperature (frontier)")
            for r, xi, yi in zip(front, x, y):
                ax.annotate(r["label"], (xi, yi), textcoords="offset points", xytext=(4, -10), fontsize=7,
                            color=color["temperature"])
        for j, r in enumerate(others):
            x, y, xe, ye = bars([r])
            ax.errorbar(x, y, xerr=xe, yerr=ye, fmt=MARKERS[(j + 1) % len(MARKERS)], ms=6, capsize=2,
                        color=color[r["arm"]], label=f"{r['label']} ({r['arm']})")
        xs_all = [r[ppl] for r in res["rows"] if r[ppl] and r[ppl] > 0]
        if xs_all and max(xs_all) > 5 * min(xs_all):  # perplexity grows ~exponentially with temperature
            from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 5, 10, 20, 50, ...: plain numbers
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{NAMES.get(ppl, ppl)} under {res['ppl_model'] or 'the judge'}  (← more coherent)")
        what = "closer to the prompt" if k == RELEVANCE else "more diverse"
        ax.set_ylabel(f"{NAMES.get(k, k)}  ({'↑' if BETTER.get(k) == 'higher' else '↓'} {what})")
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"Diversity against perplexity, {res['prompts']} prompts (95% bootstrap intervals over prompts)",
                 fontsize=11)
    return finish_figure(fig, axes[0], path)


def plot_divergence(div: Mapping[str, Any], path=None):
    """Fig. 4a: mean pairwise cosine of the partial generations against the token position, each arm with its
    95% band; second panel: the paired difference with the reference arm, with 95% intervals."""
    plt = pyplot()
    panels = 2 if div.get("differences") else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels + 2.6, 4.2), squeeze=False)
    color = colors(list(div["curves"]))
    ax = axes[0][0]
    for j, (n, c) in enumerate(div["curves"].items()):
        ax.plot(c["position"], c["mean"], marker=MARKERS[j % len(MARKERS)], ms=4, lw=1.5, color=color[n],
                label=f"{div['labels'][n]} ({n})")
        if any(math.isfinite(v) for v in c["lo"]):
            ax.fill_between(c["position"], c["lo"], c["hi"], color=color[n], alpha=0.15, lw=0)
    ax.set_xlabel("token position (generated tokens so far)")
    ax.set_ylabel("mean pairwise cosine of the partial generations")
    ax.set_title(f"divergence along the generation ({div['prompts']} prompts)", fontsize=10)
    ax.grid(True, alpha=0.3)
    if panels == 2:
        ax = axes[0][1]
        for n, rows in div["differences"].items():
            x = [r["position"] for r in rows]
            d = np.array([r["diff"] for r in rows])
            err = np.nan_to_num([d - [r["lo"] for r in rows], [r["hi"] for r in rows] - d])
            ax.errorbar(x, d, yerr=err, fmt="o-", ms=4, capsize=3, color=color[n], label=f"{div['labels'][n]} ({n})")
        ax.axhline(0, color="0.3", lw=0.9)
        ax.set_xlabel("token position")
        ax.set_ylabel(f"cosine difference (arm - {div['arms'][0]})")
        ax.set_title("paired difference (95% bootstrap intervals)", fontsize=10)
        ax.grid(True, alpha=0.3)
    return finish_figure(fig, axes[0], path)


def write_frontier(res: Mapping[str, Any], out: str | Path) -> list[Path]:
    """frontier.md, frontier.csv (one row per arm), frontier_verdicts.csv, frontier.json, frontier.png and,
    with divergence curves, divergence.png into `out`. Returns the paths written."""
    import pandas as pd

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "frontier.md", out / "frontier.csv", out / "frontier_verdicts.csv", out / "frontier.json",
             out / "frontier.png"]
    files[0].write_text(frontier_markdown(res))
    pd.DataFrame(res["rows"]).to_csv(files[1], index=False)
    pd.DataFrame(res["verdicts"], columns=["arm", "label", "metric", "better", "ppl", "frontier_at_ppl", "diff",
                                           "diff_lo", "diff_hi", "outside_fraction", "verdict"]).to_csv(files[2], index=False)
    files[3].write_text(json.dumps(res, indent=1, default=str, allow_nan=True))
    plot_frontier(res, files[4])
    if res.get("divergence") and res["divergence"].get("curves"):
        plot_divergence(res["divergence"], out / "divergence.png")
        files.append(out / "divergence.png")
    return files
