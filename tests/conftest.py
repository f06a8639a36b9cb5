"""Shared fixtures: tiny in-process models (no files, no network) and paths to the shared data."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from esamp.configs import from_yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
MATH_FIXTURE = FIXTURES / "math500_tiny.jsonl"


def shared_data_dir() -> Path | None:
    """$ESAMP_DATA_DIR, else ../shared/data beside the checkout (as in CI); None when absent."""
    env = os.environ.get("ESAMP_DATA_DIR")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand
    return None


def make_sampler(option: str, **overrides):
    """conf/sampler/<option>.yaml with `overrides` (esamp.configs.from_yaml; `as_class=` for a test subclass)."""
    return from_yaml("sampler", option, **overrides)


def make_task(option: str, **overrides):
    """conf/task/<option>.yaml with `overrides`."""
    return from_yaml("task", option, **overrides)


def tiny_cfg(**kw):
    base = dict(source="tiny_random", arch="llama", dtype="float32", seed=0, init_scale=1.0)
    base.update(kw)
    return OmegaConf.create(base)


@pytest.fixture(scope="session")
def tiny_lm():
    from esamp.models import load_model

    return load_model(tiny_cfg())


@pytest.fixture(scope="session")
def peaked_lm():
    """Larger init scale: peaked distributions, so truncation and fusion choices matter."""
    from esamp.models import load_model

    return load_model(tiny_cfg(init_scale=4.0, seed=1))


def run_py(args: list[str], env_extra: dict | None = None, timeout: int = 300):
    """Run `python run.py ...` as a real subprocess from the repo root."""
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", **(env_extra or {})}
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(autouse=True)
def _few_threads():
    # Tests are small; fewer intra-op threads keeps them fast and comparable on 2-core CI machines.
    old = torch.get_num_threads()
    torch.set_num_threads(min(old, 2))
    yield
    torch.set_num_threads(old)
