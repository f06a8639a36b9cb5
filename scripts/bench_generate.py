"""Our decoding loop vs Hugging Face `model.generate(do_sample=True)`: same model, batch, lengths.

    python scripts/bench_generate.py [--prompts 4 --n 16 --new-tokens 128 --repeats 5]

Both run temperature sampling with EOS ignored for a fixed length, interleaved, and the script prints the
median tokens/s of each and the per-round ratio ours / HF (min, median, max).
"""
import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from esamp.bench import interleaved, ratio_table  # noqa: E402
from esamp.generation import generate  # noqa: E402
from esamp.models import load_model  # noqa: E402
from esamp.samplers.truncation import TruncationSampler  # noqa: E402

QUESTIONS = ["What is the sum of the first 10 positive integers?", "Explain why the sky is blue.",
             "Write a haiku about autumn.", "How many prime numbers are below 30?", "Describe a cat.",
             "What is 17 times 23?", "Name three rivers in Europe.", "Why do we have seasons?"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="conf/model/smollm2-135m.yaml")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None, help="also write the raw numbers here")
    args = ap.parse_args()

    lm = load_model(OmegaConf.load(args.model))
    prompts = [lm.render([{"role": "user", "content": q}]) for q in (QUESTIONS * 8)[: args.prompts]]
    ids = [f"bench/{i}" for i in range(len(prompts))]
    sampler = TruncationSampler(n=args.n, temperature=1.0)
    tok = lm.tokenizer
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(lm.device)

    def ours():
        out = generate(lm, sampler, prompts, ids, max_new_tokens=args.new_tokens, ignore_eos=True)
        return out.stats.tokens

    def hf():
        with torch.no_grad():
            out = lm.model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                    max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                    num_return_sequences=args.n, pad_token_id=tok.pad_token_id)
        return (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]

    print(f"model={lm.name} dtype={lm.dtype} device={lm.device} rows={args.prompts}x{args.n} "
          f"new_tokens={args.new_tokens} repeats={args.repeats} threads={torch.get_num_threads()}")
    rates = interleaved({"hf_generate": hf, "esamp_loop": ours}, args.repeats, device=lm.device)
    print(ratio_table(rates, baseline="hf_generate"))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "tokens_per_second": rates}, indent=2))


if __name__ == "__main__":
    main()
