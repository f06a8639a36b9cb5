"""Online training of the Distiller bank: one optimiser step per decode step, per slot.

The optimiser is written by hand over the stacked ``[S, ...]`` parameters so that every slot is its own
optimisation problem (own gradient-norm clip, own Adam moments and step count) while the whole bank still
costs a fixed number of kernels per step, independent of S.

Usage per decode step (the sampler's side)::

    h_pred = trainer.step(h1, hL, active)   # prediction with weights through step t-1, then train on step t

``h_pred`` is computed with the current weights; the update on this step's pair is applied before ``step``
returns ("serial") or overlapped with the caller's next model forward ("async"); either way the next
``step`` predicts with weights that include this update ("serial semantics").
"""

from __future__ import annotations

import concurrent.futures
import math

import torch
from torch import Tensor

from esamp import checks
from esamp.samplers.esamp.distiller import DistillerBank
from esamp.samplers.esamp.variants import PAPER, VARIANTS

OPTIMIZERS = ("adam", "adamw")
MODES = ("serial", "async")
CLIP_EPS = 1e-6  # same epsilon as torch.nn.utils.clip_grad_norm_

_BANK_KEYS = ("kind", "intermediate", "rank", "init_down", "input_norm", "output_bias")
_TRAINER_KEYS = ("optimizer", "lr", "eps", "betas", "weight_decay", "grad_clip", "max_new_tokens", "loss_reduction")
LOSS_REDUCTIONS = ("mean", "sum")


def clip_slot_(grads: list[Tensor], max_norm: float) -> Tensor:
    """In-place ``torch.nn.utils.clip_grad_norm_`` over one slot's gradients (the slot's own 2-norm, exactly
    as clip_grad_norm_ would clip a standalone Distiller). Returns the norm before clipping."""
    norm = torch.stack([torch.linalg.vector_norm(g) for g in grads]).square().sum().sqrt()
    torch._foreach_mul_(grads, (max_norm / (norm + CLIP_EPS)).clamp(max=1.0))
    return norm


class OnlineTrainer:
    """Owns a :class:`DistillerBank` and trains it online with a batched, per-slot Adam/AdamW.

    Defaults: the paper variant's (``variants.PAPER``). Loss per step:
    ``sum_s mean_{r active in s} mean_h (D_s(src[s, r]) - tgt[s, r])^2``. Slots whose rows are all inactive get
    no update at all (parameters, moments and step count untouched).

    ``mode="async"``:
      * CUDA: the Distiller forward (prediction + loss) runs on a side stream, the caller's stream waits only
        for the forward; backward + optimiser stay queued on the side stream and overlap with whatever the
        caller enqueues next (its model forward). The next ``step``/``synchronize`` makes the caller's
        stream wait on the update's event (a device-side wait, no host sync).
      * CPU: backward + optimiser run on one background thread; the next ``step``/``synchronize`` joins it.
        Torch kernels release the GIL, so this can overlap with the caller's model forward, but both share
        the same CPU cores and intra-op thread pool: with few cores (e.g. 2) expect little or no speed-up
        and noisier timings; the result is the same as "serial" either way.
      While an update is pending, do not read or write the bank's parameters directly: call ``synchronize``.
    No step does a host sync on GPU: losses and error norms are accumulated into device buffers that
    ``stats()`` (which does sync) reads.
    """

    def __init__(
        self,
        bank: DistillerBank,
        optimizer: str = PAPER["optimizer"],
        lr: float = PAPER["lr"],
        eps: float = PAPER["eps"],
        betas: tuple[float, float] = PAPER["betas"],
        weight_decay: float = PAPER["weight_decay"],
        grad_clip: float | None = PAPER["grad_clip"],
        mode: str = "serial",
        max_new_tokens: int = 4096,
        loss_reduction: str = PAPER["loss_reduction"],
    ) -> None:
        self.loss_reduction = checks.one_of("sampler.distiller.loss_reduction", loss_reduction, LOSS_REDUCTIONS)
        checks.one_of("sampler.distiller.optimizer", optimizer, OPTIMIZERS)
        checks.one_of("sampler.trainer", mode, MODES)
        self.bank, self.optimizer, self.mode = bank, optimizer, mode
        self.lr, self.eps, self.betas = float(lr), float(eps), (float(betas[0]), float(betas[1]))
        self.weight_decay = float(weight_decay)
        self.grad_clip = float(grad_clip or 0.0)  # <= 0 / None: no clipping
        self._capacity0 = max(1, int(max_new_tokens))  # initial size of the loss buffers; they grow if exceeded
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._future: concurrent.futures.Future | None = None
        self._side: torch.cuda.Stream | None = None
        self._fwd_done = self._upd_done = None
        self._pending_cuda = False
        if mode == "async":
            if self.device.type == "cuda":
                self._side = torch.cuda.Stream(device=self.device)
                self._fwd_done, self._upd_done = torch.cuda.Event(), torch.cuda.Event()
        self._init_state()
        self._clear_stats()

    # ---------------------------------------------------------------- state
    @property
    def device(self) -> torch.device:
        return self.bank.device

    @property
    def num_slots(self) -> int:
        return self.bank.num_slots

    @torch.inference_mode(False)
    def _init_state(self) -> None:
        self._params = list(self.bank.parameters())
        self._exp_avg = [torch.zeros_like(p) for p in self._params]
        self._exp_avg_sq = [torch.zeros_like(p) for p in self._params]
        # Per-slot Adam step counts, float64 so bias corrections match torch's Python-float arithmetic.
        self._slot_steps = torch.zeros(self.num_slots, dtype=torch.float64, device=self.device)

    @torch.inference_mode(False)
    def _clear_stats(self) -> None:
        self.train_steps = 0  # host-side count of step() calls
        # rows: loss_sum (sum of active slots' losses), loss_count (#active slots), err_sum (sum of
        # ||tgt - pred|| over active rows), err_count (#active rows), rel_err_sum (sum of
        # ||tgt - pred|| / ||tgt|| over active rows), along_sum (sum of <e, tgt> / ||tgt||^2 over active rows,
        # e = tgt - pred: 1 = the error lies along the target, i.e. the prediction knows nothing of it); one
        # column per decode step of the slot's prompt.
        self._stats = torch.zeros(6, self._capacity0, dtype=torch.float64, device=self.device)
        # written by the update (which may run on a worker thread, so a tensor of its own): grad_norm_sum (the
        # slots' gradient norms before clipping), eps_share_sum (per slot, the share of Adam's elements whose
        # sqrt(v_hat) < eps, i.e. whose step is damped by eps rather than normalised by the gradient's scale).
        self._upd_stats = torch.zeros(2, self._capacity0, dtype=torch.float64, device=self.device)
        self._max_col = torch.tensor(-1, dtype=torch.long, device=self.device)  # last column written

    @torch.inference_mode(False)
    def reset(self, num_slots: int | None = None, generator: torch.Generator | None = None,
              clear_stats: bool = True, generators: list[torch.Generator] | None = None,
              max_new_tokens: int | None = None) -> None:
        """Fresh Distiller weights and zeroed optimiser state for every slot (resizing to ``num_slots``);
        ``generators``: one per slot (see DistillerBank.reset); ``max_new_tokens``: this run's decode steps (the
        telemetry buffers' size; a reused trainer is sized per run, not by its first run)."""
        self.synchronize()
        if max_new_tokens is not None:
            self._capacity0 = max(1, int(max_new_tokens))
        if num_slots is not None and int(num_slots) != self.num_slots:
            self.bank.resize(int(num_slots))
        self.bank.reset(generator, generators=generators)
        self._init_state()
        if clear_stats:
            self._clear_stats()

    @torch.inference_mode(False)
    def resize(self, num_slots: int, max_new_tokens: int | None = None) -> None:
        """``num_slots`` slots with zeroed optimiser state and statistics (buffers for ``max_new_tokens`` decode
        steps); weights are drawn per slot later (``reset_slots``), when a prompt takes the slot."""
        self.synchronize()
        if max_new_tokens is not None:
            self._capacity0 = max(1, int(max_new_tokens))
        if int(num_slots) != self.num_slots:
            self.bank.resize(int(num_slots))
        self._init_state()
        self._clear_stats()

    @torch.inference_mode(False)
    def reset_slots(self, slots, generator: torch.Generator | None = None) -> None:
        """Fresh weights + zeroed optimiser state for some slots only (a new prompt took those slots)."""
        self.synchronize()
        idx = torch.as_tensor(slots, dtype=torch.long, device=self.device).reshape(-1)
        self.bank.reset_slots(idx, generator)
        for t in (*self._exp_avg, *self._exp_avg_sq, self._slot_steps):
            t.index_fill_(0, idx, 0.0)

    def synchronize(self) -> None:
        """Wait for a pending asynchronous update (CUDA: the current stream waits; CPU: join the thread)."""
        if self._future is not None:
            fut, self._future = self._future, None
            fut.result()  # re-raises a failure of the background update
        if self._pending_cuda:
            torch.cuda.current_stream(self.device).wait_event(self._upd_done)
            self._pending_cuda = False

    def close(self) -> None:
        """Join the pending update and stop the CPU worker thread (a later async step starts a new one)."""
        self.synchronize()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _worker(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            # Single-threaded worker: a worker with its own OpenMP team (spinning between updates) was
            # measured to slow the main thread's model forward by ~30% on 2 cores; with one thread ~8%.
            self._pool = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="esamp-train", initializer=torch.set_num_threads, initargs=(1,))
        return self._pool

    @torch.inference_mode(False)
    def select_slots(self, keep: Tensor) -> None:
        """Keep only slots ``keep`` (weights, moments, step counts): their prompts left the batch."""
        self.synchronize()
        keep = keep.to(self.device)
        self.bank.select_slots(keep)
        self._params = list(self.bank.parameters())
        self._exp_avg = [m.index_select(0, keep) for m in self._exp_avg]
        self._exp_avg_sq = [v.index_select(0, keep) for v in self._exp_avg_sq]
        self._slot_steps = self._slot_steps.index_select(0, keep)

    # ---------------------------------------------------------------- the per-decode-step call
    @torch.inference_mode(False)
    def step(self, src: Tensor, tgt: Tensor, mask: Tensor | None = None, slot_steps: Tensor | None = None) -> Tensor:
        """Predict ``D(src)`` with the current weights, then train one step on ``(src, tgt)``.

        ``src, tgt: [S, R, H]`` (any float dtype; cast to float32), ``mask: [S, R]`` bool, True = active row
        (None = all active). ``slot_steps: [S]`` long: the decode step each slot's prompt is at (the loss
        curve is indexed by it; None = this call's index). Returns the float32 prediction ``[S, R, H]``,
        detached. Inactive rows still get a prediction but never touch the update (their values may be
        garbage, even NaN/inf).
        """
        self.synchronize()  # serial semantics: this prediction sees the previous update
        S, H = self.num_slots, self.bank.hidden
        if src.dim() != 3 or src.shape[0] != S or src.shape[2] != H or tgt.shape != src.shape:
            raise ValueError(f"src/tgt must be [S={S}, R, H={H}] and equal; got {tuple(src.shape)}, {tuple(tgt.shape)}")
        if mask is None:
            mask = torch.ones(src.shape[:2], dtype=torch.bool, device=self.device)
        elif mask.shape != src.shape[:2]:
            raise ValueError(f"mask must be [S, R] = {tuple(src.shape[:2])}; got {tuple(mask.shape)}")
        t = self.train_steps
        if slot_steps is None:
            slot_steps = torch.full((S,), t, dtype=torch.long, device=self.device)
            while t >= self._stats.shape[1]:  # grow the loss buffers (host-side decision, no sync)
                self._stats = torch.cat([self._stats, torch.zeros_like(self._stats)], dim=1)
                self._upd_stats = torch.cat([self._upd_stats, torch.zeros_like(self._upd_stats)], dim=1)
        else:  # the caller's steps are < max_new_tokens, the buffers' size (set per run by reset/resize)
            slot_steps = slot_steps.to(self.device).clamp(max=self._stats.shape[1] - 1)
        self._max_col = torch.maximum(self._max_col, slot_steps.max())

        if self._side is not None:  # CUDA async
            cur = torch.cuda.current_stream(self.device)
            self._side.wait_stream(cur)  # inputs were produced on the caller's stream
            with torch.cuda.stream(self._side):
                pred, loss, active = self._forward_loss(src, tgt, mask, slot_steps)
                self._fwd_done.record(self._side)
            cur.wait_event(self._fwd_done)  # the caller needs only the prediction
            # Caller-owned inputs were read on the side stream; the prediction was allocated there and is
            # used on the caller's stream: tell the caching allocator about both.
            for x in (src, tgt, mask):
                if x.is_cuda:
                    x.record_stream(self._side)
            pred.record_stream(cur)
            with torch.cuda.stream(self._side):
                self._update(loss, active, slot_steps)
                self._upd_done.record(self._side)
            self._pending_cuda = True
        else:
            pred, loss, active = self._forward_loss(src, tgt, mask, slot_steps)
            if self.mode == "async":  # CPU async: backward + optimiser on the worker thread
                self._future = self._worker().submit(self._update, loss, active, slot_steps)
            else:
                self._update(loss, active, slot_steps)
        self.train_steps += 1
        return pred.detach()

    def _forward_loss(self, src: Tensor, tgt: Tensor, mask: Tensor, slot_steps: Tensor):
        """One Distiller forward whose graph serves both the returned prediction and the loss."""
        dev = self.device
        with torch.enable_grad():
            # nan_to_num also makes a private float32 copy: the caller may overwrite its buffers while an
            # async backward still needs the saved input, and garbage in inactive rows must not turn the
            # (zero) gradient contribution of those rows into NaN.
            x = torch.nan_to_num(src.to(dev, torch.float32), nan=0.0, posinf=0.0, neginf=0.0)
            pred = self.bank(x)
            act = mask.to(dev) != 0  # a fresh tensor: a caller's inference-mode mask can't be saved for backward
            target = tgt.to(dev, torch.float32)
            # where (not multiply) so a NaN target in an inactive row cannot leak into the gradient.
            err = torch.where(act.unsqueeze(-1), pred - target, 0.0)
            # Algorithm 1 averages over hidden units ("mean", default); Eq. 10 sums them ("sum"): a factor H
            # that changes how Adam's eps and the gradient clip act.
            sq = err.square()
            row_loss = sq.mean(-1) if self.loss_reduction == "mean" else sq.sum(-1)  # [S, R], 0 on inactive
            rows = act.sum(1).to(torch.float32)  # [S]
            slot_loss = row_loss.sum(1) / rows.clamp_min(1.0)  # mean over the slot's active rows
            loss = slot_loss.sum()  # slots are independent: their gradients do not mix
        with torch.no_grad():
            active = rows > 0
            err_norm = err.norm(dim=-1)
            tgt_sq = target.square().sum(-1)
            rel = torch.where(act, err_norm / tgt_sq.sqrt().clamp_min(1e-12), 0.0)
            along = torch.where(act, -(err * target).sum(-1) / tgt_sq.clamp_min(1e-24), 0.0)
            per_slot = torch.stack([torch.where(active, slot_loss, 0.0), active.to(torch.float32),
                                    err_norm.sum(1), rows, rel.sum(1), along.sum(1)])  # [6, S]
            self._stats.index_add_(1, slot_steps, per_slot.to(self._stats.dtype))
        return pred, loss, active

    def _update(self, loss: Tensor, active: Tensor, slot_steps: Tensor) -> None:
        """Backward, then per slot: gradient-norm clip and one Adam/AdamW step with the slot's own step count.

        One code path for every slot (torch's fused single-pass Adam/AdamW kernel on the slot's views), so a
        slot's update is bitwise the same whether or not its neighbours train at this step: a prompt's
        samples never depend on which prompts share its batch. Slots with no active row are skipped
        (weights, moments and step count untouched); on CUDA that test would need a host sync, so there every
        slot steps (a slot without active rows belongs to a finished prompt the loop drops or resets).
        """
        for p in self._params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self._params]
            slots = range(self.num_slots) if self.device.type == "cuda" else \
                [s for s, a in enumerate(active.tolist()) if a]
            kernel = torch._fused_adamw_ if self.optimizer == "adamw" else torch._fused_adam_
            norms = torch.zeros(self.num_slots, dtype=torch.float64, device=self.device)
            for s in slots:
                g = [gr[s] for gr in grads]
                if self.grad_clip > 0:
                    norms[s] = clip_slot_(g, self.grad_clip)
                else:
                    norms[s] = torch.stack([torch.linalg.vector_norm(x) for x in g]).square().sum().sqrt()
                self._slot_steps[s] += 1.0
                step = self._slot_steps[s].to(torch.float32)
                params = [p[s] for p in self._params]
                kernel(params, g, [m[s] for m in self._exp_avg], [v[s] for v in self._exp_avg_sq], [],
                       [step] * len(params), lr=self.lr, beta1=self.betas[0], beta2=self.betas[1],
                       weight_decay=self.weight_decay, eps=self.eps, amsgrad=False, maximize=False)
            for p in self._params:
                p.grad = None  # free the grads; nothing reads them after the update
            self._record_update(norms, active, slot_steps)

    def _record_update(self, norms: Tensor, active: Tensor, slot_steps: Tensor) -> None:
        """Per active slot: the pre-clip gradient norm and the share of Adam elements damped by eps
        (sqrt(v_hat) < eps <=> v < eps^2 * (1 - beta2^t)), added at the slot's decode-step column."""
        bc2 = 1.0 - self.betas[1] ** self._slot_steps  # [S] float64; 0 before a slot's first step
        damped = torch.zeros(self.num_slots, dtype=torch.float64, device=self.device)
        total = 0
        for v in self._exp_avg_sq:
            thresh = (self.eps ** 2 * bc2).view(-1, *([1] * (v.dim() - 1)))
            damped += (v < thresh).flatten(1).sum(1)
            total += v[0].numel()
        act = active.to(torch.float64)
        self._upd_stats.index_add_(1, slot_steps, torch.stack([norms * act, damped / total * act]))

    # ---------------------------------------------------------------- reporting
    def stats(self) -> dict:
        """Training summary (synchronises with the device)."""
        self.synchronize()
        stats = self._stats.cpu()
        n = int(self._max_col) + 1
        loss_sum, loss_cnt, err_sum, err_cnt, rel_sum, along_sum = stats[:, :n].unbind(0)
        grad_sum, eps_sum = self._upd_stats.cpu()[:, :n].unbind(0)
        nan = float("nan")
        curve = [ls / lc if lc > 0 else nan for ls, lc in zip(loss_sum.tolist(), loss_cnt.tolist())]
        finite = [c for c in curve if not math.isnan(c)]
        err_total = float(err_cnt.sum())
        return {
            "train_steps": self.train_steps,
            "update_steps": len(finite),  # steps where at least one slot trained
            "loss_curve": curve,
            "count_curve": [int(c) for c in loss_cnt.tolist()],  # prompts (slots) trained at each step
            "first_loss": finite[0] if finite else nan,
            "last_loss": finite[-1] if finite else nan,
            "mean_loss": sum(finite) / len(finite) if finite else nan,
            "mean_error_norm": float(err_sum.sum()) / err_total if err_total > 0 else nan,
            "error_norm_curve": [es / ec if ec > 0 else nan for es, ec in zip(err_sum.tolist(), err_cnt.tolist())],
            "rel_error_norm_curve": [rs / ec if ec > 0 else nan for rs, ec in zip(rel_sum.tolist(), err_cnt.tolist())],
            "mean_rel_error_norm": float(rel_sum.sum()) / err_total if err_total > 0 else nan,
            "err_along_h_curve": [a / ec if ec > 0 else nan for a, ec in zip(along_sum.tolist(), err_cnt.tolist())],
            "mean_err_along_h": float(along_sum.sum()) / err_total if err_total > 0 else nan,
            "grad_norm_curve": [g / lc if lc > 0 else nan for g, lc in zip(grad_sum.tolist(), loss_cnt.tolist())],
            "eps_damped_curve": [e / lc if lc > 0 else nan for e, lc in zip(eps_sum.tolist(), loss_cnt.tolist())],
            "trained_rows": int(err_total),
            "slot_steps": [int(s) for s in self._slot_steps.tolist()],
            "mode": self.mode,
            "optimizer": self.optimizer,
            "kind": self.bank.kind,
            "num_slots": self.num_slots,
            "lr": self.lr,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "grad_clip": self.grad_clip,
            "loss_reduction": self.loss_reduction,
        }

    def __repr__(self) -> str:
        return (f"OnlineTrainer(mode={self.mode}, optimizer={self.optimizer}, lr={self.lr}, eps={self.eps}, "
                f"wd={self.weight_decay}, clip={self.grad_clip}, bank={self.bank.extra_repr()})")


def make_trainer(variant: str = "paper", *, hidden: int, num_slots: int = 1, mode: str = "serial",
                 device=None, **overrides) -> OnlineTrainer:
    """Build bank + trainer for an ESamp variant ("paper" or "tllm"); any default can be overridden.

    Overrides: bank keys ``_BANK_KEYS``, trainer keys ``_TRAINER_KEYS``. None means "the variant's default"
    (so a config can pass all keys); disable clipping with ``grad_clip=0``.
    """
    checks.one_of("sampler.variant", variant, VARIANTS)
    unknown = set(overrides) - set(_BANK_KEYS) - set(_TRAINER_KEYS)
    if unknown:
        raise TypeError(f"unknown trainer option(s) {sorted(unknown)}; allowed: {_BANK_KEYS + _TRAINER_KEYS}")
    cfg = {**VARIANTS[variant], **{k: v for k, v in overrides.items() if v is not None}}
    bank = DistillerBank(num_slots=num_slots, hidden=hidden, device=device,
                         **{k: cfg[k] for k in _BANK_KEYS if k in cfg})
    return OnlineTrainer(bank, mode=mode, **{k: cfg[k] for k in _TRAINER_KEYS if k in cfg})
