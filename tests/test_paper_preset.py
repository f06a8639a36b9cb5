"""The paper's own cell (experiment=paper_aime25): it composes to the paper's settings, and a dry run of every
one of its arms with a tiny model on the hf engine goes through the whole pipeline (the real run needs the hub
and a GPU)."""
import json
import re

import pytest
from hydra import compose, initialize_config_dir

from esamp.pipeline import run
from tests.conftest import ROOT

ARMS = dict(re.findall(r'^\s+\[(\w+)\]="([^"]*)"', (ROOT / "experiments/paper_aime25/run_arms.sh").read_text(), re.M))


def _cfg(overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=["experiment=paper_aime25", *overrides])


def test_the_preset_is_the_papers_cell():
    cfg = _cfg([])
    assert cfg.model.path == "Qwen/Qwen2.5-7B-Instruct" and cfg.model.source == "hub"
    assert cfg.task.name == "aime" and cfg.task.year == 2025 and cfg.sampler.n == 64
    assert cfg.engine.name == "vllm" and cfg.task.max_new_tokens == 8192
    assert cfg.engine.max_model_len >= cfg.task.max_new_tokens
    assert set(ARMS) == {"temperature_t1", "esamp_b025", "temperature_t08", "esamp_frozen_b025"}


@pytest.mark.parametrize("arm", sorted(ARMS))
def test_dry_run_of_each_arm_with_a_tiny_model(tmp_path, arm):
    tiny = ["model=tiny-random", "engine=hf", "task.limit=1", "task.max_new_tokens=4", "generation.batch_prompts=1"]
    cfg = _cfg([*ARMS[arm].split(), *tiny, "sampler.n=2"])
    run(cfg, out_dir=tmp_path)
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["config"]["task"]["name"] == "aime" and len((tmp_path / "samples.jsonl").read_text().splitlines()) == 2
    if arm == "esamp_frozen_b025":
        assert res["sampler_telemetry"]["distiller"]["lr"] == 0
    if arm == "temperature_t08":
        assert res["config"]["sampler"]["temperature"] == 0.8
