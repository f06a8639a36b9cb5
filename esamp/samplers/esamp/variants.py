"""The two ESamp variants in one table: the paper's, and the public reference code's (LinesHogan/tLLM).

A variant names a whole set of choices: the hidden-state taps, the Distiller, its optimiser and the fusion
order. Every module that offers a per-variant choice reads its names from here.
- "paper": source = output of decoder layer 0, target = the final normed state (the LM head's input); two
  residual gated-SwiGLU blocks (intermediate 384); Adam lr 4e-4, eps 1e-4, grad-norm clip 0.5; the base
  filter decides candidates on the model's logits, fuse, sample at T.
- "tllm": source/target = outputs of layers[0] / layers[-1] input_layernorm; one low-rank gated residual block
  with an affine LayerNorm (rank 64); torch.optim.AdamW(params, lr=1e-3) with AdamW's defaults (weight decay
  0.01, eps 1e-8) and no gradient clipping (grad_clip 0 = off); logits / T -> filters -> fuse with the
  unscaled distiller logit.
"""
from __future__ import annotations

VARIANT_NAMES = ("paper", "tllm")

# Distiller + optimiser defaults per variant (any can be overridden by sampler.distiller.*).
VARIANTS: dict[str, dict] = {
    "paper": dict(kind="paper", intermediate=384, optimizer="adam", lr=4e-4, eps=1e-4, betas=(0.9, 0.999),
                  weight_decay=0.0, grad_clip=0.5),
    "tllm": dict(kind="tllm", rank=64, optimizer="adamw", lr=1e-3, eps=1e-8, betas=(0.9, 0.999),
                 weight_decay=0.01, grad_clip=0.0),
}

# sampler.distiller.* keys that only make sense for one Distiller kind
KIND_KEYS = {"paper": ("intermediate", "init_down"), "tllm": ("rank",)}
OPTIMISER_KEYS = ("lr", "eps", "betas", "weight_decay", "grad_clip", "optimizer", "loss_reduction", "input_norm",
                  "output_bias")  # the last two: the Distiller-learning study's switches (see distiller.py)
