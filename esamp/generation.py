"""THE decoding loop. Every sampler plugs in here through `esamp.samplers.base.Sampler`.

`Decoder` holds one run's state; `generate` is its public entry. Layout: the batch has `slots` prompt slots of
n rows each, slot-major (row = slot * n + sample), all decoded together.
- Continuous batching: when every row of a slot's prompt has finished, the slot takes the next pending prompt
  (the batch never waits for its longest row). A prompt entering a slot is prefilled on its own (batch 1,
  no padding) and its K/V are copied into the slot's n rows of a preallocated per-row KV cache
  (`esamp.kvcache.ModelStream` over a `RowCache`); its first token comes from the prefill's last position.
- Each decode step feeds one token per row at that row's own position. Rows that finished while other rows of
  their prompt still run stay in the batch, masked inactive (samplers must not learn from them), until their
  slot is refilled: rows never move, so no cache is ever copied. On CPU, once more than a tenth of the rows
  are finished, a step forwards only the active rows (`_rows_to_forward`; the finished rows' hidden states
  are zeros the sampler never uses). When no prompt is pending, a finished slot
  leaves the batch (one copy) so the tail of a run does not compute dead rows.
- Randomness is per row: row (prompt, sample)'s step-t uniform comes from Philox keyed by (seed, problem id,
  sample index) (`esamp.seeding`), so a sample depends only on those and on the sampler, never on which
  prompts shared its batch or when it entered. Exactly so where the matmul kernels give a row the same bits
  whatever the number of rows (float32 tests; Qwen2.5-Coder-0.5B in bf16, measured); with bf16 SmolLM2 on
  oneDNN a row's result depends on the row count, so batched and alone differ by rounding (5 of 32 samples
  over 120 tokens, measured 2026-12-04), from the first token where rounding flips a draw.
- Samplers that need the whole batch in lock step (`Sampler.continuous = False`, e.g. beam search) get waves
  instead: new prompts enter only when every slot is free.
- On CUDA the host is consulted only every `sync_every` steps (finished rows), except when the task has stop
  strings: those are checked every step, so no token after a stop is ever trained on or counted.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Sequence

import torch

from esamp import checks
from esamp.kvcache import ModelStream
from esamp.models import LoadedModel
from esamp.runtime import tune_cpu_allocator
from esamp.samplers.base import BatchInfo, Choice, Sampler, StepView
from esamp.samplers.esamp.taps import HiddenTaps
from esamp.samplers.truncation import NoProbabilityMass
from esamp.seeding import row_uniforms


class Finish(str, Enum):
    """Why a row ended; the value is what samples.jsonl records. `code` is the row's number in the loop's
    device tensor (0, LENGTH: not ended by a token, so the budget ended it)."""

    LENGTH = "length"
    EOS = "eos"
    STOP = "stop"
    SAMPLER = "sampler"  # the sampler retired the row (beam search)

    @property
    def code(self) -> int:
        return list(Finish).index(self)


@dataclass
class RowResult:
    prompt_index: int
    sample_index: int
    token_ids: list[int]
    text: str
    finish_reason: str  # a `Finish` value: "eos" | "stop" | "length" | "sampler"
    meta: dict = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class GenerationStats:
    steps: int = 0
    tokens: int = 0          # generated tokens kept in results (up to and including EOS)
    row_steps: int = 0       # row-steps computed (GPU: finished rows waiting for their prompt too; CPU: active rows)
    seconds: float = 0.0
    prefill_seconds: float = 0.0
    compactions: int = 0     # slots that left the batch (nothing pending to take them)
    admissions: int = 0      # prompts that entered a slot

    @classmethod
    def merged(cls, parts: list["GenerationStats"], parallel: bool = False) -> "GenerationStats":
        """Totals of several parts of one run: counts add up; times add up for parts run one after the
        other, and are the slowest part's for parts run in parallel (shards), so tokens/s is the total
        throughput."""
        total = cls()
        for part in parts:
            for key in cls.__dataclass_fields__:
                old, new = getattr(total, key), getattr(part, key)
                timed = key in ("seconds", "prefill_seconds") and parallel
                setattr(total, key, max(old, new) if timed else old + new)
        return total


@dataclass
class GenerationOutput:
    prompts: list[list[RowResult]]  # per prompt, its n rows in sample order
    telemetry: dict                 # the sampler's end-of-run report (ESamp: Distiller loss, ...)
    stats: GenerationStats


class _Batch:
    """Per-row state of the rows in the batch (slot-major). `slot_prompt[g]` is the prompt in slot g (None:
    free); `step[r]` is the index of row r's next token."""

    def __init__(self, slots: int, n: int, max_new_tokens: int, device):
        rows = slots * n
        self.n, self.max_new_tokens = n, max_new_tokens
        self.slot_prompt: list[int | None] = [None] * slots
        self.slot_step = [0] * slots             # tokens generated so far by the slot's prompt (host copy)
        self.history = torch.zeros((rows, max_new_tokens), dtype=torch.long, device=device)
        self.uniforms = torch.zeros((rows, max_new_tokens), dtype=torch.float64, device=device)
        self.gen_len = torch.full((rows,), max_new_tokens, dtype=torch.long, device=device)
        self.why = torch.zeros(rows, dtype=torch.long, device=device)  # a `Finish.code` per row
        self.active = torch.zeros(rows, dtype=torch.bool, device=device)
        self.last = torch.zeros(rows, dtype=torch.long, device=device)
        self.row_ids = torch.arange(rows, device=device)  # the sampler's batch row id of each row
        self.step = torch.zeros(rows, dtype=torch.long, device=device)

    def rows_of(self, g: int) -> slice:
        return slice(g * self.n, (g + 1) * self.n)

    def free(self) -> list[int]:
        return [g for g, p in enumerate(self.slot_prompt) if p is None]

    def select(self, keep_slots: list[int], keep: torch.Tensor) -> None:
        for name in ("history", "uniforms", "gen_len", "why", "active", "last", "row_ids", "step"):
            setattr(self, name, getattr(self, name).index_select(0, keep))
        for name in ("slot_prompt", "slot_step"):
            values = getattr(self, name)
            setattr(self, name, [values[g] for g in keep_slots])


class Decoder:
    """One run of the loop over `prompts`: the batch state and the model's stream, with admission, decode
    steps, recording, reporting and compaction as methods. `run()` returns the `GenerationOutput`."""

    def __init__(self, lm: LoadedModel, sampler: Sampler, prompts: Sequence[str], problem_ids: Sequence[str], *,
                 max_new_tokens: int, seed: int = 0, batch_prompts: int | None = None,
                 stop_strings: Sequence[str] = (), ignore_eos: bool = False, sync_every: int | None = None,
                 on_prompt_done: Callable[[int, list[RowResult]], None] | None = None,
                 on_snapshot: Callable[[dict, GenerationStats], None] | None = None,
                 snapshot_every: float = 0.0):
        if len(prompts) != len(problem_ids):
            raise ValueError("prompts and problem_ids differ in length")
        checks.integer("max_new_tokens", max_new_tokens)
        if stop_strings and sampler.handles_eos:
            raise ValueError(f"sampler {sampler.name} decides where its rows end (beam search): stop strings are "
                             "not supported with it, since they would retire single beams of a prompt")
        if lm.device.type == "cpu":
            tune_cpu_allocator()  # large per-step temporaries reuse heap pages instead of faulting in fresh ones
        self.lm, self.sampler, self.problem_ids, self.seed = lm, sampler, problem_ids, seed
        self.max_new_tokens, self.stop_strings, self.snapshot_every = max_new_tokens, tuple(stop_strings), snapshot_every
        self.on_prompt_done, self.on_snapshot = on_prompt_done, on_snapshot
        self.device, self.n, P = lm.device, sampler.n, len(prompts)
        self.slots = max(1, min(batch_prompts or P, P))
        self.sync_every = 1 if stop_strings else (sync_every or (8 if self.device.type == "cuda" else 1))
        self.eos = torch.tensor(lm.eos_token_ids, device=self.device)
        self.stop_on_eos = not (ignore_eos or sampler.handles_eos)
        self.encoded = [lm.encode(p) for p in prompts]
        if any(len(e) == 0 for e in self.encoded):
            raise ValueError("an empty prompt cannot be generated from (no position to start at)")
        self.results: list[list[RowResult] | None] = [None] * P
        self.pending = list(range(P))
        self.stats = GenerationStats()
        self.width = max((len(e) for e in self.encoded), default=0) + max_new_tokens
        self.taps: HiddenTaps | None = None
        self.stream: ModelStream | None = None
        self.batch: _Batch | None = None

    def run(self) -> GenerationOutput:
        """Until every prompt is reported: the host's bookkeeping every `sync_every` steps (and whenever a
        slot reaches the budget), and a decode step of every row."""
        if not self.pending:
            return GenerationOutput(prompts=[], telemetry={}, stats=self.stats)
        self.taps = HiddenTaps(self.lm, self.sampler.taps) if self.sampler.taps else None
        self.t0 = self.last_snapshot = time.perf_counter()
        try:
            self.begin_wave()
            since_sync = 0
            while True:
                since_sync += 1
                at_limit = [g for g, s in enumerate(self.batch.slot_step) if s >= self.max_new_tokens]
                if at_limit or since_sync >= self.sync_every:
                    since_sync = 0
                    if not self.sync(at_limit):
                        break
                self.step()
        finally:
            if self.taps is not None:
                self.taps.remove()
        telemetry = self.sampler.end()
        self.stats.seconds = time.perf_counter() - self.t0
        return GenerationOutput(prompts=self.results, telemetry=telemetry, stats=self.stats)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ the device side, every step
    def step(self) -> None:
        """One decode step of every row, each at its own position."""
        b = self.batch
        # 1. forward one token per row (on CPU, once enough rows finished, only the active rows)
        fwd = _rows_to_forward(b.active, self.sampler) if self.device.type == "cpu" else None
        hidden = self.stream.step(b.last, fwd)
        # 2. the sampler sees every batch row: rows left out get zeros (finished: never used)
        if fwd is not None:
            hidden = hidden.new_zeros((b.active.numel(), hidden.shape[-1])).index_copy_(0, fwd, hidden)
            if self.taps is not None:
                self.taps.scatter(fwd, b.active.numel())
        # 3. each row's own uniform at its own step; the sampler chooses; the loop records
        uniform = b.uniforms.gather(1, b.step.clamp(max=self.max_new_tokens - 1)[:, None]).squeeze(1)
        view = StepView(hidden=hidden, uniform=uniform, rows=b.row_ids, active=b.active, row_steps=b.step,
                        lm=self.lm, taps=self.taps.read(hidden) if self.taps is not None else None,
                        input_ids=b.last)
        self.record(slice(None), self.choose(view))
        # 4. advance
        b.step += 1
        b.slot_step = [s + 1 for s in b.slot_step]
        self.stats.steps += 1
        self.stats.row_steps += b.active.numel() if fwd is None else fwd.numel()

    def record(self, rows: slice, choice: Choice) -> None:
        """Store the chosen tokens of `rows` at each row's step and mark the rows that finish."""
        b, last = self.batch, choice.tokens
        if choice.parents is not None:  # beam search: rows continue other rows' histories (within a prompt)
            base = rows.start or 0
            b.history[rows] = b.history[rows][choice.parents]
            if rows == slice(None):  # at a prefill the slot's rows share one cache: nothing to reorder
                self.stream.reorder(choice.parents + base)
        active, cols = b.active[rows], b.step[rows]
        b.history[rows] = b.history[rows].scatter(1, cols.clamp(max=self.max_new_tokens - 1)[:, None], last[:, None])
        code = torch.zeros_like(last)
        if self.stop_on_eos:
            code = torch.where(torch.isin(last, self.eos), Finish.EOS.code, code)
        if choice.finished is not None:
            code = torch.where(choice.finished, Finish.SAMPLER.code, code)
        newly = (code > 0) & active
        b.gen_len[rows] = torch.where(newly, cols + 1, b.gen_len[rows])
        b.why[rows] = torch.where(newly, code, b.why[rows])
        b.active[rows] = active & ~newly
        b.last[rows] = last

    def choose(self, view: StepView, first_row: int = 0) -> Choice:
        """sampler.choose, with a sampling failure turned into an error that names the step, the problem and
        sample of each bad row and the sampler's settings (never a silently garbage token)."""
        try:
            return self.sampler.choose(view)
        except NoProbabilityMass as err:
            b, where = self.batch, []
            for r in err.rows[:8]:
                row = first_row + r
                p = b.slot_prompt[row // b.n]
                where.append(f"problem {self.problem_ids[p]!r} sample {row % b.n} step {int(b.step[row])}")
            raise RuntimeError(f"sampler {self.sampler.name} produced logits with no finite probability mass (NaN, "
                               f"+inf or all -inf; e.g. a diverged Distiller through the fusion) at "
                               f"{'; '.join(where)}{' ...' if len(err.rows) > 8 else ''}; settings: "
                               f"{self.sampler.describe()}") from err

    # ------------------------------------------------------------------ the host side, every sync_every steps
    def sync(self, at_limit: list[int]) -> bool:
        """Bookkeeping on the host; False when every prompt is done."""
        b = self.batch
        # 1. rows whose text now holds a stop string end there
        if self.stop_strings:
            self.check_stop_strings()
        # 2. prompts whose rows all ended (or reached the budget) are reported; their slots free up
        alive = b.active.view(-1, self.n).any(1).tolist()
        for g in [g for g in range(len(alive)) if not alive[g] or g in at_limit]:
            self.report(g)
        # 3. pending prompts take the free slots (lock-step samplers: the next wave, once all are free)
        free = b.free()
        if free and self.pending and self.sampler.continuous:
            for g in free[: len(self.pending)]:
                self.admit(g)
        elif self.pending and len(free) == len(b.slot_prompt):
            self.begin_wave()
        # 4. slots nothing takes leave the batch
        free = self.batch.free()
        if len(free) == len(self.batch.slot_prompt):
            return False
        if free:
            self.compact()
        return True

    def begin_wave(self) -> None:
        """Fresh batch state for up to `slots` prompts (once, or per wave for lock-step samplers)."""
        wave = self.pending[: self.slots]
        self.stream = ModelStream(self.lm, len(wave), self.n, self.max_new_tokens, self.device, width=self.width)
        self.batch = _Batch(len(wave), self.n, self.max_new_tokens, self.device)
        self.sampler.begin(BatchInfo(lm=self.lm, num_prompts=len(wave), n=self.n, max_new_tokens=self.max_new_tokens,
                                     device=self.device, problem_ids=tuple(self.problem_ids[p] for p in wave),
                                     seed=self.seed))
        for g in range(len(wave)):
            self.admit(g)

    def admit(self, g: int) -> None:
        """The next pending prompt enters slot g: its prefill alone, its K/V into the slot's rows, first token."""
        p, b, n = self.pending.pop(0), self.batch, self.n
        tp = time.perf_counter()
        rows = b.rows_of(g)
        b.slot_prompt[g], b.slot_step[g] = p, 1
        self.sampler.admit(g, self.problem_ids[p], self.encoded[p])
        out = self.stream.prefill(g, self.encoded[p])
        hidden = out.last_hidden_state[:, -1].expand(n, -1)
        b.uniforms[rows] = row_uniforms(self.seed, [self.problem_ids[p]], n, self.max_new_tokens).to(self.device)
        b.gen_len[rows], b.why[rows], b.active[rows], b.step[rows] = self.max_new_tokens, Finish.LENGTH.code, True, 0
        if self.taps is not None:
            self.taps.repeat(n)  # the prompt's taps, once per sample row
        view = StepView(hidden=hidden, uniform=b.uniforms[rows, 0], rows=b.row_ids[rows], active=b.active[rows],
                        row_steps=b.step[rows], lm=self.lm, prefill=True, slot=g,
                        prompt_hidden=out.last_hidden_state[0],
                        taps=self.taps.read(hidden) if self.taps is not None else None)
        self.record(rows, self.choose(view, rows.start))
        b.step[rows] = 1
        self.stats.admissions += 1
        self.stats.prefill_seconds += time.perf_counter() - tp

    def report(self, g: int) -> None:
        """Slot g's prompt is done: decode its rows, hand them over, free the slot."""
        b, tok = self.batch, self.lm.tokenizer
        p, rows = b.slot_prompt[g], b.rows_of(g)
        b.active[rows] = False
        lengths, reasons = b.gen_len[rows].tolist(), b.why[rows].tolist()
        history = b.history[rows].tolist()
        out = []
        for s, (length, code) in enumerate(zip(lengths, reasons)):
            toks = history[s][:length]
            text = tok.decode(toks, skip_special_tokens=True)
            for stop in self.stop_strings:  # the stop string itself is not part of the completion
                if (cut := text.find(stop)) >= 0:
                    text = text[:cut]
            out.append(RowResult(p, s, toks, text, list(Finish)[code].value))
        self.results[p] = self.sampler.finalize(int(b.row_ids[rows.start]) // self.n, out)
        self.stats.tokens += sum(r.num_tokens for r in self.results[p])
        b.slot_prompt[g] = None
        if self.on_prompt_done:
            self.on_prompt_done(p, self.results[p])
        if self.on_snapshot and time.perf_counter() - self.last_snapshot >= self.snapshot_every:
            self.stats.seconds = time.perf_counter() - self.t0
            self.on_snapshot(self.sampler.snapshot(), dataclasses.replace(self.stats))
            self.last_snapshot = time.perf_counter()

    def compact(self) -> None:
        """The free slots leave the batch (nothing is pending to take them): one copy of every row's state."""
        b = self.batch
        keep_slots = [g for g, p in enumerate(b.slot_prompt) if p is not None]
        keep = torch.cat([torch.arange(g * self.n, (g + 1) * self.n, device=self.device) for g in keep_slots])
        self.stats.compactions += len(b.slot_prompt) - len(keep_slots)
        self.stream.select(keep_slots)
        self.sampler.select_rows(keep)
        b.select(keep_slots, keep)

    def check_stop_strings(self) -> None:
        """Mark active rows whose recent text contains a stop string (decodes only a tail window). Runs every
        step when stop strings are set, so the stop is caught at the token that completes it."""
        b, tok = self.batch, self.lm.tokenizer
        for r in b.active.nonzero().squeeze(-1).tolist():
            step = int(b.step[r])
            lo = max(0, step - 48)
            tail = tok.decode(b.history[r, lo:step].tolist(), skip_special_tokens=True)
            if any(s in tail for s in self.stop_strings):
                b.active[r], b.gen_len[r], b.why[r] = False, step, Finish.STOP.code


def generate(lm: LoadedModel, sampler: Sampler, prompts: Sequence[str], problem_ids: Sequence[str], *,
             max_new_tokens: int, seed: int = 0, batch_prompts: int | None = None, stop_strings: Sequence[str] = (),
             ignore_eos: bool = False, sync_every: int | None = None,
             on_prompt_done: Callable[[int, list[RowResult]], None] | None = None,
             on_snapshot: Callable[[dict, GenerationStats], None] | None = None,
             snapshot_every: float = 0.0) -> GenerationOutput:
    """Generate `sampler.n` completions for every prompt (already rendered text), `batch_prompts` prompts
    in flight at a time (default: all). `on_prompt_done(prompt_index, rows)` fires as soon as all n rows of
    a prompt are finished; `on_snapshot(telemetry, stats)` gets the sampler's telemetry and the generation
    statistics so far (tokens of the prompts reported, seconds until now) at most every `snapshot_every`
    seconds (after a prompt finished; 0: after every prompt; the pipeline passes generation.telemetry_every), so a
    killed run keeps them."""
    return Decoder(lm, sampler, prompts, problem_ids, max_new_tokens=max_new_tokens, seed=seed,
                   batch_prompts=batch_prompts, stop_strings=stop_strings, ignore_eos=ignore_eos,
                   sync_every=sync_every, on_prompt_done=on_prompt_done, on_snapshot=on_snapshot,
                   snapshot_every=snapshot_every).run()


# Forward only the active rows when fewer than this fraction of the batch's rows are active. A slot's prompt
# waits for its slowest of n rows, so on real runs ~22% of rows are finished at any step (MATH-500, n = 16);
# their forward is pure waste, while leaving them out costs one gather of the active rows' K/V per layer.
FORWARD_ACTIVE_BELOW = 0.9


def _rows_to_forward(active: torch.Tensor, sampler: Sampler) -> torch.Tensor | None:
    """The rows a CPU decode step forwards: None (all) while nearly all rows are active, else the active rows.
    CPU only: there the step is compute-bound, so dropping rows saves time, and reading `active` on the host
    costs nothing; on a GPU a decode step at these row counts is bound by reading the weights, and the host
    sync would stall the stream. Lock-step samplers (beam search) keep every row: they reorder rows."""
    if not sampler.continuous:
        return None
    count = int(active.sum())
    if count == 0 or count >= FORWARD_ACTIVE_BELOW * active.numel():
        return None
    return active.nonzero().squeeze(1)

