"""One run sharded over processes (`torchrun` / `accelerate launch`, see esamp.pipeline.run): two CPU
processes give exactly the samples of one process, in one folder, with one results.json. The plain
single-process path never starts torch.distributed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "math500_tiny.jsonl"  # 3 problems
ARGS = ["model=tiny-random", "task.limit=3", "sampler.n=4", "task.max_new_tokens=8", "seed=1",
        f"task.data_path={FIXTURE}"]


def _samples(path: Path) -> set[tuple]:
    with open(path, encoding="utf-8") as f:
        return {(r["problem_id"], r["sample_index"], r["completion"]) for r in map(json.loads, f)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A plain in-process run (no launcher): the reference samples."""
    from hydra import compose, initialize_config_dir

    from esamp.pipeline import run

    out = tmp_path_factory.mktemp("one")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        run(compose("config", overrides=ARGS), out)
    return out


def test_single_process_path(reference):
    """No process group, no shard files, no `processes` entry."""
    import torch.distributed as dist

    from esamp.sharding import world_size

    assert world_size() == 1
    assert not (dist.is_available() and dist.is_initialized())
    assert "processes" not in json.loads((reference / "results.json").read_text())["timing"]
    assert sorted(p.name for p in reference.glob("samples*")) == ["samples.jsonl"]
    assert len(_samples(reference / "samples.jsonl")) == 12


def test_two_processes_same_samples(tmp_path, reference):
    one, two = reference, tmp_path / "two"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "ESAMP_"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    # Each process gets its OWN hydra.run.dir (as timestamped default folders may differ between
    # processes): everything must still land in the main process's folder.
    # `accelerate launch --multi_gpu` starts processes through torch.distributed (gloo on CPU); its `--cpu`
    # flag instead selects a single-process launcher unless mpirun is configured, so it would not shard.
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "run.py", *ARGS,
           f"hydra.run.dir={two}/rank${{oc.env:RANK}}"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-4000:]
    main, other = two / "rank0", two / "rank1"
    assert "process 0 of 2: 2 of 3 pending problems" in res.stdout
    assert "process 1 of 2: 1 of 3 pending problems" in res.stdout
    assert sorted(p.name for p in main.glob("samples*")) == ["samples.jsonl"]  # shards merged and removed
    assert not (other / "results.json").exists() and not list(other.glob("samples*"))

    assert _samples(main / "samples.jsonl") == _samples(one / "samples.jsonl")
    lines = (main / "samples.jsonl").read_text().splitlines()
    assert len(lines) == len({(json.loads(x)["problem_id"], json.loads(x)["sample_index"]) for x in lines}) == 12
    summary = json.loads((main / "results.json").read_text())
    ref = json.loads((one / "results.json").read_text())
    assert summary["timing"]["processes"] == 2
    assert summary["timing"]["tokens_generated"] == ref["timing"]["tokens_generated"]
    assert summary["pass_at_k"] == ref["pass_at_k"] and summary["samples"] == 12
