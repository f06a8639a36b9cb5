"""The command lines, each `python -m esamp.cli.<name> ARGS` with a `main(argv) -> exit code` that tests call
in-process:

    compare          paired Pass@k comparison of runs against a baseline (esamp.analysis.compare)
    mechanism        ESamp arms against temperature and frozen-Distiller controls, with the registered verdict
    frontier         creative writing: arms against the temperature frontier (esamp.analysis.frontier)
    aggregate        one table and Pass@k figure of every run below a folder (esamp.analysis.sweep)
    select_problems  the committed problem-id list of an experiment (a seeded draw per MATH-500 level)
    bench_generate   decode throughput and MFU against the GEMM roofline, our loop vs HF generate
    bench_overhead   ESamp's throughput overhead against plain sampling, side by side
    profile_esamp    where ESamp's extra time goes, per decode step
    bench_sandbox    wall time of grading HumanEval's canonical solutions, checkouts side by side

`scripts/{compare,frontier,aggregate,select_problems}.py` stay as forwards to these, because
committed experiment READMEs call them by that path. A run itself is `python run.py` (Hydra).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable


def error_exit(err: Exception | str) -> int:
    """A command that could not do its job for a reason the user can fix (a missing folder, runs that do not
    pair): the reason on stderr and exit code 2, argparse's code for a bad command line."""
    print(f"error: {err}", file=sys.stderr)
    return 2


def report_exit(report: str, files: Iterable[str | Path]) -> int:
    """A command that wrote its files: the report (also one of the files) and the paths on stdout, exit code 0."""
    print(report)
    print("wrote " + ", ".join(str(p) for p in files))
    return 0
