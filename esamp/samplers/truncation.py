"""Greedy / temperature / top-k / top-p / min-p sampling, composable.

Order of operations (the Hugging Face `generate` order, recorded in every results.json):
    logits / T  ->  top-k  ->  top-p  ->  min-p  ->  sample from softmax
Each filter sees the distribution left by the previous one (renormalised). vLLM applies min-p before
top-k/top-p and differs slightly when several filters are combined. T = 0 means greedy (argmax).
"""
from __future__ import annotations

from typing import Any

import torch

from esamp import checks
from esamp.samplers.base import Choice, Sampler, StepView

ORDER = "temperature -> top_k -> top_p -> min_p -> sample (Hugging Face order)"


def check_params(temperature: float, top_k: int | None, top_p: float | None, min_p: float | None,
                 n: int) -> None:
    """Raise a one-line ValueError naming the bad key and the allowed values."""
    checks.integer("sampler.n", n)
    checks.number("sampler.temperature", temperature, at_least=0, note="(0 = greedy)")
    checks.integer("sampler.top_k", top_k, null=True)
    checks.number("sampler.top_p", top_p, above=0, at_most=1, null=True)
    checks.number("sampler.min_p", min_p, at_least=0, below=1, null=True)


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


SAMPLE_BLOCK = 2048  # vocabulary block of the two-level inverse CDF


class NoProbabilityMass(ValueError):
    """Logits with no finite probability mass (NaN, +inf or every token -inf): no token can be sampled.
    `rows` are the offending row indices of the call; the decoding loop names their problem, sample and step."""

    def __init__(self, rows: list[int]):
        super().__init__(f"rows {rows} have no finite probability mass (NaN, +inf or all -inf logits)")
        self.rows = rows


def sample(logits: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling from softmax(logits) with one given uniform per row.

    Using a caller-supplied uniform (instead of torch.multinomial's global generator) is what makes a
    row's sample a function of its own (seed, problem, sample index, step) only.

    Two levels, sums in float64: with unnormalised weights w = exp(logit - max), the cumulative sums of the
    per-block sums pick the block holding u * total, and a cumulative sum inside that block alone picks the
    token. A full-vocabulary softmax + cumsum (the former kernel) costs
    several times more on a 152k vocabulary. A token of weight 0 (a -inf logit, or one a filter removed) is
    never picked, whatever u: the token is the first whose cumulative weight exceeds the target (the former
    kernel's float32 cast of u let u >= 1 - 2**-25 pick the last vocabulary id). Versus an exact float64 CDF
    the kernels differ only when u * total falls within float rounding of a block or token boundary."""
    x = logits.float()
    rows, vocab = x.shape
    w = torch.sub(x, x.amax(-1, keepdim=True)).exp_()  # one fresh tensor; exp in place
    full = vocab // SAMPLE_BLOCK * SAMPLE_BLOCK
    # float64 block sums: float32 ones (5x cheaper) move token boundaries by ~1e-7 of a block's mass
    block_sum = w[:, :full].view(rows, -1, SAMPLE_BLOCK).sum(-1, dtype=torch.float64)
    if full < vocab:
        block_sum = torch.cat([block_sum, w[:, full:].sum(-1, keepdim=True, dtype=torch.float64)], dim=1)
    block_cum = block_sum.cumsum(-1)
    total = block_cum[:, -1]
    ok = torch.isfinite(total) & (total > 0)  # NaN anywhere in a row, or no token left, poisons its total
    if x.device.type == "cpu":
        if not bool(ok.all()):
            raise NoProbabilityMass((~ok).nonzero().squeeze(1).tolist())
    else:  # no host sync per step on a GPU: a device-side assert stops the run instead
        torch._assert_async(ok.all(), "sample(): logits with no finite probability mass (NaN or all -inf)")
    target = uniform.to(torch.float64).view(-1, 1) * block_cum[:, -1:]
    last_block = block_sum.shape[1] - 1 - (block_sum > 0).flip(-1).to(torch.uint8).argmax(-1, keepdim=True)
    b = torch.minimum(torch.searchsorted(block_cum, target, right=True), last_block)  # a block of weight > 0
    before = torch.where(b > 0, block_cum.gather(-1, (b - 1).clamp_min(0)), 0.0)
    cols = b * SAMPLE_BLOCK + torch.arange(SAMPLE_BLOCK, device=x.device)
    inner = w.gather(1, cols.clamp(max=vocab - 1)).masked_fill_(cols >= vocab, 0.0).double()
    idx = torch.searchsorted(inner.cumsum(-1) + before, target, right=True)
    last_in = SAMPLE_BLOCK - 1 - (inner > 0).flip(-1).to(torch.uint8).argmax(-1, keepdim=True)
    return (b * SAMPLE_BLOCK + torch.minimum(idx, last_in)).squeeze(-1)


class TruncationSampler(Sampler):
    """The baseline samplers: greedy (temperature 0), temperature, top-k, top-p, min-p."""

    def __init__(self, *, n: int, temperature: float, top_k: int | None, top_p: float | None,
                 min_p: float | None, name: str):
        check_params(temperature, top_k, top_p, min_p, n)
        self.n, self.temperature, self.top_k, self.top_p, self.min_p = n, temperature, top_k, top_p, min_p
        self.name = name

    @property
    def has_filter(self) -> bool:
        return self.top_k is not None or (self.top_p is not None and self.top_p < 1) or bool(self.min_p)

    def filtered(self, logits: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
        """logits / T (the sampler's T unless given), then the truncation filters."""
        t = temperature or self.temperature
        return truncate(logits if t == 1 else logits / t, self.top_k, self.top_p, self.min_p)

    def choose(self, view: StepView) -> Choice:
        logits = view.logits()
        if self.temperature == 0:
            return Choice(logits.argmax(-1))
        return Choice(sample(self.filtered(logits), view.uniform))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "n": self.n, "temperature": self.temperature, "top_k": self.top_k,
                "top_p": self.top_p, "min_p": self.min_p, "order": ORDER}
