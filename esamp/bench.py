"""Helpers for the throughput scripts: interleaved repeats, medians and ratios measured in one run."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

# Model shapes for random-weight throughput runs (no weights need to travel to a GPU machine).
SHAPES = {
    "qwen2.5-1.5b": dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "qwen2.5-7b": dict(model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                       num_attention_heads=28, num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
    "qwen3-8b-like": dict(model_type="qwen2", hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                          num_attention_heads=32, num_key_value_heads=8, vocab_size=151936,
                          tie_word_embeddings=False),
}


def config_for(shape: str):
    from transformers import AutoConfig

    spec = dict(SHAPES[shape])
    return AutoConfig.for_model(spec.pop("model_type"), max_position_embeddings=32768, **spec)


MATH_PROMPT = "Solve step by step and put the answer in \\boxed{}: what is the sum of the first %d odd numbers?"


def model_and_prompts(model_yaml: str, device: str, num_prompts: int):
    """The benchmark model from a conf/model yaml, and `num_prompts` chat-rendered math prompts with ids."""
    from omegaconf import OmegaConf

    from esamp.models import load_model

    cfg = OmegaConf.load(model_yaml)
    cfg.device = device
    lm = load_model(cfg)
    prompts = [lm.render([{"role": "user", "content": MATH_PROMPT % (i + 3)}]) for i in range(num_prompts)]
    return lm, prompts, [f"bench/{i}" for i in range(num_prompts)]


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(arms: dict[str, Callable[[], int]], repeats: int, device="cpu", warmup: int = 1) -> dict:
    """Run every arm `repeats` times, rotating the order each round so drift hits all arms alike.
    Each arm returns the number of tokens it generated; returns tokens/s lists per arm."""
    names = list(arms)
    for _ in range(warmup):
        for name in names:
            arms[name]()
    rates: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            sync(device)
            t0 = time.perf_counter()
            tokens = arms[name]()
            sync(device)
            rates[name].append(tokens / (time.perf_counter() - t0))
    return rates


def ratio_table(rates: dict[str, list[float]], baseline: str) -> str:
    """Per-arm median tokens/s, and per-round ratios to the baseline (min / median / max)."""
    lines = [f"{'arm':<28}{'median tok/s':>14}{'ratio min':>11}{'median':>9}{'max':>9}"]
    base = rates[baseline]
    for name, vals in rates.items():
        ratios = [v / b for v, b in zip(vals, base)]
        lines.append(f"{name:<28}{statistics.median(vals):>14.1f}{min(ratios):>11.4f}"
                     f"{statistics.median(ratios):>9.4f}{max(ratios):>9.4f}")
    return "\n".join(lines)
