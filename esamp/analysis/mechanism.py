"""The mechanism question (issue 22): does a Distiller that has learned change anything beyond sharpening?

    from esamp.analysis.mechanism import mechanism_analysis, write_mechanism
    res = mechanism_analysis({"paper": "results/x/esamp_b025", "fast": "results/x/esamp_fast_b025"},
                             {"T 1": "results/x/temperature_t1", "T 0.8": "results/x/temperature_t08",
                              "frozen": "results/x/esamp_frozen_b025"})
    write_mechanism(res, "experiments/x/mechanism")

Every ESamp arm is paired over problems with every control (`esamp.analysis.compare`), k = 1..n. The verdict
follows the rule registered in the campaign READMEs:
- supported: the tested arm (default "fast") minus T/(1+beta) AND minus the frozen Distiller both exclude 0
  upward at the largest k;
- not supported: both intervals contain 0 while the Distiller demonstrably learned (its mean relative error,
  from the run's own telemetry, is below the learned threshold, e.g. the causal running mean's from the
  replay study);
- otherwise inconclusive, saying what is missing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from esamp.analysis.compare import DEFAULT_KS, compare_runs
from esamp.analysis.plotting import MARKERS, colors, finish_figure, k_axis, pyplot
from esamp.analysis.runs import read_results
from esamp.analysis.tables import markdown_table

SHARPENING_CONTROL = "T 0.8"   # temperature T / (1 + beta) at the paper's T 1, beta 0.25
FROZEN_CONTROL = "frozen"      # the paper's Distiller initialisation with lr 0: the fixed transform alone


def distiller_summary(run_dir: str | Path, steps: int = 128) -> dict[str, Any]:
    """The Distiller's own telemetry of a run: mean relative prediction error ||h - h_pred|| / ||h|| over the
    first `steps` decode steps and over all, and the last step's (None where the run recorded no curve)."""
    tele = read_results(run_dir).get("sampler_telemetry") or {}
    curve = [v for v in (tele.get("rel_error_norm_curve") or []) if v is not None and np.isfinite(v)]
    if not curve:
        return {"rel_error_first": None, "rel_error_all": None, "rel_error_last": None, "steps": 0}
    return {"rel_error_first": float(np.mean(curve[:steps])), "rel_error_all": float(np.mean(curve)),
            "rel_error_last": float(curve[-1]), "steps": len(curve)}


def mechanism_analysis(esamp_arms: Mapping[str, str | Path], controls: Mapping[str, str | Path],
                       ks: tuple[int, ...] = DEFAULT_KS, resamples: int = 10_000, seed: int = 0,
                       tested: str = "fast", learned_below: float | None = None) -> dict[str, Any]:
    """Paired Pass@k of each ESamp arm against each control; the registered verdict for arm `tested`.

    `learned_below`: the relative error under which the Distiller counts as having learned (the replay study's
    running-mean predictor on this model and task); None leaves "not supported" undecidable."""
    missing = [nm for nm, d in {**esamp_arms, **controls}.items() if not (Path(d) / "results.json").is_file()]
    present = {nm: d for nm, d in controls.items() if nm not in missing}
    arms = {nm: d for nm, d in esamp_arms.items() if nm not in missing}
    rows = []
    for cname, cdir in present.items():
        if not arms:
            break
        res = compare_runs(list(arms.values()), cdir, ks=ks, resamples=resamples, seed=seed)
        labels = dict(zip(res["runs"], [cname, *arms]))  # compare_runs' names -> ours, in the same order
        rows += [{"arm": labels[r["arm"]], "control": cname, **{k: r[k] for k in
                 ("k", "problems", "arm_pass", "baseline_pass", "diff", "diff_lo", "diff_hi")}}
                 for r in res["rows"] if r["level"] == "all"]
    distiller = {nm: distiller_summary(d) for nm, d in arms.items()}
    verdict = decide(rows, distiller, tested, learned_below, missing)
    return {"rows": rows, "distiller": distiller, "verdict": verdict, "missing": missing, "tested": tested,
            "learned_below": learned_below, "resamples": resamples, "seed": seed,
            "arms": {k: str(v) for k, v in esamp_arms.items()}, "controls": {k: str(v) for k, v in controls.items()}}


def decide(rows: list[dict[str, Any]], distiller: Mapping[str, dict], tested: str, learned_below: float | None,
           missing: list[str]) -> str:
    """The registered rule at the largest k (see the module docstring), as one line."""
    at = {}
    for r in rows:
        if r["arm"] == tested and r["k"] >= at.get(r["control"], {}).get("k", 0):
            at[r["control"]] = r
    need = [SHARPENING_CONTROL, FROZEN_CONTROL]
    controls_run = {r["control"] for r in rows}
    absent = [c for c in need if c in missing or (c not in controls_run and tested not in missing)]
    if tested in missing or absent:
        return (f"inconclusive: {', '.join(([tested] if tested in missing else []) + absent)} not run "
                f"(the rule needs {tested} minus {' and minus '.join(need)})")
    got = {c: at[c] for c in need}
    k = min(r["k"] for r in got.values())
    text = "; ".join(f"{tested} - {c} at k={r['k']}: {r['diff']:+.3f} [{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}]"
                     for c, r in got.items())
    if all(r["diff_lo"] > 0 for r in got.values()):
        return f"supported at k={k}: {text}"
    err = (distiller.get(tested) or {}).get("rel_error_first")
    learned = err is not None and learned_below is not None and err < learned_below
    if all(r["diff_lo"] <= 0 <= r["diff_hi"] for r in got.values()):
        if learned:
            return (f"not supported: {text}, while the Distiller learned (mean relative error {err:.3f} "
                    f"< {learned_below:.3f})")
        why = "no learned threshold given" if learned_below is None or err is None else \
            f"its mean relative error {err:.3f} is not below {learned_below:.3f}"
        return f"inconclusive: both intervals contain 0, but the Distiller did not demonstrably learn ({why}): {text}"
    return f"inconclusive: the two controls disagree or an interval excludes 0 downward: {text}"


def mechanism_markdown(res: Mapping[str, Any]) -> str:
    ks = sorted({r["k"] for r in res["rows"]})
    lines = [f"**Verdict ({res['tested']} arm, registered rule):** {res['verdict']}", ""]
    if res["missing"]:
        lines += [f"Not run (left out): {', '.join(res['missing'])}", ""]
    header = ["arm", "control"] + [f"k={k}" for k in ks]
    body = []
    for arm in dict.fromkeys(r["arm"] for r in res["rows"]):
        for ctl in dict.fromkeys(r["control"] for r in res["rows"]):
            cells = {r["k"]: f"{r['diff']:+.3f} [{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}]" for r in res["rows"]
                     if r["arm"] == arm and r["control"] == ctl}
            if cells:
                body.append([arm, ctl] + [cells.get(k, "") for k in ks])
    probs = next((r["problems"] for r in res["rows"]), 0)
    lines += [f"Paired Pass@k difference, arm - control, mean over {probs} problems [95% bootstrap interval, "
              f"{res['resamples']} resamples of problems]:", "", markdown_table(header, body), ""]
    dist = [[nm, *(("-" if d[k] is None else f"{d[k]:.3f}") for k in ("rel_error_first", "rel_error_all",
                                                                       "rel_error_last")), str(d["steps"])]
            for nm, d in res["distiller"].items()]
    lines += ["Distiller relative error ||h - h_pred|| / ||h|| (the run's telemetry, mean over prompts per step)"
              + (f"; learned means below {res['learned_below']:.3f}" if res["learned_below"] else "") + ":", "",
              markdown_table(["arm", "mean, steps 1-128", "mean, all steps", "last step", "steps"], dist), ""]
    return "\n".join(lines)


def plot_mechanism(res: Mapping[str, Any], path=None):
    """One panel per control: each ESamp arm's paired Pass@k difference against it, per k, with its 95%
    interval; the zero line is "no difference"."""
    plt = pyplot()
    controls = list(dict.fromkeys(r["control"] for r in res["rows"]))
    arms = list(dict.fromkeys(r["arm"] for r in res["rows"]))
    if not controls:
        return None
    color = colors(arms)
    fig, axes = plt.subplots(1, len(controls), figsize=(4.0 * len(controls) + 2.4, 4.0), squeeze=False, sharey=True)
    ks = sorted({r["k"] for r in res["rows"]})
    for ax, ctl in zip(axes[0], controls):
        for j, arm in enumerate(arms):
            rs = sorted((r for r in res["rows"] if r["arm"] == arm and r["control"] == ctl), key=lambda r: r["k"])
            if not rs:
                continue
            shift = 2 ** (0.12 * (j - (len(arms) - 1) / 2))
            d = np.array([r["diff"] for r in rs])
            err = [d - [r["diff_lo"] for r in rs], [r["diff_hi"] for r in rs] - d]
            ax.errorbar([r["k"] * shift for r in rs], d, yerr=err, fmt=MARKERS[j % len(MARKERS)], ms=4, capsize=3,
                        color=color[arm], label=f"ESamp {arm}")
        ax.axhline(0, color="0.3", lw=0.9)
        k_axis(ax, ks, ylabel="Pass@k difference (ESamp - control)" if ctl == controls[0] else "")
        ax.set_xlim(min(ks) / 1.4, max(ks) * 1.4)
        ax.set_title(f"against {ctl}", fontsize=10)
    span = max([0.05] + [abs(r[c]) for r in res["rows"] for c in ("diff_lo", "diff_hi")])
    axes[0][0].set_ylim(-1.1 * span, 1.1 * span)
    fig.suptitle("Does the learned signal matter? Paired differences, 95% bootstrap intervals over problems",
                 fontsize=11)
    return finish_figure(fig, axes[0], path)


def write_mechanism(res: Mapping[str, Any], out: str | Path) -> list[Path]:
    """mechanism.md, mechanism.json and mechanism.png into `out`. Returns the paths written."""
    import json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "mechanism.md", out / "mechanism.json"]
    files[0].write_text(mechanism_markdown(res))
    files[1].write_text(json.dumps(res, indent=1) + "\n")
    if plot_mechanism(res, out / "mechanism.png") is not None:
        files.append(out / "mechanism.png")
    return files
