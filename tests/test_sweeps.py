"""Sweeps: a 2x2 Hydra multirun on the tiny model (one folder per job under one sweep folder), the
aggregation of its results (esamp.analysis.sweep, esamp.cli.aggregate), and the composition of the experiment
presets and of the SLURM launcher config (which cannot run here)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
FIXTURE = ROOT / "tests" / "fixtures" / "math500_tiny.jsonl"


def _compose(overrides: list[str], hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # submitit_slurm.yaml matches the plugin's schema (deprecation note)
            return compose("config", overrides=overrides, return_hydra_config=hydra)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("sweep")
    data = tmp / "data"
    data.mkdir()
    shutil.copy(FIXTURE, data / "math500.jsonl")  # via $ESAMP_DATA_DIR: keeps '/' out of the job folder names
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "ESAMP_"))}
    env.update(ESAMP_DATA_DIR=str(data), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    root = tmp / "multirun"
    cmd = [sys.executable, "run.py", "-m", "sampler=temperature,min_p", "sampler.temperature=0.6,1.0",
           "model=tiny-random", "task.limit=2", "sampler.n=4", "task.max_new_tokens=8", f"hydra.sweep.dir={root}"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    return root


def test_multirun_one_folder_per_job(sweep):
    jobs = sorted(p.parent for p in sweep.rglob("results.json"))
    assert len(jobs) == 4
    assert all(j.parent == sweep for j in jobs)  # direct children of the sweep folder
    names = [j.name for j in jobs]
    assert [n.split("_", 1)[0] for n in names] == ["0", "1", "2", "3"]
    assert all("sampler=" in n and "sampler.temperature=" in n for n in names)
    got = set()
    for j in jobs:
        r = json.loads((j / "results.json").read_text())
        got.add((r["sampler"]["name"], r["sampler"]["temperature"]))
        assert r["pass_at_k"]["k"] == [1, 2, 4] and r["samples"] == 8
    assert got == {("temperature", 0.6), ("temperature", 1.0), ("min_p", 0.6), ("min_p", 1.0)}


def test_collect_and_plots(sweep, tmp_path):
    from esamp.analysis.sweep import collect, plot_loss_curves, plot_passk, to_markdown

    df = collect(sweep)
    assert len(df) == 4
    for col in ("run_dir", "task", "model", "sampler", "temperature", "min_p", "n", "pass@1", "pass@2", "pass@4",
                "pass@4_lo", "pass@4_hi", "accuracy", "tokens_per_second", "label"):
        assert col in df.columns, col
    assert set(df["task"]) == {"math500"} and set(df["n"]) == {4}
    assert df["label"].is_unique and "min_p temperature=0.6" in set(df["label"])
    assert ((df["pass@1"] <= df["pass@4"]) & (df["pass@4_lo"] <= df["pass@4"])).all()
    assert to_markdown(df).count("\n") == 2 + 4

    png = tmp_path / "p.png"
    plot_passk(df, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_passk(sweep, tmp_path / "from_path.png")  # a folder works as well as a frame
    assert plot_loss_curves(df, tmp_path / "loss.png") is None and not (tmp_path / "loss.png").exists()


def test_loss_curves_for_esamp_runs(sweep, tmp_path):
    """A results.json with ESamp telemetry (written by hand: the tiny sweep runs no ESamp) gets a loss plot."""
    from esamp.analysis.sweep import collect, plot_loss_curves

    fake = tmp_path / "runs" / "esamp"
    fake.mkdir(parents=True)
    r = json.loads(next(sweep.rglob("results.json")).read_text())
    r["sampler"] = {"name": "esamp", "n": 4, "temperature": 1.0, "beta": 0.25, "distiller": {"lr": 4e-4}}
    r["sampler_telemetry"] = {"loss_curve": [2.0, 1.0, 0.5, float("nan")], "train_steps": 9, "last_loss": 0.5}
    (fake / "results.json").write_text(json.dumps(r))
    df = collect([sweep, fake])
    assert len(df) == 5 and df.loc[df["sampler"] == "esamp", "beta"].item() == 0.25
    assert df.loc[df["sampler"] == "esamp", "distiller.lr"].item() == 4e-4
    assert plot_loss_curves(df, tmp_path / "loss.png") is not None and (tmp_path / "loss.png").exists()


def test_aggregate_command_line(sweep, tmp_path, capsys):
    from esamp.cli.aggregate import main

    out = tmp_path / "summary"
    assert main([str(sweep), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "| task |" in stdout and "pass@4" in stdout
    for name in ("summary.csv", "summary.md", "passk.png"):
        assert (out / name).stat().st_size > 0, name
    import pandas as pd

    assert len(pd.read_csv(out / "summary.csv")) == 4
    assert main([str(tmp_path / "empty")]) == 2
    assert "error:" in capsys.readouterr().err


def test_submitit_slurm_config_composes():
    cfg = _compose(["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu"], hydra=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.timeout_min > 0
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "submitit_slurm"
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher.submitit_launcher")
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf

    # every field of the plugin's schema is set (the yaml replaces the plugin's own entry)
    assert set(SlurmQueueConf.__dataclass_fields__) <= set(launcher.keys())


@pytest.mark.parametrize("name", ["smoke", "sampler_comparison", "beta_sweep", "demo"])
def test_experiment_presets_compose(name):
    text = (CONF / "experiment" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_")
    cfg = _compose([f"experiment={name}"], hydra=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params) if cfg.hydra.sweeper.params is not None else {}
    if name == "smoke":
        assert cfg.model.source == "tiny_random" and cfg.task.limit == 2
    elif name == "demo":  # the main job of `make run`: level-1 MATH-500 problems with the offline Qwen 0.5B
        assert cfg.model.name.startswith("qwen2.5-coder-0.5b") and cfg.task.subset == {"level": [1]}
    elif name == "beta_sweep":
        assert cfg.sampler.name == "esamp" and params == {"sampler.beta": "0,0.1,0.25,0.5"}
        for beta in (0, 0.1, 0.25, 0.5):  # every job of the sweep composes
            assert _compose([f"experiment={name}", f"sampler.beta={beta}"]).sampler.beta == beta
    else:
        samplers = params["sampler"].split(",")
        assert "esamp" in samplers and "min_p" in samplers
        for s in samplers:
            if (CONF / "sampler" / f"{s}.yaml").exists():
                assert _compose([f"experiment={name}", f"sampler={s}"]).sampler.n == cfg.sampler.n


def test_sweep_subdir_is_one_safe_folder_name():
    import esamp  # noqa: F401  (registers the config resolvers)

    cfg = _compose(["task.data_path=/data/math500.jsonl", "model=qwen2.5-7b-instruct",
                    "model.path=Qwen/Qwen2.5-7B-Instruct", "sampler=min_p",
                    "sampler.temperature=0.6"] + [f"+x{i}=value_{i}_" + "y" * 30 for i in range(8)], hydra=True)
    from hydra.core.hydra_config import HydraConfig

    with open_dict(cfg):
        cfg.hydra.job.num = 3
    HydraConfig.instance().set_config(cfg)
    subdir = str(cfg.hydra.sweep.subdir)
    assert "/" not in subdir and "\\" not in subdir and len(subdir.encode()) <= 255, subdir
    assert subdir.startswith("3_")
