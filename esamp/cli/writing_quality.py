"""Quality axes for the writing frontier: MAUVE, coherence, loop rate, loop-free judge perplexity, and the
frontier verdicts on each of them (issue 22 part 3).

    python -m esamp.cli.writing_quality results/writing_frontier --cache .cache/writing_quality \\
        --out experiments/writing_frontier/quality

Needs the features (`python -m esamp.analysis.writing_features`) and, for runs that did not store per-sample
judge perplexities, `python -m esamp.analysis.writing_rejudge`. Writes quality.md (also printed), quality.json,
quality.png into --out. Numbers: `esamp.analysis.writing_quality`; files: `esamp.analysis.writing_quality_report`.
"""
from __future__ import annotations

import argparse
import sys

from esamp.cli import error_exit, report_exit


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("root", nargs="+", help="the arms' run folders, or a folder holding them")
    ap.add_argument("--cache", required=True, help="the features folder of esamp.analysis.writing_features")
    ap.add_argument("--out", required=True)
    ap.add_argument("--resamples", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", action="append", default=None,
                    help="an arm every other arm is paired against (repeat; default temperature_t1, temperature_t08)")
    args = ap.parse_args(argv)
    from esamp.analysis.writing_quality import quality_analysis
    from esamp.analysis.writing_quality_report import quality_markdown, write_quality

    try:
        res = quality_analysis(args.root, args.cache, resamples=args.resamples, seed=args.seed,
                               references=args.reference or ("temperature_t1", "temperature_t08"))
        files = write_quality(res, args.out)
    except (FileNotFoundError, ValueError) as err:
        return error_exit(err)
    return report_exit(quality_markdown(res), files)


if __name__ == "__main__":
    sys.exit(main())
