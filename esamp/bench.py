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


def step_weights(model) -> list[torch.Tensor]:
    """The weight of every matmul a decode step runs once per token, in forward order: the transformer's
    nn.Linear layers and the LM head (embedding lookups are not matmuls)."""
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    head = model.get_output_embeddings()
    if head is not None and not isinstance(head, torch.nn.Linear):
        weights.append(head.weight)
    return weights


def linear_shapes(model) -> list[tuple[int, int]]:
    """(in, out) of each of the step's matmuls."""
    return [(w.shape[1], w.shape[0]) for w in step_weights(model)]


def flops_per_token(model) -> float:
    """Model FLOPs per generated token: 2 x the weight-matmul parameters incl. the LM head (attention over the
    context is left out: at these lengths it is a few percent, and it is not what a GEMM peak measures)."""
    return float(sum(2 * i * o for i, o in linear_shapes(model)))


def gemm_peak(model, rows: int, device="cpu", repeats: int = 30) -> dict:
    """The bf16 (model dtype) GEMM rate at this model's decode shapes with `rows` rows, measured now, in this
    process: the best (in, out) shape's median rate (the roofline a decode step can reach) and the rate of the
    whole step's matmuls run back to back with one hot weight per shape (`step_gemm_flops`), and with the
    model's own weights streamed as in a real step (`step_gemm_streamed_flops`, see `streamed_step_gemm`)."""
    dtype = next(model.parameters()).dtype
    shapes = sorted(set(linear_shapes(model)))
    counts = {s: linear_shapes(model).count(s) for s in shapes}
    best, step_time = 0.0, 0.0
    for k, n in shapes:
        x = torch.randn(rows, k, dtype=dtype, device=device)
        w = torch.randn(n, k, dtype=dtype, device=device)
        for _ in range(3):
            torch.nn.functional.linear(x, w)
        times = []
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            torch.nn.functional.linear(x, w)
            sync(device)
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        best = max(best, 2 * rows * k * n / t)
        step_time += t * counts[(k, n)]
    return {"rows": rows, "peak_flops": best, "step_gemm_flops": flops_per_token(model) * rows / step_time,
            "step_gemm_streamed_flops": streamed_step_gemm(model, rows, device), "shapes": len(shapes)}


def streamed_step_gemm(model, rows: int, device="cpu", repeats: int = 7) -> float:
    """FLOP/s of one decode step's matmuls alone, each with the model's OWN weight in forward order, as a step
    runs them: ~1 GB of bf16 weights per step (Qwen 0.5B) stream through the caches instead of one hot matrix
    per shape. At a few dozen rows this is lower than the best-shape peak; it bounds what any implementation
    of the step (attention, norms and sampling cost extra) can reach at this batch size."""
    weights = step_weights(model)
    dtype = weights[0].dtype
    xs = {w.shape[1]: torch.randn(rows, w.shape[1], dtype=dtype, device=device) for w in weights}
    flops = sum(2 * rows * w.numel() for w in weights)
    times = []
    with torch.no_grad():
        for r in range(repeats + 1):
            sync(device)
            t0 = time.perf_counter()
            for w in weights:
                torch.nn.functional.linear(xs[w.shape[1]], w)
            sync(device)
            if r:  # the first pass warms up
                times.append(time.perf_counter() - t0)
    return flops / statistics.median(times)


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


def ratio_table(rates: dict[str, list[float]], baseline: str, flops_token: float | None = None,
                peak: float | None = None) -> str:
    """Per-arm median tokens/s, per-round ratios to the baseline (min / median / max), and with `flops_token`
    and `peak` the model-FLOP utilisation (median tokens/s x FLOPs per token / GEMM peak)."""
    mfu = flops_token is not None and peak
    lines = [f"{'arm':<28}{'median tok/s':>14}{'ratio min':>11}{'median':>9}{'max':>9}" + (f"{'MFU':>8}" if mfu else "")]
    base = rates[baseline]
    for name, vals in rates.items():
        ratios = [v / b for v, b in zip(vals, base)]
        med = statistics.median(vals)
        lines.append(f"{name:<28}{med:>14.1f}{min(ratios):>11.4f}{statistics.median(ratios):>9.4f}"
                     f"{max(ratios):>9.4f}" + (f"{med * flops_token / peak:>8.3f}" if mfu else ""))
    return "\n".join(lines)
