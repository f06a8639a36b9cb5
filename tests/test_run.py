"""run.py end to end, and config errors that fail before a model loads.

One real `python run.py` subprocess (the smoke test: Hydra's own entry point, output folder, .hydra/);
everything else composes the config in-process with Hydra's compose API and calls esamp.pipeline.run,
which is what run.py calls (a subprocess costs seconds of imports per case)."""
import importlib.util
import json

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import MissingConfigException
from omegaconf import open_dict

from esamp.pipeline import ConfigError, prepare_store, run
from esamp.results import ResumeMismatch
from esamp.samplers.esamp import ESampSampler
from esamp.sharding import Shards
from esamp.tasks.base import Problem
from tests.conftest import MATH_FIXTURE, ROOT, run_py

TINY = ["model=tiny-random", f"task.data_path={MATH_FIXTURE}", "task.max_new_tokens=8"]
# A model that cannot load: if a config check did not come before the model load we would see its error.
UNLOADABLE = ["model=smollm2-135m", "model.package=no_such_package_xyz"]


def compose_cfg(overrides: list[str], hydra: bool = False):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra)


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
    t = summary["timing"]  # the wall time includes the task's summary (judge perplexity, embeddings)
    assert t["task_metrics_seconds"] >= 0 and t["wall_seconds"] >= t["generation_seconds"] + t["task_metrics_seconds"]
    assert t["rows_per_step"] == pytest.approx(t["row_steps"] / t["decode_steps"]) and 0 < t["rows_per_step"] <= 2 * 4
    assert "temperature -> top_k" in summary["sampler"]["order"]
    lines = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 8
    assert {"problem_id", "sample_index", "prompt", "completion", "extracted", "correct", "tokens",
            "finish_reason", "failure"} <= set(lines[0])
    assert (out / ".hydra" / "config.yaml").exists()


def test_esamp_records_telemetry(tmp_path):
    summary = run(compose_cfg([*TINY, "sampler=esamp", "sampler.n=2", "task.limit=1"]), out_dir=tmp_path)
    tel = json.loads((tmp_path / "results.json").read_text())["sampler_telemetry"]
    assert tel["train_steps"] == summary["sampler_telemetry"]["train_steps"]  # what run() returned was written
    assert tel["train_steps"] > 0 and len(tel["loss_curve"]) == tel["train_steps"]
    assert tel["variant"] == "paper" and tel["taps"] == "layer0_to_final" and tel["state"] == "per_prompt"
    assert tel["fusion"] == "extrapolate" and tel["fusion_order"] == "fuse_then_scale"
    assert tel["distiller"]["lr"] == 4e-4 and tel["distiller"]["loss_reduction"] == "mean"  # the variant's, resolved


def test_a_folder_run_under_old_knob_names_resumes_under_the_new_ones(tmp_path):
    """Committed arms ran with sampler.fusion=naive (now `subtract`): their lock still matches the new name;
    a real change (beta) still does not."""
    problems = [Problem(id="p0", prompt="x", gold=None)]

    def lock(*overrides):
        cfg = compose_cfg([*TINY, "sampler=esamp", *overrides])
        prepare_store(cfg, tmp_path, 2, problems, Shards(cfg), canonical=ESampSampler.canonical_settings)

    lock("sampler.fusion=naive", "sampler.fusion_order=paper")
    lock("sampler.fusion=subtract", "sampler.fusion_order=fuse_then_scale")
    with pytest.raises(ResumeMismatch, match="sampler"):
        lock("sampler.fusion=subtract", "sampler.fusion_order=fuse_then_scale", "sampler.beta=0.5")


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
    ("sampler=fire sampler.first_temperature=0", "sampler.first_temperature"),
    ("generation.batch_prompts=0", "generation.batch_prompts"),
])
def test_bad_values_fail_before_model_load(override, key, tmp_path):
    cfg = compose_cfg([*UNLOADABLE, "sampler.n=8", *override.split()])
    with pytest.raises(ConfigError) as err:
        run(cfg, out_dir=tmp_path / "out")
    msg = str(err.value)
    assert key in msg and "allowed" in msg and "\n" not in msg  # one line, naming the key and the fix
    assert "no_such_package_xyz" not in msg
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing written


def test_run_py_prints_one_error_line_and_exits_2(tmp_path, capsys):
    """run.py's own handling of a ConfigError, called in-process: its main() body with the composed config."""
    spec = importlib.util.spec_from_file_location("esamp_run_entry", ROOT / "run.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    cfg = compose_cfg([*UNLOADABLE, "sampler.top_p=1.5"], hydra=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    try:
        with pytest.raises(SystemExit) as exit_:
            entry.main.__wrapped__(cfg)  # the function under @hydra.main
    finally:
        HydraConfig.instance().cfg = None
    assert exit_.value.code == 2
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err_lines) == 1 and "sampler.top_p" in err_lines[0] and "allowed" in err_lines[0]


def test_unknown_group_option_lists_choices():
    with pytest.raises(MissingConfigException) as err:
        compose_cfg(["sampler=nope"])
    msg = str(err.value)
    assert "nope" in msg and "temperature" in msg and "esamp" in msg and "fire" in msg


def test_missing_data_path_is_a_clear_error(tmp_path):
    cfg = compose_cfg(["model=tiny-random", "task.data_path=/nonexistent/math.jsonl"])
    with pytest.raises(ConfigError, match="/nonexistent/math.jsonl"):
        run(cfg, out_dir=tmp_path)
