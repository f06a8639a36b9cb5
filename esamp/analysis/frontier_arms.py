"""The runs of a creative-writing frontier: which arms are temperature arms, their human names, their
per-prompt metrics (`task_metrics.per_prompt` of results.json), and the two recomputations from samples.jsonl
that need an embedder (`rescore_embeddings`: another embedder setting; `prompt_relevance`: does a continuation
stay on the passage's topic?). The test itself: `esamp.analysis.frontier`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from esamp.analysis.runs import find_results, load_samples, read_results, run_labels

RELEVANCE = "prompt_relevance"  # mean cosine between the prompt and each continuation: does the text stay on topic?


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
        defaults = {"variant": ("paper",), "fusion": ("extrapolate", "paper"),  # paper: fusion's old name
                    "error": ("distiller",), "state": ("per_prompt",)}
        extras = [f"{k}={sampler[k]}" for k, default in defaults.items() if sampler.get(k) not in (None, *default)]
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
    arms = [load_arm(d, nm) for d, nm in zip(dirs, run_labels(dirs))]
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
