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
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(bool(isolation_support()["missing"]),
                                reason="needs the sandbox's full isolation (root with namespaces), as in CI")

TINY = ["model=tiny-random", "task=humaneval", "task.limit=1", "task.max_new_tokens=8", "sampler=temperature",
        "sampler.n=2", "task.timeout=2.0"]


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


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
