"""ESamp inside vLLM's model runner (in-process engine core; vLLM 0.32.0 V1 internals, pinned).

What is hooked, and why there:
- taps: forward hooks on `model.model.layers[0]` (layer0_to_final: its output residual stream, `hidden + residual`,
  summed at once because the next layer's fused add-norm kernel overwrites both tensors in place) or on the
  input_layernorms of the first and last layers (input_norms); the paper's target, the final normed state, is the
  input of `model.compute_logits` (wrapped) at the sampled positions.
- rows: `runner.sampler.forward` (wrapped) reads the persistent batch (`input_batch.req_ids`,
  `runner.requests`): an ESamp request carries its Distiller slot in `SamplingParams.extra_args`; a row is a
  decode row when its request already has an output token (so the first generated token, sampled from the
  prefill's last position, and every partial-prefill row are neither intervened on nor trained on, as in the
  `hf` engine). Its sampled position is `query_start_loc[i + 1] - 1` (the runner's own `logits_indices`
  without speculative decoding). Here the Distiller predicts with its current weights, then takes this
  step's one update (`OnlineTrainer.step`), before the token is drawn.
- latent mixing (the default where it is exact: no top-k/top-p/min-p, the paper's taps and fusion, an LM head without
  bias whose logits are not soft-capped): the wrapped `compute_logits` predicts and trains there and hands vLLM's
  one LM head the ESamp decode rows' states h + beta err, so W (h + beta (h - h_pred)) = (1 + beta) ref - beta dist
  in one head call; the sampler then only divides by T and draws. Otherwise:
- fusion: `runner.sampler.topk_topp_sampler.forward` (wrapped) receives the logits after temperature and
  min-p; vLLM's own `apply_top_k_top_p` cuts them, and the surviving candidates of ESamp rows become
  `(1 + beta) ref - beta dist` (at the row's temperature, fuse_then_scale; scale_then_fuse: unscaled
  distiller logit),
  cut candidates stay at -inf; the original sampler then draws with the request's own generator and no
  further filtering. So beta = 0 leaves every logit, the random draws and therefore the tokens unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from esamp.engines.vllm.patches import Patches
from esamp.samplers.base import BatchInfo
from esamp.seeding import row_normals

SLOT_KEY = "esamp_slot"  # SamplingParams.extra_args key: the request's Distiller slot
SAMPLE_KEY = "esamp_sample"  # ... and its sample index (keys the noise control's per-row stream)


@dataclass
class _LmShim:
    """The two things `ESampSampler.begin` reads of a model."""

    hidden_size: int
    lm_head: torch.nn.Module


@dataclass
class _StepContext:
    rows: torch.Tensor           # (R,) batch rows of ESamp decode rows (device)
    correction: torch.Tensor     # (R, V) logit term added to the filtered logits (see _fuse)
    temperature: torch.Tensor    # (R, 1)


class ESampHook:
    """Install with `ESampHook(runner, sampler, slots=..., n=..., seed=..., max_new_tokens=...)`; `admit(slot,
    problem_id)` before a prompt's requests are added; `remove()` when the run ends."""

    def __init__(self, runner, sampler, *, slots: int, n: int, seed: int, max_new_tokens: int):
        if getattr(runner, "speculative_config", None) is not None:  # sampled positions would not be query ends
            raise ValueError("ESamp on vLLM does not support speculative decoding (disable speculative_config)")
        if getattr(runner, "use_async_scheduling", False):  # output_token_ids would lag one step behind
            raise ValueError("ESamp on vLLM needs async_scheduling=False")
        self.runner, self.sampler = runner, sampler
        model = runner.model
        self.model = model
        layers = model.model.layers
        sampler.begin(BatchInfo(lm=_LmShim(model.config.hidden_size, model.lm_head), num_prompts=slots, n=n,
                                max_new_tokens=max_new_tokens, device=runner.device, seed=seed))
        # begin() decided mixing from the sampler's settings; vLLM's logits must also be linear in the state
        linear = getattr(getattr(model, "logits_processor", None), "soft_cap", "unknown") is None
        if sampler.latent_mixing_cfg is True and not linear:
            raise ValueError("sampler.latent_mixing=true is invalid here: this model's logits are not a linear map "
                             "of its final state (soft-capped); use latent_mixing=auto")
        self.mix = bool(sampler._latent_mixing) and linear
        sampler._latent_mixing = self.mix  # recorded in the run's telemetry
        self.trainer = sampler.trainer
        self.shared = sampler.state == "shared"
        self._src = self._tgt = self._final = None
        self._ctx: _StepContext | None = None
        self.steps = 0  # sampler calls that trained (decode steps with ESamp rows)
        self._handles = []
        if sampler.taps == "layer0_to_final":
            self._handles.append(layers[0].register_forward_hook(self._store_layer0))
        else:
            self._handles.append(layers[0].input_layernorm.register_forward_hook(self._store("_src")))
            self._handles.append(layers[-1].input_layernorm.register_forward_hook(self._store("_tgt")))
        vsampler = runner.sampler
        self._patches = Patches()
        self._orig = {"compute_logits": self._patches.wrap(model, "compute_logits", self._compute_logits),
                      "sampler": self._patches.wrap(vsampler, "forward", self._sampler_forward),
                      "topk": self._patches.wrap(vsampler.topk_topp_sampler, "forward", self._topk_forward)}

    # ------------------------------------------------------------------------------------------- life
    def admit(self, slot: int, problem_id: str) -> None:
        """A prompt takes `slot`: fresh Distiller weights drawn from (seed, problem id), zeroed optimiser."""
        self.sampler.admit(slot, problem_id)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._patches.undo()

    # ------------------------------------------------------------------------------------------- taps
    def _store_layer0(self, _module, _inputs, output):
        hidden, residual = output
        self._src = hidden + residual  # a new tensor: layer 1's fused add-norm rewrites both in place

    def _store(self, attr: str):
        def hook(_module, _inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            setattr(self, attr, out.clone())
        return hook

    def _compute_logits(self, hidden_states):
        self._final = hidden_states  # (num sampled rows, H): the final normed state at each sampled position
        if self.mix:
            hidden_states = self._mix(hidden_states)
        return self._orig["compute_logits"](hidden_states)

    def _mix(self, hidden: torch.Tensor) -> torch.Tensor:
        """Latent mixing: the ESamp decode rows' final states become h + beta err (err = h - h_pred, or the
        noise control's draw), so the one LM head call gives the fused logits; other rows are left as they are."""
        rows, slots, steps, keys = self._decode_rows()
        if not rows:
            return hidden
        rows_t = _to(hidden.device, rows)
        tgt = hidden[rows_t]
        pred = self._predict_and_train(self._src[self._positions(rows, hidden.device)], tgt, slots, steps)
        err = tgt.float() - pred
        if self.sampler.error == "noise":
            err = self._same_norm_noise(err, keys, steps)
        mixed = hidden.clone()
        mixed[rows_t] = (tgt.float() + self.sampler.beta * err).to(hidden.dtype)
        self.steps += 1
        return mixed

    # ------------------------------------------------------------------------------------------- step
    def _sampler_forward(self, logits, sampling_metadata, *args, **kwargs):
        try:
            self._ctx = None if self.mix else self._prepare(sampling_metadata)
            return self._orig["sampler"](logits, sampling_metadata, *args, **kwargs)
        finally:
            self._ctx = None
            self._src = self._tgt = self._final = None

    def _decode_rows(self) -> tuple[list[int], list[int], list[int], list[tuple[str, int]]]:
        """(batch rows, Distiller slots, token index being sampled, (problem id, sample index)) of the ESamp
        decode rows."""
        batch = self.runner.input_batch
        rows, slots, steps, keys = [], [], [], []
        for i, rid in enumerate(batch.req_ids[: batch.num_reqs]):
            state = self.runner.requests[rid]
            args = state.sampling_params.extra_args if state.sampling_params is not None else None
            if not args or SLOT_KEY not in args:
                continue  # a plain request sharing the engine
            t = len(state.output_token_ids)
            if t < 1:
                continue  # first token (from the prefill) or a partial prefill: base sampler, no training
            rows.append(i)
            slots.append(0 if self.shared else int(args[SLOT_KEY]))
            steps.append(t)
            keys.append((self.sampler._slot_problem[int(args[SLOT_KEY])], int(args[SAMPLE_KEY])))
        return rows, slots, steps, keys

    def _prepare(self, metadata) -> _StepContext | None:
        rows, slots, steps, keys = self._decode_rows()
        if not rows:
            return None
        if metadata.temperature is None:
            raise RuntimeError("ESamp on vLLM needs temperature > 0 (all rows were greedy)")
        device = self._final.device
        positions = self._positions(rows, device)
        rows_t = _to(device, rows)
        src = self._src[positions]
        tgt = self._final[rows_t] if self.sampler.taps == "layer0_to_final" else self._tgt[positions]
        pred = self._predict_and_train(src, tgt, slots, steps)
        dtype = self._final.dtype
        if self.sampler.error == "noise":  # control: same-norm Gaussian noise in place of the latent error
            noise = self._same_norm_noise(tgt.float() - pred, keys, steps)
            correction = self.sampler.beta * self._orig["compute_logits"](noise.to(dtype)).float()
        else:
            dist = self._orig["compute_logits"](pred.to(dtype)).float()
            correction = -self.sampler.beta * dist
        temperature = metadata.temperature.to(device)[rows_t].float().unsqueeze(1)
        self.steps += 1
        return _StepContext(rows_t, correction, temperature)

    def _positions(self, rows: list[int], device: torch.device) -> torch.Tensor:
        """Token positions of the rows' sampled states in the step's flattened input (their query ends)."""
        num = self.runner.input_batch.num_reqs
        return _to(device, (self.runner.query_start_loc.cpu[1: num + 1].to(torch.long) - 1)[rows])

    def _same_norm_noise(self, err: torch.Tensor, keys, steps: list[int]) -> torch.Tensor:
        """The noise control: Gaussian noise of each row's latent-error norm, each row's draw keyed by (seed,
        problem id, sample index, token index), as in the hf engine."""
        noise = row_normals(self.sampler._info.seed, [k[0] for k in keys], [k[1] for k in keys], steps,
                            err.shape[-1]).to(err.device)
        return noise * (err.norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True).clamp_min(1e-12))

    def _predict_and_train(self, src, tgt, slots: list[int], steps: list[int]) -> torch.Tensor:
        """Lay the rows out as the bank's [slots, rows per slot, H] grid, predict with the current weights and
        take one optimiser step (`OnlineTrainer.step`); returns the float32 prediction per row."""
        S, H = self.trainer.num_slots, src.shape[-1]
        counts = [0] * S
        within = []
        for s in slots:
            within.append(counts[s])
            counts[s] += 1
        R = max(counts)
        device = src.device
        slot_t, within_t = _to(device, slots), _to(device, within)
        grid_src = src.new_zeros((S, R, H))
        grid_tgt = tgt.new_zeros((S, R, H))
        mask = torch.zeros((S, R), dtype=torch.bool, device=device)
        grid_src[slot_t, within_t] = src
        grid_tgt[slot_t, within_t] = tgt
        mask[slot_t, within_t] = True
        slot_steps = [0] * S  # loss-curve column: the slot's decode step (token index - 1), as in the hf engine
        for s, t in zip(slots, steps):
            slot_steps[s] = max(slot_steps[s], t - 1)
        pred = self.trainer.step(grid_src, grid_tgt, mask, slot_steps=_to(device, slot_steps))
        return pred[slot_t, within_t]

    # ------------------------------------------------------------------------------------------- fusion
    def _topk_forward(self, logits, generators, k, p):
        ctx = self._ctx
        if ctx is None:
            return self._orig["topk"](logits, generators, k, p)
        from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p

        scaled = apply_top_k_top_p(logits, k, p)  # logits / T after min-p, top-k, top-p; cut = -inf
        ref = scaled[ctx.rows]
        keep = torch.isfinite(ref)
        scaled[ctx.rows] = self._fuse(ref, ctx).masked_fill(~keep, float("-inf"))
        return self._orig["topk"](scaled, generators, None, None)  # already cut: draw only

    def _fuse(self, ref: torch.Tensor, ctx: _StepContext) -> torch.Tensor:
        """`ref` = logit_ref / T on the kept candidates. fuse_then_scale: ((1 + beta) logit_ref - beta dist) / T;
        subtract: (logit_ref - beta dist) / T; noise: (logit_ref + beta noise_logit) / T; scale_then_fuse:
        (1 + beta) (logit_ref / T) - beta dist (the distiller logit not divided by T)."""
        s = self.sampler
        scale = (1 + s.beta) if s.fusion == "extrapolate" and s.error == "distiller" else 1.0
        if s.fusion_order == "scale_then_fuse":
            return scale * ref + ctx.correction
        return scale * ref + ctx.correction / ctx.temperature


def _to(device: torch.device, values) -> torch.Tensor:
    """Host indices onto the device without a stream sync on CUDA (pinned memory, non-blocking copy)."""
    t = values if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=torch.long)
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
