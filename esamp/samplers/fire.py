"""FIRE: Flaming-hot Initiation with Regular Execution (Chen et al. 2024, arXiv 2410.21236).

The first generated token is drawn at a very high temperature, restricted to the model's top-k candidates
for that position; every later token comes from the ordinary base sampler (temperature / top-k / top-p /
min-p, `esamp.samplers.truncation`). The paper's argument: early tokens act as attention sinks, so a
diverse first token diversifies the whole answer, while the regular execution keeps the rest coherent.
It is one of the ESamp paper's baselines.

Defaults. The paper describes the first temperature only as "p >> 1" (near uniform) combined with top-k;
we could not check its exact numbers offline, so the defaults are our reading of that description:
`first_temperature: 30` and `first_top_k: 16` give an almost uniform draw over the 16 most likely first
tokens (at T = 30 two logits 3 apart differ by 10% in probability). Without `first_top_k` a temperature
that high samples nearly uniformly from the whole vocabulary (mostly garbage): set a top-k with it.

EOS at step 0 is masked before the top-k: with EOS among the top-k a near-uniform first draw would end ~1/k
of the samples before they start (an empty completion is no diverse answer); the paper's FIRE samples the
first token of an answer. So the first token is drawn among the top-k non-EOS tokens. The ESamp paper's grid
for FIRE's first temperature is {10, 30, 50} (`experiment=` or `sampler.first_temperature=`); our default 30
is its middle.

Order at step 0: mask EOS -> logits / first_temperature -> first_top_k -> sample. The base sampler's own top-k /
top-p / min-p do not apply to the first token (FIRE restricts it by its own top-k only); they apply from
step 1 on, exactly as in `TruncationSampler`. Step 0 is `view.prefill` (the position of the prompt's last
token), and rows draw with their own uniforms, so FIRE keeps the loop's per-row reproducibility.
"""
from __future__ import annotations

from typing import Any

import torch

from esamp import checks
from esamp.samplers.base import Choice, StepView
from esamp.samplers.truncation import ORDER, TruncationSampler, sample, truncate


class FireSampler(TruncationSampler):
    def __init__(self, *, n: int, first_temperature: float, first_top_k: int | None, temperature: float,
                 top_k: int | None, top_p: float | None, min_p: float | None, name: str):
        super().__init__(n=n, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, name=name)
        self.first_temperature = checks.number("sampler.first_temperature", first_temperature, above=0)
        self.first_top_k = checks.integer("sampler.first_top_k", first_top_k, null=True)

    def first_logits(self, logits, eos_ids=()):
        """The flaming-hot distribution's logits for step 0: EOS masked, logits / first_temperature, then
        first_top_k."""
        x = logits.float()
        if len(eos_ids):
            x = x.index_fill(-1, torch.as_tensor(list(eos_ids), device=x.device), float("-inf"))
        return truncate(x / self.first_temperature, top_k=self.first_top_k)

    def choose(self, view: StepView) -> Choice:
        if view.prefill:
            return Choice(sample(self.first_logits(view.logits(), view.lm.eos_token_ids), view.uniform))
        return super().choose(view)  # regular execution: exactly the base sampler

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(first_temperature=self.first_temperature, first_top_k=self.first_top_k,
                 first_token_eos="masked",
                 order=f"first token: mask EOS -> logits / first_temperature -> first_top_k -> sample; then {ORDER}")
        return d
