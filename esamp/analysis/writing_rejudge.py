"""Per-sample judge perplexities for writing runs summarized before the task stored them
(`task_metrics.per_prompt[pid].perplexities`), as far as a frontier without looping samples needs them.

    python -m esamp.analysis.writing_rejudge results/writing_frontier/temperature_t1 ... [--judge qwen2.5-coder-0.5b-pypi]

For each arm it writes `judge_loopfree.json` beside results.json: pid -> the judge perplexity of each sample
(sample_index order) or null. Judged: the non-looping samples (`esamp.metrics.repetition.loops`) of every
prompt where some but not all samples loop. Not judged, since nothing needs them: the samples that loop (left
out of the loop-free mean) and the prompts where no sample loops (their loop-free mean is the stored per-prompt
mean, `per_prompt[pid].perplexity`, the mean over all their samples). `check` holds one prompt judged whole
against its stored mean: the rerun reproduces the stored judge up to bf16 batching noise or it is not used.
The file is written after every prompt, and a rerun resumes it. Cost: ~3.4 s of CPU per sample for the Qwen
0.5B judge on one thread; `--per-prompt 1` judges one non-looping sample per mixed prompt (an unbiased but
noisier estimate of that prompt's loop-free mean; the bootstrap over prompts carries the extra noise).

Runs made without a judge (`task.ppl_model=null`, e.g. `writing_long`) have no stored means at all: `--first N`
judges the first N samples of every prompt, looping or not, into the same file, and the quality axes take both
the judge perplexity (all judged samples) and the loop-free one (the judged non-looping samples) from it.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from esamp.analysis.runs import load_samples, read_results
from esamp.metrics.repetition import LOOP_MIN_COUNT, LOOP_NGRAM, loops

FILE = "judge_loopfree.json"


def samples_by_prompt(run_dir) -> dict[str, list[dict]]:
    """pid -> the run's records in sample_index order."""
    out: dict[str, list[dict]] = {}
    for r in load_samples(run_dir):
        out.setdefault(str(r["problem_id"]), []).append(r)
    return {pid: sorted(rs, key=lambda r: int(r["sample_index"])) for pid, rs in out.items()}


def needed(records: list[dict], per_prompt: int | None = None, first: int | None = None) -> list[int]:
    """Positions of the samples whose judge perplexity the loop-free mean needs (none when no sample or every
    sample loops): the non-looping ones, or the first `per_prompt` of them (the samples of a prompt are
    exchangeable, so the first non-looping ones are a fair draw from them). `first`: the first `first` samples,
    looping or not (a run with no stored judge)."""
    if first:
        return list(range(min(first, len(records))))
    flags = [loops(r.get("completion") or "") for r in records]
    idx = [i for i, f in enumerate(flags) if not f] if any(flags) and not all(flags) else []
    return idx[:per_prompt] if per_prompt else idx


def rejudge(run_dir, lm, check: bool = True, per_prompt: int | None = None, progress: bool = False,
            first: int | None = None) -> Path:
    from esamp.metrics.perplexity import continuation_perplexities

    run_dir = Path(run_dir)
    path = run_dir / FILE
    stored = (read_results(run_dir).get("task_metrics") or {}).get("per_prompt") or {}
    by_prompt = samples_by_prompt(run_dir)
    state = json.loads(path.read_text()) if path.exists() else {
        "judge": lm.name, "loop_rule": f"some {LOOP_NGRAM}-word sequence occurs {LOOP_MIN_COUNT}+ times",
        "judged": "non-looping samples of prompts where some but not all samples loop", "perplexities": {}}
    if first:
        state["judged"] = f"the first {first} samples of every prompt, looping or not"
    elif per_prompt:
        state["judged"] = (f"the first {per_prompt} non-looping sample(s) of each prompt where some but not all "
                           "samples loop")

    def save():
        path.write_text(json.dumps(state, indent=1))

    def judge(records):
        return continuation_perplexities(lm, [r["prompt"] for r in records], [r["completion"] for r in records],
                                         batch_size=8, progress=progress)

    if check and "check" not in state and not first:  # (a run without a judge has no stored mean to check)  # one mixed prompt judged whole against the stored mean
        pid = next((p for p, rs in by_prompt.items() if needed(rs)), next(iter(by_prompt)))
        vals = judge(by_prompt[pid])
        mean = sum(vals) / len(vals)
        ref = stored.get(pid, {}).get("perplexity")
        state["check"] = {"prompt": pid, "perplexities": vals, "mean": mean, "stored_mean": ref,
                          "relative_difference": (mean - ref) / ref if ref else None}
        save()
    for pid, records in by_prompt.items():
        if pid in state["perplexities"]:
            continue
        idx = needed(records, per_prompt, first)
        vals: list[float | None] = [None] * len(records)
        if idx:
            for i, v in zip(idx, judge([records[i] for i in idx])):
                vals[i] = None if math.isnan(v) else float(v)
        state["perplexities"][pid] = vals
        save()
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--judge", default="qwen2.5-coder-0.5b-pypi", help="a model config name in conf/model/")
    ap.add_argument("--check", type=int, default=1, help="judge one prompt whole against its stored mean in the "
                                                          "first CHECK runs (default 1)")
    ap.add_argument("--per-prompt", type=int, default=None,
                    help="judge at most this many non-looping samples per mixed prompt (default: all)")
    ap.add_argument("--first", type=int, default=None,
                    help="judge the first N samples of every prompt, looping or not (runs made without a judge)")
    args = ap.parse_args(argv)
    import torch
    from omegaconf import OmegaConf

    from esamp.models import load_model

    torch.set_num_threads(1)
    lm = load_model(OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "model" / f"{args.judge}.yaml"))
    for j, run in enumerate(args.runs):
        n = sum(len(needed(rs, args.per_prompt, args.first)) for rs in samples_by_prompt(run).values())
        print(f"{run}: {n} samples to judge", flush=True)
        print(rejudge(run, lm, check=j < args.check, per_prompt=args.per_prompt, first=args.first), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
