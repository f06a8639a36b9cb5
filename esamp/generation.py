"""THE decoding loop. Every sampler plugs in here through `esamp.samplers.base.Sampler`.

Layout: a batch holds P prompts x n samples = B rows, prompt-major (row = prompt * n + sample).
- Prefill runs once per prompt (P rows, left padded) and the KV cache is then repeated n times: the n
  samples of a prompt share its prompt computation.
- Each step feeds one token per active row with the KV cache, an explicit attention mask (zeros on the
  left padding) and explicit positions (so padding never shifts a row's positions).
- Randomness is per row: row r's step-t uniform comes from Philox keyed by (seed, problem id, sample
  index), so a sample depends only on those and on the sampler, never on batch size or neighbours.
- Finished rows (EOS, stop string, length, or the sampler's own decision) are compacted out of the batch
  (cache, mask, sampler state) so they stop costing compute.
- On CUDA the host is consulted only every `sync_every` steps (finished rows, stop strings).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from esamp.models import HiddenTaps, LoadedModel
from esamp.samplers.base import BatchInfo, Sampler, StepView


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
    row_steps: int = 0       # row-steps computed (including finished rows not yet compacted)
    seconds: float = 0.0
    prefill_seconds: float = 0.0
    compactions: int = 0


def problem_key(problem_id: str) -> int:
    """A stable 63-bit integer for a problem id (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(str(problem_id).encode(), digest_size=8).digest(), "little") >> 1


def row_uniforms(seed: int, problem_ids: Sequence[str], n: int, steps: int) -> torch.Tensor:
    """(P*n, steps) float64 uniforms; row (p, s) uses Philox seeded by SeedSequence((seed, problem id, sample s))."""
    out = np.empty((len(problem_ids) * n, steps), dtype=np.float64)
    for p, pid in enumerate(problem_ids):
        key = problem_key(pid)
        for s in range(n):
            gen = np.random.Generator(np.random.Philox(np.random.SeedSequence([seed, key, s])))
            out[p * n + s] = gen.random(steps)
    return torch.from_numpy(out)


def _left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s)
            mask[i, width - len(s):] = 1
    return ids, mask


@dataclass
class GenerationOutput:
    prompts: list[list[RowResult]]  # per prompt, its n rows in sample order
    telemetry: dict                 # the sampler's end-of-batch report (ESamp: Distiller loss, ...)
    stats: GenerationStats


def generate(
    lm: LoadedModel,
    sampler: Sampler,
    prompts: Sequence[str],
    problem_ids: Sequence[str],
    *,
    max_new_tokens: int,
    seed: int = 0,
    stop_strings: Sequence[str] = (),
    ignore_eos: bool = False,
    sync_every: int | None = None,
    on_prompt_done: Callable[[int, list[RowResult]], None] | None = None,
) -> GenerationOutput:
    """Generate `sampler.n` completions for every prompt (already rendered text).
    `on_prompt_done(prompt_index, rows)` fires as soon as all n rows of a prompt are finished."""
    if len(prompts) != len(problem_ids):
        raise ValueError("prompts and problem_ids differ in length")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} is invalid: allowed values are integers >= 1")
    stats = GenerationStats()
    device, n, P = lm.device, sampler.n, len(prompts)
    B = P * n
    sync_every = sync_every or (8 if device.type == "cuda" else 1)
    tok = lm.tokenizer
    eos = torch.tensor(lm.eos_token_ids, device=device)
    stop_on_eos = not (ignore_eos or sampler.handles_eos)

    uniforms = row_uniforms(seed, problem_ids, n, max_new_tokens).to(device)
    ids, mask = _left_pad([lm.encode(p) for p in prompts], tok.pad_token_id)
    ids, mask = ids.to(device), mask.to(device)

    sampler.begin(BatchInfo(lm=lm, num_prompts=P, n=n, max_new_tokens=max_new_tokens, device=device,
                            problem_ids=tuple(problem_ids), seed=seed))
    taps = HiddenTaps(lm, sampler.taps) if sampler.taps else None
    history = torch.zeros((B, max_new_tokens), dtype=torch.long, device=device)  # indexed by batch row
    gen_len = torch.full((B,), max_new_tokens, dtype=torch.long, device=device)
    why = torch.zeros(B, dtype=torch.long, device=device)  # index into FINISH_REASONS
    results: list[list[RowResult | None]] = [[None] * n for _ in range(P)]
    remaining = [n] * P

    def report(batch_rows: list[int]) -> None:
        """Host side: decode finished rows; fire the callback for prompts whose rows are all done."""
        lengths, reasons = gen_len[batch_rows].tolist(), why[batch_rows].tolist()
        for r, length, code in zip(batch_rows, lengths, reasons):
            p, s = divmod(r, n)
            toks = history[r, :length].tolist()
            text = tok.decode(toks, skip_special_tokens=True)
            for stop in stop_strings:  # the stop string itself is not part of the completion
                if (cut := text.find(stop)) >= 0:
                    text = text[:cut]
            results[p][s] = RowResult(p, s, toks, text, FINISH_REASONS[code])
            remaining[p] -= 1
            if remaining[p] == 0:
                results[p] = sampler.finalize(p, results[p])
                if on_prompt_done:
                    on_prompt_done(p, results[p])

    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            positions = (mask.cumsum(-1) - 1).clamp_(min=0)
            out = lm.decoder(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        cache = out.cache
        cache.batch_repeat_interleave(n)  # the n samples of a prompt share its prefill
        hidden = out.last_hidden_state[:, -1].repeat_interleave(n, 0)
        if taps is not None:
            taps.repeat(n)
        mask = mask.repeat_interleave(n, 0)
        positions = positions[:, -1:].repeat_interleave(n, 0)
        stats.prefill_seconds = time.perf_counter() - t0

        rows = torch.arange(B, device=device)  # batch row of each row still in the batch
        active = torch.ones(B, dtype=torch.bool, device=device)
        finished = torch.zeros(B, dtype=torch.bool, device=device)  # finished, not yet reported
        for step in range(max_new_tokens):
            if step > 0:
                positions = positions + 1
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
                with torch.no_grad():
                    out = lm.decoder(input_ids=last[:, None], attention_mask=mask, position_ids=positions,
                                     cache=cache, use_cache=True)
                hidden = out.last_hidden_state[:, -1]
            view = StepView(step=step, hidden=hidden, uniform=uniforms[rows, step], rows=rows, active=active,
                            lm=lm, prefill=step == 0, taps=taps.read(hidden) if taps is not None else None)
            choice = sampler.choose(view)
            last = choice.tokens
            if choice.parents is not None:  # beam search: rows continue other rows' histories
                history[rows] = history[rows[choice.parents]]
                cache.reorder_cache(choice.parents)
                mask, positions = mask[choice.parents], positions[choice.parents]
            history[rows, step] = last
            stats.steps += 1
            stats.row_steps += rows.numel()

            code = torch.zeros_like(rows)
            if stop_on_eos:
                code = torch.where(torch.isin(last, eos), 1, code)
            if choice.finished is not None:
                code = torch.where(choice.finished, 3, code)
            newly = (code > 0) & active
            gen_len[rows] = torch.where(newly, step + 1, gen_len[rows])
            why[rows] = torch.where(newly, code, why[rows])
            active, finished = active & ~newly, finished | newly

            last_step = step == max_new_tokens - 1
            if (step + 1) % sync_every and not last_step:
                continue
            # ---- host sync point: stop strings, finished rows, compaction ----
            if stop_strings:
                _check_stop_strings(tok, history, rows, active, finished, gen_len, why, step, stop_strings)
                active = active & ~finished
            done = finished.nonzero().squeeze(-1)
            if done.numel():
                report(rows[done].tolist())
            if last_step or not bool(active.any()):
                break
            if done.numel():  # compaction: finished rows leave the cache and every per-row tensor
                keep = active.nonzero().squeeze(-1)
                cache.batch_select_indices(keep)
                sampler.select_rows(keep)
                rows, active, mask, positions, last = rows[keep], active[keep], mask[keep], positions[keep], \
                    last[keep]
                finished = torch.zeros_like(active)
                stats.compactions += 1
        report(rows[active].tolist())
    finally:
        if taps is not None:
            taps.remove()
    telemetry = sampler.end()
    stats.seconds = time.perf_counter() - t0
    stats.tokens = sum(r.num_tokens for rs in results for r in rs)
    return GenerationOutput(prompts=results, telemetry=telemetry, stats=stats)  # type: ignore[arg-type]


def _check_stop_strings(tok, history, rows, active, finished, gen_len, why, step, stop_strings) -> None:
    """Mark rows whose recent text contains a stop string (decodes only a tail window)."""
    lo = max(0, step + 1 - 48)
    for i in active.nonzero().squeeze(-1).tolist():
        r = int(rows[i])
        tail = tok.decode(history[r, lo: step + 1].tolist(), skip_special_tokens=True)
        if any(s in tail for s in stop_strings):
            finished[i], gen_len[r], why[r] = True, step + 1, 2
