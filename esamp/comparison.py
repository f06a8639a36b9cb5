"""The paired comparison's report (`scripts/compare.py`): Markdown table, CSV, Pass@k curves with bands, the
difference plot with intervals, the Distiller dynamics of ESamp runs. The numbers: `esamp.analysis`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from esamp.analysis import _labels, markdown_table, read_results
from esamp.plotting import MARKERS, colors, finish_figure, k_axis, plot_step_curves, pyplot


def _p(v: float) -> str:
    return f"{v:.3f}"


def _excludes_zero(row: dict) -> str:
    return "above 0" if row["diff_lo"] > 0 else "below 0" if row["diff_hi"] < 0 else "no"


def comparison_markdown(res: dict[str, Any]) -> str:
    """The Markdown report: differences per k (all problems), solved counts, per-level rows, answers."""
    rows, base = res["rows"], res["baseline"]
    out = [f"# Paired comparison against `{base}`\n",
           f"Pass@k: unbiased estimator per problem, mean over the problems both runs share (n = {res['n']} "
           f"samples per problem). Difference = arm - baseline, paired per problem; 95% percentile interval "
           f"from {res['resamples']} bootstrap resamples of problems (seed {res['seed']}). Solved: at least one "
           f"of n samples correct.\n"]
    out += [f"- note: {note}" for note in res["notes"]] + ([""] if res["notes"] else [])
    head = ["arm", "k", "problems", "arm Pass@k", "baseline Pass@k", "difference", "95% interval", "excludes 0"]
    table = [[r["arm"], r["k"], r["problems"], _p(r["arm_pass"]), _p(r["baseline_pass"]), f"{r['diff']:+.3f}",
              f"[{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}]", _excludes_zero(r)] for r in rows if r["level"] == "all"]
    out += ["## Pass@k differences, all problems\n", markdown_table(head, table, [0, 1, 1, 1, 1, 1, 0, 0])]
    firsts = [r for r in rows if r["k"] == res["ks"][0]]
    head = ["arm", "level", "problems", "solved by arm only", "by baseline only", "by both", "by neither"]
    table = [[r["arm"], r["level"], r["problems"], r["arm_only"], r["baseline_only"], r["both"], r["neither"]]
             for r in firsts]
    out += [f"## Problems solved (>= 1 correct of {res['n']})\n", markdown_table(head, table, [0, 0, 1, 1, 1, 1, 1])]
    if any(r["level"] != "all" for r in rows):
        head = ["arm", "level", "k", "problems", "arm Pass@k", "baseline Pass@k", "difference", "95% interval"]
        table = [[r["arm"], r["level"], r["k"], r["problems"], _p(r["arm_pass"]), _p(r["baseline_pass"]),
                  f"{r['diff']:+.3f}", f"[{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}]"] for r in rows if r["level"] != "all"]
        out += ["## By MATH-500 level\n", markdown_table(head, table, [0, 0, 1, 1, 1, 1, 1, 0])]
    head = ["run", "problems", "distinct answers / problem", "distinct correct / problem", "samples without answer",
            "correct answer among them"]
    table = [[nm, d["problems"], f"{d['distinct_answers']:.2f}", f"{d['distinct_correct']:.2f}", _p(d["no_answer"]),
              _p(d["correct_among"])] for nm, d in res["diversity"].items()]
    out += [f"## Final answers ({res['common']} problems common to all runs)\n",
            "An answer is the extracted final answer, or on code the program's normal form (comments, docstrings, "
            "formatting and a renaming of its own names removed; `esamp.metrics.programs`).\n",
            markdown_table(head, table, [0, 1, 1, 1, 1, 1])]
    if res.get("diversity_rows"):
        head = ["arm", "measure", "problems", "arm", "baseline", "difference", "95% interval", "excludes 0"]
        table = [[r["arm"], r["measure"].replace("_", " "), r["problems"], f"{r['arm_mean']:.2f}",
                  f"{r['baseline_mean']:.2f}", f"{r['diff']:+.2f}", f"[{r['diff_lo']:+.2f}, {r['diff_hi']:+.2f}]",
                  _excludes_zero(r)] for r in res["diversity_rows"]]
        out += ["## Distinct answers per problem, paired (arm - baseline)\n", markdown_table(head, table, [0, 0, 1, 1, 1, 1, 0, 0])]
    return "\n".join(out)


def plot_comparison_curves(res: dict[str, Any], path=None):
    """Pass@k of every run (baseline first) with its 95% bootstrap band, on the problems common to all."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.2, 4.4))
    color, ys = colors(list(res["curves"])), []
    for i, (nm, c) in enumerate(res["curves"].items()):
        ax.plot(c["k"], c["mean"], marker=MARKERS[i % len(MARKERS)], ms=4, lw=1.6, color=color[nm],
                label=nm + (" (baseline)" if nm == res["baseline"] else ""))
        ax.fill_between(c["k"], c["lo"], c["hi"], color=color[nm], alpha=0.12, lw=0)
        ys += c["lo"] + c["hi"]
    k_axis(ax, res["ks"], ys)
    ax.set_title(f"Pass@k, {res['common']} problems common to all runs, n = {res['n']}", fontsize=10)
    return finish_figure(fig, [ax], path, title="95% bands shaded", title_fontsize=8)


def plot_differences(res: dict[str, Any], path=None):
    """Paired difference arm - baseline per k with its 95% interval as error bars, one panel for all
    problems and one per MATH-500 level; the zero line is "no difference"."""
    plt = pyplot()
    levels = list(dict.fromkeys(r["level"] for r in res["rows"]))
    arms = list(dict.fromkeys(r["arm"] for r in res["rows"]))
    color = colors(list(res["curves"]) or arms)
    fig, axes = plt.subplots(1, len(levels), figsize=(4.2 * len(levels) + 2.6, 4.2), squeeze=False, sharey=True)
    for ax, level in zip(axes[0], levels):
        for j, arm in enumerate(arms):
            rs = [r for r in res["rows"] if r["arm"] == arm and r["level"] == level]
            shift = 2 ** (0.12 * (j - (len(arms) - 1) / 2))  # arms side by side on the log2 axis
            d = np.array([r["diff"] for r in rs])
            err = [d - [r["diff_lo"] for r in rs], [r["diff_hi"] for r in rs] - d]
            ax.errorbar([r["k"] * shift for r in rs], d, yerr=err, fmt=MARKERS[j % len(MARKERS)], ms=4, capsize=3,
                        color=color[arm], label=arm)
        ax.axhline(0, color="0.3", lw=0.9)
        k_axis(ax, res["ks"], ylabel="Pass@k difference (arm - baseline)" if level == "all" else "")
        ax.set_xlim(min(res["ks"]) / 1.4, max(res["ks"]) * 1.4)
        probs = next((r["problems"] for r in res["rows"] if r["level"] == level), 0)
        ax.set_title(("all problems" if level == "all" else f"level {level}") + f" ({probs})", fontsize=10)
    span = max([0.05] + [abs(r[c]) for r in res["rows"] for c in ("diff_lo", "diff_hi")])
    axes[0][0].set_ylim(-1.1 * span, 1.1 * span)  # symmetric about 0, never a 1e-17 scale when all are 0
    fig.suptitle(f"Paired Pass@k difference against {res['baseline']} (95% bootstrap intervals)", fontsize=11)
    return finish_figure(fig, axes[0], path)


def plot_dynamics(run_dirs: Sequence[str | Path], path=None):
    """The Distiller's loss and prediction-error norm per decode step of every ESamp run (one figure, two
    panels). None when no run reports the curves."""
    dirs = [Path(d).resolve() for d in run_dirs]
    tele = [(nm, read_results(d).get("sampler_telemetry") or {}) for nm, d in zip(_labels(dirs), dirs)]
    return plot_step_curves([
        ("Distiller loss", "training loss (MSE, mean over prompts)", [(nm, t["loss_curve"]) for nm, t in tele
                                                                       if t.get("loss_curve")]),
        # relative to the target's norm (the evidence protocol's telemetry); older runs: the absolute norm
        ("Distiller prediction error", "mean ||h - D(h_shallow)|| / ||h||  (absolute: runs without it)",
         [(nm, t.get("rel_error_norm_curve") or t["error_norm_curve"]) for nm, t in tele
          if t.get("rel_error_norm_curve") or t.get("error_norm_curve")]),
    ], path, title="ESamp Distiller dynamics", xlabel="training step (from the 2nd generated token)")


def write_comparison(res: dict[str, Any], out: str | Path) -> list[Path]:
    """comparison.md, comparison.csv, answers.csv, answers_paired.csv, passk_curves.png, passk_difference.png
    and, with ESamp runs, distiller_dynamics.png into `out`. Returns the paths written."""
    import pandas as pd

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "comparison.md", out / "comparison.csv", out / "answers.csv", out / "answers_paired.csv"]
    files[0].write_text(comparison_markdown(res))
    pd.DataFrame(res["rows"]).to_csv(files[1], index=False)
    pd.DataFrame([{"run": nm, **d, "run_dir": res["runs"][nm]["dir"]} for nm, d in res["diversity"].items()]).to_csv(
        files[2], index=False)
    pd.DataFrame(res.get("diversity_rows", [])).to_csv(files[3], index=False)
    if res["curves"]:
        plot_comparison_curves(res, out / "passk_curves.png")
        files.append(out / "passk_curves.png")
    plot_differences(res, out / "passk_difference.png")
    files.append(out / "passk_difference.png")
    if plot_dynamics([r["dir"] for r in res["runs"].values()], out / "distiller_dynamics.png") is not None:
        files.append(out / "distiller_dynamics.png")
    return files
