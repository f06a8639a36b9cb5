"""FIRE's first token inside vLLM's sampler (vLLM 0.32.0 V1 internals, pinned; see esamp_hook.py).

FIRE (esamp/samplers/fire.py) draws the first generated token from logits / first_temperature restricted to
the first_top_k candidates, with none of the base sampler's filters, and every later token from the base
sampler. vLLM's SamplingParams hold one setting for the whole request, so the first token is rewritten here:
`runner.sampler.forward` (wrapped) keeps the raw logits of FIRE rows that have no output token yet, and
`runner.sampler.topk_topp_sampler.forward` (wrapped) applies vLLM's own top-k/top-p to every row, replaces
those rows with the flaming-hot distribution and lets vLLM draw with the request's own generator. With
first_temperature = the base temperature and no filters the draws are exactly plain sampling's (tested).
"""
from __future__ import annotations

import torch

from esamp.engines.vllm.patches import Patches
from esamp.samplers.truncation import truncate

FIRE_KEY = "fire_first"  # SamplingParams.extra_args key marking a FIRE request


class FireHook:
    def __init__(self, runner, sampler):
        if getattr(runner, "use_async_scheduling", False):
            raise ValueError("FIRE on vLLM needs async_scheduling=False")
        self.runner, self.sampler = runner, sampler
        vsampler = runner.sampler
        self._first: tuple[torch.Tensor, torch.Tensor] | None = None
        self._patches = Patches()
        self._orig = {"sampler": self._patches.wrap(vsampler, "forward", self._sampler_forward),
                      "topk": self._patches.wrap(vsampler.topk_topp_sampler, "forward", self._topk_forward)}

    def remove(self) -> None:
        self._patches.undo()

    def _sampler_forward(self, logits, sampling_metadata, *args, **kwargs):
        batch = self.runner.input_batch
        rows = []
        for i, rid in enumerate(batch.req_ids[: batch.num_reqs]):
            state = self.runner.requests[rid]
            args_ = state.sampling_params.extra_args if state.sampling_params is not None else None
            if args_ and args_.get(FIRE_KEY) and not state.output_token_ids:
                rows.append(i)  # its first token (a partial prefill's draw is discarded by vLLM anyway)
        if rows:
            rows_t = torch.tensor(rows, dtype=torch.long).to(logits.device)
            self._first = (rows_t, logits[rows_t].float().clone())  # before vLLM's in-place processing
        try:
            return self._orig["sampler"](logits, sampling_metadata, *args, **kwargs)
        finally:
            self._first = None

    def _topk_forward(self, logits, generators, k, p):
        if self._first is None:
            return self._orig["topk"](logits, generators, k, p)
        from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p

        rows, raw = self._first
        scaled = apply_top_k_top_p(logits, k, p)  # every other row: its own filters, as vLLM would
        scaled[rows] = truncate(raw / self.sampler.first_temperature, top_k=self.sampler.first_top_k)
        return self._orig["topk"](scaled, generators, None, None)
