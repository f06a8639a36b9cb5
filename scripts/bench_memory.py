"""Does resident memory stay bounded over a long run? (glibc tuned to keep freed blocks, esamp.runtime)

Many waves of admissions with growing prompt spans (each wave's prompts are longer, so the row cache and the
per-step temporaries grow), ESamp on by default; prints RSS after each wave and the ratio of the last
quarter's growth to the first quarter's. Bounded means RSS levels off: late waves add (almost) nothing.

    python scripts/bench_memory.py --waves 12 --model tiny-random
"""
from __future__ import annotations

import argparse
import sys

import torch
from omegaconf import OmegaConf

from esamp.generation import generate
from esamp.models import load_model
from esamp.runtime import allocator_settings, resident_memory
from esamp.samplers.esamp import ESampSampler
from esamp.samplers.truncation import TruncationSampler


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--waves", type=int, default=12)
    ap.add_argument("--prompts", type=int, default=8, help="prompts per wave (2 slots each: many admissions)")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--sampler", choices=["esamp", "temperature"], default="esamp")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    lm = load_model(OmegaConf.create(dict(source="tiny_random", arch="llama", dtype="float32", seed=0,
                                          init_scale=1.0, hidden_size=256, num_hidden_layers=4, intermediate_size=512)))
    sampler = (ESampSampler if args.sampler == "esamp" else TruncationSampler)(n=args.n, temperature=1.0)
    rss = []
    for wave in range(args.waves):
        span = 16 * (wave + 1)  # longer prompts every wave: bigger caches and attention temporaries
        prompts = [f"wave {wave} prompt {i} " + "word " * span for i in range(args.prompts)]
        ids = [f"w{wave}p{i}" for i in range(args.prompts)]
        generate(lm, sampler, prompts, ids, max_new_tokens=args.tokens, seed=wave, batch_prompts=2)
        rss.append(resident_memory()["rss_bytes"] / 2**20)
        print(f"wave {wave:2d}  prompt words {span:4d}  RSS {rss[-1]:8.1f} MiB", flush=True)
    q = max(1, args.waves // 4)
    early, late = rss[q] - rss[0], rss[-1] - rss[-1 - q]
    print(f"allocator {allocator_settings()}; growth over the first {q} waves {early:+.1f} MiB, "
          f"over the last {q} {late:+.1f} MiB; peak {resident_memory()['peak_rss_bytes'] / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
