"""How fast can the Distiller learn? Teacher-forced replay of a committed arm's samples (experiments/
distiller_learning/README.md has the protocol and the selection rule fixed before any run).

    python scripts/distiller_replay.py results/humaneval_qwen05/esamp_b025 --problems 16 --out DIR

Writes DIR/curves.json (per half, per setting: per-step relative error, error along h, gradient norm,
eps-damped share, active rows) and prints the table of token-weighted means over steps 1-128 (and over every
replayed step, 1-max_steps, when that is longer: the measure of writing_long's registered "learned" rule).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from esamp.analysis.runs import load_samples
from esamp.models import load_model
from esamp.replay import RUNNING_MEAN, problem_taps, replay, token_weighted_mean

LR = 4e-4  # the paper's Distiller learning rate (lr x 4 below)
# name -> (variant, sampler.distiller.* overrides); "ext" in a name: uses the prompt (an EXTENSION of the paper)
SETTINGS: dict[str, tuple[str, dict]] = {
    "paper": ("paper", {}),
    "eps_1e-8": ("paper", {"eps": 1e-8}),
    "no_clip": ("paper", {"grad_clip": 0.0}),
    "loss_sum": ("paper", {"loss_reduction": "sum"}),
    "lr_x4": ("paper", {"lr": 4 * LR}),
    "plain_adam": ("paper", {"eps": 1e-8, "grad_clip": 0.0}),
    "plain_adam_lr_x4": ("paper", {"eps": 1e-8, "grad_clip": 0.0, "lr": 4 * LR}),
    "rms_input": ("paper", {"input_norm": "rms"}),
    "ext_prompt_bias": ("paper", {"output_bias": "prompt"}),
    "ext_rms_prompt_bias": ("paper", {"input_norm": "rms", "output_bias": "prompt"}),
    "ext_rms_prompt_bias_plain_adam": ("paper", {"input_norm": "rms", "output_bias": "prompt", "eps": 1e-8,
                                                 "grad_clip": 0.0}),
    "tllm": ("tllm", {}),
    "running_mean": ("paper", {"predictor": RUNNING_MEAN}),
}


def completions_by_problem(arm: Path, lm, limit: int) -> list[tuple[str, str, list[list[int]]]]:
    """(problem id, rendered prompt, completions as token ids) for the first `limit` problems of the arm, in
    the arm's order; EOS appended where the sample ended on it (the replay never feeds it)."""
    records = load_samples(arm)
    order: list[str] = []
    by_id: dict[str, list[dict]] = {}
    for r in records:
        if r["problem_id"] not in by_id:
            order.append(r["problem_id"])
        by_id.setdefault(r["problem_id"], []).append(r)
    eos = lm.eos_token_ids[0]
    out = []
    for pid in order[:limit]:
        rows = sorted(by_id[pid], key=lambda r: r["sample_index"])
        toks = [lm.encode(r["completion"]) + ([eos] if r["finish_reason"] == "eos" else []) for r in rows]
        out.append((pid, rows[0]["prompt"], toks))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("arm", type=Path)
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--max-steps", type=int, default=256)
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        ap.error(f"unknown setting(s) {unknown}; known: {', '.join(SETTINGS)}")
    cfg = OmegaConf.load(args.arm / ".hydra" / "config.yaml")
    lm = load_model(cfg.model)
    seed = int(cfg.seed)
    problems = completions_by_problem(args.arm, lm, args.problems)
    kinds = sorted({SETTINGS[n][0] for n in names})
    taps = {k: [] for k in kinds}
    t0 = time.perf_counter()
    for pid, prompt, toks in problems:
        for k, pt in problem_taps(lm, pid, prompt, toks, args.max_steps, kinds=tuple(kinds)).items():
            taps[k].append(pt)
    print(f"taps of {len(problems)} problems in {time.perf_counter() - t0:.0f} s", flush=True)
    halves = {"A": slice(0, None, 2), "B": slice(1, None, 2)}  # even / odd positions in the arm's order
    result = {"arm": str(args.arm), "model": cfg.model.name, "problems": [p[0] for p in problems],
              "max_steps": args.max_steps, "seed": seed, "halves": {}, "settings": {}}
    for name in names:
        variant, setting = SETTINGS[name]
        result["settings"][name] = {"variant": variant, **setting}
        for half, sl in halves.items():
            t1 = time.perf_counter()
            curves = replay(taps[variant][sl], setting, variant=variant, max_steps=args.max_steps, seed=seed)
            curves["seconds"] = time.perf_counter() - t1
            result["halves"].setdefault(half, {})[name] = curves
        for last in sorted({128, args.max_steps}):
            a, b = (token_weighted_mean(result["halves"][h][name]["rel_error"], result["halves"][h][name]["rows"],
                                        last=last) for h in "AB")
            print(f"{name:34s} rel error, steps 1-{last}: half A {a:.3f}  half B {b:.3f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "curves.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(True)
    sys.exit(main())
