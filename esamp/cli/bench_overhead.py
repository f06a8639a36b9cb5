"""ESamp's throughput overhead vs plain temperature sampling, measured side by side in one run.

CPU, embedded model (the issue's setting):
    python -m esamp.cli.bench_overhead                     # SmolLM2-135M bf16, 4 prompts x 16, 128 tokens
GPU, random weights of a larger shape (no weights need to travel):
    python -m esamp.cli.bench_overhead --shape qwen2.5-7b --device cuda --prompts 32 --n 16

Every arm generates exactly --new-tokens per row (EOS ignored); arms run interleaved; the table gives the
median tokens/s per arm and the per-round ratio arm / plain (min, median, max). `--profile` adds a
torch.profiler breakdown of one ESamp run (where the time goes).
"""
import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: it reads the setting once

import torch  # noqa: E402

from esamp.bench import config_for, interleaved, model_and_prompts, ratio_table  # noqa: E402
from esamp.generation import generate  # noqa: E402
from esamp.models import random_model_from_config  # noqa: E402
from esamp.configs import from_yaml  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="conf/model/smollm2-135m.yaml", help="model yaml (ignored with --shape)")
    ap.add_argument("--shape", default=None, help="random weights of this shape: qwen2.5-1.5b, qwen2.5-7b, ...")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--arms", default="plain,esamp_serial,esamp_async")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    dtype = getattr(torch, args.dtype)
    if args.shape:
        lm = random_model_from_config(config_for(args.shape), dtype=dtype, device=args.device)
        g = torch.Generator().manual_seed(0)
        # Random token prompts, rendered back to text so they go through the same path as real prompts.
        prompts = [lm.tokenizer.decode(torch.randint(0, 255, (args.prompt_tokens,), generator=g).tolist())
                   for _ in range(args.prompts)]
        ids = [f"bench/{i}" for i in range(args.prompts)]
    else:
        lm, prompts, ids = model_and_prompts(args.model, args.device, args.prompts)

    samplers = {"plain": from_yaml("sampler", "temperature", n=args.n, temperature=1.0),
                "esamp_serial": from_yaml("sampler", "esamp", n=args.n, beta=0.25, trainer="serial"),
                "esamp_async": from_yaml("sampler", "esamp", n=args.n, beta=0.25, trainer="async"),
                "esamp_filtered_min_p": from_yaml("sampler", "esamp", n=args.n, beta=0.25, min_p=0.05),
                "plain_min_p": from_yaml("sampler", "temperature", n=args.n, temperature=1.0, min_p=0.05)}
    arms = {}
    for name in args.arms.split(","):
        def arm(s=samplers[name]):
            return generate(lm, s, prompts, ids, max_new_tokens=args.new_tokens, ignore_eos=True).stats.tokens
        arms[name] = arm

    print(f"model={lm.name} params={sum(p.numel() for p in lm.model.parameters()) / 1e6:.0f}M dtype={lm.dtype} "
          f"device={lm.device} rows={args.prompts}x{args.n} new_tokens={args.new_tokens} repeats={args.repeats} "
          f"threads={torch.get_num_threads()}"
          + (f" gpu={torch.cuda.get_device_name(0)}" if lm.device.type == "cuda" else ""))
    rates = interleaved(arms, args.repeats, device=lm.device)
    print(ratio_table(rates, baseline=args.arms.split(",")[0]))
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if lm.device.type == "cuda" else [])
        for name in ("plain", "esamp_serial"):
            with profile(activities=acts) as prof:
                arms[name]()
            print(f"\n--- profile: {name} ---")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "tokens_per_second": rates}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
