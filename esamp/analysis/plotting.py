"""Figures: the backend choice (Agg in scripts, inline in notebooks), colours, markers, one legend layout
for every figure (`finish_figure`), the Pass@k axis and per-decode-step curves (Distiller loss, error)."""
from __future__ import annotations

import math
import sys
from typing import Any, Iterable, Sequence


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


def tick_labels(ticks: Sequence[int], most: int = 8) -> list[str]:
    """The label of each k tick: all of them when there are at most `most`, else only powers of two and the
    largest k (the others get an empty label, so the tick stays)."""
    if len(ticks) <= most:
        return [str(k) for k in ticks]
    return [str(k) if (k & (k - 1) == 0 or k == ticks[-1]) else "" for k in ticks]


def k_axis(ax, ks: Iterable[int], ys: Sequence[float] = (), ylabel: str = "Pass@k") -> None:
    """k on a log2 axis with a tick at each k; y zoomed on the data within [0, 1] (differences between
    samplers are often a few points) when `ys` are given. With many k (1..16 runs together on a log axis)
    only the powers of two and the largest k are labelled; every k keeps its tick."""
    ticks = sorted(set(ks))
    ax.set_xscale("log", base=2)
    if ticks:
        ax.set_xticks(ticks)
        ax.set_xticklabels(tick_labels(ticks))
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
