"""run.py end to end (a real subprocess on the tiny model) and config errors that fail before a model loads."""
import json

import pytest

from tests.conftest import MATH_FIXTURE, run_py

TINY = ["model=tiny-random", f"task.data_path={MATH_FIXTURE}", "task.max_new_tokens=8"]


def test_smoke_run_writes_results(tmp_path):
    out = tmp_path / "run"
    res = run_py([*TINY, "sampler=temperature", "sampler.n=4", "task.limit=2", f"hydra.run.dir={out}"])
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "results.json").read_text())
    assert summary["pass_at_k"]["k"] == [1, 2, 4]
    assert summary["num_problems"] == 2 and summary["samples"] == 8
    assert summary["seed"] == 0 and summary["config"]["sampler"]["n"] == 4
    assert summary["environment"]["packages"]["torch"]
    assert summary["timing"]["tokens_generated"] > 0 and summary["timing"]["tokens_per_second"] > 0
    assert "temperature -> top_k" in summary["sampler"]["order"]
    lines = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 8
    assert {"problem_id", "sample_index", "prompt", "completion", "extracted", "correct", "tokens",
            "finish_reason"} <= set(lines[0])
    assert (out / ".hydra" / "config.yaml").exists()


def test_smoke_esamp_records_telemetry(tmp_path):
    out = tmp_path / "run"
    res = run_py([*TINY, "sampler=esamp", "sampler.n=2", "task.limit=1", f"hydra.run.dir={out}"])
    assert res.returncode == 0, res.stderr[-2000:]
    tel = json.loads((out / "results.json").read_text())["sampler_telemetry"]
    assert tel["train_steps"] > 0 and len(tel["loss_curve"]) == tel["train_steps"]
    assert tel["variant"] == "paper" and tel["taps"] == "paper" and tel["state"] == "per_prompt"


@pytest.mark.parametrize("override,key", [
    ("sampler.temperature=-1", "sampler.temperature"),
    ("sampler.top_p=0", "sampler.top_p"),
    ("sampler.top_p=1.5", "sampler.top_p"),
    ("sampler.min_p=1", "sampler.min_p"),
    ("sampler.n=0", "sampler.n"),
    ("metrics.ks=[1,16]", "metrics.ks"),
    ("task.limit=0", "task.limit"),
    ("sampler=esamp sampler.beta=-1", "sampler.beta"),
    ("sampler=esamp task.max_new_tokens=1", "task.max_new_tokens"),
])
def test_bad_values_fail_before_model_load(override, key, tmp_path):
    # A model that cannot load: if the config check did not come first we would see the package error.
    args = ["model=smollm2-135m", "model.package=no_such_package_xyz", "sampler.n=8",
            f"hydra.run.dir={tmp_path}", *override.split()]
    res = run_py(args, timeout=120)
    assert res.returncode == 2, res.stderr[-1500:]
    err_lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(err_lines) == 1 and key in err_lines[0] and "allowed" in err_lines[0]
    assert "no_such_package_xyz" not in res.stderr


def test_unknown_group_option_lists_choices(tmp_path):
    res = run_py(["sampler=nope", f"hydra.run.dir={tmp_path}"], timeout=120)
    assert res.returncode != 0
    assert "nope" in res.stderr and "temperature" in res.stderr and "esamp" in res.stderr


def test_missing_data_path_is_a_clear_error(tmp_path):
    res = run_py(["model=tiny-random", "task.data_path=/nonexistent/math.jsonl", f"hydra.run.dir={tmp_path}"],
                 timeout=120)
    assert res.returncode == 2
    err = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "/nonexistent/math.jsonl" in err[0]
