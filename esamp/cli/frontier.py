"""The creative-writing frontier: diversity against judge perplexity, temperature arms as the curve.

    python -m esamp.cli.frontier RUN_DIR... --out DIR [--resamples 10000] [--seed 0] [--ppl-key perplexity]
                                 [--divergence REF_ARM,ARM...] [--embedder-max-seq-length 512] [--embedder NAME]
                                 [--relevance]

RUN_DIR: creative-writing run folders (results.json with task_metrics.per_prompt), or a folder holding them
(results/writing_frontier). Temperature arms (sampler=temperature, no filter) make the frontier; every other
arm is tested against it: the paired bootstrap over prompts of (arm - frontier at the arm's perplexity) for
Vendi and mean pairwise cosine, with a verdict. Also the paper's Fig. 4a, the divergence curve of ESamp
(beta 0.25, T 1) against temperature 1 (or the arms named in --divergence, reference first).
--embedder-max-seq-length / --embedder recompute the embedding metrics from samples.jsonl with another
embedder setting (e.g. MiniLM reading 512 word pieces instead of 256); perplexity is always the stored one.
--relevance adds the prompt relevance (mean cosine between the prompt and each continuation, the same embedder)
and compares it with the temperature curve: does an arm's diversity come from leaving the passage's topic?
Writes frontier.md (also printed), frontier.csv, frontier_verdicts.csv, frontier.json, frontier.png and
divergence.png into --out. The logic is in `esamp.analysis.frontier` (numbers) and `esamp.analysis.frontier_report`
(files); `scripts/frontier.py` runs this too.
"""
from __future__ import annotations

import argparse
import sys

from esamp.analysis.frontier import frontier_analysis
from esamp.analysis.frontier_report import frontier_markdown, write_frontier
from esamp.cli import error_exit, report_exit


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("runs", nargs="+", help="creative-writing run folders, or folders holding them")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples of prompts (default 10000)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    ap.add_argument("--ppl-key", default="perplexity", choices=["perplexity", "perplexity_median"],
                    help="per-prompt perplexity summary on the x axis: mean (default) or median of its samples")
    ap.add_argument("--divergence", help="comma-separated arm (folder) names for the divergence plot, reference "
                                         "first (default: temperature T=1, then ESamp beta 0.25 T=1)")
    ap.add_argument("--embedder-max-seq-length", type=int, help="recompute Vendi/cosine with this many word pieces")
    ap.add_argument("--embedder", help="recompute Vendi/cosine with this sentence-transformers model (path or id)")
    ap.add_argument("--metrics", default="vendi,pairwise_cosine",
                    help="comma-separated per-prompt diversity metrics tested against the frontier (default "
                         "vendi,pairwise_cosine; also distinct_1, distinct_2, distinct_3, self_bleu)")
    ap.add_argument("--relevance", action="store_true",
                    help="also compare the prompt relevance (cosine prompt - continuation) with the temperature curve")
    args = ap.parse_args(argv)
    rescore = bool(args.embedder or args.embedder_max_seq_length)
    embedder = None
    if rescore or args.relevance:  # one embedder serves both the rescoring and the relevance
        from esamp.metrics.diversity import Embedder

        embedder = Embedder(args.embedder, max_seq_length=args.embedder_max_seq_length)
    try:
        res = frontier_analysis(args.runs, metrics=[m for m in args.metrics.split(",") if m], ppl_key=args.ppl_key,
                                resamples=args.resamples, seed=args.seed,
                                embedder=embedder if rescore else None,
                                relevance=embedder if args.relevance else None,
                                divergence=[a for a in args.divergence.split(",") if a] if args.divergence else None)
        files = write_frontier(res, args.out)
    except (FileNotFoundError, ValueError) as err:
        return error_exit(err)
    return report_exit(frontier_markdown(res), files)


if __name__ == "__main__":
    sys.exit(main())
