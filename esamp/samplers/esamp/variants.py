"""The one home of ESamp's hyperparameters and knob values: the paper's variant and the public reference
code's (LinesHogan/tLLM). The sampler, the trainer and the Distiller bank take their defaults from here.

A variant names a whole set of choices: the hidden-state taps, the Distiller, its optimiser and the fusion
order.
- "paper": taps `layer0_to_final` (source = output of decoder layer 0, target = the final normed state, the LM
  head's input); two residual gated-SwiGLU blocks (intermediate 384); Adam lr 4e-4, eps 1e-4, grad-norm clip
  0.5; order `fuse_then_scale`: the base filter decides candidates on the model's logits, fuse, then divide
  by T and sample.
- "tllm": taps `input_norms` (source/target = outputs of layers[0] / layers[-1] input_layernorm); one low-rank
  gated residual block with an affine LayerNorm (rank 64); torch.optim.AdamW(params, lr=1e-3) with AdamW's
  defaults (weight decay 0.01, eps 1e-8) and no gradient clipping (grad_clip 0 = off); order
  `scale_then_fuse`: logits / T -> filters -> fuse with the unscaled distiller logit.
"""
from __future__ import annotations

import warnings
from typing import Any

VARIANT_NAMES = ("paper", "tllm")

# Both variants: the loss averaged over hidden units (Algorithm 1; "sum" is Eq. 10), and the Distiller-learning
# study's switches off.
_COMMON = dict(betas=(0.9, 0.999), loss_reduction="mean", input_norm="none", output_bias="none")

# Distiller + optimiser per variant (any can be overridden by sampler.distiller.*).
VARIANTS: dict[str, dict[str, Any]] = {
    "paper": dict(kind="paper", intermediate=384, init_down="linear", optimizer="adam", lr=4e-4, eps=1e-4,
                  weight_decay=0.0, grad_clip=0.5, **_COMMON),
    "tllm": dict(kind="tllm", rank=64, optimizer="adamw", lr=1e-3, eps=1e-8, weight_decay=0.01, grad_clip=0.0,
                 **_COMMON),
}
PAPER = VARIANTS["paper"]  # the trainer's and the bank's defaults

# sampler.distiller.* keys that only make sense for one Distiller kind
KIND_KEYS = {"paper": ("intermediate", "init_down"), "tllm": ("rank",)}
OPTIMISER_KEYS = ("lr", "eps", "betas", "weight_decay", "grad_clip", "optimizer", "loss_reduction", "input_norm",
                  "output_bias")  # the last two: the Distiller-learning study's switches (see distiller.py)

# ----------------------------------------------------------------------------------- knob values
TAPS = ("layer0_to_final", "input_norms")
FUSIONS = ("extrapolate", "subtract")  # (1 + beta) ref - beta dist | the ablation ref - beta dist
FUSION_ORDERS = ("fuse_then_scale", "scale_then_fuse")  # is the distiller logit divided by T (first) or not
STATES = ("per_prompt", "shared")
ERRORS = ("distiller", "noise")
VARIANT_TAPS = dict(zip(VARIANT_NAMES, TAPS))
VARIANT_ORDERS = dict(zip(VARIANT_NAMES, FUSION_ORDERS))

# Old names (committed runs' configs use them): accepted with a warning, recorded under the new name.
DEPRECATED: dict[str, dict[str, str]] = {
    "taps": dict(VARIANT_TAPS),
    "fusion": {"paper": "extrapolate", "naive": "subtract"},
    "fusion_order": dict(VARIANT_ORDERS),
}


def current_value(key: str, value: Any, warn: bool = True) -> Any:
    """sampler.<key>'s value under its current name (an old name is translated, with a FutureWarning)."""
    new = DEPRECATED.get(key, {}).get(value) if isinstance(value, str) else None
    if new is None:
        return value
    if warn:
        warnings.warn(f"sampler.{key}={value} is deprecated: it is now called sampler.{key}={new} (same "
                      "behaviour; results.json records the new name)", FutureWarning, stacklevel=3)
    return new


def canonical_settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """A sampler config with old knob names translated (silently): what a resume compares."""
    return {k: current_value(k, v, warn=False) for k, v in cfg.items()}
