"""Engine agreement, Distiller curves (issue 23): do the hf and vllm ESamp runs' Distillers learn alike?
Prints, per engine, the first and last loss and the mean relative error over decode steps 1-128 and over all
steps, then the two shape measures registered in README.md: the Pearson correlation of the per-step mean
relative-error curves over steps 1-256 (most rows still active there) and the ratio of their first-step values.
Run from the repo root after run_agreement.sh:  python experiments/engines_cpu/agreement_curves.py"""
import json
import sys

import numpy as np

RUNS = {"hf": "results/engines_agreement_qwen05/hf_esamp", "vllm": "results/engines_agreement_qwen05/vllm_esamp"}


def telemetry(run_dir: str) -> dict:
    with open(f"{run_dir}/results.json") as f:
        return json.load(f)["sampler_telemetry"]


def main() -> int:
    tel = {name: telemetry(d) for name, d in RUNS.items()}
    print("| engine | train steps | first loss | last loss | rel. error, steps 1-128 | rel. error, all steps |")
    print("|---|---|---|---|---|---|")
    for name, t in tel.items():
        rel = np.asarray(t["rel_error_norm_curve"])
        print(f"| {name} | {t['train_steps']} | {t['first_loss']:.2f} | {t['last_loss']:.2f} | "
              f"{rel[:128].mean():.3f} | {rel.mean():.3f} |")
    hf, vl = (np.asarray(tel[k]["rel_error_norm_curve"]) for k in ("hf", "vllm"))
    m = min(256, len(hf), len(vl))
    r = float(np.corrcoef(hf[:m], vl[:m])[0, 1])
    lhf, lvl = (np.asarray(tel[k]["loss_curve"]) for k in ("hf", "vllm"))
    r_loss = float(np.corrcoef(lhf[:m], lvl[:m])[0, 1])
    print(f"\nPearson r of the relative-error curves, steps 1-{m}: {r:.3f}; of the loss curves: {r_loss:.3f}")
    print(f"first-step relative error: hf {hf[0]:.3f}, vllm {vl[0]:.3f} (ratio vllm/hf {vl[0] / hf[0]:.3f})")
    print(f"max |difference| of the relative-error curves, steps 1-{m}: {np.abs(hf[:m] - vl[:m]).max():.3f}")
    agree = r >= 0.9 and abs(vl[0] / hf[0] - 1) <= 0.05
    print(f"shape agreement (registered: r >= 0.9 and first-step values within 5%): {'yes' if agree else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
