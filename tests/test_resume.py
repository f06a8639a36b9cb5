"""Crash-safe resume, end to end: a real `python run.py` is killed with SIGKILL mid-generation, a torn line
is appended (a write cut by the kill), and a rerun on the same folder must finish the job without
regenerating finished problems, with exactly one record per (problem, sample) and the samples of an
uninterrupted run. A rerun with other settings on the same folder must refuse (exit code 2)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
N, PROBLEMS = 4, 5
# ignore_eos: every problem costs the same number of steps, so the kill lands while later problems run
ARGS = ["model=tiny-random", f"task.limit={PROBLEMS}", f"sampler.n={N}", "task.max_new_tokens=32",
        "generation.ignore_eos=true", "generation.batch_prompts=1", "seed=3",
        "generation.telemetry_every=0"]  # (the default sampler is ESamp) its telemetry saved at every prompt


def _env(data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "ESAMP_"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled",
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", ESAMP_DATA_DIR=str(data_dir))
    return env


def _cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "run.py", *ARGS, *extra, f"hydra.run.dir={out}"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """PROBLEMS made-up problems in the MATH500 schema (via $ESAMP_DATA_DIR: no '/' in the overrides)."""
    d = tmp_path_factory.mktemp("data")
    rows = [{"problem": f"What is ${a} + {a}$?", "solution": f"$ {a} + {a} = \\boxed{{{2 * a}}}$.",
             "answer": str(2 * a), "subject": "Prealgebra", "level": 1, "unique_id": f"test/prealgebra/{a}.json"}
            for a in range(1, PROBLEMS + 1)]
    (d / "math500.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []


def _samples(path: Path) -> set[tuple]:
    return {(r["problem_id"], r["sample_index"], r["completion"]) for r in map(json.loads, _lines(path))}


def test_kill_and_resume(tmp_path, data_dir):
    out, ref = tmp_path / "run", tmp_path / "reference"
    env = _env(data_dir)
    samples = out / "samples.jsonl"

    # 1. start, wait for the first finished problem, SIGKILL (the whole group: grading workers included)
    proc = subprocess.Popen(_cmd(out), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while not _lines(samples) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"run ended on its own before the kill:\n{err.decode()[-2000:]}"
    before = _lines(samples)
    assert before and all(line.endswith("\n") for line in before)
    done_before = {json.loads(line)["problem_id"] for line in before}
    assert len(before) == N * len(done_before)       # whole problems only (one write per problem)
    assert len(done_before) < PROBLEMS, "all problems finished before the kill; nothing left to resume"
    assert not (out / "results.json").exists()

    # 2. a torn last line, as if the kill had cut a write in half
    with open(samples, "a", encoding="utf-8") as f:
        f.write('{"problem_id": "test/prealgebra/9.json", "sample_index": 0, "compl')

    # 3. resume on the same folder
    res = subprocess.run(_cmd(out), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    after = _lines(samples)
    records = [json.loads(line) for line in after]
    keys = [(r["problem_id"], r["sample_index"]) for r in records]
    assert len(keys) == len(set(keys)) == N * PROBLEMS     # exactly one record per (problem, sample)
    assert set(before) <= set(after)                       # finished problems kept byte for byte...
    summary = json.loads((out / "results.json").read_text())
    assert summary["resume"]["problems_reused"] == len(done_before) > 0   # ...and not regenerated
    assert summary["resume"]["dropped"] >= 1                             # the torn line
    assert summary["samples"] == N * PROBLEMS and summary["num_problems"] == PROBLEMS
    # the ESamp telemetry of the killed part survived: both parts are in the summary
    parts = {}
    for line in _lines(out / "telemetry.jsonl"):
        entry = json.loads(line)
        parts[entry["part"]] = entry["telemetry"]
    assert sorted(parts) == [0, 1] and parts[0]["train_steps"] > 0
    tele = summary["sampler_telemetry"]
    assert tele["train_steps"] == parts[0]["train_steps"] + parts[1]["train_steps"] > parts[1]["train_steps"]
    # ...and so did its generation statistics: the timing is the whole run's, not the last session's
    timing = summary["timing"]
    gen_parts = timing["generation_parts"]
    assert len(gen_parts) == 2 and timing["parts_without_stats"] == 0
    assert gen_parts[0]["tokens"] > 0 and gen_parts[0]["seconds"] > 0
    assert gen_parts[1]["tokens"] == sum(r["tokens"] for r in records if r["problem_id"] not in done_before)
    assert timing["tokens_generated"] == gen_parts[0]["tokens"] + gen_parts[1]["tokens"]
    assert timing["generation_seconds"] == pytest.approx(gen_parts[0]["seconds"] + gen_parts[1]["seconds"])
    assert timing["tokens_in_samples"] == sum(r["tokens"] for r in records)

    # 3b. a rerun with nothing left to generate (results.json lost) binds no model: its telemetry still says how
    # the parts ran (the resolved latent mixing, not the configured "auto")
    assert isinstance(tele["latent_mixing"], bool)
    (out / "results.json").unlink()
    res = subprocess.run(_cmd(out), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    again = json.loads((out / "results.json").read_text())
    assert again["resume"]["problems_reused"] == PROBLEMS
    assert again["sampler_telemetry"]["latent_mixing"] is tele["latent_mixing"]
    assert again["sampler_telemetry"]["train_steps"] == tele["train_steps"]

    # 4. the same samples as a run that was never interrupted
    res = subprocess.run(_cmd(ref), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _samples(samples) == _samples(ref / "samples.jsonl")

    # 5. other settings into the same folder: refused, naming the folder, nothing touched
    res = subprocess.run(_cmd(out, "sampler.temperature=0.5"), cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2, res.stderr[-3000:]
    assert str(out) in res.stderr and "sampler" in res.stderr
    assert _lines(samples) == after


def test_merge_shards_after_a_killed_sharded_run(tmp_path):
    """Shard files left by a killed `torchrun` run are folded into samples.jsonl on the next start: complete
    problems only, none twice (a kill between the append and the delete leaves a shard already merged)."""
    from esamp.results import SampleStore

    def recs(pid, n=2):
        return [{"problem_id": pid, "sample_index": i, "completion": f"{pid}{i}"} for i in range(n)]

    store = SampleStore(tmp_path / "samples.jsonl")
    store.append(recs("a"))
    store.shard(0).append(recs("b") + recs("c", 1))                 # c incomplete
    with open(store.shard(0).path, "a") as f:
        f.write('{"problem_id": "d", "sam')                         # torn
    store.shard(1).append(recs("a"))                                # already merged before the kill
    assert store.merge_shards(2) == 2
    assert [(r["problem_id"], r["sample_index"]) for r in store.load()] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.jsonl"]
    assert store.merge_shards(2) == 0


def test_telemetry_log_keeps_stats_per_part_and_reads_old_logs(tmp_path):
    """Generation stats are kept per part (last save of a part wins); a log from before stats were saved, or a
    part whose last save carries none, counts as a part without stats instead of silently vanishing."""
    from esamp.results import TelemetryLog

    path = tmp_path / "telemetry.jsonl"
    path.write_text(json.dumps({"part": 0, "final": True, "telemetry": {}}) + "\n")  # the old format
    log = TelemetryLog(path)
    assert log.part == 1
    log.save({"train_steps": 3}, stats={"tokens": 10, "seconds": 1.0})
    log.save({"train_steps": 5}, final=True, stats={"tokens": 25, "seconds": 2.5})
    with open(path, "a") as f:
        f.write('{"part": 1, "final": tr')  # a torn save
    later = TelemetryLog(path)
    assert later.part == 2
    assert later.earlier_stats() == ([{"tokens": 25, "seconds": 2.5}], 1)
    assert later.all() == [{"train_steps": 5}]
