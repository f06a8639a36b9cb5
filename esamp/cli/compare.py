"""Paired Pass@k comparison of run folders against a baseline run (evidence protocol, section 2).

    python -m esamp.cli.compare RUN_DIR... --baseline RUN_DIR [--out DIR] [--ks 1,2,4,8,16] [--resamples 10000]
                                [--seed 0]
    python -m esamp.cli.compare RUN_DIR... --dynamics-only [--out DIR]    # only the ESamp Distiller curves

Per arm and k: both Pass@k (unbiased, per problem, mean over problems), the paired mean difference and its
95% percentile interval from a bootstrap over problems, and the problems solved by the arm only / the
baseline only / both; per level for MATH-500; distinct (correct) answers per problem, paired - on code the
programs' normal forms (esamp.metrics.programs). Writes comparison.md (also printed), comparison.csv,
answers.csv, answers_paired.csv, passk_curves.png, passk_difference.png and, for ESamp runs,
distiller_dynamics.png into --out (default: the baseline's parent folder / comparison). The logic is in
`esamp.analysis.compare`; `scripts/compare.py` runs this too.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from esamp.analysis.compare import compare_runs, comparison_markdown, plot_dynamics, write_comparison
from esamp.cli import error_exit, report_exit


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run folders (samples.jsonl[.gz] + results.json) to compare")
    ap.add_argument("--baseline", help="the run folder every arm is compared with")
    ap.add_argument("--out", help="output folder (default: <baseline's parent>/comparison)")
    ap.add_argument("--ks", default="1,2,4,8,16", help="k values, comma-separated (those > n are left out)")
    ap.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples of problems (default 10000)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    ap.add_argument("--dynamics-only", action="store_true", help="only plot the Distiller loss / error-norm curves")
    args = ap.parse_args(argv)
    try:
        if args.dynamics_only:
            out = Path(args.out or Path(args.runs[0]).resolve().parent / "comparison")
            out.mkdir(parents=True, exist_ok=True)
            if plot_dynamics(args.runs, out / "distiller_dynamics.png") is None:
                return error_exit("no run reports sampler_telemetry.loss_curve / error_norm_curve")
            print(f"wrote {out / 'distiller_dynamics.png'}")
            return 0
        if not args.baseline:
            ap.error("--baseline is required (unless --dynamics-only)")
        ks = [int(k) for k in args.ks.split(",") if k.strip()]
        arms = [r for r in args.runs if Path(r).resolve() != Path(args.baseline).resolve()]
        if not arms:
            ap.error("give at least one run folder other than the baseline")
        res = compare_runs(arms, args.baseline, ks=ks, resamples=args.resamples, seed=args.seed)
        files = write_comparison(res, args.out or Path(args.baseline).resolve().parent / "comparison")
    except (FileNotFoundError, ValueError) as err:
        return error_exit(err)
    return report_exit(comparison_markdown(res), files)


if __name__ == "__main__":
    sys.exit(main())
