"""The mechanism verdict of a campaign (issue 22): ESamp arms paired against temperature and frozen controls.

    python -m esamp.cli.mechanism --arm paper=results/x/esamp_b025 --arm fast=results/x/esamp_fast_b025 \
        --control "T 1=results/x/temperature_t1" --control "T 0.8=results/x/temperature_t08" \
        --control frozen=results/x/esamp_frozen_b025 --learned-below 0.864 --out experiments/x/mechanism

Arms or controls whose folder has no results.json yet are left out and named; the verdict then says which
control is missing. The rule (supported / not supported / inconclusive) is in `esamp.analysis.mechanism`.
Writes mechanism.md (also printed), mechanism.json and mechanism.png into --out.
"""
from __future__ import annotations

import argparse
import sys

from esamp.analysis.mechanism import mechanism_analysis, mechanism_markdown, write_mechanism
from esamp.cli import error_exit, report_exit


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{flag} {item!r}: expected NAME=RUN_DIR")
        out[name] = path
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--arm", action="append", required=True, help="NAME=RUN_DIR of an ESamp arm (repeat)")
    ap.add_argument("--control", action="append", required=True, help="NAME=RUN_DIR of a control (repeat); "
                    "the rule reads the controls named 'T 0.8' and 'frozen'")
    ap.add_argument("--tested", default="fast", help="the arm the rule is applied to (default: fast)")
    ap.add_argument("--learned-below", type=float, default=None,
                    help="relative error under which the Distiller counts as learned (the replay study's running mean)")
    ap.add_argument("--ks", default="1,2,4,8,16", help="k values, comma-separated")
    ap.add_argument("--resamples", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="output folder")
    args = ap.parse_args(argv)
    try:
        arms, controls = _pairs(args.arm, "--arm"), _pairs(args.control, "--control")
        ks = tuple(int(k) for k in args.ks.split(",") if k.strip())
        res = mechanism_analysis(arms, controls, ks=ks, resamples=args.resamples, seed=args.seed,
                                 tested=args.tested, learned_below=args.learned_below)
        files = write_mechanism(res, args.out)
    except (FileNotFoundError, ValueError) as err:
        return error_exit(err)
    return report_exit(mechanism_markdown(res), files)


if __name__ == "__main__":
    sys.exit(main())
