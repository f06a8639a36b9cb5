"""THE decoding loop. Every sampler plugs in here through `esamp.samplers.base.Sampler`.

Layout: the batch has `slots` prompt slots of n rows each (row = slot * n + sample), all decoded together.
- Continuous batching: when every row of a slot's prompt has finished, the slot takes the next pending prompt
  (the batch never waits for its longest row). A prompt entering a slot is prefilled on its own (batch 1,
  no padding) and its K/V are copied into the slot's n rows of a preallocated per-row KV cache
  (`esamp.kvcache.RowCache`); its first token comes from the prefill's last position.
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
from typing import Callable, Sequence

import torch

from esamp.kvcache import RowCache
from esamp.models import HiddenTaps, LoadedModel
from esamp.runtime import tune_cpu_allocator
from esamp.samplers.base import BatchInfo, Sampler, StepView
from esamp.samplers.truncation import NoProbabilityMass
from esamp.seeding import row_uniforms


@dataclass
class RowResult:
    prompt_index: int
    sample_index: int
    token_ids: list[int]
    text: str
    finish_reason: str  # "eos" | "stop" | "length" | "sampler"
    meta: dict = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


FINISH_REASONS = ("length", "eos", "stop", "sampler")


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
    """The loop's per-row state. `slot_prompt[g]` is the prompt index in slot g (None: free)."""

    def __init__(self, slots: int, n: int, max_new: int, device):
        rows = slots * n
        self.n, self.max_new = n, max_new
        self.slot_prompt: list[int | None] = [None] * slots
        self.slot_step = [0] * slots             # tokens generated so far by the slot's prompt
        self.slot_length = [0] * slots           # tokens in the cache of the slot's rows (host copy)
        self.history = torch.zeros((rows, max_new), dtype=torch.long, device=device)
        self.uniforms = torch.zeros((rows, max_new), dtype=torch.float64, device=device)
        self.gen_len = torch.full((rows,), max_new, dtype=torch.long, device=device)
        self.why = torch.zeros(rows, dtype=torch.long, device=device)
        self.active = torch.zeros(rows, dtype=torch.bool, device=device)
        self.last = torch.zeros(rows, dtype=torch.long, device=device)
        self.row_ids = torch.arange(rows, device=device)  # the sampler's batch row id of each row
        self.step = torch.zeros(rows, dtype=torch.long, device=device)  # step index of each row's next token

    def rows_of(self, g: int) -> slice:
        return slice(g * self.n, (g + 1) * self.n)

    def select(self, keep_slots: list[int], keep: torch.Tensor) -> None:
        for name in ("history", "uniforms", "gen_len", "why", "active", "last", "row_ids", "step"):
            setattr(self, name, getattr(self, name).index_select(0, keep))
        for name in ("slot_prompt", "slot_step", "slot_length"):
            values = getattr(self, name)
            setattr(self, name, [values[g] for g in keep_slots])


def generate(
    lm: LoadedModel,
    sampler: Sampler,
    prompts: Sequence[str],
    problem_ids: Sequence[str],
    *,
    max_new_tokens: int,
    seed: int = 0,
    batch_prompts: int | None = None,
    stop_strings: Sequence[str] = (),
    ignore_eos: bool = False,
    sync_every: int | None = None,
    on_prompt_done: Callable[[int, list[RowResult]], None] | None = None,
    on_snapshot: Callable[[dict, GenerationStats], None] | None = None,
    snapshot_every: float = 120.0,
) -> GenerationOutput:
    """Generate `sampler.n` completions for every prompt (already rendered text), `batch_prompts` prompts
    in flight at a time (default: all). `on_prompt_done(prompt_index, rows)` fires as soon as all n rows of
    a prompt are finished; `on_snapshot(telemetry, stats)` gets the sampler's telemetry and the generation
    statistics so far (tokens of the prompts reported, seconds until now) at most every `snapshot_every`
    seconds (after a prompt finished), so a killed run keeps them."""
    if len(prompts) != len(problem_ids):
        raise ValueError("prompts and problem_ids differ in length")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} is invalid: allowed values are integers >= 1")
    if stop_strings and sampler.handles_eos:
        raise ValueError(f"sampler {sampler.name} decides where its rows end (beam search): stop strings are not "
                         "supported with it, since they would retire single beams of a prompt")
    if lm.device.type == "cpu":
        tune_cpu_allocator()  # large per-step temporaries reuse heap pages instead of faulting in fresh ones
    stats = GenerationStats()
    device, n, P = lm.device, sampler.n, len(prompts)
    slots = max(1, min(batch_prompts or P, P))
    sync_every = 1 if stop_strings else (sync_every or (8 if device.type == "cuda" else 1))
    tok = lm.tokenizer
    eos = torch.tensor(lm.eos_token_ids, device=device)
    stop_on_eos = not (ignore_eos or sampler.handles_eos)
    encoded = [lm.encode(p) for p in prompts]
    if any(len(e) == 0 for e in encoded):
        raise ValueError("an empty prompt cannot be generated from (no position to start at)")
    results: list[list[RowResult | None]] = [[None] * n for _ in range(P)]
    pending = list(range(P))
    if not P:
        return GenerationOutput(prompts=[], telemetry={}, stats=stats)

    width = max(len(e) for e in encoded) + max_new_tokens
    taps = HiddenTaps(lm, sampler.taps) if sampler.taps else None
    cache: RowCache | None = None
    batch: _Batch | None = None
    t0 = last_snapshot = time.perf_counter()

    def begin_wave() -> None:
        """Fresh batch state for up to `slots` prompts (once, or per wave for lock-step samplers)."""
        nonlocal cache, batch
        wave = pending[: slots]
        cache = RowCache(lm.model, len(wave) * n, width, device, lm.dtype)
        batch = _Batch(len(wave), n, max_new_tokens, device)
        sampler.begin(BatchInfo(lm=lm, num_prompts=len(wave), n=n, max_new_tokens=max_new_tokens, device=device,
                                problem_ids=tuple(problem_ids[p] for p in wave), seed=seed))
        for g in range(len(wave)):
            admit(g)

    def admit(g: int) -> None:
        """Prompt pending[0] enters slot g: prefill alone, copy its K/V into the slot's rows, first token."""
        p = pending.pop(0)
        tp = time.perf_counter()
        rows = batch.rows_of(g)
        batch.slot_prompt[g], batch.slot_step[g], batch.slot_length[g] = p, 1, len(encoded[p])
        sampler.admit(g, problem_ids[p], encoded[p])
        with torch.no_grad():
            out = lm.decoder(input_ids=torch.tensor([encoded[p]], device=device), use_cache=True)
        cache.load(torch.arange(rows.start, rows.stop, device=device), out.cache, len(encoded[p]))
        hidden = out.last_hidden_state[:, -1].expand(n, -1)
        batch.uniforms[rows] = row_uniforms(seed, [problem_ids[p]], n, max_new_tokens).to(device)
        batch.gen_len[rows], batch.why[rows], batch.active[rows], batch.step[rows] = max_new_tokens, 0, True, 0
        view = StepView(hidden=hidden, uniform=batch.uniforms[rows, 0], rows=batch.row_ids[rows],
                        active=batch.active[rows], row_steps=batch.step[rows], lm=lm, prefill=True, slot=g,
                        prompt_hidden=out.last_hidden_state[0],
                        taps=_prefill_taps(taps, hidden, n))
        record(rows, _choose(sampler, view, batch, problem_ids, rows.start))
        batch.step[rows] = 1
        stats.admissions += 1
        stats.prefill_seconds += time.perf_counter() - tp

    def record(rows: slice, choice) -> None:
        """Store the chosen tokens of `rows` at each row's step and mark the rows that finish."""
        last = choice.tokens
        if choice.parents is not None:  # beam search: rows continue other rows' histories (within a prompt)
            base = rows.start or 0
            batch.history[rows] = batch.history[rows][choice.parents]
            if rows == slice(None):  # at a prefill the slot's rows share one cache: nothing to reorder
                cache.reorder(choice.parents + base)
        active, cols = batch.active[rows], batch.step[rows]
        batch.history[rows] = batch.history[rows].scatter(1, cols.clamp(max=max_new_tokens - 1)[:, None],
                                                          last[:, None])
        code = torch.zeros_like(last)
        if stop_on_eos:
            code = torch.where(torch.isin(last, eos), 1, code)
        if choice.finished is not None:
            code = torch.where(choice.finished, 3, code)
        newly = (code > 0) & active
        batch.gen_len[rows] = torch.where(newly, cols + 1, batch.gen_len[rows])
        batch.why[rows] = torch.where(newly, code, batch.why[rows])
        batch.active[rows] = active & ~newly
        batch.last[rows] = last

    def report(g: int) -> None:
        """Host side: slot g's prompt is done; decode its rows and hand them over."""
        nonlocal last_snapshot
        p, rows = batch.slot_prompt[g], batch.rows_of(g)
        batch.active[rows] = False
        lengths, reasons = batch.gen_len[rows].tolist(), batch.why[rows].tolist()
        history = batch.history[rows].tolist()
        out = []
        for s, (length, code) in enumerate(zip(lengths, reasons)):
            toks = history[s][:length]
            text = tok.decode(toks, skip_special_tokens=True)
            for stop in stop_strings:  # the stop string itself is not part of the completion
                if (cut := text.find(stop)) >= 0:
                    text = text[:cut]
            out.append(RowResult(p, s, toks, text, FINISH_REASONS[code]))
        results[p] = sampler.finalize(int(batch.row_ids[rows.start]) // n, out)
        stats.tokens += sum(r.num_tokens for r in results[p])
        batch.slot_prompt[g] = None
        if on_prompt_done:
            on_prompt_done(p, results[p])
        if on_snapshot and time.perf_counter() - last_snapshot >= snapshot_every:
            stats.seconds = time.perf_counter() - t0
            on_snapshot(sampler.snapshot(), dataclasses.replace(stats))
            last_snapshot = time.perf_counter()

    try:
        begin_wave()
        since_sync = 0
        while True:
            since_sync += 1
            at_limit = [g for g, s in enumerate(batch.slot_step) if s >= max_new_tokens]  # all rows: "length"
            if at_limit or since_sync >= sync_every:
                since_sync = 0
                if stop_strings:
                    _check_stop_strings(tok, batch, stop_strings)
                alive = batch.active.view(-1, n).any(1).tolist()
                for g in [g for g in range(len(alive)) if not alive[g] or g in at_limit]:
                    report(g)
                free = [g for g, p in enumerate(batch.slot_prompt) if p is None]
                if free and pending and sampler.continuous:
                    for g in free[: len(pending)]:
                        admit(g)
                elif pending and len(free) == len(batch.slot_prompt):  # lock-step sampler: next wave
                    begin_wave()
                free = [g for g, p in enumerate(batch.slot_prompt) if p is None]
                if len(free) == len(batch.slot_prompt):
                    break
                if free:  # nothing takes these slots: they leave the batch
                    keep_slots = [g for g, p in enumerate(batch.slot_prompt) if p is not None]
                    keep = torch.cat([torch.arange(g * n, (g + 1) * n, device=device) for g in keep_slots])
                    cache.select(keep)
                    sampler.select_rows(keep)
                    batch.select(keep_slots, keep)
                    stats.compactions += len(free)
            # ---- one decode step of every row, each at its own position ----
            span = max(length + step for length, step in zip(batch.slot_length, batch.slot_step))
            fwd = _rows_to_forward(batch.active, sampler) if device.type == "cpu" else None
            mask = cache.begin_step(span, fwd)
            every = slice(None) if fwd is None else fwd
            with torch.no_grad():
                out = lm.decoder(input_ids=batch.last[every, None], attention_mask=mask,
                                 position_ids=cache.length[every, None], cache=cache, use_cache=True)
            cache.end_step()
            hidden = out.last_hidden_state[:, -1]
            if fwd is not None:  # the sampler sees every batch row; finished rows get zeros (never used)
                hidden = hidden.new_zeros((batch.active.numel(), hidden.shape[-1])).index_copy_(0, fwd, hidden)
                if taps is not None:
                    taps.scatter(fwd, batch.active.numel())
            uniform = batch.uniforms.gather(1, batch.step.clamp(max=max_new_tokens - 1)[:, None]).squeeze(1)
            view = StepView(hidden=hidden, uniform=uniform, rows=batch.row_ids, active=batch.active,
                            row_steps=batch.step, lm=lm, taps=taps.read(hidden) if taps is not None else None,
                            input_ids=batch.last)
            record(slice(None), _choose(sampler, view, batch, problem_ids))
            batch.step += 1
            batch.slot_step = [s + 1 for s in batch.slot_step]
            stats.steps += 1
            stats.row_steps += batch.active.numel() if fwd is None else fwd.numel()
    finally:
        if taps is not None:
            taps.remove()
    telemetry = sampler.end()
    stats.seconds = time.perf_counter() - t0
    return GenerationOutput(prompts=results, telemetry=telemetry, stats=stats)  # type: ignore[arg-type]


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


def _choose(sampler: Sampler, view: StepView, batch: _Batch, problem_ids, first_row: int = 0):
    """sampler.choose, with a sampling failure turned into an error that names the step, the problem and
    sample of each bad row and the sampler's settings (never a silently garbage token)."""
    try:
        return sampler.choose(view)
    except NoProbabilityMass as err:
        where = []
        for r in err.rows[:8]:
            row = first_row + r
            p = batch.slot_prompt[row // batch.n]
            where.append(f"problem {problem_ids[p]!r} sample {row % batch.n} step {int(batch.step[row])}")
        raise RuntimeError(f"sampler {sampler.name} produced logits with no finite probability mass (NaN, +inf or "
                           f"all -inf; e.g. a diverged Distiller through the fusion) at {'; '.join(where)}"
                           f"{' ...' if len(err.rows) > 8 else ''}; settings: {sampler.describe()}") from err


def _prefill_taps(taps, hidden, n):
    if taps is None:
        return None
    taps.repeat(n)
    return taps.read(hidden)


def _check_stop_strings(tok, batch: _Batch, stop_strings) -> None:
    """Mark active rows whose recent text contains a stop string (decodes only a tail window). Runs every
    step when stop strings are set, so the stop is caught at the token that completes it."""
    for r in batch.active.nonzero().squeeze(-1).tolist():
        step = int(batch.step[r])
        lo = max(0, step - 48)
        tail = tok.decode(batch.history[r, lo:step].tolist(), skip_special_tokens=True)
        if any(s in tail for s in stop_strings):
            batch.active[r], batch.gen_len[r], batch.why[r] = False, step, 2
