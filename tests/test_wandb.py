"""`logger=wandb` offline: a real run on the tiny model writes its W&B run files under the output folder and
never touches the network (no API key, WANDB_MODE=offline, W&B's own folders redirected to tmp)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("wandb")

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "math500_tiny.jsonl"


def _offline_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "ESAMP_"))}  # no key, no base url
    env.update(WANDB_MODE="offline", WANDB_DISABLE_GIT="true", WANDB_DISABLE_CODE="true", WANDB_SILENT="true",
               WANDB_CONSOLE="off", WANDB_DIR=str(tmp_path / "wandb_default"),  # not used: logger passes dir=
               WANDB_CONFIG_DIR=str(tmp_path / "wandb_config"), WANDB_CACHE_DIR=str(tmp_path / "wandb_cache"),
               WANDB_DATA_DIR=str(tmp_path / "wandb_data"), WANDB_ARTIFACT_DIR=str(tmp_path / "wandb_artifacts"),
               HOME=str(tmp_path / "home"),  # no ~/.netrc credentials, nothing written to the real home
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               # any attempt to reach a server fails fast instead of hanging
               HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", NO_PROXY="")
    return env


def test_wandb_offline_run(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "run.py", "model=tiny-random", "task.limit=2", "sampler.n=4", "task.max_new_tokens=8",
           f"task.data_path={FIXTURE}", "logger=wandb", "logger.tags=[test]", f"hydra.run.dir={out}"]
    res = subprocess.run(cmd, cwd=ROOT, env=_offline_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert (out / "results.json").exists()
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, sorted(p.name for p in (out / "wandb").iterdir())
    assert list(runs[0].glob("run-*.wandb"))                       # the offline run file `wandb sync` uploads
    assert list(runs[0].rglob("pass_at_k_table*.table.json"))     # the Pass@k table was logged
    assert not (tmp_path / "wandb_default").exists()               # the run folder, not $WANDB_DIR
    cfg = json.loads((out / "results.json").read_text())["config"]
    assert cfg["logger"]["_target_"] == "esamp.loggers.WandbLogger"


class _FakeRun:
    def __init__(self):
        self.logged, self.summary = {}, {}

    def log(self, d):
        self.logged.update(d)


@pytest.mark.parametrize("summary", [
    # an ungraded task (creative writing): no Pass@k, no accuracy; ESamp telemetry with a loss curve
    {"pass_at_k": None, "accuracy": None, "timing": {"tokens_per_second": 10.0}, "task_metrics": {"distinct_2": 0.5},
     "sampler_telemetry": {"loss_curve": [1.0, float("nan"), 0.5], "train_steps": 3, "last_loss": 0.5}},
    {"pass_at_k": {"k": [1, 2], "pass_at_k": [0.1, 0.2], "ci_low": [0, 0], "ci_high": [0.3, 0.4]},
     "accuracy": {"accuracy": 0.1}, "timing": {}, "task_metrics": {}, "sampler_telemetry": None},
])
def test_log_summary_handles_missing_parts(summary):
    from esamp.configs import from_yaml

    logger = from_yaml("logger", "wandb", mode="offline")
    logger.run = _FakeRun()  # no wandb.init: only the payload is built
    logger.log_summary(summary)
    logged = logger.run.logged
    if summary["pass_at_k"]:
        assert logged["pass@2"] == 0.2 and logged["accuracy"] == 0.1 and "pass_at_k_curve" in logged
    else:
        assert "pass_at_k_curve" not in logged and logged["task/distinct_2"] == 0.5
        assert "distiller_loss_curve" in logged and logged["esamp/train_steps"] == 3
