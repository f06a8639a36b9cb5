"""The `hf` engine: the project's own decoding loop over a Hugging Face model (`esamp.generation`)."""
from __future__ import annotations

from importlib import metadata
from typing import Any

from esamp.generation import GenerationOutput, generate
from esamp.models import LoadedModel, load_model


class HfEngine:
    name = "hf"

    def load(self, model_cfg) -> LoadedModel:
        return load_model(model_cfg)

    def generate(self, lm: LoadedModel, sampler, prompts, problem_ids, **kw) -> GenerationOutput:
        return generate(lm, sampler, prompts, problem_ids, **kw)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": metadata.version("transformers"), "package": "transformers"}

    def close(self) -> None:
        pass
