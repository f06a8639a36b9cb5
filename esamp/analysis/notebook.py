"""Small helpers for the notebooks in `notebooks/` (Pass@k curves, creative-writing diversity).

The heavy lifting lives elsewhere in :mod:`esamp.analysis`: reading runs (``runs``), the figure helpers
(``plotting``), the run table (flattening, labelling) and the Pass@k and Distiller-loss plots (``sweep``). This
module adds what the notebooks need on top of them:

* where to read from / write to: ``ESAMP_RESULTS_DIR`` (default: the repo's ``results/``) and
  ``ESAMP_FIGURES_DIR`` (PNG copies of the figures; unset: figures are only shown inline);
* the runs of the kind a notebook needs, or a clear error when the folder has none;
* the two tables, and the plots whose data are lists inside results.json (which ``collect`` drops):
  the Distiller error-norm curve, the diversity-vs-coherence scatter, the divergence-over-position curve.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from esamp.analysis.plotting import MARKERS, colors, finish_figure, plot_step_curves, pyplot
from esamp.analysis.runs import read_results
from esamp.analysis.sweep import add_labels, collect, passk_columns, shown_hyperparameters
from esamp.analysis.tables import fmt_value

REPO_ROOT = Path(__file__).resolve().parents[2]
DIVERSITY_METRICS = ["vendi", "pairwise_cosine", "distinct_1", "distinct_2", "distinct_3", "self_bleu", "perplexity"]
# For the table header: which way is "more diverse" / "more coherent".
DIRECTION = {"vendi": "↑ diverse", "pairwise_cosine": "↓ diverse", "distinct_1": "↑ diverse",
             "distinct_2": "↑ diverse", "distinct_3": "↑ diverse", "self_bleu": "↓ diverse",
             "perplexity": "↓ coherent"}


class NoRunsError(FileNotFoundError):
    """The results folder holds no run of the kind a notebook needs."""


# ------------------------------------------------------------------------------------------ folders
def results_dir(default: str | Path = "../results") -> Path:
    """``$ESAMP_RESULTS_DIR``, else `default` relative to the working directory (a notebook runs in
    `notebooks/`, so ``../results`` is the repo's ``results/``), else the repo's ``results/``."""
    env = os.environ.get("ESAMP_RESULTS_DIR")
    if env:
        return Path(env).expanduser().resolve()
    cand = Path(default).expanduser()
    return (cand if cand.exists() else REPO_ROOT / "results").resolve()


def figures_dir() -> Path | None:
    """``$ESAMP_FIGURES_DIR`` (created), or None: figures are then only shown, not written."""
    env = os.environ.get("ESAMP_FIGURES_DIR")
    if not env:
        return None
    path = Path(env).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def save(fig, name: str) -> Path | None:
    """Write `fig` as ``$ESAMP_FIGURES_DIR/name`` (when set) without closing it, so it still shows inline."""
    out = figures_dir()
    if fig is None or out is None:
        return None
    path = out / name
    fig.savefig(path, dpi=130, bbox_inches="tight")
    return path


# ------------------------------------------------------------------------------------------ runs
def _relabel(df: pd.DataFrame) -> pd.DataFrame:
    """Labels computed within this subset (what tells these runs apart, not all runs of the folder)."""
    df = df.drop(columns=["label"]).reset_index(drop=True)
    df = add_labels(df)
    return df[["label"] + [c for c in df.columns if c != "label"]]


def passk_runs(root: str | Path) -> pd.DataFrame:
    """Runs below `root` that report Pass@k (math500, AIME, GPQA, HumanEval, ...). Raises NoRunsError
    when there are none."""
    root = Path(root)
    if not root.exists():
        raise NoRunsError(f"results folder {root} does not exist (set ESAMP_RESULTS_DIR)")
    df = collect(root)
    ks = passk_columns(df)
    if df.empty or not ks:
        raise NoRunsError(f"no results.json with Pass@k below {root} ({len(df)} runs in all); "
                          "run e.g. `python run.py task=math500 hydra.run.dir=results/<name>`")
    df = df[df[[f"pass@{k}" for k in ks]].notna().any(axis=1)]
    return _relabel(df)


def diversity_runs(root: str | Path) -> pd.DataFrame:
    """Runs below `root` that report diversity metrics (creative_writing). Raises NoRunsError when
    there are none."""
    root = Path(root)
    if not root.exists():
        raise NoRunsError(f"results folder {root} does not exist (set ESAMP_RESULTS_DIR)")
    df = collect(root)
    if df.empty or "vendi" not in df or not df["vendi"].notna().any():
        raise NoRunsError(f"no creative_writing results.json (with diversity metrics) below {root} "
                          f"({len(df)} runs in all); run e.g. `python run.py task=creative_writing "
                          "hydra.run.dir=results/<name>`")
    return _relabel(df[df["vendi"].notna()])


def run_json(row: pd.Series) -> dict[str, Any]:
    """The full results.json of one table row (lists such as curves are not in the table)."""
    return read_results(str(row["run_dir"]))


def _blank_model(df: pd.DataFrame, cols: list[str]) -> list[str]:
    return [c for c in cols if c in df.columns and (c in ("task", "sampler") or df[c].notna().any())]


# ------------------------------------------------------------------------------------------ tables
def passk_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: task, model, sampler, its key settings, n, problems, Pass@1..n, accuracy (mean
    per-sample correctness), the Distiller's last loss (ESamp), tokens/s. Indexed by the run label."""
    ks = passk_columns(df)
    cols = ["task", "model", "sampler", *shown_hyperparameters(df), "n", "num_problems",
            *[f"pass@{k}" for k in ks], "accuracy", "esamp.last_loss", "tokens_per_second"]
    out = df.set_index("label")[_blank_model(df, cols)]
    return out.rename(columns={"num_problems": "problems", "tokens_per_second": "tok/s",
                               "esamp.last_loss": "distiller loss (last)"})


def diversity_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per creative-writing run: sampler, settings, n, prompts, Vendi, pairwise cosine,
    distinct-1/2/3, self-BLEU, perplexity, tokens/s. Column names say which way is better."""
    cols = ["model", "sampler", *shown_hyperparameters(df), "n", "prompts", *DIVERSITY_METRICS,
            "tokens_per_second"]
    out = df.set_index("label")[_blank_model(df, cols)]
    return out.rename(columns={**{m: f"{m} ({d})" for m, d in DIRECTION.items()}, "tokens_per_second": "tok/s"})


def style(table: pd.DataFrame, digits: int = 3):
    """Floats to `digits` places (settings as written), blanks for missing values."""
    settings = {"temperature", "top_k", "top_p", "min_p", "beta", "n", "problems", "prompts"}
    fmt = {c: ("{:.1f}" if c == "tok/s" else ("{:g}" if c in settings else f"{{:.{digits}f}}"))
           for c in table.columns if pd.api.types.is_float_dtype(table[c])}
    return table.style.format(fmt, na_rep="")


# ------------------------------------------------------------------------------------------ plots
def plot_error_norm_curves(df: pd.DataFrame, title: str | None = None):
    """ESamp's prediction-error norm ||h_deep - Distiller(h_shallow)|| per decode step (the novelty signal
    that steers sampling), one line per run, one panel per task. None when no run reports the curve."""
    curves = [(row["task"], row["label"], (run_json(row).get("sampler_telemetry") or {}).get("error_norm_curve"))
              for _, row in df.iterrows()]
    tasks = list(dict.fromkeys(t for t, _, c in curves if c))
    panels = [(t, "mean prediction-error norm", [(lab, c) for tt, lab, c in curves if tt == t and c]) for t in tasks]
    return plot_step_curves(panels, None, title or "ESamp Distiller prediction-error norm (novelty signal)")


def point_label(row: pd.Series) -> str:
    """The run label, with ESamp's beta spelled out when the label does not already carry it."""
    lab = str(row["label"])
    beta = row.get("beta")
    if row.get("sampler") == "esamp" and "beta=" not in lab and beta is not None and pd.notna(beta):
        lab += f" β={fmt_value(beta)}"
    return lab


def plot_diversity_vs_coherence(df: pd.DataFrame, title: str | None = None):
    """x = perplexity of the samples under the reference model (lower = more coherent), y = Vendi score
    (left) and 1 - mean pairwise cosine (right), both higher = more diverse. One point per run, labelled.
    None when no run reports perplexity (task.ppl_model=null)."""
    if "perplexity" not in df:
        return None
    sub = df[df["perplexity"].notna() & df["vendi"].notna()]
    sub = sub[sub["perplexity"].map(lambda v: math.isfinite(float(v)))]
    if sub.empty:
        return None
    plt = pyplot()
    labels = [point_label(r) for _, r in sub.iterrows()]
    color = colors(list(dict.fromkeys(sub["sampler"].astype(str))))
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.6), squeeze=False)
    x = sub["perplexity"].astype(float).to_numpy()
    ys = [("vendi", sub["vendi"].astype(float).to_numpy(), "Vendi score (effective # distinct samples)"),
          ("1 - cos", 1.0 - sub["pairwise_cosine"].astype(float).to_numpy(), "1 − mean pairwise cosine")]
    seen: set[str] = set()
    for ax, (_, y, ylabel) in zip(axes[0], ys):
        for xi, yi, sampler in zip(x, y, sub["sampler"].astype(str)):
            ax.scatter([xi], [yi], s=46, color=color[sampler], edgecolor="black", linewidth=0.5, zorder=3,
                       label=sampler if sampler not in seen else None)
            seen.add(sampler)
        if len(x) and x.min() > 0 and x.max() / x.min() > 4:
            ax.set_xscale("log")
        ax.set_xlabel("perplexity under " + _ppl_model(sub) + "  (← more coherent)")
        ax.set_ylabel(ylabel + "  (↑ more diverse)")
        ax.grid(True, alpha=0.3)
        ax.margins(0.18)
    model = sorted(set(sub["model"].dropna().astype(str)))
    fig.suptitle(title or "Diversity vs coherence, creative writing" + (f" ({model[0]})" if len(model) == 1 else ""),
                 fontsize=11)
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(0.895, 0.5),
               fontsize=8, title="sampler", title_fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.89, 1))
    for ax, (_, y, _) in zip(axes[0], ys):  # after the layout: labels placed where they overlap nothing
        _annotate_points(fig, ax, x, y, labels)
    return fig


_OFFSETS = [(5, 4, "left"), (5, -11, "left"), (-5, 4, "right"), (-5, -11, "right"), (5, 13, "left"),
            (5, -20, "left"), (-5, 13, "right"), (-5, -20, "right"), (0, 22, "center"), (0, -29, "center"),
            (14, 26, "left"), (14, -33, "left"), (-14, 26, "right"), (-14, -33, "right")]


def _annotate_points(fig, ax, xs, ys, labels) -> None:
    """Label each point at the nearby offset whose text overlaps the fewest other labels and points and stays
    inside the axes (a few points per plot: a greedy search is enough). Far placements get a leader line."""
    from matplotlib.transforms import Bbox

    fig.canvas.draw()  # settles autoscaled limits and the layout: data -> pixel transforms are final
    renderer = fig.canvas.get_renderer()
    r = 9.0 * fig.dpi / 72  # keep labels this far (points) from other markers, so no label looks like theirs
    markers = [Bbox.from_extents(px - r, py - r, px + r, py + r)
               for px, py in (ax.transData.transform((xi, yi)) for xi, yi in zip(xs, ys))]
    frame = ax.get_window_extent(renderer)

    def overlap(a, b) -> float:
        w, h = min(a.x1, b.x1) - max(a.x0, b.x0), min(a.y1, b.y1) - max(a.y0, b.y0)
        return w * h if w > 0 and h > 0 else 0.0

    placed: list = []
    for j, ((xi, yi), lab) in enumerate(zip(zip(xs, ys), labels)):
        others = markers[:j] + markers[j + 1:]
        best = None
        for i, (dx, dy, ha) in enumerate(_OFFSETS):
            leader = {"arrowstyle": "-", "color": "0.45", "lw": 0.6, "shrinkA": 1, "shrinkB": 4} if i >= 4 else None
            text = ax.annotate(lab, (xi, yi), xytext=(dx, dy), textcoords="offset points", fontsize=7.5, ha=ha,
                               arrowprops=leader)
            box = text.get_window_extent(renderer).expanded(1.06, 1.25)
            outside = box.width * box.height - overlap(box, frame)
            score = (sum(overlap(box, b) for b in placed) + 4 * sum(overlap(box, m) for m in others)
                     + 10 * outside + 0.5 * i)  # ties: the nearest place
            if best is None or score < best[0]:
                if best is not None:
                    best[1].remove()
                best = (score, text, box)
            else:
                text.remove()
            if score == 0.5 * i:  # nothing overlaps: no better place further out
                break
        placed.append(best[2])


def _ppl_model(sub: pd.DataFrame) -> str:
    names = sorted(set(sub["ppl_model"].dropna().astype(str))) if "ppl_model" in sub else []
    return names[0] if len(names) == 1 else "the reference model"


def divergence_curves(df: pd.DataFrame) -> list[tuple[str, list[float], list[float]]]:
    """(label, positions, mean pairwise cosine) of every run whose results.json has a divergence curve."""
    out = []
    for _, row in df.iterrows():
        curve = (run_json(row).get("task_metrics") or {}).get("divergence_curve") or []
        pts = [(float(p), float(v)) for p, v in curve if v is not None and math.isfinite(float(v))]
        if pts:
            out.append((row["label"], [p for p, _ in pts], [v for _, v in pts]))
    return out


def plot_divergence(df: pd.DataFrame, title: str | None = None):
    """Mean pairwise cosine of the samples' prefixes against token position, one line per run (averaged
    over prompts). Lower = the samples have drifted further apart. None when no run has the curve."""
    curves = divergence_curves(df)
    if not curves:
        return None
    plt = pyplot()
    color = colors([lab for lab, _, _ in curves])
    fig, ax = plt.subplots(figsize=(8.6, 4.4))
    for i, (lab, pos, val) in enumerate(curves):
        ax.plot(pos, val, marker=MARKERS[i % len(MARKERS)], ms=4, lw=1.6, color=color[lab], label=lab)
    positions = sorted({p for _, pos, _ in curves for p in pos})
    if len(positions) <= 16:
        ax.set_xticks(positions)
        ax.set_xticklabels([f"{p:g}" for p in positions])
    ax.set_xlabel("token position (prefix length)")
    ax.set_ylabel("mean pairwise cosine of prefixes  (↓ more divergent)")
    ax.grid(True, alpha=0.3)
    ax.set_title(title or "Divergence over position, creative writing", fontsize=11)
    finish_figure(fig, [ax])
    return fig
