"""A run reports itself: the few numbers a person reads at the end of a run, from its results.json summary.

    failure_counts(records)          -> {"wrong": 60, "no_answer": 29, ...}  (graded samples that failed, by reason)
    format_summary(summary, path)    -> a short plain-text report (Pass@k with 95% intervals, accuracy,
                                        tokens/s, finish and failure reasons, ESamp Distiller loss, path)

Everything is read defensively: a summary from an older run, an ungraded task or a sampler without
telemetry gives a shorter report, never an exception (this runs after hours of generation).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = ["failure_counts", "format_summary"]

# Task metrics shown for ungraded tasks (creative writing), in this order, when present.
_TASK_METRICS = ("vendi", "pairwise_cosine", "distinct_1", "distinct_2", "distinct_3", "self_bleu", "perplexity",
                 "perplexity_median")


def failure_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many graded samples failed, per reason (the `failure` field the task's grader wrote: no_answer,
    wrong, timeout, parse_error, syntax_error, ...), most frequent first. Correct samples and ungraded
    ones (`correct` None) are not counted; a failed sample without a `failure` field (a run from before
    the field existed) counts as "unrecorded"."""
    counts: dict[str, int] = {}
    for r in records:
        if r.get("correct") is None or r.get("correct"):
            continue
        reason = r.get("failure") or "unrecorded"
        counts[str(reason)] = counts.get(str(reason), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _pct(x: Any) -> str:
    v = _num(x)
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _counts_line(counts: Mapping[str, Any]) -> str:
    total = sum(v for v in counts.values() if isinstance(v, int)) or 1
    items = sorted(((k, v) for k, v in counts.items() if isinstance(v, int)), key=lambda kv: (-kv[1], str(kv[0])))
    return ", ".join(f"{k} {v} ({100 * v / total:.0f}%)" for k, v in items)


def format_summary(summary: Mapping[str, Any], path: str | Path | None = None) -> str:
    """Plain text for a person at the end of a run. `path`: where results.json was written (shown last)."""
    s = summary or {}
    sampler = s.get("sampler") if isinstance(s.get("sampler"), Mapping) else {}
    model = s.get("model") if isinstance(s.get("model"), Mapping) else {}
    n = sampler.get("n")
    head = [str(s.get("task", "?")), f"{sampler.get('name', '?')}" + (f" (n={n})" if n else "")]
    if model.get("name"):
        head.append(str(model["name"]))
    size = f"{s.get('num_problems', '?')} problems, {s.get('samples', '?')} samples"
    lines = [" | ".join(head) + " | " + size]
    width = 18

    curve = s.get("pass_at_k")
    if isinstance(curve, Mapping) and curve.get("k"):
        lines.append("Pass@k (95% bootstrap interval over problems):")
        probs = curve.get("problems") or []
        for i, k in enumerate(curve["k"]):
            lo, hi = (curve.get("ci_low") or [None] * (i + 1))[i], (curve.get("ci_high") or [None] * (i + 1))[i]
            line = f"  k={k:<4d}{_pct(curve['pass_at_k'][i]):>7}  [{_pct(lo)}, {_pct(hi)}]"
            if i < len(probs) and probs[i] != s.get("num_problems"):
                line += f"  over {probs[i]} problems"
            lines.append(line)
    else:
        lines.append(f"{'Pass@k':<{width}} not graded (this task has no correct answers)")
    acc = s.get("accuracy")
    if isinstance(acc, Mapping) and _num(acc.get("accuracy")) is not None:
        lines.append(f"{'Accuracy':<{width}} {_pct(acc['accuracy'])}  [{_pct(acc.get('ci_low'))}, {_pct(acc.get('ci_high'))}]")

    metrics = s.get("task_metrics") if isinstance(s.get("task_metrics"), Mapping) else {}
    shown = [f"{k} {metrics[k]:.4g}" for k in _TASK_METRICS if _num(metrics.get(k)) is not None]
    if shown:
        judge = f" (perplexity under {metrics['ppl_model']})" if metrics.get("ppl_model") else ""
        lines.append(f"{'Task metrics':<{width}} " + ", ".join(shown) + judge)

    timing = s.get("timing") if isinstance(s.get("timing"), Mapping) else {}
    tps = _num(timing.get("tokens_per_second"))
    if tps is not None:
        detail = []
        if isinstance(timing.get("tokens_generated"), int) and _num(timing.get("generation_seconds")) is not None:
            detail.append(f"{timing['tokens_generated']:,} tokens in {timing['generation_seconds']:.1f} s of generation")
        if _num(timing.get("wall_seconds")) is not None:
            detail.append(f"wall {timing['wall_seconds']:.1f} s")
        lines.append(f"{'Throughput':<{width}} {tps:.1f} tokens/s" + (f" ({'; '.join(detail)})" if detail else ""))

    if isinstance(s.get("finish_reasons"), Mapping) and s["finish_reasons"]:
        lines.append(f"{'Finish reasons':<{width}} {_counts_line(s['finish_reasons'])}")
    failures = s.get("failure_counts")
    graded = isinstance(curve, Mapping) and bool(curve.get("k"))
    if isinstance(failures, Mapping) and (failures or graded):  # {} of an ungraded task says nothing
        lines.append(f"{'Failure reasons':<{width}} " + (_counts_line(failures) if failures else "none (every graded sample is correct)"))

    tel = s.get("sampler_telemetry") if isinstance(s.get("sampler_telemetry"), Mapping) else {}
    first, last = _num(tel.get("first_loss")), _num(tel.get("last_loss"))
    if first is not None and last is not None:
        steps = tel.get("train_steps")
        change = f", {100 * (last - first) / first:+.0f}%" if first else ""
        lines.append(f"{'Distiller loss':<{width}} first {first:.4g} -> last {last:.4g}{change}"
                     + (f" over {steps:,} training steps" if isinstance(steps, int) else ""))

    resume = s.get("resume") if isinstance(s.get("resume"), Mapping) else {}
    if resume.get("problems_reused"):
        lines.append(f"{'Resumed':<{width}} {resume['problems_reused']} problems kept from an earlier run")
    if path is not None:
        lines.append(f"{'Results':<{width}} {path}")
    return "\n".join(lines)
