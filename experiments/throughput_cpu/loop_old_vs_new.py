"""Before/after of the decoding loop: the same job (plain temperature sampling; fixed length with EOS ignored,
or `--eos` for rows ending at different steps as in real runs) run by two checkouts of the project, one
process per (checkout, round), alternating.

    python experiments/throughput_cpu/loop_old_vs_new.py OLD_ROOT NEW_ROOT [--model qwen2.5-coder-0.5b-pypi]
           [--prompts 4 --n 16 --new-tokens 256 --rounds 2] [--eos --batch-prompts 8]

Each process imports `esamp` from its own root, loads the model, runs one warm-up and one timed generation
and prints tokens/s, the row-steps it computed and a hash of every token id (same hash: same samples); the
parent prints every round and the median per checkout.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r'''
import hashlib, json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
from esamp.bench import model_and_prompts
from esamp.generation import generate
from esamp.samplers.truncation import TruncationSampler
from esamp.configs import from_yaml
root, model, P, n, T = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ignore_eos, slots = sys.argv[6] == "fixed", int(sys.argv[7]) or None
lm, prompts, ids = model_and_prompts(f"{root}/conf/model/{model}.yaml", "cpu", P)
s = from_yaml("sampler", "temperature", n=n, temperature=1.0)
generate(lm, s, prompts, ids, max_new_tokens=16, ignore_eos=True)
t = time.perf_counter()
out = generate(lm, s, prompts, ids, max_new_tokens=T, ignore_eos=ignore_eos, batch_prompts=slots, seed=3)
rate = out.stats.tokens / (time.perf_counter() - t)
tokens = json.dumps([[r.token_ids for r in rows] for rows in out.prompts])
print(json.dumps({"tokens_per_second": rate, "row_steps": out.stats.row_steps, "tokens": out.stats.tokens,
                  "sha1": hashlib.sha1(tokens.encode()).hexdigest()[:12]}))
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-pypi")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--eos", action="store_true", help="EOS on: rows end at different steps (real runs)")
    ap.add_argument("--batch-prompts", type=int, default=0, help="prompt slots in flight (0: all prompts)")
    args = ap.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    rates = {"old": [], "new": []}
    for r in range(args.rounds):
        for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
            root = str(Path(getattr(args, name)).resolve())
            out = subprocess.run([sys.executable, "-c", CHILD, root, args.model, str(args.prompts), str(args.n),
                                  str(args.new_tokens), "eos" if args.eos else "fixed", str(args.batch_prompts)],
                                 capture_output=True, text=True, env=env, cwd=root)
            line = [x for x in out.stdout.splitlines() if x.startswith("{")]
            if not line:
                sys.exit(f"{name} failed:\n{out.stderr[-3000:]}")
            res = json.loads(line[-1])
            rates[name].append(res["tokens_per_second"])
            print(f"round {r} {name}: {res['tokens_per_second']:.1f} tok/s, {res['tokens']} tokens, "
                  f"{res['row_steps']} row-steps, tokens sha1 {res['sha1']}", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"{args.model} {args.prompts}x{args.n}x{args.new_tokens}: old {med['old']:.1f} tok/s, new {med['new']:.1f} "
          f"tok/s, new/old {med['new'] / med['old']:.3f}")
    print(json.dumps({"args": vars(args), "tokens_per_second": rates}))


if __name__ == "__main__":
    main()
