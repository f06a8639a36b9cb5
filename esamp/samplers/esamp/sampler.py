"""Exploratory Sampling (ESamp): reweight each step's candidates away from what this prompt's online
Distiller already predicts well. Specification: docs/esamp-method.md (shared) and the paper.

Per decode step t and active row (prompt p):
    h_pred = D_p(h_src)                       weights updated through step t-1
    logit_new = (1 + beta) * logit_ref - beta * lm_head(h_pred)   on the base filter's surviving tokens
    sample softmax(logit_new / T), then one optimiser step on MSE(D_p(h_src), h_tgt) over p's active rows.

Paths (all chosen by config, recorded in results.json):
- latent mixing `lm_head((1 + beta) h - beta h_pred)` when no filter is set, the taps are `layer0_to_final`
  (target = the LM head's input) and the head has no bias: one vocabulary projection instead of two. Exact in real
  arithmetic; in a bf16 model equal to logit fusion only up to rounding (the mix is rounded to bf16 before
  the projection): the next-token distributions agree closely (tested), individual tokens can differ;
- logit fusion otherwise (filters keep/drop candidates on the model's own logits first);
- `fusion_order: scale_then_fuse` (the public code): logits / T -> filters -> (1 + beta) * kept - beta *
  logit_dist (distiller logit NOT divided by T) -> sample;
- ablations: `fusion: subtract` (logit_ref - beta * logit_dist), `error: noise` (the latent error
  h - h_pred replaced by Gaussian noise of the same norm), `state: shared` (one Distiller for the batch).

Step 0 (the first generated token, computed from the prompt's last position) uses the base sampler and
does not train: prefill positions are never training data, and an untrained Distiller's prediction there
would be noise (`intervene_first_token: false`, recorded).
"""
from __future__ import annotations

import math
from typing import Any

import torch

from esamp import checks
from esamp.samplers.base import BatchInfo, Choice, StepView
from esamp.samplers.truncation import TruncationSampler, sample
from esamp.seeding import prompt_generator, row_normals
from esamp.samplers.esamp.trainer import LOSS_REDUCTIONS, MODES, make_trainer
from esamp.samplers.esamp.variants import (ERRORS, FUSION_ORDERS, FUSIONS, KIND_KEYS, OPTIMISER_KEYS, STATES, TAPS,
                                           VARIANT_ORDERS, VARIANT_TAPS, VARIANTS, canonical_settings, current_value)


class ESampSampler(TruncationSampler):
    min_new_tokens = 2  # the first token comes from the prefill; the Distiller trains from the second on
    def __init__(self, *, n: int, temperature: float, top_k: int | None, top_p: float | None,
                 min_p: float | None, beta: float, variant: str, taps: str | None, state: str, trainer: str,
                 fusion: str, fusion_order: str | None, error: str, latent_mixing: bool | str,
                 distiller: dict | None, name: str):
        super().__init__(n=n, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, name=name)
        checks.number("sampler.beta", beta, at_least=0)
        checks.one_of("sampler.variant", variant, VARIANTS)
        self.variant = variant
        # old knob names (paper, naive, tllm) are translated with a warning; the new names are what is recorded
        taps, fusion, fusion_order = (current_value(k, v) for k, v in
                                      (("taps", taps), ("fusion", fusion), ("fusion_order", fusion_order)))
        self.taps = taps or VARIANT_TAPS[variant]  # the loop reads this to install the hidden-state hooks
        checks.one_of("sampler.taps", self.taps, TAPS)
        checks.one_of("sampler.state", state, STATES)
        checks.one_of("sampler.trainer", trainer, MODES)
        checks.one_of("sampler.fusion", fusion, FUSIONS)
        self.fusion_order = fusion_order or VARIANT_ORDERS[variant]
        checks.one_of("sampler.fusion_order", self.fusion_order, FUSION_ORDERS)
        checks.one_of("sampler.error", error, ERRORS)
        if error == "noise" and fusion != "extrapolate":
            raise ValueError("sampler.error=noise is invalid with sampler.fusion=subtract: allowed with "
                             "fusion=extrapolate")
        checks.one_of("sampler.latent_mixing", latent_mixing, ("auto", True, False))
        self.beta, self.state, self.trainer_mode, self.fusion, self.error = float(beta), state, trainer, fusion, error
        self.latent_mixing_cfg = latent_mixing
        self.distiller_cfg = _distiller_options(variant, distiller)
        self.trainer = None
        self._latent_mixing = False
        self._info: BatchInfo | None = None

    canonical_settings = staticmethod(canonical_settings)  # a resume compares configs under the new knob names

    # ------------------------------------------------------------------------------------- batch life
    def _can_mix(self, lm) -> bool:
        """Latent mixing is exact only when the fused logits are a linear map of the latent mix."""
        head_bias = getattr(lm.lm_head, "bias", None) is not None
        return (not self.has_filter and self.taps == "layer0_to_final" and self.fusion == "extrapolate"
                and self.fusion_order == "fuse_then_scale" and not head_bias)

    def begin(self, info: BatchInfo) -> None:
        """A run starts with `info.num_prompts` slots; per-prompt Distillers are drawn in `admit`."""
        self._info = info
        slots = info.num_prompts if self.state == "per_prompt" else 1
        if self.trainer is None or self.trainer.bank.hidden != info.lm.hidden_size:
            self.trainer = make_trainer(self.variant, hidden=info.lm.hidden_size, num_slots=slots,
                                        mode=self.trainer_mode, device=info.device,
                                        max_new_tokens=info.max_new_tokens, **self.distiller_cfg)
        # shared: one Distiller for every row in flight, drawn once per run; per_prompt: drawn per admission
        if self.state == "shared":
            self.trainer.reset(num_slots=slots, generators=[prompt_generator(info.seed, None, info.device)],
                               max_new_tokens=info.max_new_tokens)
        else:
            self.trainer.resize(slots, max_new_tokens=info.max_new_tokens)  # telemetry sized by this run
        if self.latent_mixing_cfg is True and not self._can_mix(info.lm):
            raise ValueError("sampler.latent_mixing=true is invalid here: it needs no top_k/top_p/min_p, "
                             "taps=layer0_to_final, fusion=extrapolate, fusion_order=fuse_then_scale and an LM head "
                             "without bias")
        self._latent_mixing = self._can_mix(info.lm) if self.latent_mixing_cfg == "auto" else bool(self.latent_mixing_cfg)
        self._slot_problem: list[str | None] = [None] * info.num_prompts  # the noise control's row keys

    def admit(self, slot: int, problem_id: str, prompt_ids: list[int] | None = None) -> None:
        """A prompt enters `slot`: its fresh Distiller is drawn from (seed, problem id), so a prompt's
        Distiller (and thus its samples) does not depend on which prompts share the batch or when it entered."""
        self._slot_problem[slot] = problem_id
        if self.state == "per_prompt":
            self.trainer.reset_slots([slot], prompt_generator(self._info.seed, problem_id, self._info.device))

    def select_rows(self, keep: torch.Tensor) -> None:
        slots = keep[:: self._info.n] // self._info.n  # whole slots leave, in order
        self._slot_problem = [self._slot_problem[g] for g in slots.tolist()]
        if self.state == "per_prompt":  # keep the remaining prompts' Distillers
            self.trainer.select_slots(slots)

    def choose(self, view: StepView) -> Choice:
        if view.prefill:
            if self.distiller_cfg.get("output_bias") == "prompt":  # extension: the bias from the prompt's states
                self.trainer.synchronize()
                slot = view.slot if self.state == "per_prompt" else 0
                self.trainer.bank.set_output_bias(slot, view.prompt_hidden.float().mean(0))
            return super().choose(view)
        src, tgt = view.taps
        h_pred = self._predict_and_train(src, tgt, view)
        lm, dtype = view.lm, view.hidden.dtype
        err = tgt.float() - h_pred  # the latent error: large = novel for this prompt's samples
        if self.error == "noise":
            err = self._same_norm_noise(err, view)
        if self._latent_mixing:  # lm_head(h + beta * err) == (1 + beta) * lm_head(h) - beta * lm_head(h_pred)
            mixed = (view.hidden.float() + self.beta * err).to(dtype)
            logits = lm.lm_head(mixed).float()
            if self.temperature == 0:
                return Choice(logits.argmax(-1))
            return Choice(sample(logits / self.temperature, view.uniform))

        logit_ref = view.logits()
        if self.error == "noise":  # the control: same-norm noise instead of the Distiller's error
            noise_logit = lm.lm_head(err.to(dtype)).float()
            fuse = lambda ref: ref + self.beta * noise_logit  # noqa: E731
        else:
            logit_dist = lm.lm_head(h_pred.to(dtype)).float()
            if self.fusion == "subtract":  # ablation: plain subtraction, a different (worse) formula
                fuse = lambda ref: ref - self.beta * logit_dist  # noqa: E731
            else:
                fuse = lambda ref: (1 + self.beta) * ref - self.beta * logit_dist  # noqa: E731

        if self.temperature == 0:
            keep = torch.isfinite(self.filtered(logit_ref, 1.0))
            return Choice(fuse(logit_ref).masked_fill(~keep, float("-inf")).argmax(-1))
        if self.fusion_order == "scale_then_fuse":
            # tLLM: scale by T and filter first, then fuse the kept candidates with the UNscaled distiller
            # logit; removed candidates stay at -inf; no further division by T.
            return Choice(sample(fuse(self.filtered(logit_ref)), view.uniform))
        # Paper: the base filter decides the candidates on the model's logits; fuse on them; sample at T.
        keep = torch.isfinite(self.filtered(logit_ref))
        return Choice(sample(fuse(logit_ref).masked_fill(~keep, float("-inf")) / self.temperature, view.uniform))

    def _same_norm_noise(self, err: torch.Tensor, view: StepView) -> torch.Tensor:
        """The noise control: each active row's latent error replaced by Gaussian noise of the same norm, drawn
        from the row's own stream keyed by (seed, problem id, sample index, step), like the sampling uniforms,
        so the control's samples never depend on batch neighbours, admission order or a resume. Finished rows
        get zeros (their tokens are never used)."""
        n = self._info.n
        active = view.active.nonzero().squeeze(1)  # a host read: an ablation, not the paper's path
        rows, steps = active.tolist(), view.row_steps.index_select(0, active).tolist()
        drawn = row_normals(self._info.seed, [self._slot_problem[r // n] for r in rows], [r % n for r in rows],
                            steps, err.shape[-1]).to(err.device)
        noise = torch.zeros_like(err).index_copy_(0, active.to(err.device), drawn)
        return noise * (err.norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True).clamp_min(1e-12))

    def _predict_and_train(self, src: torch.Tensor, tgt: torch.Tensor, view: StepView) -> torch.Tensor:
        """Rows are slot-major (row = slot * n + sample), which is the bank's [slots, rows per slot, H] layout
        as a view: predict with the current weights and take one training step on the active rows."""
        H, slots = src.shape[-1], self.trainer.num_slots
        steps = view.row_steps[:: view.active.numel() // slots] if view.row_steps is not None else None
        pred = self.trainer.step(src.view(slots, -1, H), tgt.view(slots, -1, H), view.active.view(slots, -1),
                                 slot_steps=None if steps is None else steps - 1)
        return pred.view(-1, H)

    def snapshot(self) -> dict[str, Any]:
        if self.trainer is None:
            return {}
        stats = self.trainer.stats()
        return {k: stats[k] for k in ("train_steps", "update_steps", "loss_curve", "count_curve", "error_norm_curve",
                                      "rel_error_norm_curve", "mean_error_norm", "mean_rel_error_norm",
                                      "err_along_h_curve", "mean_err_along_h", "grad_norm_curve",
                                      "eps_damped_curve", "first_loss", "last_loss", "trained_rows") if k in stats} | {
                "latent_mixing": self._latent_mixing}  # resolved: a resumed run that generates nothing reads it here

    def end(self) -> dict[str, Any]:
        out = self.snapshot()
        if self.trainer is not None:
            self.trainer.close()  # joins a pending update and stops the CPU worker thread
        return out

    # ------------------------------------------------------------------------------------- reporting
    def summarize(self, telemetry: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Merge the parts of a run (a resumed run has one per session): curves are averaged per step index,
        weighted by the prompts each part trained at that step (`count_curve`; 1 per part if absent)."""
        telemetry = [t for t in telemetry if t]
        steps = sum(t.get("train_steps", 0) for t in telemetry)
        if telemetry and steps == 0:
            raise RuntimeError("ESamp took 0 Distiller training steps: the intervention never ran "
                               "(task.max_new_tokens must be >= 2); refusing to report it as an ESamp result")

        def mean_curve(key: str) -> list[float]:
            length = max((len(t.get(key, [])) for t in telemetry), default=0)
            out = []
            for i in range(length):
                pairs = [(t[key][i], (t.get("count_curve") or [1] * len(t[key]))[i]) for t in telemetry
                         if i < len(t.get(key, [])) and not math.isnan(t[key][i])]
                weight = sum(w for _, w in pairs)
                out.append(sum(v * w for v, w in pairs) / weight if weight else float("nan"))
            return out

        loss = mean_curve("loss_curve")
        finite = [v for v in loss if not math.isnan(v)]
        rows = sum(t.get("trained_rows", 0) for t in telemetry)
        err = sum(t.get("mean_error_norm", 0) * t.get("trained_rows", 0) for t in telemetry
                  if not math.isnan(t.get("mean_error_norm", float("nan"))))
        rel = sum(t.get("mean_rel_error_norm", 0) * t.get("trained_rows", 0) for t in telemetry
                  if not math.isnan(t.get("mean_rel_error_norm", float("nan"))))
        return {"train_steps": steps, "parts": len(telemetry), "loss_curve": loss, "count_curve": [
                    sum((t.get("count_curve") or [])[i] for t in telemetry if i < len(t.get("count_curve") or []))
                    for i in range(len(loss))],
                "error_norm_curve": mean_curve("error_norm_curve"),
                "rel_error_norm_curve": mean_curve("rel_error_norm_curve"),
                "err_along_h_curve": mean_curve("err_along_h_curve"),
                "grad_norm_curve": mean_curve("grad_norm_curve"),
                "eps_damped_curve": mean_curve("eps_damped_curve"),
                "mean_rel_error_norm": rel / rows if rows else None,
                "first_loss": finite[0] if finite else None, "last_loss": finite[-1] if finite else None,
                "mean_error_norm": err / rows if rows else None, "trained_rows": rows, **self.describe(),
                **self._parts_mixing(telemetry)}

    def _parts_mixing(self, telemetry: list[dict[str, Any]]) -> dict[str, Any]:
        """The latent mixing the parts ran with, when this process bound no model (a resume with nothing left
        to generate): their resolved value, a list where parts differ; nothing for parts that predate it."""
        if self._info is not None:
            return {}
        seen = [t["latent_mixing"] for t in telemetry if "latent_mixing" in t]
        if not seen:
            return {}
        return {"latent_mixing": seen[0] if len(set(seen)) == 1 else seen}

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(beta=self.beta, variant=self.variant, taps=self.taps, state=self.state, trainer=self.trainer_mode,
                 fusion=self.fusion, fusion_order=self.fusion_order, error=self.error,
                 latent_mixing=self.latent_mixing_cfg if self._info is None else self._latent_mixing,
                 intervene_first_token=False,
                 distiller={**VARIANTS[self.variant], **self.distiller_cfg},
                 order=("temperature -> top_k -> top_p -> min_p on the model's logits -> fuse kept candidates -> "
                        "sample" if self.fusion_order == "fuse_then_scale" else
                        "logits / T -> top_k -> top_p -> min_p -> fuse kept with unscaled distiller logit -> sample"))
        return d


def _distiller_options(variant: str, distiller: dict | None) -> dict:
    """`sampler.distiller.*` minus nulls (null = the variant's default), checked: a key the variant does not
    use is a config error, never silently ignored."""
    opts = {k: v for k, v in dict(distiller or {}).items() if v is not None}
    allowed = KIND_KEYS[VARIANTS[variant]["kind"]] + OPTIMISER_KEYS
    for key in opts:
        if key not in allowed:
            raise ValueError(f"sampler.distiller.{key} is invalid with sampler.variant={variant}: allowed keys are "
                             f"{', '.join(allowed)}")
    if opts.get("output_bias") == "prompt" and VARIANTS[variant]["kind"] != "paper":
        raise ValueError("sampler.distiller.output_bias=prompt is invalid with sampler.variant=tllm: allowed with "
                         "variant=paper (the bias is the mean of the prompt's final normed states, the paper's target)")
    checks.one_of("sampler.distiller.loss_reduction", opts.get("loss_reduction", VARIANTS[variant]["loss_reduction"]),
                  LOSS_REDUCTIONS)
    return opts
