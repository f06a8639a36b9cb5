"""Collect the `results.json` of many runs (a Hydra sweep, a folder of runs) into one table and plot them.

    from esamp.analysis.sweep import collect, plot_passk, plot_loss_curves, to_markdown
    df = collect("multirun/2025-01-01_12-00-00")     # one row per run
    plot_passk(df, "passk.png")                      # Pass@k vs k (log2), 95% bands, one panel per task
    plot_loss_curves(df, "distiller_loss.png")       # ESamp runs only; None when there is no curve

Command line: `python -m esamp.cli.aggregate SWEEP_DIR [--out DIR]` (summary.csv, summary.md, passk.png,
distiller_loss.png).

Pass@k for every k <= n comes from one run of n samples, so each run gives a whole curve: columns
`pass@1`, `pass@2`, ... (the k values the run reported) with their 95% bounds `pass@k_lo` / `pass@k_hi`.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from esamp.analysis.plotting import MARKERS, colors, finish_figure, k_axis, plot_step_curves, pyplot
from esamp.analysis.runs import load_runs
from esamp.analysis.tables import fmt_value, markdown_table, varying

ID_COLUMNS = ["task", "model", "sampler"]
# Shown first, and in summary.md whenever set (other hyperparameters appear there only when they vary).
KEY_HYPERPARAMETERS = ["temperature", "top_k", "top_p", "min_p", "beta", "fusion", "state", "variant"]
TELEMETRY_KEYS = ["train_steps", "first_loss", "last_loss", "mean_error_norm"]
RESERVED = {"run_dir", "run", "label", "task", "model", "sampler", "n", "seed", "num_problems", "samples",
            "accuracy", "accuracy_lo", "accuracy_hi", "tokens_per_second", "wall_seconds", "loss_curve"}
_PASSK = re.compile(r"^pass@(\d+)$")


# ------------------------------------------------------------------------------------------------ collect
def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _flat(d: dict[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """Scalar values of a dict, nested dicts flattened one level as `outer.inner`; lists are dropped."""
    out: dict[str, Any] = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update({f"{prefix}{k}.{kk}": vv for kk, vv in v.items() if _scalar(vv)})
        elif _scalar(v):
            out[f"{prefix}{k}"] = v
    return out


def run_row(run: dict[str, Any]) -> dict[str, Any]:
    """One results.json -> one flat row."""
    sampler = run.get("sampler") or {}
    model = run.get("model") or {}
    row: dict[str, Any] = {"run_dir": run.get("_run_dir"), "task": run.get("task"),
                           "model": model.get("name") if isinstance(model, dict) else model,
                           "sampler": sampler.get("name")}
    for k, v in _flat({k: v for k, v in sampler.items() if k not in ("name", "n", "order")}).items():
        row[k if k not in RESERVED else f"sampler.{k}"] = v
    row["n"], row["seed"] = sampler.get("n"), run.get("seed")  # the settings sit between `sampler` and `n`
    row["num_problems"], row["samples"] = run.get("num_problems"), run.get("samples")
    curve = run.get("pass_at_k") or {}
    for i, k in enumerate(curve.get("k") or []):
        row[f"pass@{k}"] = curve["pass_at_k"][i]
        row[f"pass@{k}_lo"] = (curve.get("ci_low") or [None] * (i + 1))[i]
        row[f"pass@{k}_hi"] = (curve.get("ci_high") or [None] * (i + 1))[i]
    acc = run.get("accuracy") or {}
    row["accuracy"], row["accuracy_lo"], row["accuracy_hi"] = acc.get("accuracy"), acc.get("ci_low"), acc.get("ci_high")
    for k, v in _flat(run.get("task_metrics")).items():  # e.g. diversity metrics of creative writing
        row[k if k not in row else f"task.{k}"] = v
    # the system-prompt style is part of the arm (task.prompt_style); runs from before the key are plain
    row["prompt_style"] = ((run.get("task_metrics") or {}).get("prompt_style") or {}).get("name") or "plain"
    timing = run.get("timing") or {}
    row["tokens_per_second"], row["wall_seconds"] = timing.get("tokens_per_second"), timing.get("wall_seconds")
    telemetry = run.get("sampler_telemetry") or {}
    for k in TELEMETRY_KEYS:
        if k in telemetry:
            row[f"esamp.{k}"] = telemetry[k]
    row["loss_curve"] = telemetry.get("loss_curve") or None
    return row


def _natural(v: Any) -> tuple:
    """Sort key: None last, numbers by value, strings naturally."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return (2, 0, "")
    if isinstance(v, (int, float)):
        return (0, float(v), "")
    return (1, 0, str(v))


def hyperparameter_columns(df: pd.DataFrame) -> list[str]:
    """The sampler settings columns: those between `sampler` and `n` (the layout of `collect`)."""
    cols = list(df.columns)
    if "sampler" not in cols or "n" not in cols:
        return []
    cols = [c for c in cols[cols.index("sampler") + 1:cols.index("n")] if c not in RESERVED]
    return sorted(cols, key=lambda c: (KEY_HYPERPARAMETERS.index(c) if c in KEY_HYPERPARAMETERS else 99, c))


def add_labels(df: pd.DataFrame) -> pd.DataFrame:
    """`label`: sampler name plus the settings that tell this run apart from the others of the same
    sampler (and the prompt style / model / n / seed when those vary), e.g. `esamp beta=0.25`."""
    if df.empty:
        df["label"] = []
        return df
    hp = hyperparameter_columns(df)
    labels = pd.Series("", index=df.index, dtype=object)
    for name, group in df.groupby(df["sampler"].fillna("?"), sort=False):
        differ = [c for c in hp if varying(group, c)]
        for c in ("prompt_style", "n", "seed"):
            if c in group and varying(group, c):
                differ.append(c)
        for idx, row in group.iterrows():
            parts = [str(name)] + [f"{c}={fmt_value(row[c])}" for c in differ]
            labels[idx] = " ".join(parts)
    if df["model"].nunique(dropna=False) > 1:
        labels = df["model"].astype(str) + ": " + labels
    # identical settings run twice (e.g. a copy of a folder): keep lines apart
    dup = labels.groupby([df["task"], labels], dropna=False).cumcount()
    labels = labels.where(dup == 0, labels + " #" + (dup + 1).astype(str))
    df["label"] = labels
    return df


def collect(root: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """One row per run below `root` (a folder, a results.json, or several of them): run_dir, task, model,
    sampler, n, seed, the sampler's settings (temperature, top_p, min_p, beta, fusion, state, ...),
    pass@k (+ `_lo`/`_hi` 95% bounds) for every reported k, accuracy, the task's own metrics (e.g.
    diversity), tokens/s, ESamp telemetry, and `label` (what tells the run apart, for plots)."""
    return frame(load_runs(root))


def frame(runs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    rows = [run_row(r) for r in runs]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=["run_dir", *ID_COLUMNS, "n", "seed", "label"])
    ks = sorted({int(m.group(1)) for c in df.columns if (m := _PASSK.match(c))})
    hp: dict[str, None] = {}
    for r in rows:  # each row's settings sit between `sampler` and `n`; runs of different samplers differ
        keys = list(r)
        hp.update(dict.fromkeys(k for k in keys[keys.index("sampler") + 1:keys.index("n")] if k not in RESERVED))
    hp = sorted(hp, key=lambda c: (KEY_HYPERPARAMETERS.index(c) if c in KEY_HYPERPARAMETERS else 99, c))
    head = ["run_dir", *ID_COLUMNS, *hp, "n", "seed", "num_problems", "samples"]
    results = [f"pass@{k}" for k in ks] + ["accuracy"]
    bounds = [f"pass@{k}_{b}" for k in ks for b in ("lo", "hi")] + ["accuracy_lo", "accuracy_hi"]
    tail = ["tokens_per_second", "wall_seconds"]
    other = [c for c in df.columns if c not in {*head, *results, *bounds, *tail, "loss_curve"}]
    df = df[[c for c in head + results + other + tail + bounds + ["loss_curve"] if c in df.columns]]
    df = df.iloc[sorted(range(len(df)), key=lambda i: tuple(
        _natural(df.iloc[i][c]) for c in ["task", "model", "sampler", *hp, "n", "seed", "run_dir"]))]
    df = df.reset_index(drop=True)
    df = add_labels(df)
    return df[["label"] + [c for c in df.columns if c != "label"]]


def _as_frame(df_or_runs: pd.DataFrame | str | Path | Iterable) -> pd.DataFrame:
    if isinstance(df_or_runs, pd.DataFrame):
        return df_or_runs if "label" in df_or_runs else add_labels(df_or_runs.copy())
    if isinstance(df_or_runs, (str, Path)):
        return collect(df_or_runs)
    items = list(df_or_runs)
    if items and all(isinstance(r, dict) for r in items):
        return frame(items)
    return collect(items)


def passk_columns(df: pd.DataFrame) -> list[int]:
    return sorted({int(m.group(1)) for c in df.columns if (m := _PASSK.match(c))})


# ------------------------------------------------------------------------------------------------ tables
def shown_hyperparameters(df: pd.DataFrame) -> list[str]:
    """Settings worth a column: key ones that some run sets, and any other that varies between runs (a
    setting only some samplers have, e.g. ESamp's distiller.*, counts as varying only between its values)."""
    return [c for c in hyperparameter_columns(df)
            if (c in KEY_HYPERPARAMETERS and df[c].notna().any()) or varying(df, c, True)]


def summary_columns(df: pd.DataFrame) -> list[str]:
    """The columns of the printed table: identity, settings that are set (key ones) or vary, n, Pass@k,
    accuracy, diversity, throughput."""
    div = [c for c in df.columns if any(c.endswith(s) for s in ("distinct_1", "distinct_2", "self_bleu",
                                                                 "vendi", "pairwise_cosine"))]
    style = ["prompt_style"] if "prompt_style" in df and varying(df, "prompt_style") else []
    cols = ["task", "model", "sampler", *shown_hyperparameters(df), *style, "n",
            *[f"pass@{k}" for k in passk_columns(df)], "accuracy", *div, "esamp.last_loss", "tokens_per_second"]
    return [c for c in cols if c in df.columns and (c in ID_COLUMNS or df[c].notna().any())]


def to_markdown(df: pd.DataFrame, columns: Sequence[str] | None = None, digits: int = 3) -> str:
    """A GitHub-flavoured markdown table (no `tabulate` needed)."""
    columns = list(columns or summary_columns(df))
    settings = set(hyperparameter_columns(df)) | {"n", "seed"}

    def cell(v: Any, col: str) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float) and col in settings:
            return fmt_value(v)
        if isinstance(v, float):
            return f"{v:.1f}" if col in ("tokens_per_second", "wall_seconds") else f"{v:.{digits}f}"
        return str(v)  # markdown_table escapes "|"

    names = [c.replace("tokens_per_second", "tok/s") for c in columns]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and df[c].dtype != bool for c in columns]
    return markdown_table(names, ([cell(row[c], c) for c in columns] for _, row in df.iterrows()), numeric)


def to_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """The table without list columns (loss curves stay in results.json)."""
    path = Path(path)
    df.drop(columns=[c for c in ("loss_curve",) if c in df.columns]).to_csv(path, index=False)
    return path


# ------------------------------------------------------------------------------------------------- plots
def plot_passk(df_or_runs, path: str | Path | None = None, title: str | None = None):
    """Pass@k against k (log2 axis), one line per configuration (`label`) with its 95% band, one panel
    per task. Saves a PNG when `path` is given; returns the matplotlib Figure."""
    df = _as_frame(df_or_runs)
    plt = pyplot()
    tasks = list(dict.fromkeys(df["task"])) or ["(no runs)"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks) + 2.6, 4.4), squeeze=False)
    labels = list(dict.fromkeys(df["label"])) if not df.empty else []
    color = colors(labels)
    for ax, task in zip(axes[0], tasks):
        sub = df[df["task"] == task] if not df.empty else df
        all_k: set[int] = set()
        ys: list[float] = []
        for _, row in sub.iterrows():
            ks = [k for k in passk_columns(sub) if pd.notna(row.get(f"pass@{k}"))]
            if not ks:
                continue
            all_k.update(ks)
            y = [row[f"pass@{k}"] for k in ks]
            lab = row["label"]
            ax.plot(ks, y, marker=MARKERS[labels.index(lab) % len(MARKERS)], ms=4, lw=1.6, color=color[lab],
                    label=lab)
            lo = [row.get(f"pass@{k}_lo") for k in ks]
            hi = [row.get(f"pass@{k}_hi") for k in ks]
            ys += y
            if all(v is not None and pd.notna(v) for v in lo + hi):
                ax.fill_between(ks, lo, hi, color=color[lab], alpha=0.12, lw=0)
                ys += lo + hi
        k_axis(ax, all_k, ys)
        models = sorted(set(sub["model"].dropna())) if not sub.empty else []
        n_prob = sorted(set(sub["num_problems"].dropna().astype(int))) if "num_problems" in sub else []
        info = [", ".join(models)] if len(models) == 1 else []
        if len(n_prob) == 1:
            info.append(f"{n_prob[0]} problems")
        ax.set_title(f"{task}" + (f"\n({'; '.join(info)})" if info else ""), fontsize=10)
    fig.suptitle(title or "Pass@k", fontsize=11)
    return finish_figure(fig, axes[0], path, title="95% bands shaded", title_fontsize=8)


def plot_loss_curves(df_or_runs, path: str | Path | None = None, title: str | None = None):
    """The Distiller's training loss per decode step (averaged over batches) of every run that reports
    `sampler_telemetry.loss_curve` (ESamp), one panel per task. Returns the Figure, or None when no run
    has a curve."""
    df = _as_frame(df_or_runs)
    if "loss_curve" not in df:
        return None
    sub = df[df["loss_curve"].map(lambda c: bool(c))]
    panels = [(task, "Distiller loss (MSE)", list(zip(g["label"], g["loss_curve"])))
              for task, g in sub.groupby("task", sort=False, dropna=False)]
    return plot_step_curves(panels, path, title or "ESamp Distiller loss",
                            xlabel="training step (from the 2nd generated token)")



# ------------------------------------------------------------------------------------------------- main
def write_summary(root: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """summary.csv, summary.md, passk.png and (with ESamp runs) distiller_loss.png into `out` (default:
    `root`). Returns {"table": DataFrame, "markdown": str, "files": [paths]}."""
    df = collect(root)
    if df.empty:
        raise FileNotFoundError(f"no results.json below {root}")
    out = Path(out or root)
    out.mkdir(parents=True, exist_ok=True)
    md = to_markdown(df)
    files = [to_csv(df, out / "summary.csv")]
    (out / "summary.md").write_text(f"# Summary of {Path(root)}\n\n{len(df)} runs. Pass@k: unbiased estimator, "
                                    f"95% bounds in summary.csv (`pass@k_lo`, `pass@k_hi`).\n\n{md}")
    files.append(out / "summary.md")
    plot_passk(df, out / "passk.png", title=f"Pass@k: {Path(root).resolve().name}")
    files.append(out / "passk.png")
    if plot_loss_curves(df, out / "distiller_loss.png") is not None:
        files.append(out / "distiller_loss.png")
    return {"table": df, "markdown": md, "files": files}
