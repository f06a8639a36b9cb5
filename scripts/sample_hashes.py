"""Token hashes of every sampler on a tiny random model: the "same samples" check for refactors.

Each config decodes a few fixture problems with continuous batching (more prompts than `batch_prompts`, so
rows are admitted mid-run), EOS on, and hashes every sample's (problem, index, tokens, finish reason).
Record the hashes before a change and check them after it:

    python scripts/sample_hashes.py --write /tmp/before.json     # on the old commit
    python scripts/sample_hashes.py --check /tmp/before.json     # on the new one: exit 1 on any difference
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

from esamp.analysis.runs import load_samples
from esamp.pipeline import run

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "math500_tiny.jsonl"
COMMON = ["model=tiny-random", f"task.data_path={FIXTURE}", "task.limit=5", "task.max_new_tokens=40",
          "generation.batch_prompts=2", "seed=3"]
CONFIGS = {
    "temperature": ["sampler=temperature", "sampler.n=3"],
    "min_p": ["sampler=min_p", "sampler.n=3", "sampler.min_p=0.5"],
    "esamp_paper": ["sampler=esamp", "sampler.n=3"],
    "esamp_tllm": ["sampler=esamp", "sampler.n=3", "sampler.variant=tllm"],
    "esamp_shared": ["sampler=esamp", "sampler.n=3", "sampler.state=shared", "sampler.beta=1.0"],
    "esamp_noise": ["sampler=esamp", "sampler.n=3", "sampler.error=noise"],
    "esamp_naive": ["sampler=esamp", "sampler.n=3", "sampler.fusion=naive", "sampler.beta=0.5"],
    "esamp_fast": ["sampler=esamp", "sampler.n=3", "sampler.distiller.input_norm=rms", "sampler.distiller.output_bias=prompt",
                   "sampler.distiller.eps=1e-8", "sampler.distiller.grad_clip=0"],
    "fire": ["sampler=fire", "sampler.n=3"],
    "contrastive": ["sampler=contrastive", "sampler.n=3", "model@sampler.amateur=tiny-random", "sampler.amateur.seed=1"],
    "diverse_beam": ["sampler=diverse_beam", "sampler.num_beams=4", "sampler.num_groups=2"],
}


def sample_hash(overrides: list[str]) -> str:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*COMMON, *overrides])
    with tempfile.TemporaryDirectory() as out:
        run(cfg, Path(out))
        rows = sorted(load_samples(Path(out)), key=lambda r: (str(r["problem_id"]), r["sample_index"]))
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r["problem_id"], r["sample_index"], r["tokens"], r["completion"],
                             r["finish_reason"]]).encode())
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", type=Path, help="write {config: hash} here")
    ap.add_argument("--check", type=Path, help="compare with hashes written earlier; exit 1 on a difference")
    ap.add_argument("--only", nargs="*", default=None, help="a subset of: " + " ".join(CONFIGS))
    args = ap.parse_args(argv)
    names = args.only or list(CONFIGS)
    hashes = {name: sample_hash(CONFIGS[name]) for name in names}
    for name, h in hashes.items():
        print(f"{name:14s} {h}")
    if args.write:
        args.write.write_text(json.dumps(hashes, indent=1) + "\n")
    if args.check:
        before = json.loads(args.check.read_text())
        diff = [n for n in names if before.get(n) != hashes[n]]
        print("identical" if not diff else "DIFFERENT: " + " ".join(diff))
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
