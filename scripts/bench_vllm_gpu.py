"""ESamp's throughput overhead inside vLLM at the paper's Table 3 setting, on random weights (no weights to copy).

    python scripts/bench_vllm_gpu.py                      # CUDA: Qwen2.5-7B and Qwen3-8B shapes, 32 x 16, 256 tokens
    python scripts/bench_vllm_gpu.py --shapes tiny --prompts 2 --n 4 --tokens 16 --rounds 1   # CPU smoke

For each shape: a config folder (`esamp.bench.SHAPES`), `vllm.LLM(load_format="dummy", skip_tokenizer_init)`,
B prompts of random token ids x n samples, EOS ignored; arms `plain` (seeded temperature-1 requests) and
`esamp` (the same requests through `esamp.engines.vllm.esamp_hook.ESampHook`: per-prompt Distillers, paper
defaults, trainer on a CUDA side stream with `--trainer async`), interleaved rounds, median tokens/s and the
per-round ratio esamp / plain (the paper: 4.25% overhead at 32 x 16 on Qwen3-8B; the reference code: 0.9878).
Then, on CUDA, the side-stream trainer's own tests (tests/test_trainer.py -k cuda). Budget: ~10 minutes on one
H100/H200 with the defaults. Writes JSON to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from esamp.configs import from_yaml

ROOT = Path(__file__).resolve().parents[1]
# a small qwen2 shape for a CPU smoke of this script (head_dim 64: vLLM's CPU attention has a kernel for it)
TINY = dict(model_type="qwen2", hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=4096, tie_word_embeddings=False)


def config_folder(shape: str, root: Path) -> Path:
    from transformers import AutoConfig

    from esamp.bench import SHAPES

    spec = dict(TINY if shape == "tiny" else SHAPES[shape])
    cfg = AutoConfig.for_model(spec.pop("model_type"), max_position_embeddings=4096, **spec)
    folder = root / shape
    cfg.save_pretrained(folder)
    return folder


def bench_shape(shape: str, args, root: Path) -> dict:
    import torch
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from esamp.engines.vllm.esamp_hook import SLOT_KEY, ESampHook

    cuda = torch.cuda.is_available()
    folder = config_folder(shape, root)
    rows = args.prompts * args.n
    llm = LLM(model=str(folder), load_format="dummy", skip_tokenizer_init=True, dtype="bfloat16", enforce_eager=True,
              max_num_seqs=rows, max_model_len=args.prompt_tokens + args.tokens + 8, seed=0, async_scheduling=False,
              **({"gpu_memory_utilization": 0.85} if cuda else {}))
    runner = llm.llm_engine.model_executor.driver_worker.worker.model_runner
    vocab = runner.model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    prompts = [TokensPrompt(prompt_token_ids=torch.randint(0, vocab, (args.prompt_tokens,), generator=gen).tolist())
               for _ in range(args.prompts)]

    def requests(esamp: bool):
        ps, params = [], []
        for p in range(args.prompts):
            for s in range(args.n):
                ps.append(prompts[p])
                params.append(SamplingParams(temperature=1.0, seed=p * 1000 + s, max_tokens=args.tokens,
                                             ignore_eos=True, detokenize=False,
                                             extra_args={SLOT_KEY: p} if esamp else None))
        return ps, params

    def arm(esamp: bool) -> float:
        hook = None
        if esamp:
            sampler = from_yaml("sampler", "esamp", n=args.n, beta=0.25, trainer=args.trainer)
            hook = ESampHook(runner, sampler, slots=args.prompts, n=args.n, seed=0, max_new_tokens=args.tokens)
            for p in range(args.prompts):
                hook.admit(p, f"bench/{p}")
        try:
            ps, params = requests(esamp)
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            outs = llm.generate(ps, params, use_tqdm=False)
            if cuda:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
        finally:
            if hook is not None:
                hook.remove()
                sampler.end()
        tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        assert tokens == rows * args.tokens, tokens
        return tokens / seconds

    arm(False), arm(True)  # warm-up
    rates = {"plain": [], "esamp": []}
    for r in range(args.rounds):
        for name in (("plain", "esamp") if r % 2 == 0 else ("esamp", "plain")):
            rates[name].append(arm(name == "esamp"))
            print(f"{shape} round {r} {name:<6} {rates[name][-1]:9.1f} tok/s", flush=True)
    ratios = [e / p for e, p in zip(rates["esamp"], rates["plain"])]
    return {"rates": rates, "median_tokens_per_second": {k: statistics.median(v) for k, v in rates.items()},
            "esamp_over_plain": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
            "device": torch.cuda.get_device_name(0) if cuda else "cpu", "rows": rows}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="qwen2.5-7b,qwen3-8b-like")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--trainer", default="async", choices=["serial", "async"])
    ap.add_argument("--out", default="outputs/bench_vllm_gpu.json")
    args = ap.parse_args(argv)
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the hook lives in the in-process model runner
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    results = {"args": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes.split(","):
            results[shape] = bench_shape(shape, args, Path(tmp))
            r = results[shape]
            med, ratio = r["median_tokens_per_second"], r["esamp_over_plain"]
            print(f"{shape}: plain {med['plain']:.1f} tok/s, esamp {med['esamp']:.1f} tok/s, esamp/plain "
                  f"{ratio['median']:.4f} ({ratio['min']:.4f}-{ratio['max']:.4f})", flush=True)
    import torch

    if torch.cuda.is_available():  # the CUDA side-stream trainer's own tests
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_trainer.py", "-k", "cuda"], cwd=ROOT,
                             capture_output=True, text=True)
        results["cuda_trainer_tests"] = {"returncode": res.returncode, "tail": res.stdout[-2000:]}
        print(res.stdout[-2000:])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
