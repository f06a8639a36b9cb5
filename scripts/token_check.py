"""Does the current commit still produce a committed arm's samples? (evidence protocol, section 4b)

Reruns the arm's own overrides (its `.hydra/overrides.yaml`) on its first `--limit` problems into a scratch
folder and compares every sample's completion, token count and finish reason with the committed ones. A
committed arm may be paired with new arms only where this prints `identical`.

    python scripts/token_check.py results/humaneval_qwen05/esamp_b025 --limit 2
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from esamp.analysis.runs import load_samples

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("completion", "tokens", "finish_reason")


def digest(rows: list[dict]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r["problem_id"], r["sample_index"], *(r[k] for k in KEYS)]).encode())
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("arm", type=Path, help="a committed run folder (with .hydra/overrides.yaml)")
    ap.add_argument("--limit", type=int, default=2, help="first N problems of the arm's task (default 2)")
    ap.add_argument("--out", type=Path, default=None, help="scratch run folder (default: a temp dir)")
    args = ap.parse_args(argv)
    overrides = yaml.safe_load((args.arm / ".hydra" / "overrides.yaml").read_text())
    overrides = [o for o in overrides if not o.startswith(("hydra.", "task.limit="))]
    out = args.out or Path(tempfile.mkdtemp(prefix="token_check_"))
    cmd = [sys.executable, "run.py", *overrides, f"task.limit={args.limit}", f"hydra.run.dir={out}", "logger=none"]
    print(" ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    new = sorted(load_samples(out), key=lambda r: (r["problem_id"], r["sample_index"]))
    ids = {r["problem_id"] for r in new}
    old = sorted((r for r in load_samples(args.arm) if r["problem_id"] in ids),
                 key=lambda r: (r["problem_id"], r["sample_index"]))
    same = sum(a == b for a, b in zip(([r[k] for k in KEYS] for r in old), ([r[k] for k in KEYS] for r in new)))
    verdict = "identical" if len(old) == len(new) and same == len(new) else "DIFFERENT"
    print(f"{args.arm}: {verdict}: {same} of {len(new)} samples on {len(ids)} problems "
          f"(committed {digest(old)}, now {digest(new)})")
    return 0 if verdict == "identical" else 1


if __name__ == "__main__":
    sys.exit(main())
