"""The report of `esamp.analysis.writing_quality`: quality.md (the arms on every quality axis, the frontier
verdicts per axis, the paired differences with T 1 and T 0.8), quality.json and quality.png (Vendi against
each quality axis: the temperature curve in temperature order, the other arms as points, 95% intervals)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from esamp.analysis.plotting import MARKERS, colors, finish_figure, pyplot
from esamp.analysis.tables import markdown_table
from esamp.analysis.writing_quality import AXES, DIVERSITY

COLUMNS = [("perplexity", ".1f"), ("ppl_loopfree", ".1f"), ("loop_rate", ".1%"), ("mauve_smollm2", ".3f"),
           ("mauve_minilm", ".3f"), ("coherence", ".3f"), ("vendi", ".3f"), ("pairwise_cosine", ".3f")]
NAMES = {**{k: v[0] for k, v in AXES.items()}, "loop_rate": "loop rate", "vendi": "Vendi",
         "pairwise_cosine": "pairwise cosine"}
SHORT = {"perplexity": "ppl (all)", "ppl_loopfree": "ppl (no loops)", "loop_rate": "loop rate",
         "mauve_smollm2": "MAUVE SmolLM2", "mauve_minilm": "MAUVE MiniLM", "coherence": "coherence",
         "vendi": "Vendi", "pairwise_cosine": "cosine"}


def _fmt(v, fmt):
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v * 100:{fmt[:-1]}f}%" if fmt.endswith("%") else f"{v:{fmt}}"


def _iv(row: Mapping[str, Any], k: str, fmt: str) -> str:
    v = row.get(k)
    if v is None or not math.isfinite(v):
        return "–"
    lo, hi = row.get(f"{k}_lo", math.nan), row.get(f"{k}_hi", math.nan)
    return f"{_fmt(v, fmt)} [{_fmt(lo, fmt)}, {_fmt(hi, fmt)}]"


def arms_table(res: Mapping[str, Any]) -> str:
    rows = sorted(res["rows"], key=lambda r: (not r["frontier"], r.get("temperature") or 0, r["arm"]))
    head = ["arm", "setting", *[SHORT[k] for k, _ in COLUMNS]]
    body = [[r["arm"], r["label"], *[_iv(r, k, f) for k, f in COLUMNS]] for r in rows]
    return markdown_table(head, body, [0, 0] + [1] * len(COLUMNS))


def verdict_table(res: Mapping[str, Any]) -> str:
    head = ["arm", "quality axis", "metric", "arm at", "frontier there", "arm - frontier", "95% interval", "verdict"]
    body = [[v["arm"], SHORT[v["axis"]], SHORT[v["metric"]], _fmt(v["x"], ".3f" if "mauve" in v["axis"] or
                                                                   v["axis"] == "coherence" else ".1f"),
             _fmt(v["frontier_at_x"], ".3f"), f"{v['diff']:+.3f}" if math.isfinite(v["diff"]) else "–",
             f"[{v['diff_lo']:+.3f}, {v['diff_hi']:+.3f}]" if math.isfinite(v["diff_lo"]) else "–", v["verdict"]]
            for v in sorted(res["verdicts"], key=lambda v: (v["arm"], v["metric"], list(AXES).index(v["axis"])))]
    return markdown_table(head, body, [0, 0, 0, 1, 1, 1, 0, 0])


MAUVES = ("mauve_smollm2", "mauve_minilm")


def summary(res: Mapping[str, Any], metric: str = "vendi") -> list[dict]:
    """Per non-temperature arm: its verdict on `metric` at equal quality on each axis, and `overall`: beyond only
    where it is beyond at equal coherence and at equal MAUVE on every feature set computed for it (at least
    one), not only at equal judge perplexity."""
    out = []
    for arm in dict.fromkeys(v["arm"] for v in res["verdicts"]):
        per = {v["axis"]: v["verdict"] for v in res["verdicts"] if v["arm"] == arm and v["metric"] == metric}
        need = [per.get("coherence", "not computed"), *[per[m] for m in MAUVES if m in per]]
        if all(v == "beyond the frontier" for v in need) and any(m in per for m in MAUVES):
            overall = "beyond at equal quality (coherence and MAUVE)"
        elif per.get("perplexity") == "beyond the frontier":
            overall = "beyond at equal judge perplexity only"
        else:
            overall = "not beyond"
        out.append({"arm": arm, **per, "overall": overall})
    return out


def summary_table(res: Mapping[str, Any], metric: str = "vendi") -> str:
    short = {"beyond the frontier": "beyond", "inside the frontier": "inside",
             "on the frontier (interval contains 0)": "on (contains 0)",
             "outside the temperature curve's range": "outside the curve"}
    head = ["arm", *[SHORT[a] for a in AXES], "verdict on the quality axes"]
    body = [[s["arm"], *[short.get(s.get(a, "–"), s.get(a, "–")) for a in AXES], s["overall"]] for s in summary(res, metric)]
    return markdown_table(head, body, [0] * len(head))


def paired_table(res: Mapping[str, Any]) -> str:
    head = ["arm", "minus", "metric", "difference", "95% interval"]
    body = [[d["arm"], d["reference"], SHORT[d["metric"]],
             _fmt(d["diff"], ".1%" if d["metric"] == "loop_rate" else ".3f"),
             f"[{_fmt(d['diff_lo'], '.1%' if d['metric'] == 'loop_rate' else '.3f')}, "
             f"{_fmt(d['diff_hi'], '.1%' if d['metric'] == 'loop_rate' else '.3f')}]"] for d in res["paired"]]
    return markdown_table(head, body, [0, 0, 0, 1, 0])


def seeds_table(res: Mapping[str, Any]) -> str:
    """MAUVE under three k-means clusterings (seeds) per arm: the noise the bootstrap over prompts leaves out."""
    head = ["arm", *[f"{SHORT[m]}: {lab}" for m in MAUVES for lab in ("seed 25", "min-max over 3 seeds")]]
    body = []
    for r in sorted(res["rows"], key=lambda r: (not r["frontier"], r.get("temperature") or 0, r["arm"])):
        cells = []
        for m in MAUVES:
            v = r.get(f"{m}_seeds")
            cells += [f"{v[0]:.3f}", f"{min(v):.3f}-{max(v):.3f}"] if v else ["–", "–"]
        body.append([r["arm"], *cells])
    return markdown_table(head, body, [0, 1, 0, 1, 0])


def quality_markdown(res: Mapping[str, Any]) -> str:
    h = res["human"]
    out = ["# Writing frontier: quality axes beyond the judge's perplexity\n",
           f"{res['prompts']} prompts; means over prompts (MAUVE: over the set) with 95% percentile intervals from "
           f"{res['resamples']} bootstrap resamples of prompts (seed {res['seed']}, the same resamples for every arm "
           f"and axis). Human continuations (the books' own, cut to {res.get('max_tokens', 256)} SmolLM2 tokens): coherence "
           f"{h['coherence']:.3f} ({h['texts']} texts).\n"]
    out += [f"- note: {n}" for n in res["notes"]] + ([""] if res["notes"] else [])
    out += ["## Arms\n", arms_table(res), "",
            "## Beyond the frontier on which quality axis (Vendi)\n",
            "An arm is beyond the frontier only where it is more diverse (Vendi) than temperature sampling at equal "
            "coherence and at equal MAUVE (every feature set computed for it); beyond at equal judge perplexity alone does not "
            "count, since loops lower the judge's perplexity.\n", summary_table(res), "",
            "## Against the temperature frontier, per quality axis\n",
            "Frontier: the temperature arms joined in order of temperature; at the arm's quality the most diverse "
            "point of that curve with the same quality. Beyond = more diverse at equal quality on that axis, the "
            "whole interval on that side.\n", verdict_table(res), "",
            f"## Paired differences with {', '.join(res.get('references') or ['temperature_t1', 'temperature_t08'])}\n",
            paired_table(res), "",
            "## MAUVE across clusterings\n",
            "The intervals above hold one k-means clustering fixed; here each arm is clustered with three seeds.\n",
            seeds_table(res)]
    return "\n".join(out)


def plot_quality(res: Mapping[str, Any], path=None, metric: str = "vendi"):
    plt = pyplot()
    axes_keys = [k for k in ("ppl_loopfree", "mauve_smollm2", "mauve_minilm", "coherence")
                 if any(math.isfinite(r.get(k, math.nan)) for r in res["rows"])]
    fig, axes = plt.subplots(1, len(axes_keys), figsize=(4.6 * len(axes_keys) + 2.6, 4.2), squeeze=False)
    others = [r for r in res["rows"] if not r["frontier"]]
    color = colors(["temperature"] + [r["arm"] for r in others])
    front = sorted([r for r in res["rows"] if r["frontier"]], key=lambda r: r["temperature"])
    for ax, x in zip(axes[0], axes_keys):
        def bars(rs):
            xv, yv = np.array([r.get(x, np.nan) for r in rs]), np.array([r[metric] for r in rs])
            xe = np.array([[r[x] - r[f"{x}_lo"] for r in rs], [r[f"{x}_hi"] - r[x] for r in rs]]) if all(
                f"{x}_lo" in r for r in rs) else None
            ye = np.array([[r[metric] - r[f"{metric}_lo"] for r in rs], [r[f"{metric}_hi"] - r[metric] for r in rs]])
            return xv, yv, None if xe is None else np.nan_to_num(xe), np.nan_to_num(ye)

        fr = [r for r in front if math.isfinite(r.get(x, math.nan))]
        if fr:
            xv, yv, xe, ye = bars(fr)
            ax.plot(xv, yv, "-", lw=1.4, color=color["temperature"])
            ax.errorbar(xv, yv, xerr=xe, yerr=ye, fmt="o", ms=4, capsize=2, color=color["temperature"],
                        label="temperature (frontier)")
            for r, xi, yi in zip(fr, xv, yv):
                ax.annotate(r["label"], (xi, yi), textcoords="offset points", xytext=(4, -10), fontsize=7)
        for j, r in enumerate(others):
            if not math.isfinite(r.get(x, math.nan)):
                continue
            xv, yv, xe, ye = bars([r])
            ax.errorbar(xv, yv, xerr=xe, yerr=ye, fmt=MARKERS[(j + 1) % len(MARKERS)], ms=6, capsize=2,
                        color=color[r["arm"]], label=f"{r['label']} ({r['arm']})")
        if x.startswith("ppl"):
            from matplotlib.ticker import NullFormatter, ScalarFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        arrow = "← better" if AXES[x][1] == "lower" else "better →"
        ax.set_xlabel(f"{NAMES[x]}  ({arrow})", fontsize=8)
        ax.set_ylabel(f"{NAMES[metric]} ({'↑' if DIVERSITY[metric] == 'higher' else '↓'} more diverse)")
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"{NAMES[metric]} against quality axes, {res['prompts']} prompts (95% bootstrap intervals)",
                 fontsize=11)
    return finish_figure(fig, axes[0], path)


def write_quality(res: Mapping[str, Any], out: str | Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "quality.md", out / "quality.json", out / "quality.png"]
    files[0].write_text(quality_markdown(res) + "\n")
    files[1].write_text(json.dumps(res, indent=1, default=str, allow_nan=True))
    plot_quality(res, files[2])
    return files
