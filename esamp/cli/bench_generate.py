"""Decode throughput against the CPU/GPU roofline: our loop (plain sampling and ESamp) vs Hugging Face
`model.generate(do_sample=True)`, same model, batch and lengths, EOS ignored, arms interleaved.

    python -m esamp.cli.bench_generate [--model qwen2.5-coder-0.5b-pypi] [--prompts 4 --n 16 --new-tokens 256]
                                       [--arms hf_generate,loop,esamp] [--repeats 5]

The bf16 GEMM peak at the model's decode shapes (rows = prompts x n) is measured in the same process before
and after the arms; the table gives each arm's median tokens/s, per-round ratios to the first arm and the
model-FLOP utilisation MFU = tokens/s x FLOPs per token / peak (FLOPs = 2 x weight-matmul parameters incl.
the LM head).
"""
import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: it reads the setting once

import torch  # noqa: E402

from esamp.bench import flops_per_token, gemm_peak, interleaved, model_and_prompts, ratio_table  # noqa: E402
from esamp.generation import generate  # noqa: E402
from esamp.configs import from_yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]  # the checkout: --model NAME is conf/model/NAME.yaml there


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m", help="a conf/model name or a model yaml path")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds before the timed ones")
    ap.add_argument("--arms", default="hf_generate,loop,esamp")
    ap.add_argument("--json", default=None, help="also write the raw numbers here")
    args = ap.parse_args(argv)

    yaml = args.model if args.model.endswith(".yaml") else str(ROOT / "conf" / "model" / f"{args.model}.yaml")
    lm, prompts, ids = model_and_prompts(yaml, args.device, args.prompts)
    rows = args.prompts * args.n
    tok = lm.tokenizer
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(lm.device)

    def hf():
        with torch.no_grad():
            out = lm.model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                    max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                    num_return_sequences=args.n, pad_token_id=tok.pad_token_id)
        return (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]

    def ours(sampler):
        return lambda: generate(lm, sampler, prompts, ids, max_new_tokens=args.new_tokens,
                                ignore_eos=True).stats.tokens

    all_arms = {"hf_generate": hf, "loop": ours(from_yaml("sampler", "temperature", n=args.n, temperature=1.0)),
                "esamp": ours(from_yaml("sampler", "esamp", n=args.n, beta=0.25)),
                "esamp_async": ours(from_yaml("sampler", "esamp", n=args.n, beta=0.25, trainer="async"))}
    arms = {name: all_arms[name] for name in args.arms.split(",")}
    flops = flops_per_token(lm.model)
    print(f"model={lm.name} dtype={lm.dtype} device={lm.device} rows={args.prompts}x{args.n} "
          f"new_tokens={args.new_tokens} repeats={args.repeats} threads={torch.get_num_threads()} "
          f"GFLOP/token={flops / 1e9:.3f}")
    before = gemm_peak(lm.model, rows, lm.device)
    rates = interleaved(arms, args.repeats, device=lm.device, warmup=args.warmup)
    after = gemm_peak(lm.model, rows, lm.device)
    peak = statistics.median([before["peak_flops"], after["peak_flops"]])
    step = statistics.median([before["step_gemm_flops"], after["step_gemm_flops"]])
    print(f"bf16 GEMM at the decode shapes ({rows} rows): best shape {before['peak_flops'] / 1e9:.0f} / "
          f"{after['peak_flops'] / 1e9:.0f} GFLOP/s (before / after the arms); the step's matmuls back to back "
          f"{step / 1e9:.0f} GFLOP/s = {step / peak:.3f} of peak")
    streamed = statistics.median([before["step_gemm_streamed_flops"], after["step_gemm_streamed_flops"]])
    print(f"the step's matmuls with the model's own weights (streamed, as in a decode step): "
          f"{streamed / 1e9:.0f} GFLOP/s = {streamed / peak:.3f} of peak: the MFU ceiling at {rows} rows before "
          f"attention, norms and sampling")
    print(ratio_table(rates, baseline=next(iter(arms)), flops_token=flops, peak=peak))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "tokens_per_second": rates,
                                               "gflop_per_token": flops / 1e9, "gemm_peak": [before, after],
                                               "mfu": {k: statistics.median(v) * flops / peak
                                                       for k, v in rates.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
