"""The model side of the vLLM engine: every `conf/model` source becomes an HF folder vLLM can load.

- `hub`: `model.path` as is (a hub id, offline from the HF cache, or a local folder);
- `gguf_wheel`: the bf16 safetensors folder `esamp.models` caches after its first GGUF dequantisation
  (`$ESAMP_CACHE_DIR/<name>-<dtype>`); made here through `esamp.models.load_model` when absent;
- `tiny_random`: the in-process tiny model saved once to `$ESAMP_CACHE_DIR/tiny-random-<hash of its config>`.
  vLLM's CPU attention has no kernel for head_dim 16 (the tests' default tiny model): use head_dim 32 or 64,
  e.g. `model.hidden_size=128 model.num_heads=2 model.num_kv_heads=1`.
The prompt is tokenised by the same HF tokenizer as the `hf` engine (`LoadedModel.encode`), so both engines
feed identical token ids, and completions are decoded by it too (same text for the same tokens).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from esamp.models import LoadedModel, cache_dir


@dataclass
class VllmModel(LoadedModel):
    """What the pipeline and tasks use of a model (tokenizer, chat template, name), plus the vLLM engine.
    `model` is None: the weights live inside vLLM."""

    folder: str = ""
    llm: Any = None
    eos_ids: list[int] = field(default_factory=list)
    hidden: int = 0

    @property
    def eos_token_ids(self) -> list[int]:
        return self.eos_ids

    @property
    def hidden_size(self) -> int:
        return self.hidden


def model_folder(cfg) -> tuple[str, str]:
    """(folder or hub id for vLLM, source label) for a `conf/model` node."""
    source = cfg.source
    if source == "hub":
        return str(cfg.path), "hub"
    dtype = cfg.get("dtype", "bfloat16")
    if source == "gguf_wheel":
        # the folder name esamp.models._load_gguf_wheel writes
        folder = cache_dir() / f"{cfg.name}-{dtype}"
        if not _complete(folder):
            from esamp.models import load_model

            load_model(cfg)  # dequantises the GGUF once and caches the folder (transformers' GGUF loader)
            if not _complete(folder):
                raise FileNotFoundError(f"model {cfg.name}: expected a cached HF folder at {folder} after conversion")
        return str(folder), "gguf_wheel(cached)"
    if source == "tiny_random":
        return str(_tiny_folder(cfg)), "tiny_random"
    raise ValueError(f"model.source={source!r} is invalid with engine=vllm: allowed values are hub, gguf_wheel, "
                     "tiny_random")


def _complete(folder: Path) -> bool:
    return (folder / "config.json").exists() and (folder / "tokenizer_config.json").exists()


def _tiny_folder(cfg) -> Path:
    """Save the tiny random model once per config (same weights as `esamp.models.build_tiny_random`)."""
    import torch

    from esamp.models import DTYPES, build_tiny_random

    spec = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in ("device", "name")}
    key = hashlib.blake2b(json.dumps(spec, sort_keys=True).encode(), digest_size=6).hexdigest()
    folder = cache_dir() / f"tiny-random-{key}"
    if _complete(folder):
        return folder
    lm = build_tiny_random(cfg, DTYPES[cfg.get("dtype", "float32")])
    head_dim = lm.model.config.hidden_size // lm.model.config.num_attention_heads
    if head_dim % 32:
        raise ValueError(f"model {cfg.get('name', 'tiny-random')}: head_dim {head_dim} has no vLLM CPU attention "
                         "kernel; use e.g. model.hidden_size=128 model.num_heads=2 model.num_kv_heads=1")
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    with torch.no_grad():
        lm.model.save_pretrained(tmp)
    lm.tokenizer.save_pretrained(tmp)
    if _complete(folder):  # another process saved it first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.replace(folder)
    return folder


def eos_ids(folder: str, tokenizer) -> list[int]:
    """The same EOS set as `LoadedModel.eos_token_ids` (generation config, model config, tokenizer)."""
    ids: set[int] = set()
    for name in ("generation_config.json", "config.json"):
        path = Path(folder) / name
        if path.exists():
            eos = json.loads(path.read_text()).get("eos_token_id")
            if eos is not None:
                ids.update([eos] if isinstance(eos, int) else eos)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)
