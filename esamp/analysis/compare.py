"""The paired comparison of the evidence protocol (section 2), numbers and report in one place.

    from esamp.analysis.compare import compare_runs, write_comparison
    res = compare_runs(["results/x/esamp"], baseline="results/x/temperature")   # paired, per problem
    write_comparison(res, "experiments/x/comparison")                          # .md, .csv, .png

The numbers: per-problem Pass@k (the estimator of `esamp.metrics.passk`) of an arm and the baseline on the
problems both ran, the mean difference with a percentile interval from a bootstrap over problems
(`esamp.analysis.stats`), solved-only counts, a MATH-500 per-level breakdown, and answer diversity (distinct
extracted answers per problem). The report: comparison.md, the CSVs, Pass@k curves with bands, the difference
plot with intervals, the Distiller dynamics of ESamp runs. Command line: `python -m esamp.cli.compare`.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from esamp.analysis.plotting import MARKERS, colors, finish_figure, k_axis, plot_step_curves, pyplot
from esamp.analysis.runs import load_samples, read_results, run_labels
from esamp.analysis.stats import bootstrap_interval
from esamp.analysis.tables import markdown_table
from esamp.metrics.passk import pass_at_k
from esamp.metrics.programs import canonical_program

DEFAULT_KS = (1, 2, 4, 8, 16)


# ------------------------------------------------------------------------------------------ numbers
def sample_answer(r: dict[str, Any]) -> str | None:
    """The answer a sample's diversity is counted on: the extracted final answer (math, multiple choice),
    else, for code tasks (a HumanEval record has no extracted answer but its problem's entry point), the
    normal form of its program (`esamp.metrics.programs`), so that reformatted or renamed copies of one
    program count once."""
    ans = r.get("extracted")
    entry_point = (r.get("problem_meta") or {}).get("entry_point")
    if ans is None and entry_point and r.get("completion"):
        return canonical_program(r["completion"], entry_point)
    return ans


def problem_table(samples: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """problem id -> {n, c (correct samples), level (MATH-500, else None), answers, answer_ok}; `answers`
    are the samples' answers stripped (`sample_answer`; None when the sample gave none), `answer_ok` their
    grades."""
    out: dict[str, dict[str, Any]] = {}
    for r in sorted(samples, key=lambda r: (str(r["problem_id"]), r["sample_index"])):
        p = out.setdefault(str(r["problem_id"]), {"n": 0, "c": 0, "answers": [], "answer_ok": [],
                                                   "level": (r.get("problem_meta") or {}).get("level")})
        ok = bool(r.get("correct"))  # None (ungraded) counts as not correct
        ans = sample_answer(r)
        p["n"] += 1
        p["c"] += ok
        p["answers"].append(str(ans).strip() or None if ans is not None else None)
        p["answer_ok"].append(ok)
    return out


def run_n(table: dict[str, dict[str, Any]], name: str) -> int:
    """The samples per problem of one run; a run mixing several n is refused (Pass@k would not pair)."""
    ns = Counter(p["n"] for p in table.values())
    if len(ns) != 1:
        raise ValueError(f"{name}: problems have different numbers of samples {dict(ns)}")
    return next(iter(ns))


def passk_matrix(table: dict[str, dict[str, Any]], ids: Sequence[str], ks: Sequence[int]) -> np.ndarray:
    """(problems, ks) per-problem Pass@k, unbiased estimator."""
    return np.array([[pass_at_k(table[i]["n"], table[i]["c"], k) for k in ks] for i in ids], dtype=float)


def paired_rows(arm: dict, base: dict, ids: Sequence[str], ks: Sequence[int], resamples: int,
                seed: int) -> list[dict[str, Any]]:
    """One row per k: both Pass@k, the mean paired difference (arm - baseline) and its 95% interval, and
    the problems solved (>= 1 correct of n) by the arm only, the baseline only, both, neither."""
    a, b = passk_matrix(arm, ids, ks), passk_matrix(base, ids, ks)
    lo, hi = bootstrap_interval(a - b, resamples, seed)
    sa = np.array([arm[i]["c"] > 0 for i in ids])
    sb = np.array([base[i]["c"] > 0 for i in ids])
    solved = {"arm_only": int((sa & ~sb).sum()), "baseline_only": int((~sa & sb).sum()),
              "both": int((sa & sb).sum()), "neither": int((~sa & ~sb).sum())}
    return [{"k": k, "problems": len(ids), "arm_pass": float(a[:, j].mean()), "baseline_pass": float(b[:, j].mean()),
             "diff": float((a - b)[:, j].mean()), "diff_lo": float(lo[j]), "diff_hi": float(hi[j]), **solved}
            for j, k in enumerate(ks)]


def passk_band(table: dict, ids: Sequence[str], ks: Sequence[int], resamples: int, seed: int) -> dict[str, list]:
    """Mean Pass@k over `ids` with its 95% bootstrap band (for the curves)."""
    a = passk_matrix(table, ids, ks)
    lo, hi = bootstrap_interval(a, resamples, seed)
    return {"k": list(ks), "mean": a.mean(0).tolist(), "lo": lo.tolist(), "hi": hi.tolist()}


def _distinct(p: dict[str, Any], correct_only: bool = False) -> int:
    return len({a for a, ok in zip(p["answers"], p["answer_ok"]) if a is not None and (ok or not correct_only)})


def answer_diversity(table: dict, ids: Sequence[str]) -> dict[str, float]:
    """Mean distinct answers per problem (stripped strings, or program normal forms on code; a sample
    without one does not count), mean distinct *correct* answers per problem (the question the framework
    asks: on math one answer is correct, so this is ~Pass@n; on code it counts distinct correct programs),
    the fraction of samples without an answer, and the fraction of problems whose distinct answers include a
    correct one (graded per sample, so this equals the fraction solved, Pass@n)."""
    distinct = [_distinct(table[i]) for i in ids]
    distinct_ok = [_distinct(table[i], correct_only=True) for i in ids]
    missing = [sum(x is None for x in table[i]["answers"]) / table[i]["n"] for i in ids]
    hit = [any(table[i]["answer_ok"]) for i in ids]
    return {"problems": len(ids), "distinct_answers": float(np.mean(distinct)) if ids else math.nan,
            "distinct_correct": float(np.mean(distinct_ok)) if ids else math.nan,
            "no_answer": float(np.mean(missing)) if ids else math.nan,
            "correct_among": float(np.mean(hit)) if ids else math.nan}


def paired_diversity(arm: dict, base: dict, ids: Sequence[str], resamples: int, seed: int) -> list[dict[str, Any]]:
    """Distinct answers and distinct correct answers per problem, arm - baseline, paired per problem, with
    the 95% interval from the same bootstrap resamples as the Pass@k rows."""
    measures = {"distinct_answers": False, "distinct_correct": True}  # name -> count correct answers only
    a, b = (np.array([[_distinct(t[i], only) for only in measures.values()] for i in ids], dtype=float)
            for t in (arm, base))
    lo, hi = bootstrap_interval(a - b, resamples, seed)
    return [{"measure": m, "problems": len(ids), "arm_mean": float(a[:, j].mean()), "baseline_mean": float(b[:, j].mean()),
             "diff": float((a - b)[:, j].mean()), "diff_lo": float(lo[j]), "diff_hi": float(hi[j])}
            for j, m in enumerate(measures)]


def compare_runs(arms: Sequence[str | Path], baseline: str | Path, ks: Sequence[int] = DEFAULT_KS,
                 resamples: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """Paired comparison of each arm with the baseline on the problems both ran.

    Returns {"rows": one dict per (arm, level, k) - level "all", then each MATH-500 level -, "notes": what
    was dropped, "diversity_rows": distinct (correct) answers per problem, arm - baseline, paired, "curves"
    and "diversity": per run over the problems common to all runs, "runs": name -> {dir, results, n}}. Raises ValueError when a run's n differs from the baseline's."""
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    dirs = [Path(baseline).resolve()] + [Path(a).resolve() for a in arms]
    names = run_labels(dirs)
    tables = {nm: problem_table(load_samples(d)) for nm, d in zip(names, dirs)}
    ns = {nm: run_n(t, nm) for nm, t in tables.items() if t}
    base_name, base = names[0], tables[names[0]]
    for nm, t in tables.items():
        if not t:
            raise ValueError(f"{nm}: samples file has no complete record")
        if ns[nm] != ns[base_name]:
            raise ValueError(f"{nm} has n={ns[nm]} samples per problem, the baseline {base_name} n={ns[base_name]}: "
                             "Pass@k of different n do not pair; rerun with the same sampler.n")
    n = ns[base_name]
    ks_used = [k for k in ks if 1 <= k <= n]
    notes = [f"k > n={n} left out: {[k for k in ks if k > n]}"] if len(ks_used) < len(ks) else []
    if not ks_used:
        raise ValueError(f"no k in {list(ks)} is <= n={n}")
    rows, div_rows = [], []
    for nm in names[1:]:
        arm = tables[nm]
        ids = sorted(set(arm) & set(base))
        if len(ids) < max(len(arm), len(base)):
            notes.append(f"{nm} vs {base_name}: {len(ids)} problems in common; dropped {len(set(arm) - set(base))} "
                         f"only in {nm}, {len(set(base) - set(arm))} only in {base_name}")
        if not ids:
            raise ValueError(f"{nm} and {base_name} have no problem in common")
        div_rows += [{"arm": nm, "baseline": base_name, **r} for r in paired_diversity(arm, base, ids, resamples, seed)]
        levels = sorted({arm[i]["level"] for i in ids if arm[i]["level"] is not None}, key=str)
        for level in ["all", *levels]:
            sub = ids if level == "all" else [i for i in ids if arm[i]["level"] == level]
            for row in paired_rows(arm, base, sub, ks_used, resamples, seed):
                rows.append({"arm": nm, "baseline": base_name, "level": level, "n": n, **row})
    common = sorted(set.intersection(*(set(t) for t in tables.values())))
    return {"rows": rows, "diversity_rows": div_rows, "notes": notes, "ks": ks_used, "n": n, "common": len(common), "baseline": base_name,
            "resamples": resamples, "seed": seed,
            "curves": {nm: passk_band(t, common, ks_used, resamples, seed) for nm, t in tables.items()} if common else {},
            "diversity": {nm: answer_diversity(t, common) for nm, t in tables.items()},
            "runs": {nm: {"dir": str(d), "results": read_results(d), "n": ns[nm]} for nm, d in zip(names, dirs)}}



# ------------------------------------------------------------------------------------------ report
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
    tele = [(nm, read_results(d).get("sampler_telemetry") or {}) for nm, d in zip(run_labels(dirs), dirs)]
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
