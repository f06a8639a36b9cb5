"""OverRIDE: Diverse Text Decoding via Iterative Reweighting (Shi et al., ICLR 2026; code github:shi-rq/OverRIDE).

A prompt's n samples form `rounds` rounds of n / rounds samples each (the public code: n = 10 samples, 10
iterations, one sample per round). Round j has a guidance model q_j = softmax(logits + B_j A_j h), a rank-16
LoRA adapter on the LM head (`esamp.samplers.override_heads`), fresh for every prompt. At every decode step:
    reweighted logits of round j's rows = logits - lambda * (B_{j-1} A_{j-1} h)      (round 0: the logits)
    i.e. pi_j(x) ∝ p(x) * (p(x) / q_{j-1}(x))^lambda: tokens the previous round's guidance model learned to
    expect (more than the base model does) lose probability; then / T -> top-k -> top-p -> min-p -> sample;
    then one Adam step (lr 1e-3) per head j on cross-entropy(logits + B_j A_j h, the token round j sampled),
    averaged over round j's active rows.

Schedule: rounds run concurrently, as in the public code (both its vLLM 0.11 `main` and 0.8.5 branches): vLLM
samples a request's n children in one batch, child i (request id "i_<parent>") is round i (modeling.py,
`_get_processor_idx_from_request_id`), round i's logits use head i-1 (`_compute_reweighted_logits`) and
gpu_model_runner.py calls `update_reweighting_head` (one Adam step on cross-entropy) after every sampling step.
So round j's guidance model has learned round j-1's tokens up to the previous decode step: the rounds are
pipelined, not strictly sequential. It plugs into the one decoding loop through the Sampler hooks without
changing it. Sequential rounds (all of round j-1 finished and trained before round j starts) would need a loop
that holds rows back; not implemented. Settings from config/default.yaml and scripts/override.sh: lambd 0.8
(0.4 for Mistral/Llama), num_iteration 10 with n 10, rank 16, learning_rate 1e-3.

Where this differs from the public code, for batch invariance (a sample depends only on seed, problem,
sample index and config): its heads are keyed by sample index only and shared by all prompts of a vLLM
batch, never reset; here every prompt has its own heads, drawn from (seed, problem id) at admission. Its
loss is one mean over all rows of the batch; here each head's loss is the mean over its own round's rows.
A round's rows use head j-1 for every round j >= 1 (the public code leaves samples with index >=
num_iteration unweighted; `rounds` here is the number of iterations and must divide n).
"""
from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from esamp import checks
from esamp.samplers.base import BatchInfo, Choice, StepView
from esamp.samplers.override_heads import INIT_STD, PromptGuidance
from esamp.samplers.truncation import TruncationSampler, sample
from esamp.seeding import prompt_generator

KL_EVERY = 8  # decode steps between KL measurements: 3 full-vocabulary passes per row cost as much as the training
SUMS = ("train_loss_sum", "base_loss_sum", "train_loss_steps", "kl_sum", "kl_rows", "adapter_norm_sum",
        "adapter_norm_prompts")


class OverrideSampler(TruncationSampler):
    def __init__(self, *, n: int, lambd: float, rounds: int | None, rank: int, learning_rate: float,
                 temperature: float, top_k: int | None, top_p: float | None, min_p: float | None, name: str):
        super().__init__(n=n, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, name=name)
        self.lambd = checks.number("sampler.lambd", lambd, at_least=0)
        self.rounds = n if rounds is None else checks.integer("sampler.rounds", rounds)
        if n % self.rounds:
            raise ValueError(f"sampler.rounds={rounds!r} is invalid with sampler.n={n}: allowed values divide n "
                             "(null: n, one sample per round)")
        self.rank = checks.integer("sampler.rank", rank)
        self.learning_rate = checks.number("sampler.learning_rate", learning_rate, above=0)
        self.per_round = n // self.rounds
        self._info: BatchInfo | None = None
        self._slots: list[PromptGuidance | None] = []
        self._tel = self._empty_telemetry()

    def _empty_telemetry(self) -> dict[str, Any]:
        tel: dict[str, Any] = {k: [0.0] * self.rounds for k in SUMS}
        tel.update(train_steps=0, decode_steps=0, prompts=0, train_seconds=0.0, reweight_seconds=0.0,
                   setup_seconds=0.0)
        return tel

    # ------------------------------------------------------------------------------------- prompt life
    def begin(self, info: BatchInfo) -> None:
        self._info = info
        self._slots = [None] * info.num_prompts

    def admit(self, slot: int, problem_id: str, prompt_ids: list[int] | None = None) -> None:
        """Fresh guidance models for the prompt entering `slot`, drawn from (seed, problem id) only."""
        self._retire(slot)
        t0 = time.perf_counter()
        gen = prompt_generator(self._info.seed, problem_id, self._info.device)
        self._slots[slot] = PromptGuidance(self._info.lm.lm_head.weight, self.rounds, self.rank,
                                           self.learning_rate, gen)
        self._tel["prompts"] += 1
        self._tel["setup_seconds"] += time.perf_counter() - t0

    def _retire(self, slot: int) -> None:
        """The prompt in `slot` is done: record its adapters' norms (telemetry), free them."""
        guide = self._slots[slot]
        if guide is not None:
            for j, head in enumerate(guide.heads):
                self._tel["adapter_norm_sum"][j] += head.norm()
                self._tel["adapter_norm_prompts"][j] += 1
        self._slots[slot] = None

    def select_rows(self, keep: torch.Tensor) -> None:
        kept = (keep[:: self.n] // self.n).tolist()  # whole slots leave, in order
        for g in set(range(len(self._slots))) - set(kept):
            self._retire(g)
        self._slots = [self._slots[g] for g in kept]

    # ------------------------------------------------------------------------------------- one step
    def choose(self, view: StepView) -> Choice:
        with torch.no_grad():  # the base logits are data: only the guidance adapters are trained
            logits = view.logits()
        slots = [view.slot] if view.prefill else list(range(len(self._slots)))
        if logits.shape[0] != len(slots) * self.n:
            raise RuntimeError(f"override: {logits.shape[0]} rows for {len(slots)} slots of n = {self.n}")
        if not torch.equal(view.rows.view(len(slots), self.n) % self.n,
                           torch.arange(self.n, device=view.rows.device).expand(len(slots), -1)):
            raise RuntimeError("override: the loop's rows are not slot-major in sample order")
        t0 = time.perf_counter()
        reweighted = self._reweight(logits, view.hidden, slots, view.active)
        t1 = time.perf_counter()
        if self.temperature == 0:
            tokens = reweighted.argmax(-1)
        else:
            tokens = sample(self.filtered(reweighted), view.uniform)
        t2 = time.perf_counter()
        self._train(logits, view.hidden, tokens, slots, view.active)
        self._tel["reweight_seconds"] += t1 - t0
        self._tel["train_seconds"] += time.perf_counter() - t2
        self._tel["decode_steps"] += 1
        return Choice(tokens)

    def reweighted_logits(self, logits: torch.Tensor, hidden: torch.Tensor, slot: int) -> torch.Tensor:
        """The reweighted logits of one slot's n rows (before temperature and filters), for inspection."""
        return self._reweight(logits, hidden, [slot], None)

    def _reweight(self, logits, hidden, slots, active) -> torch.Tensor:
        """logits - lambda * B_{j-1} A_{j-1} h on the rows of every round j >= 1; records KL(pi_j || p) on every
        KL_EVERY-th decode step (telemetry only: which steps are measured never changes a sample)."""
        if self.rounds == 1:
            return logits
        shift = torch.zeros_like(logits)
        with torch.no_grad():
            for i, g in enumerate(slots):
                for j, head in enumerate(self._slots[g].heads, start=1):
                    rows = self._rows(i, j)
                    shift[rows] = head.shift(hidden[rows])
        reweighted = logits - self.lambd * shift
        if active is not None and self._tel["decode_steps"] % KL_EVERY == 0:
            self._record_kl(logits, reweighted, slots, active)
        return reweighted

    def _record_kl(self, logits, reweighted, slots, active) -> None:
        log_p, log_pi = logits.log_softmax(-1), reweighted.log_softmax(-1)
        kl = (log_pi.exp() * (log_pi - log_p)).sum(-1).masked_fill(~active, 0.0).view(len(slots), self.rounds, -1)
        sums, counts = kl.sum((0, 2)).tolist(), active.view(len(slots), self.rounds, -1).sum((0, 2)).tolist()
        for j in range(1, self.rounds):
            self._tel["kl_sum"][j] += sums[j]
            self._tel["kl_rows"][j] += counts[j]

    def _train(self, logits, hidden, tokens, slots, active) -> None:
        if self.rounds == 1:
            return
        base_ce = F.cross_entropy(logits, tokens, reduction="none")  # the untrained guidance model's loss
        for i, g in enumerate(slots):
            round_rows = []
            for j in range(self.rounds - 1):
                rows = torch.arange(self._rows(i, j).start, self._rows(i, j).stop, device=logits.device)
                round_rows.append(rows[active[rows]])
            losses = self._slots[g].train_step(logits, hidden, tokens, round_rows)
            for j, (loss, rows) in enumerate(zip(losses, round_rows)):
                if loss is not None:
                    self._tel["train_loss_sum"][j] += float(loss)
                    self._tel["base_loss_sum"][j] += float(base_ce[rows].mean())
                    self._tel["train_loss_steps"][j] += 1
            self._tel["train_steps"] += any(loss is not None for loss in losses)

    def _rows(self, slot_index: int, round_index: int) -> slice:
        start = slot_index * self.n + round_index * self.per_round
        return slice(start, start + self.per_round)

    # ------------------------------------------------------------------------------------- reporting
    def snapshot(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self._tel.items()}

    def end(self) -> dict[str, Any]:
        for g in range(len(self._slots)):
            self._retire(g)
        out = self.snapshot()
        self._tel = self._empty_telemetry()
        return out

    def summarize(self, telemetry: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Merge the parts of a run (sums add up), then per round: mean training loss of its guidance model
        (per decode step, averaged), the base model's loss on the same tokens (what an untrained adapter
        scores: loss below it = the adapter learned the round), adapter norm ||B A||_F at the prompt's end,
        KL(reweighted || base) of the round's rows (every KL_EVERY-th decode step)."""
        parts = [t for t in telemetry if t]
        if not parts:
            return None
        total = {k: [sum(p[k][j] for p in parts) for j in range(self.rounds)] for k in SUMS}
        scalars = {k: sum(p.get(k, 0) for p in parts) for k in ("train_steps", "decode_steps", "prompts",
                                                               "train_seconds", "reweight_seconds", "setup_seconds")}
        if self.rounds > 1 and scalars["prompts"] and scalars["train_steps"] == 0:
            raise RuntimeError("OverRIDE took 0 guidance training steps: refusing to report it as an OverRIDE result")

        def ratio(num: str, den: str) -> list[float | None]:
            return [total[num][j] / total[den][j] if total[den][j] else None for j in range(self.rounds)]

        per_prompt = scalars["prompts"] or 1
        return {**scalars, "parts": len(parts),
                "round_train_loss": ratio("train_loss_sum", "train_loss_steps"),
                "round_base_loss": ratio("base_loss_sum", "train_loss_steps"),
                "round_adapter_norm": ratio("adapter_norm_sum", "adapter_norm_prompts"),
                "round_kl_to_base": ratio("kl_sum", "kl_rows"), "kl_every_decode_steps": KL_EVERY,
                "train_seconds_per_prompt": scalars["train_seconds"] / per_prompt,
                "reweight_seconds_per_prompt": scalars["reweight_seconds"] / per_prompt,
                **self.describe()}

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        try:
            import peft
            peft_version = peft.__version__
        except ImportError:  # pragma: no cover - peft is a dependency
            peft_version = None
        d.update(lambd=self.lambd, rounds=self.rounds, samples_per_round=self.per_round, rank=self.rank,
                 lora_alpha=self.rank, learning_rate=self.learning_rate,
                 optimizer="Adam (betas 0.9, 0.999, eps 1e-8, fused), one step per decode step, one per prompt",
                 adapter=f"peft {peft_version} LoRA on the LM head, float32; A ~ N(0, {INIT_STD}), B = 0; "
                         "fresh per prompt from (seed, problem id)",
                 guidance_loss="cross-entropy(logits.detach() + B_j A_j h, token sampled by round j), mean "
                               "over round j's active rows",
                 schedule="rounds decoded concurrently (public code); head j-1, trained through the previous "
                          "step, reweights round j at every decode step including the first token",
                 formula="logits - lambd * B_{j-1} A_{j-1} h  (pi_j ∝ p * (p / q_{j-1})^lambd)",
                 order="reweight -> logits / T -> top_k -> top_p -> min_p -> sample; then train")
        return d
