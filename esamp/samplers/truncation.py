"""Greedy / temperature / top-k / top-p / min-p sampling, composable.

Order of operations (the Hugging Face `generate` order, recorded in every results.json):
    logits / T  ->  top-k  ->  top-p  ->  min-p  ->  sample from softmax
Each filter sees the distribution left by the previous one (renormalised). vLLM applies min-p before
top-k/top-p and differs slightly when several filters are combined. T = 0 means greedy (argmax).
"""
from __future__ import annotations

from typing import Any

import torch

from esamp.samplers.base import Choice, Sampler, StepView

ORDER = "temperature -> top_k -> top_p -> min_p -> sample (Hugging Face order)"


def check_params(temperature: float, top_k: int | None, top_p: float | None, min_p: float | None,
                 n: int) -> None:
    """Raise a one-line ValueError naming the bad key and the allowed values."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"sampler.n={n!r} is invalid: allowed values are integers >= 1")
    if temperature is None or temperature < 0:
        raise ValueError(f"sampler.temperature={temperature!r} is invalid: allowed values are >= 0 (0 = greedy)")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"sampler.top_k={top_k!r} is invalid: allowed values are null or an integer >= 1")
    if top_p is not None and not (0 < top_p <= 1):
        raise ValueError(f"sampler.top_p={top_p!r} is invalid: allowed values are null or in (0, 1]")
    if min_p is not None and not (0 <= min_p < 1):
        raise ValueError(f"sampler.min_p={min_p!r} is invalid: allowed values are null or in [0, 1)")


def truncate(scaled: torch.Tensor, top_k: int | None = None, top_p: float | None = None,
             min_p: float | None = None) -> torch.Tensor:
    """Apply top-k, top-p, min-p (in that order) to temperature-scaled logits (B, V) float32.
    Removed tokens become -inf; at least the most likely token always survives."""
    out = scaled
    if top_k is not None and top_k < out.shape[-1]:
        kth = torch.topk(out, top_k, dim=-1).values[..., -1:]
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(out, dim=-1, descending=False)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove_sorted = cum <= (1 - top_p)
        remove_sorted[..., -1] = False  # keep the top token
        remove = remove_sorted.scatter(-1, order, remove_sorted)
        out = out.masked_fill(remove, float("-inf"))
    if min_p is not None and min_p > 0:
        probs = out.softmax(-1)
        threshold = min_p * probs.max(dim=-1, keepdim=True).values
        out = out.masked_fill(probs < threshold, float("-inf"))
    return out


def sample(logits: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling from softmax(logits) with one given uniform per row.

    Using a caller-supplied uniform (instead of torch.multinomial's global generator) is what makes a
    row's sample a function of its own (seed, problem, sample index, step) only."""
    probs = logits.float().softmax(-1)
    cdf = probs.cumsum(-1)
    target = (uniform.to(cdf.dtype) * cdf[:, -1]).unsqueeze(-1)
    idx = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    return idx.clamp_(max=logits.shape[-1] - 1)


class TruncationSampler(Sampler):
    """The baseline samplers: greedy (temperature 0), temperature, top-k, top-p, min-p."""

    def __init__(self, n: int = 1, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, min_p: float | None = None, name: str | None = None):
        check_params(temperature, top_k, top_p, min_p, n)
        self.n, self.temperature, self.top_k, self.top_p, self.min_p = n, temperature, top_k, top_p, min_p
        self.name = name or self._default_name()

    def _default_name(self) -> str:
        if self.temperature == 0:
            return "greedy"
        for key in ("min_p", "top_p", "top_k"):
            if getattr(self, key) is not None:
                return key
        return "temperature"

    @property
    def has_filter(self) -> bool:
        return self.top_k is not None or (self.top_p is not None and self.top_p < 1) or bool(self.min_p)

    def filtered(self, logits: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
        """logits / T (the sampler's T unless given), then the truncation filters."""
        return truncate(logits / (temperature or self.temperature), self.top_k, self.top_p, self.min_p)

    def choose(self, view: StepView) -> Choice:
        logits = view.logits()
        if self.temperature == 0:
            return Choice(logits.argmax(-1))
        return Choice(sample(self.filtered(logits), view.uniform))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "n": self.n, "temperature": self.temperature, "top_k": self.top_k,
                "top_p": self.top_p, "min_p": self.min_p, "order": ORDER}
