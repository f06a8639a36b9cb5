"""Table, figure and the registered selection rule over the replay outputs (README: "Selection rule").

    python experiments/distiller_learning/report.py

Reads experiments/distiller_learning/<dataset>/curves.json, writes results.md and curves.png beside this file.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from esamp.analysis.plotting import pyplot
from esamp.replay import token_weighted_mean

HERE = Path(__file__).resolve().parent
MODELS = {"Qwen2.5-Coder-0.5B": ["humaneval_qwen05", "math500_qwen05"], "SmolLM2-135M": ["writing_smollm2"]}
NOT_CANDIDATES = ("tllm", "running_mean")  # tllm: another target; running_mean: the reference


def pooled(runs: list[dict], half: str, name: str, key: str = "rel_error", first: int = 1, last: int = 128):
    """Token-weighted mean of `key` over steps first..last, pooled over the data sets of one model."""
    num = den = 0.0
    for run in runs:
        c = run["halves"][half][name]
        w = sum(r for t, r in enumerate(c["rows"], 1) if first <= t <= last)
        num += token_weighted_mean(c[key], c["rows"], first, last) * w
        den += w
    return num / den if den else float("nan")


def first_step_below(curve: list[float], level: float = 0.9) -> int | None:
    return next((t for t, v in enumerate(curve, 1) if v == v and v < level), None)


def select(runs: list[dict]) -> tuple[str | None, str]:
    names = [n for n in runs[0]["settings"] if n not in NOT_CANDIDATES]
    a = {n: pooled(runs, "A", n) for n in names}
    best = min(a, key=a.get)
    ref_a, ref_b = pooled(runs, "A", "running_mean"), pooled(runs, "B", "running_mean")
    if a[best] >= ref_a:
        return None, (f"no setting beats the running mean on half A (best {best} {a[best]:.3f} vs {ref_a:.3f}): no "
                      "fast setting; the esamp_fast arms are not run")
    b, paper_b = pooled(runs, "B", best), pooled(runs, "B", "paper")
    ok = b < paper_b and b < ref_b
    return best, (f"fast = {best} (half A {a[best]:.3f} < running mean {ref_a:.3f}); half B {b:.3f} vs paper "
                  f"{paper_b:.3f}, running mean {ref_b:.3f}: {'confirmed' if ok else 'NOT confirmed'}")


def main() -> int:
    lines = ["# Distiller-learning replay: results", "",
             "Token-weighted means over decode steps 1-128 (relative error ||h - h_pred|| / ||h||, error along h, "
             "eps-damped share) and 1-160; `< 0.9 at`: first step whose mean relative error (both halves) is below "
             "0.9.", ""]
    plt = pyplot()
    fig, axes = plt.subplots(len(MODELS), 3, figsize=(15, 4.2 * len(MODELS)), squeeze=False)
    for row, (model, names) in enumerate(MODELS.items()):
        runs = [json.loads((HERE / n / "curves.json").read_text()) for n in names if (HERE / n / "curves.json").exists()]
        if not runs:
            continue
        lines += [f"## {model} ({', '.join(r['arm'] for r in runs)}; {sum(len(r['problems']) for r in runs)} prompts)", "",
                  "| setting | rel. error A (1-128) | rel. error B (1-128) | rel. error (1-160) | < 0.9 at | error along h (1-128) | eps-damped (1-128) | grad norm (1-128) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name in runs[0]["settings"]:
            both = [[(x + y) / 2 if x == x and y == y else float("nan") for x, y in
                     zip(r["halves"]["A"][name]["rel_error"], r["halves"]["B"][name]["rel_error"])] for r in runs]
            steps = [first_step_below(c) for c in both]
            at = max(steps) if None not in steps else None
            lines.append(f"| {name} | {pooled(runs, 'A', name):.3f} | {pooled(runs, 'B', name):.3f} | "
                         f"{(pooled(runs, 'A', name, last=160) + pooled(runs, 'B', name, last=160)) / 2:.3f} | "
                         f"{at if at else '> 160'} | {pooled(runs, 'A', name, 'err_along_h'):.3f} | "
                         f"{pooled(runs, 'A', name, 'eps_damped'):.3f} | {pooled(runs, 'A', name, 'grad_norm'):.3g} |")
            for col, key in enumerate(("rel_error", "err_along_h", "eps_damped")):
                curve = runs[0]["halves"]["A"][name][key]
                if all(v != v for v in curve):
                    continue
                style = "k--" if name == "running_mean" else ("-" if name == "paper" or name.startswith("ext") else ":")
                colour = {"paper": "C3", "running_mean": "k"}.get(name)
                axes[row][col].plot(range(1, len(curve) + 1), curve, style, label=name, lw=2.0 if name == "paper" else 1.3,
                                    color=colour)
                axes[row][col].set_title(f"{model.split('-')[0]}, {runs[0]['arm'].split('/')[1]}: "
                                         f"{key.replace('_', ' ')} (half A)", fontsize=9)
                axes[row][col].set_xlabel("decode step")
                # diverging settings (lr x 4 without clip) would hide every other curve
                axes[row][col].set_ylim(*{"rel_error": (0.4, 1.4), "err_along_h": (0.0, 1.2)}.get(key, (0, 1)))
        fast, why = select(runs)
        lines += ["", f"**Selection rule**: {why}.", ""]
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(HERE / "curves.png", dpi=110)
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
