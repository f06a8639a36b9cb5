"""The registered "learned" rule of writing_long (README: Protocol) over the two replays, with the curves.

    python experiments/writing_long/replay_report.py

Reads replay/curves.json (esamp_best_b025's samples) and replay_paper/curves.json (esamp_b025's), writes
replay.md and replay.png beside this file. An arm's setting learned when its token-weighted mean relative error
over decode steps 1-511 is below the running mean's on the same prompts, on both halves.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from esamp.analysis.plotting import pyplot
from esamp.replay import token_weighted_mean

HERE = Path(__file__).resolve().parent
# replay folder -> (arm, the setting that arm ran)
REPLAYS = {"replay": ("esamp_best_b025", "ext_rms_prompt_bias_plain_adam"), "replay_paper": ("esamp_b025", "paper")}
REFERENCE = "running_mean"


def mean(run: dict, half: str, name: str, first: int = 1, last: int = 511) -> float:
    c = run["halves"][half][name]
    return token_weighted_mean(c["rel_error"], c["rows"], first, last)


def learned(run: dict, setting: str) -> bool:
    return all(mean(run, h, setting) < mean(run, h, REFERENCE) for h in ("A", "B"))


def both_halves(run: dict, name: str) -> list[float]:
    """Per-step relative error over both halves, weighted by their active rows."""
    a, b = run["halves"]["A"][name], run["halves"]["B"][name]
    out = []
    for va, ra, vb, rb in zip(a["rel_error"], a["rows"], b["rel_error"], b["rows"]):
        pairs = [(v, r) for v, r in ((va, ra), (vb, rb)) if r and v == v]
        w = sum(r for _, r in pairs)
        out.append(sum(v * r for v, r in pairs) / w if w else float("nan"))
    return out


def main() -> int:
    lines = ["# writing_long: did the Distiller learn? (teacher-forced replay of each arm's own samples)", "",
             "Token-weighted mean relative error ||h - h_pred|| / ||h|| per half of the 16 replayed prompts. "
             "**Learned** (registered): the arm's setting below the running mean over steps 1-511 on both halves.", "",
             "| arm | setting | A (1-128) | B (1-128) | A (1-511) | B (1-511) | A (257-511) | B (257-511) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(REPLAYS), figsize=(6.5 * len(REPLAYS), 4.2), squeeze=False)
    verdicts = []
    for ax, (folder, (arm, setting)) in zip(axes[0], REPLAYS.items()):
        path = HERE / folder / "curves.json"
        if not path.exists():
            verdicts.append(f"- `{arm}`: not replayed ({path.name} missing)")
            continue
        run = json.loads(path.read_text())
        for name in run["settings"]:
            cells = [mean(run, h, name, a, b) for a, b in ((1, 128), (1, 511), (257, 511)) for h in ("A", "B")]
            lines.append(f"| {arm} | {name} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
            curve = both_halves(run, name)
            style = "--" if name == REFERENCE else "-"
            ax.plot(range(1, len(curve) + 1), curve, style, lw=1.8 if name == setting else 1.2,
                    color={"paper": "C3", REFERENCE: "k"}.get(name, "C0"),
                    label=name + (" (this arm's)" if name == setting else ""))
        ax.set_title(f"{arm}: replay of its {len(run['problems'])} prompts x its samples", fontsize=9)
        ax.set_xlabel("decode step")
        ax.set_ylabel("relative error (both halves)")
        ax.set_ylim(0.3, 1.6)
        ax.axhline(1.0, color="grey", lw=0.6)
        ax.legend(fontsize=7)
        ok = learned(run, setting)
        verdicts.append(f"- `{arm}` ({setting}): {'learned' if ok else 'did not learn'} by the rule "
                        f"(A {mean(run, 'A', setting):.3f} vs running mean {mean(run, 'A', REFERENCE):.3f}; "
                        f"B {mean(run, 'B', setting):.3f} vs {mean(run, 'B', REFERENCE):.3f}).")
    fig.tight_layout()
    fig.savefig(HERE / "replay.png", dpi=110)
    lines += ["", *verdicts, ""]
    (HERE / "replay.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
