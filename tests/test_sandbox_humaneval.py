"""A HumanEval run and its sandbox: each sample records the isolation its check had, the run states whether
unisolated verdicts were allowed, and the checks that timed out under load are regraded at the end of the
run (esamp.tasks.humaneval, esamp.pipeline; issue 25 items 4 and 8).  The unprivileged side (the refusal)
is in test_sandbox_unprivileged.py."""
from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir

from esamp.grading.sandbox import isolation_support
from esamp.pipeline import run
from esamp.tasks.humaneval import HumanEvalTask
from tests.conftest import ROOT, make_task

pytestmark = pytest.mark.skipif(bool(isolation_support()["missing"]),
                                reason="needs the sandbox's full isolation (root with namespaces), as in CI")

TINY = ["model=tiny-random", "task=humaneval", "task.limit=1", "task.max_new_tokens=8", "sampler=temperature",
        "sampler.n=2", "task.timeout=6.0"]  # generous: the machine may be loaded


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


def _canonical(task: HumanEvalTask, pid: str) -> str:
    spec = task._problems[pid]
    return "```python\n" + spec["prompt"] + spec["canonical_solution"] + "\n```"


def test_each_sample_records_its_isolation_and_the_run_its_policy(tmp_path):
    summary = run(compose_cfg([*TINY, "task.allow_unisolated=true"]), out_dir=tmp_path)
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["config"]["task"]["allow_unisolated"] is True
    metrics = written["task_metrics"]
    assert metrics["sandbox_allow_unisolated"] is True and metrics["sandbox_isolation"]["missing"] == []
    assert metrics["samples_isolated"] == 2 and metrics["samples_unisolated"] == 0, metrics
    records = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [r["isolation_missing"] for r in records] == [[], []]
    assert summary["task_metrics"]["samples_isolated"] == 2


def test_the_task_regrades_timeouts_and_keeps_the_verdict_of_the_run():
    task = make_task("humaneval", limit=2, timeout=6.0)  # generous: only the endless loop costs it
    probs = task.load()
    head = "```python\ndef has_close_elements(numbers, threshold):\n"
    # as grading under load leaves them: three samples whose check timed out
    records = [
        {"problem_id": probs[0].id, "completion": _canonical(task, probs[0].id)},  # a false timeout
        {"problem_id": probs[0].id, "completion": head + "    while True:\n        pass\n```"},  # a true one
        {"problem_id": probs[0].id, "completion": head + "    return 42\n```"},  # wrong, whatever the load
        {"problem_id": probs[1].id, "completion": _canonical(task, probs[1].id)},  # not a timeout: untouched
    ]
    for r in records[:3]:
        r.update({"correct": False, "result": "timed out", "failure": "timeout", "isolation_missing": []})
    records[3].update({"correct": True, "result": "passed", "failure": None, "isolation_missing": []})
    untouched = dict(records[3])
    done = task.regrade(records)
    assert {k: done[k] for k in ("regraded", "flipped_to_pass", "now_fail", "timeout_again", "in_this_session")} == \
        {"regraded": 3, "flipped_to_pass": 1, "now_fail": 1, "timeout_again": 1, "in_this_session": 3}, done
    assert [r["correct"] for r in records] == [True, False, False, True]
    assert [r["failure"] for r in records] == [None, "timeout", "wrong", None]
    assert [r["timeout_regrade"]["outcome"] for r in records[:3]] == ["pass", "timeout", "fail"]
    assert all(r["timeout_regrade"]["during_run"] == {"correct": False, "result": "timed out", "failure": "timeout",
                                                      "isolation_missing": []} for r in records[:3])
    assert records[3] == untouched
    again = task.regrade(records)  # a resumed run: nothing is regraded twice, the counts stay whole
    assert again["in_this_session"] == 0 and again["regraded"] == 3 and again["flipped_to_pass"] == 1


def test_a_run_regrades_its_timeouts_into_samples_and_results(tmp_path):
    """End to end: a run whose samples.jsonl holds a false timeout (a correct program that timed out under
    load) regrades it when it summarises; Pass@k counts the new verdict and samples.jsonl keeps the old."""
    run(compose_cfg(TINY), out_dir=tmp_path)
    path = tmp_path / "samples.jsonl"
    records = [json.loads(x) for x in path.read_text().splitlines()]
    task = make_task("humaneval", limit=1)
    task.load()
    records[0].update({"completion": _canonical(task, records[0]["problem_id"]), "correct": False,
                       "result": "timed out", "failure": "timeout"})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = run(compose_cfg(TINY), out_dir=tmp_path)  # resumes: nothing to generate, then the regrade
    regrade = json.loads((tmp_path / "results.json").read_text())["timeout_regrade"]
    assert regrade["regraded"] == 1 and regrade["flipped_to_pass"] == 1 and regrade["in_this_session"] == 1
    assert summary["pass_at_k"]["pass_at_k"][-1] == 1.0  # k = n: the regraded sample is correct
    after = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(after) == len(records) and after[1] == records[1]
    assert after[0]["correct"] is True and after[0]["timeout_regrade"]["during_run"]["result"] == "timed out"
    again = run(compose_cfg(TINY), out_dir=tmp_path)
    assert again["timeout_regrade"]["in_this_session"] == 0 and path.read_text().splitlines() == \
        [json.dumps(r, ensure_ascii=False) for r in after]
