"""Writing mechanism (issue 22): ESamp's arms against its controls, paired over the 64 prompts.

Per-prompt Vendi, distinct-2, pairwise cosine and judge perplexity come from each arm's results.json; the loop rate
is recomputed from samples.jsonl. Every pair is a 95% paired bootstrap interval (10,000 resamples over prompts).
Writes mechanism_pairs.md (the table, the loop rates and each Distiller's relative error) and mechanism.png (one
panel per measure, one row per pair). Run from the repo root:
    python experiments/writing_frontier/mechanism_pairs.py
An arm that has not run is named in the output and its pairs are left out.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from esamp.analysis.mechanism import distiller_summary
from esamp.analysis.runs import load_samples, read_results
from esamp.analysis.stats import bootstrap_interval
from esamp.metrics.repetition import loops

RESULTS = Path("results/writing_frontier")
OUT = Path("experiments/writing_frontier")
ARMS = {"paper": "esamp_b025", "frozen": "esamp_frozen_b025", "noise": "noise_b025",
        "T 1": "temperature_t1", "T 0.8": "temperature_t08"}
# (arm, control): ESamp against each registered control, and the fixed transform alone against temperature
PAIRS = [("paper", "T 1"), ("paper", "T 0.8"), ("paper", "frozen"), ("paper", "noise"),
         ("frozen", "T 1"), ("frozen", "T 0.8"), ("noise", "T 0.8")]
MEASURES = {"vendi": "Vendi", "distinct_2": "distinct-2", "pairwise_cosine": "pairwise cosine",
            "perplexity": "judge perplexity", "loop_rate": "loop rate"}
RESAMPLES, SEED = 10_000, 0
COLORS = {"paper": "C0", "frozen": "C1", "noise": "C2"}


def per_prompt(run_dir: Path) -> dict[str, dict[str, float]]:
    """{prompt id: {measure: value}} for one arm."""
    metrics = read_results(run_dir)["task_metrics"]["per_prompt"]
    looped: dict[str, list[bool]] = {}
    for row in load_samples(run_dir):
        looped.setdefault(str(row["problem_id"]), []).append(loops(row["completion"]))
    return {pid: {**{m: float(v[m]) for m in MEASURES if m in v}, "loop_rate": float(np.mean(looped[pid]))}
            for pid, v in metrics.items()}


def main() -> None:
    runs, missing = {}, []
    for name, folder in ARMS.items():
        if (RESULTS / folder / "results.json").exists():
            runs[name] = per_prompt(RESULTS / folder)
        else:
            missing.append(f"{name} ({RESULTS / folder})")
    pairs = [(a, c) for a, c in PAIRS if a in runs and c in runs]
    ids = sorted(set.intersection(*(set(runs[n]) for n in runs)))
    rows = []  # (pair label, measure, mean, lo, hi)
    for arm, control in pairs:
        for measure in MEASURES:
            if measure not in runs[arm][ids[0]] or measure not in runs[control][ids[0]]:
                continue
            diff = np.array([runs[arm][i][measure] - runs[control][i][measure] for i in ids])
            lo, hi = bootstrap_interval(diff[:, None], RESAMPLES, SEED)
            rows.append((f"{arm} - {control}", measure, float(diff.mean()), float(lo[0]), float(hi[0])))

    lines = [f"# Writing mechanism pairs ({len(ids)} prompts, {RESAMPLES:,} paired bootstrap resamples)", ""]
    if missing:
        lines += [f"Not run (pairs left out): {', '.join(missing)}", ""]
    labels = [f"{a} - {c}" for a, c in pairs]
    lines += ["| paired difference | " + " | ".join(MEASURES.values()) + " |", "|---" * (len(MEASURES) + 1) + "|"]
    for label in labels:
        cells = {m: f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}]" for lab, m, v, lo, hi in rows if lab == label}
        lines.append(f"| {label} | " + " | ".join(cells.get(m, "-") for m in MEASURES) + " |")
    lines += ["", "| arm | loop rate | Distiller relative error, steps 1-128 / all |", "|---|---|---|"]
    for name in runs:
        err = distiller_summary(RESULTS / ARMS[name])
        loop = np.mean([runs[name][i]["loop_rate"] for i in ids])
        lines.append(f"| {name} | {loop:.3f} | " + (f"{err['rel_error_first']:.3f} / {err['rel_error_all']:.3f}"
                                                      if err["steps"] else "-") + " |")
    (OUT / "mechanism_pairs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    shown = ["vendi", "loop_rate", "perplexity"]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 0.5 * len(labels) + 1.4), sharey=True)
    for ax, measure in zip(axes, shown):
        for y, label in enumerate(labels):
            hit = [r for r in rows if r[0] == label and r[1] == measure]
            if hit:
                _, _, v, lo, hi = hit[0]
                ax.errorbar(v, y, xerr=[[v - lo], [hi - v]], fmt="o", color=COLORS[label.split(" - ")[0]])
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_title(MEASURES[measure])
        ax.set_yticks(range(len(labels)), labels)
    axes[0].invert_yaxis()
    fig.suptitle(f"Writing, SmolLM2-135M: paired differences over {len(ids)} prompts (95% intervals)")
    fig.tight_layout()
    fig.savefig(OUT / "mechanism.png", dpi=120)


if __name__ == "__main__":
    main()
