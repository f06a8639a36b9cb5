"""The one interface every sampler implements to plug into `esamp.generation.generate`.

The loop owns the model forward, the KV cache, stopping and bookkeeping; a sampler only turns the
current position's state (a `StepView`) into the next token of every active row (a `Choice`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from esamp.models import LoadedModel


@dataclass
class BatchInfo:
    """What a sampler learns when a batch starts. Rows are slot-major: row r belongs to slot `r // n` (the
    batch's prompt `r // n`, `problem_ids[r // n]` at the start) and is that prompt's sample `r % n`."""

    lm: "LoadedModel"
    num_prompts: int
    n: int
    max_new_tokens: int
    device: torch.device
    problem_ids: tuple[str, ...] = ()
    seed: int = 0


@dataclass
class StepView:
    """The current position of every row of the batch (or, at a prefill, of the n rows of the prompt that
    just entered slot `slot`). Rows are slot-major: physical row i belongs to slot i // n.

    hidden:    (B, H) final normed hidden state (the LM head's input), model dtype.
    uniform:   (B,) float64 in [0, 1): this row's own random number for this step. It depends only on
               (seed, problem id, sample index, step), so a row's sample never depends on its neighbours.
    rows:      (B,) long, the batch row id (slot * n + sample, slots numbered as at `begin`) of each row.
    active:    (B,) bool, False for rows that already finished but are still in the batch (they are dropped
               at the next compaction; samplers must not learn from them).
    row_steps: (B,) long, each row's step: the index of the token it chooses now (0 at a prefill). Rows of
               different prompts are at different steps under continuous batching; lock-step samplers
               (`continuous = False`) see one step on every row.
    taps:      (source, target) hidden states at this position when the sampler asked for taps.
    prefill:   True at step 0, whose position is the prompt's last token.
    """

    hidden: torch.Tensor
    uniform: torch.Tensor
    rows: torch.Tensor
    active: torch.Tensor
    row_steps: torch.Tensor
    lm: "LoadedModel"
    taps: tuple[torch.Tensor, torch.Tensor] | None = None
    prefill: bool = False
    slot: int | None = None               # at a prefill: the slot the prompt entered (its rows only)
    input_ids: torch.Tensor | None = None  # (B,) the token each row fed at this decode step (None at a prefill)
    prompt_hidden: torch.Tensor | None = None  # at a prefill: (L, H) final normed states of the prompt's positions

    def logits(self) -> torch.Tensor:
        """Full-vocabulary logits of the model (float32)."""
        return self.lm.lm_head(self.hidden).float()


@dataclass
class Choice:
    """A sampler's answer for one step.

    tokens:   (B,) next token per active row.
    parents:  (B,) optional: new row i continues row parents[i]'s history (beam search reorders beams);
              the loop reorders the KV cache and histories accordingly.
    finished: (B,) optional bool: rows the sampler retires after this token (beam search decides its own
              termination; other samplers leave this to the loop's EOS / stop-string / length checks).
    """

    tokens: torch.Tensor
    parents: torch.Tensor | None = None
    finished: torch.Tensor | None = None


class Sampler:
    """Base class. Subclasses implement `choose`; the rest are optional hooks."""

    name: str = "sampler"
    n: int = 1
    # Hidden-state taps the sampler needs (esamp.samplers.esamp.taps: "layer0_to_final" / "input_norms");
    # None: only the final hidden state.
    taps: str | None = None
    # True when the sampler handles EOS itself (beam search keeps a row alive and stores the hypothesis).
    handles_eos: bool = False
    # The fewest new tokens a run needs for the sampler to mean anything (checked before the model loads).
    min_new_tokens: int = 1
    # True: a prompt may enter a slot while other slots are mid-generation (continuous batching); the sampler
    # keeps per-slot state and resets it in `admit`. False: prompts enter in lock-step waves (beam search).
    continuous: bool = True

    @staticmethod
    def canonical_settings(cfg: dict[str, Any]) -> dict[str, Any]:
        """The sampler's config with renamed option values under their current names (what a resume compares)."""
        return cfg

    def begin(self, info: BatchInfo) -> None:
        """A batch starts: `info.num_prompts` slots of n rows (continuous samplers: once per run)."""

    def admit(self, slot: int, problem_id: str, prompt_ids: list[int] | None = None) -> None:
        """Problem `problem_id` (prompt tokens `prompt_ids`) enters `slot` (rows slot*n .. slot*n+n-1): fresh
        per-prompt state goes here (a second model's prefill, too)."""

    def choose(self, view: StepView) -> Choice:
        raise NotImplementedError

    def select_rows(self, keep: torch.Tensor) -> None:
        """The loop dropped the rows of finished slots: keep only positions `keep` (indices into the current
        rows, whole slots, in order) of any per-row and per-slot state."""

    def snapshot(self) -> dict[str, Any]:
        """Telemetry so far, mid-run (saved periodically, so a killed run keeps its curves)."""
        return {}

    def end(self) -> dict[str, Any]:
        """The batch is over; return telemetry to store in results.json (may sync the device)."""
        return {}

    def summarize(self, telemetry: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Merge the per-batch `end()` reports of a run into one summary (None: nothing to report)."""
        return None

    def finalize(self, prompt_index: int, rows: list) -> list:
        """Last chance to replace a prompt's finished rows (beam search returns its best hypotheses)."""
        return rows

    def describe(self) -> dict[str, Any]:
        """Settings recorded in results.json."""
        return {"name": self.name, "n": self.n}
