"""Contrastive decoding (CD): an expert model steered away from what a weaker amateur also finds likely.

Li et al. 2023, "Contrastive Decoding: Open-ended Text Generation as Optimization" (ACL 2023), and the
reasoning version of O'Brien & Lewis 2023, "Contrastive Decoding Improves Reasoning in Large Language
Models" (arXiv 2309.09117). It is the ESamp paper's other baseline (with FIRE).

The decoding loop runs the EXPERT (the run's `model`); this sampler owns the AMATEUR (`sampler.amateur`, a
node of the `model` config group, loaded once when the first batch begins) and decodes it alongside in its
own `esamp.kvcache.ModelStream`, the helper the loop runs the expert in: a prompt entering slot g is
prefilled on the amateur alone (batch 1) and its K/V copied into the slot's n rows; at each decode step the
amateur takes the token every row fed (`StepView.input_ids`) at that row's own position. So the amateur's
logits at every step are those of a plain forward on the row's prompt + generated tokens, and a row's
samples stay independent of its batch neighbours.

At each position, with expert logits s_e and amateur logits s_a (over the shared vocabulary):
    V_head = { x : p_e(x) >= alpha * max_y p_e(y) }              the plausibility cut (alpha = 0.1)
    formula li:      score(x) = log p_e(x) - log p_a(x)             (p_a at `amateur_temperature`)
    formula obrien:  score(x) = (1 + beta) * s_e(x) - beta * s_a(x)  (s_a / amateur_temperature; beta 0.5)
    score(x) = -inf outside V_head
then the base sampler on the score: score / temperature -> top_k -> top_p -> min_p -> inverse-CDF sample
with the row's own uniform (`esamp.samplers.truncation.sample`); temperature 0 is greedy CD (the original
search: argmax of the score in V_head).

Default formula: `obrien`, the form published for SAMPLING (O'Brien & Lewis, with the plausibility cut);
Li et al.'s log-probability difference was defined as a search objective (greedy / beam over V_head): sampled,
it spreads mass evenly over V_head where the two models agree. `formula=li` keeps it selectable.

Expert and amateur must share a tokenizer (same vocabulary, checked when the batch begins); heads padded
beyond the tokenizer (Qwen pads 151,665 tokens to 151,936) are cut to the smaller head, and a column only
one head has is never chosen.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import torch

from esamp import checks
from esamp.kvcache import ModelStream
from esamp.samplers.base import BatchInfo, Choice, StepView
from esamp.samplers.truncation import ORDER, TruncationSampler, sample

FORMULAS = ("li", "obrien")


def amateur_config(amateur: Any) -> Any:
    """A LoadedModel as is (tests), or a model config node as a plain dict; anything else is a one-line
    ValueError naming sampler.amateur (checked at construction, before any model loads)."""
    from esamp.models import LoadedModel

    if isinstance(amateur, LoadedModel):
        return amateur
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(amateur, DictConfig):
            amateur = OmegaConf.to_container(amateur, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf comes with hydra
        pass
    if not isinstance(amateur, Mapping) or not amateur.get("source"):
        raise ValueError(f"sampler.amateur={amateur!r} is invalid: allowed values are a model config with a `source` "
                         "(on the command line: model@sampler.amateur=qwen2.5-coder-0.5b-pypi)")
    return dict(amateur)


class ContrastiveSampler(TruncationSampler):
    def __init__(self, *, amateur: Any, n: int, alpha: float, formula: str, beta: float,
                 amateur_temperature: float, temperature: float, top_k: int | None, top_p: float | None,
                 min_p: float | None, name: str):
        super().__init__(n=n, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, name=name)
        self.alpha = checks.number("sampler.alpha", alpha, above=0, at_most=1)
        self.formula = checks.one_of("sampler.formula", formula, FORMULAS)
        self.beta = checks.number("sampler.beta", beta, at_least=0)
        self.amateur_temperature = checks.number("sampler.amateur_temperature", amateur_temperature, above=0)
        self.amateur_cfg = amateur_config(amateur)
        self.amateur = self.amateur_cfg if not isinstance(self.amateur_cfg, dict) else None
        self._checked: set[int] = set()   # id() of expert models whose vocabulary matched
        self._stream: ModelStream | None = None
        self._load_seconds = 0.0
        self._head_sum = self._head_rows = None  # V_head sizes of active rows (device sums, read at end)

    # ------------------------------------------------------------------ the score
    def scores(self, expert: torch.Tensor, amateur: torch.Tensor) -> torch.Tensor:
        """(B, V_e) expert and (B, V_a) amateur logits -> (B, V_e) contrastive scores, -inf outside V_head
        (and in columns only the expert's head has)."""
        vocab = min(expert.shape[-1], amateur.shape[-1])
        e, a = expert[:, :vocab].float(), amateur[:, :vocab].float()
        if self.amateur_temperature != 1:
            a = a / self.amateur_temperature
        # p_e(x) >= alpha * max p_e  <=>  s_e(x) - max s_e >= log(alpha)  (no softmax needed)
        head = e >= e.amax(-1, keepdim=True) + math.log(self.alpha)
        if self.formula == "li":
            score = e.log_softmax(-1) - a.log_softmax(-1)
        else:
            score = (1 + self.beta) * e - self.beta * a
        score = score.masked_fill_(~head, float("-inf"))
        if vocab < expert.shape[-1]:
            score = torch.nn.functional.pad(score, (0, expert.shape[-1] - vocab), value=float("-inf"))
        return score

    def choose(self, view: StepView) -> Choice:
        score = self.scores(view.logits(), self.amateur_logits(view))
        self._count_head(score, view.active)
        if self.temperature == 0:
            return Choice(score.argmax(-1))
        return Choice(sample(self.filtered(score), view.uniform))

    # ------------------------------------------------------------------ the amateur alongside the loop
    def begin(self, info: BatchInfo) -> None:
        if self.amateur is None:
            from omegaconf import OmegaConf

            from esamp.models import load_model

            t0 = time.perf_counter()
            self.amateur = load_model(OmegaConf.create(self.amateur_cfg))
            self._load_seconds = time.perf_counter() - t0
        if self.amateur.device != info.device:
            self.amateur.model.to(info.device)
        if id(info.lm.model) not in self._checked:
            check_vocab(info.lm, self.amateur)
            self._checked.add(id(info.lm.model))
        # the amateur's cache is sized at the first admission (the sampler sees prompt lengths one at a time)
        self._stream = ModelStream(self.amateur, info.num_prompts, self.n, info.max_new_tokens, info.device)
        self._slot_problem: list[str | None] = [None] * info.num_prompts
        self._first: list[torch.Tensor | None] = [None] * info.num_prompts  # amateur logits after the prompt
        self._head_sum = torch.zeros((), dtype=torch.float64, device=info.device)
        self._head_rows = torch.zeros((), dtype=torch.float64, device=info.device)

    def admit(self, slot: int, problem_id: str, prompt_ids: list[int] | None = None) -> None:
        if prompt_ids is None:
            raise RuntimeError("contrastive decoding needs the prompt's token ids at admit (the amateur's prefill)")
        out = self._stream.prefill(slot, prompt_ids)
        with torch.no_grad():
            self._first[slot] = self.amateur.lm_head(out.last_hidden_state[:, -1]).float()
        self._slot_problem[slot] = problem_id

    def amateur_logits(self, view: StepView) -> torch.Tensor:
        """(B, V_a) float32 amateur logits at every row's current position (at a prefill: the slot's prompt)."""
        if view.prefill:
            return self._first[view.slot].expand(view.hidden.shape[0], -1)
        hidden = self._stream.step(view.input_ids.to(self._stream.device))
        with torch.no_grad():
            return self.amateur.lm_head(hidden).float()

    def select_rows(self, keep: torch.Tensor) -> None:
        slots = (keep.view(-1, self.n)[:, 0] // self.n).tolist()
        self._stream.select(slots)
        for name in ("_slot_problem", "_first"):
            values = getattr(self, name)
            setattr(self, name, [values[g] for g in slots])

    def _count_head(self, score: torch.Tensor, active: torch.Tensor) -> None:
        if self._head_sum is None:  # choose() called outside a batch (unit tests on hand values)
            return
        kept = torch.isfinite(score).sum(-1).to(torch.float64)
        self._head_sum += (kept * active).sum()
        self._head_rows += active.sum()

    # ------------------------------------------------------------------ reporting
    def end(self) -> dict[str, Any]:
        rows = float(self._head_rows) if self._head_rows is not None else 0.0
        return {"amateur": self.amateur.name if self.amateur is not None else None,
                "amateur_load_seconds": round(self._load_seconds, 3),
                "head_size_sum": float(self._head_sum) if rows else 0.0, "head_rows": rows}

    def summarize(self, telemetry: list[dict[str, Any]]) -> dict[str, Any] | None:
        if not telemetry:
            return None
        rows = sum(t.get("head_rows", 0.0) for t in telemetry)
        size = sum(t.get("head_size_sum", 0.0) for t in telemetry)
        return {"amateur": telemetry[0].get("amateur"),
                "amateur_load_seconds": max(t.get("amateur_load_seconds", 0.0) for t in telemetry),
                "mean_head_size": size / rows if rows else None, "row_steps": int(rows)}

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        amateur = (self.amateur.name if self.amateur is not None
                   else self.amateur_cfg.get("name") or self.amateur_cfg.get("path"))
        score = "log p_e - log p_a" if self.formula == "li" else "(1 + beta) s_e - beta s_a"
        d.update(name=self.name, alpha=self.alpha, formula=self.formula, beta=self.beta,
                 amateur_temperature=self.amateur_temperature, amateur=amateur,
                 order=f"V_head = p_e >= alpha * max p_e; score = {score} on V_head (s_a / amateur_temperature); "
                       f"then on the score: {ORDER}")
        return d


def check_vocab(expert, amateur) -> None:
    """Expert and amateur must share a tokenizer; their heads must cover it. One-line ValueError if not."""
    if amateur is expert or amateur.tokenizer is expert.tokenizer:
        return
    ev, av = expert.tokenizer.get_vocab(), amateur.tokenizer.get_vocab()
    if ev != av:
        only = sorted(set(av.items()) ^ set(ev.items()), key=lambda kv: kv[1])[:3]
        raise ValueError(f"sampler.amateur={amateur.name!r} is invalid: its tokenizer differs from the model's "
                         f"({expert.name}: {len(ev)} vs {len(av)} tokens, e.g. {only}); allowed values are amateurs "
                         "sharing the expert's tokenizer (the same model family)")
    heads = (expert.lm_head.weight.shape[0], amateur.lm_head.weight.shape[0])
    if min(heads) < len(ev):
        raise ValueError(f"sampler.amateur={amateur.name!r} is invalid: LM heads of {heads[0]} (expert) and "
                         f"{heads[1]} (amateur) outputs do not cover the shared tokenizer's {len(ev)} tokens")
