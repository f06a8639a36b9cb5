"""Where ESamp's extra time goes, per decode step, on the same model/batch as `esamp.cli.bench_overhead`.

    python -m esamp.cli.profile_esamp [--prompts 4 --n 16 --new-tokens 128]

Times (wall clock, CPU; on CUDA add --device cuda, timings then include a synchronize per measured block)
one plain run and one ESamp run, and inside the ESamp run the Distiller step (forward + loss, backward,
optimiser) and the rest of ESamp's sampling work, per decode step."""
import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: it reads the setting once

import torch  # noqa: E402

from esamp.bench import model_and_prompts, sync  # noqa: E402
from esamp.generation import generate  # noqa: E402
from esamp.configs import from_yaml  # noqa: E402


class Timer:
    def __init__(self, device):
        self.device, self.total = device, {}

    def wrap(self, name, fn):
        def timed(*a, **k):
            sync(self.device)
            t0 = time.perf_counter()
            out = fn(*a, **k)
            sync(self.device)
            self.total[name] = self.total.get(name, 0.0) + time.perf_counter() - t0
            return out
        return timed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="conf/model/smollm2-135m.yaml")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=128)
    args = ap.parse_args(argv)
    lm, prompts, ids = model_and_prompts(args.model, args.device, args.prompts)
    run = lambda s: generate(lm, s, prompts, ids, max_new_tokens=args.new_tokens, ignore_eos=True)  # noqa: E731

    plain, es = from_yaml("sampler", "temperature", n=args.n), from_yaml("sampler", "esamp", n=args.n, beta=0.25)
    run(plain), run(es)  # warm-up (allocations, oneDNN kernels)
    t = Timer(lm.device)
    plain.choose = t.wrap("plain: sampling", plain.choose)
    tp = time.perf_counter()
    run(plain)
    t_plain = time.perf_counter() - tp
    es.choose = t.wrap("esamp: choose (all ESamp work)", es.choose)
    es.trainer.step = t.wrap("esamp:   Distiller step (fwd+loss+bwd+Adam)", es.trainer.step)
    es.trainer._update = t.wrap("esamp:     backward + clip + Adam", es.trainer._update)
    te = time.perf_counter()
    run(es)
    t_es = time.perf_counter() - te
    steps = args.new_tokens
    print(f"model={lm.name} rows={args.prompts}x{args.n} new_tokens={steps} threads={torch.get_num_threads()}")
    print(f"plain generate: {1e3 * t_plain / steps:8.2f} ms/step   esamp generate: {1e3 * t_es / steps:8.2f} ms/step"
          f"   ratio plain/esamp = {t_plain / t_es:.4f}")
    for name, total in t.total.items():
        print(f"  {name:<46}{1e3 * total / steps:8.2f} ms/step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
