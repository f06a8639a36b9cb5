"""Reading finished runs and comparing them: the one home of the analysis helpers.

    from esamp.analysis import compare_runs, write_comparison
    res = compare_runs(["results/x/esamp"], baseline="results/x/temperature")   # paired, per problem

* runs: `find_results` / `load_runs` (results.json files), `load_samples` (samples.jsonl or .jsonl.gz);
* the paired comparison of the evidence protocol (§2): per-problem Pass@k (the estimator of
  `esamp.metrics.passk`) of an arm and the baseline on the problems both ran, the mean difference with a
  percentile interval from a bootstrap over problems, solved-only counts, a MATH-500 per-level breakdown,
  and answer diversity (distinct extracted answers per problem);
* figures: the backend choice, colours, one legend layout (`finish_figure`), the Pass@k axis, curves per
  decode step (Distiller loss and error norm).

`write_comparison` writes a comparison's Markdown, CSV and figures (`scripts/compare.py`); `esamp.aggregate`
(sweep tables) and `esamp.notebook_utils` (notebook tables) build on the helpers here.
"""
from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from esamp.metrics.passk import pass_at_k
from esamp.tasks.data import open_text

DEFAULT_KS = (1, 2, 4, 8, 16)


# -------------------------------------------------------------------------------------------- runs
def find_results(root: str | Path) -> list[Path]:
    """Every results.json below `root` (or `root` itself when it is one), in path order."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    return sorted(p for p in root.rglob("results.json") if ".submitit" not in p.parts)


def load_runs(root_or_paths: str | Path | Iterable[str | Path]) -> list[dict[str, Any]]:
    """results.json contents, each with its folder under `_run_dir`. Unreadable files are skipped with a
    warning (a run still writing its summary, or a hand-edited file)."""
    if isinstance(root_or_paths, (str, Path)):
        paths = find_results(root_or_paths)
    else:
        paths = [q for p in root_or_paths for q in find_results(p)]
    runs = []
    for p in paths:
        try:
            run = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as err:
            print(f"warning: skipping {p}: {err}", file=sys.stderr)
            continue
        run["_run_dir"] = str(Path(p).parent.resolve())
        runs.append(run)
    return runs


def read_results(run_dir: str | Path) -> dict[str, Any]:
    """The results.json of a run folder; {} when there is none yet (a run still generating)."""
    path = Path(run_dir) / "results.json"
    return json.loads(path.read_text()) if path.exists() else {}


def load_samples(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of `samples.jsonl` (or `samples.jsonl.gz`, for runs gzipped to commit them). A torn
    last line (a run still writing) is skipped; a repeated (problem, sample) keeps the last copy, as the
    sample store does on resume."""
    d = Path(run_dir)
    path = next((d / f for f in ("samples.jsonl", "samples.jsonl.gz") if (d / f).exists()), None)
    if path is None:
        raise FileNotFoundError(f"{d} has no samples.jsonl or samples.jsonl.gz")
    with open_text(path) as f:
        lines = f.read().split("\n")[:-1]  # the part after the last newline is empty or torn
    records = {}
    for line in lines:
        if line.strip():
            r = json.loads(line)
            records[(r["problem_id"], r["sample_index"])] = r
    return list(records.values())


def problem_table(samples: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """problem id -> {n, c (correct samples), level (MATH-500, else None), answers, answer_ok}; `answers`
    are the extracted final answers stripped (None when the sample gave none), `answer_ok` their grades."""
    out: dict[str, dict[str, Any]] = {}
    for r in sorted(samples, key=lambda r: (str(r["problem_id"]), r["sample_index"])):
        p = out.setdefault(str(r["problem_id"]), {"n": 0, "c": 0, "answers": [], "answer_ok": [],
                                                   "level": (r.get("problem_meta") or {}).get("level")})
        ok = bool(r.get("correct"))  # None (ungraded) counts as not correct
        ans = r.get("extracted")
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


# ------------------------------------------------------------------------------------- statistics
def passk_matrix(table: dict[str, dict[str, Any]], ids: Sequence[str], ks: Sequence[int]) -> np.ndarray:
    """(problems, ks) per-problem Pass@k, unbiased estimator."""
    return np.array([[pass_at_k(table[i]["n"], table[i]["c"], k) for k in ks] for i in ids], dtype=float)


def bootstrap_weights(n_items: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_items) weights: row r times the values = the mean of bootstrap resample r (items drawn
    with replacement). Stored as counts / n_items so that all arms share the same resamples (paired)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_items, size=(resamples, n_items)) + np.arange(resamples)[:, None] * n_items
    counts = np.bincount(idx.ravel(), minlength=resamples * n_items).reshape(resamples, n_items)
    return counts / n_items


def interval(boot: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap means, per column."""
    lo, hi = np.percentile(boot, [50 * (1 - level), 50 * (1 + level)], axis=0)
    return lo, hi


def paired_rows(arm: dict, base: dict, ids: Sequence[str], ks: Sequence[int], resamples: int,
                seed: int) -> list[dict[str, Any]]:
    """One row per k: both Pass@k, the mean paired difference (arm - baseline) and its 95% interval, and
    the problems solved (>= 1 correct of n) by the arm only, the baseline only, both, neither."""
    a, b = passk_matrix(arm, ids, ks), passk_matrix(base, ids, ks)
    boot = bootstrap_weights(len(ids), resamples, seed) @ (a - b)
    lo, hi = interval(boot)
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
    lo, hi = interval(bootstrap_weights(len(ids), resamples, seed) @ a)
    return {"k": list(ks), "mean": a.mean(0).tolist(), "lo": lo.tolist(), "hi": hi.tolist()}


def answer_diversity(table: dict, ids: Sequence[str]) -> dict[str, float]:
    """Mean distinct final answers per problem (stripped strings; a sample without one does not count), the
    fraction of samples without an answer, and the fraction of problems whose distinct answers include a
    correct one (graded per sample, so this equals the fraction solved, Pass@n)."""
    distinct = [len({x for x in table[i]["answers"] if x is not None}) for i in ids]
    missing = [sum(x is None for x in table[i]["answers"]) / table[i]["n"] for i in ids]
    hit = [any(table[i]["answer_ok"]) for i in ids]
    return {"problems": len(ids), "distinct_answers": float(np.mean(distinct)) if ids else math.nan,
            "no_answer": float(np.mean(missing)) if ids else math.nan,
            "correct_among": float(np.mean(hit)) if ids else math.nan}


def _labels(paths: Sequence[Path]) -> list[str]:
    """Run folder names (the arm names of results/<claim>/<arm>/), with the parent when names repeat."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def compare_runs(arms: Sequence[str | Path], baseline: str | Path, ks: Sequence[int] = DEFAULT_KS,
                 resamples: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """Paired comparison of each arm with the baseline on the problems both ran.

    Returns {"rows": one dict per (arm, level, k) - level "all", then each MATH-500 level -, "notes": what
    was dropped, "curves" and "diversity": per run over the problems common to all runs, "runs": name ->
    {dir, results, n}}. Raises ValueError when a run's n differs from the baseline's."""
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    dirs = [Path(baseline).resolve()] + [Path(a).resolve() for a in arms]
    names = _labels(dirs)
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
    rows = []
    for nm in names[1:]:
        arm = tables[nm]
        ids = sorted(set(arm) & set(base))
        if len(ids) < max(len(arm), len(base)):
            notes.append(f"{nm} vs {base_name}: {len(ids)} problems in common; dropped {len(set(arm) - set(base))} "
                         f"only in {nm}, {len(set(base) - set(arm))} only in {base_name}")
        if not ids:
            raise ValueError(f"{nm} and {base_name} have no problem in common")
        levels = sorted({arm[i]["level"] for i in ids if arm[i]["level"] is not None}, key=str)
        for level in ["all", *levels]:
            sub = ids if level == "all" else [i for i in ids if arm[i]["level"] == level]
            for row in paired_rows(arm, base, sub, ks_used, resamples, seed):
                rows.append({"arm": nm, "baseline": base_name, "level": level, "n": n, **row})
    common = sorted(set.intersection(*(set(t) for t in tables.values())))
    return {"rows": rows, "notes": notes, "ks": ks_used, "n": n, "common": len(common), "baseline": base_name,
            "resamples": resamples, "seed": seed,
            "curves": {nm: passk_band(t, common, ks_used, resamples, seed) for nm, t in tables.items()} if common else {},
            "diversity": {nm: answer_diversity(t, common) for nm, t in tables.items()},
            "runs": {nm: {"dir": str(d), "results": read_results(d), "n": ns[nm]} for nm, d in zip(names, dirs)}}


# ------------------------------------------------------------------------------------------ figures
def pyplot():
    """matplotlib.pyplot with the Agg backend for scripts (files only); a notebook, or a program that
    already imported pyplot, keeps its backend."""
    import matplotlib

    if not _interactive() and "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _interactive() -> bool:
    try:  # inside Jupyter keep the inline backend
        from IPython import get_ipython

        return get_ipython() is not None
    except ImportError:
        return False


def colors(labels: Sequence[str]) -> dict[str, Any]:
    """One colour per label, in order (tab10, tab20 beyond ten)."""
    cmap = pyplot().get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(dict.fromkeys(labels))}


MARKERS = "osD^v<>ph*"


def finish_figure(fig, axes, path=None, **legend_kw):
    """One legend for all panels (outside, on the right), tight layout, optional PNG (the figure is then
    closed: scripts write many)."""
    handles, names = [], []
    for ax in axes:
        for h, nm in zip(*ax.get_legend_handles_labels()):
            if nm not in names:
                handles.append(h)
                names.append(nm)
    if handles:
        fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0 - 2.5 / fig.get_figwidth(), 0.5),
                   fontsize=8, frameon=False, **legend_kw)
    fig.tight_layout(rect=(0, 0, 1.0 - 2.6 / fig.get_figwidth(), 1))
    if path is not None:
        fig.savefig(path, dpi=130, bbox_inches="tight")
        pyplot().close(fig)
    return fig


def k_axis(ax, ks: Iterable[int], ys: Sequence[float] = (), ylabel: str = "Pass@k") -> None:
    """k on a log2 axis with a tick at each k; y zoomed on the data within [0, 1] (differences between
    samplers are often a few points) when `ys` are given."""
    ticks = sorted(set(ks))
    ax.set_xscale("log", base=2)
    if ticks:
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(k) for k in ticks])
        ax.set_xlim(min(ticks) / 1.15, max(ticks) * 1.15)
    ax.minorticks_off()
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if len(ys):
        lo, hi = min(ys), max(ys)
        pad = max(0.03, 0.08 * (hi - lo))
        top = min(1.01, hi + pad)
        ax.set_ylim(lo - pad if lo - pad > 0 else -0.01 * top, top)


def plot_step_curves(panels: Sequence[tuple[str, str, Sequence[tuple[str, Sequence]]]], path=None,
                     title: str = "", xlabel: str = "decode step"):
    """Curves along the decode steps (Distiller loss, error norm), one panel per (title, ylabel, [(label,
    curve)]), one colour per label across panels. A panel whose values span decades gets a log y axis.
    Returns the Figure, or None when no panel has a curve."""
    panels = [p for p in panels if p[2]]
    if not panels:
        return None
    from matplotlib.ticker import FuncFormatter

    plt = pyplot()
    color = colors([lab for _, _, curves in panels for lab, _ in curves])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels) + 2.6, 4.0), squeeze=False)
    for ax, (name, ylabel, curves) in zip(axes[0], panels):
        values: list[float] = []
        for lab, curve in curves:
            y = [math.nan if v is None else float(v) for v in curve]
            values += [v for v in y if not math.isnan(v)]
            ax.plot(range(1, len(y) + 1), y, lw=1.3, color=color[lab], label=lab)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if values and min(values) > 0 and max(values) / min(values) > 5:  # log only when it spans decades
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "235" else ""))
    fig.suptitle(title, fontsize=11)
    return finish_figure(fig, axes[0], path)


# ------------------------------------------------------------------------------------------- tables
def fmt_value(v: Any) -> str:
    """A setting as written (0.25, not 0.250)."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def varying(df, col: str, ignore_missing: bool = False) -> bool:
    """Whether column `col` of a DataFrame takes more than one value (lists and dicts compared as JSON)."""
    values = df[col].dropna() if ignore_missing else df[col]
    return values.map(lambda v: json.dumps(v, default=str)).nunique() > 1


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[bool] = ()) -> str:
    """A GitHub-flavoured markdown table of pre-formatted cells (no `tabulate` needed); numeric columns
    are right-aligned."""
    numeric = list(numeric) or [False] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if r else "---" for r in numeric) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- comparison report
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
    head = ["run", "problems", "distinct answers / problem", "samples without answer", "correct answer among them"]
    table = [[nm, d["problems"], f"{d['distinct_answers']:.2f}", _p(d["no_answer"]), _p(d["correct_among"])]
             for nm, d in res["diversity"].items()]
    out += [f"## Final answers ({res['common']} problems common to all runs)\n", markdown_table(head, table, [0, 1, 1, 1, 1])]
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
    """comparison.md, comparison.csv, answers.csv, passk_curves.png, passk_difference.png and, with ESamp
    runs, distiller_dynamics.png into `out`. Returns the paths written."""
    import pandas as pd

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "comparison.md", out / "comparison.csv", out / "answers.csv"]
    files[0].write_text(comparison_markdown(res))
    pd.DataFrame(res["rows"]).to_csv(files[1], index=False)
    pd.DataFrame([{"run": nm, **d, "run_dir": res["runs"][nm]["dir"]} for nm, d in res["diversity"].items()]).to_csv(
        files[2], index=False)
    if res["curves"]:
        plot_comparison_curves(res, out / "passk_curves.png")
        files.append(out / "passk_curves.png")
    plot_differences(res, out / "passk_difference.png")
    files.append(out / "passk_difference.png")
    if plot_dynamics([r["dir"] for r in res["runs"].values()], out / "distiller_dynamics.png") is not None:
        files.append(out / "distiller_dynamics.png")
    return files
