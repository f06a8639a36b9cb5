"""Summarise a sweep (or any folder of runs): python -m esamp.cli.aggregate SWEEP_DIR [--out DIR]

Writes summary.csv (one row per run, every Pass@k with its 95% bounds), summary.md (a markdown table, also
printed), passk.png (Pass@k vs k, one panel per task) and, when ESamp runs report one, distiller_loss.png.
The same functions are importable: `from esamp.analysis.sweep import collect, plot_passk`.
`scripts/aggregate.py` (and `make aggregate SWEEP=...`) runs this too.
"""
from __future__ import annotations

import argparse
import sys

from esamp.analysis.sweep import write_summary
from esamp.cli import error_exit, report_exit


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("root", help="a sweep folder (multirun/...), a run folder, or any folder holding results.json files")
    ap.add_argument("--out", help="where to write the summary files (default: ROOT)")
    args = ap.parse_args(argv)
    try:
        res = write_summary(args.root, args.out)
    except FileNotFoundError as err:
        return error_exit(err)
    return report_exit(res["markdown"], res["files"])


if __name__ == "__main__":
    sys.exit(main())
