"""Within-sample repetition per arm: the share of samples that repeat some 8-word sequence (a loop), with a 95%
bootstrap interval over prompts. A loop lowers the judge's perplexity without making the text better, so this
says how much of an arm's low perplexity may come from repeating itself.

    python experiments/writing_frontier/repetition.py results/writing_frontier [--ngram 8] [--min-count 2]

(`--min-count 3` on code, where a line written twice is normal: `results/humaneval_qwen05`.)
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from esamp.analysis.runs import find_results, load_samples
from esamp.analysis.stats import bootstrap_weights, interval
from esamp.metrics.repetition import loops  # the detector lives in the package now (kept importable here)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="folder holding the arms' run folders")
    ap.add_argument("--ngram", type=int, default=8)
    ap.add_argument("--min-count", type=int, default=2, help="occurrences of one n-word sequence that make a loop")
    args = ap.parse_args(argv)
    arms = [p.parent for p in find_results(args.root)]
    per_arm = {}
    for arm in arms:
        by_prompt: dict[str, list[bool]] = {}
        for r in load_samples(arm):  # (not str.splitlines: completions may hold U+2028 and the like)
            by_prompt.setdefault(r["problem_id"], []).append(loops(r.get("completion") or "", args.ngram, args.min_count))
        per_arm[arm.name] = by_prompt
    common = sorted(set.intersection(*(set(v) for v in per_arm.values())))
    weights = bootstrap_weights(len(common), 10_000, 0)
    times = "" if args.min_count == 2 else f" {args.min_count}+ times"
    print(f"| arm | samples repeating an {args.ngram}-word sequence{times} | 95% interval (prompts) |\n|---|---:|---|")
    for name, by_prompt in per_arm.items():
        v = np.array([np.mean(by_prompt[p]) for p in common])
        lo, hi = interval(weights @ v)
        print(f"| {name} | {v.mean():.1%} | [{lo:.1%}, {hi:.1%}] |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
