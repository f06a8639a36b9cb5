"""The frontier's report: frontier.md (the arms, the verdicts against the temperature curve, the divergence
differences), the CSVs and frontier.json, and the two figures (diversity against perplexity; Fig. 4a, the
divergence along the generation). The numbers: `esamp.analysis.frontier`."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from esamp.analysis.frontier import BETTER
from esamp.analysis.frontier_arms import RELEVANCE
from esamp.analysis.plotting import MARKERS, colors, finish_figure, pyplot
from esamp.analysis.tables import markdown_table

NAMES = {"vendi": "Vendi", "pairwise_cosine": "pairwise cosine", "perplexity": "perplexity",
         "perplexity_median": "median perplexity", RELEVANCE: "prompt relevance", "distinct_1": "distinct-1",
         "distinct_2": "distinct-2", "distinct_3": "distinct-3", "self_bleu": "self-BLEU"}


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
                "below the curve) with the whole interval on that side. This is one quality axis: the judge's perplexity "
                "falls when a sample loops, so a verdict here is \"beyond at equal judge perplexity\"; "
                "`esamp.cli.writing_quality` repeats the test at equal MAUVE, coherence and loop-free perplexity, "
                "and an arm counts as beyond only where it is beyond there too."
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
