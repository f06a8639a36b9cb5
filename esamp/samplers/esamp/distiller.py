"""The Distiller bank: many small per-prompt Distillers evaluated as one batched network.

Every parameter is a stacked float32 tensor whose leading dimension is the slot (one slot per prompt in the
``per_prompt`` layout, a single slot in the ``shared`` layout). The forward is a handful of ``torch.bmm``
calls over all slots at once, so S prompts cost the same number of kernels as one.

Weights are stored input-major (``x @ W``, shape ``[S, in, out]``) so they feed ``bmm`` without transposes;
``W[s]`` is the transpose of the matching ``nn.Linear.weight``. The gate and up projections of a block are
fused into one ``[S, in, 2 * out]`` tensor (first half gate, second half up): one bmm instead of two.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from esamp import checks
from esamp.samplers.esamp.variants import PAPER, VARIANT_NAMES, VARIANTS

KINDS = VARIANT_NAMES
LN_EPS = 1e-5
RMS_EPS = 1e-6
INPUT_NORMS = ("none", "rms")
OUTPUT_BIASES = ("none", "prompt")


class DistillerBank(nn.Module):
    """``num_slots`` independent Distillers ``D_s: R^H -> R^H`` with stacked float32 weights.

    kind ``paper``: two residual gated-SwiGLU blocks, intermediate width ``intermediate``:
        ``y1 = x + W_down1(silu(W_gate1 x) * W_up1 x)``, ``y2 = y1 + W_down2(silu(W_gate2 y1) * W_up2 y1)``.
        Parameters ``w_gu1, w_gu2: [S, H, 2I]`` (gate | up), ``w_down1, w_down2: [S, I, H]``.
    kind ``tllm``: one low-rank gated residual block with an affine output LayerNorm, rank ``rank``:
        ``LayerNorm(x + ((x A) * silu(x G + g)) B)``, ``g`` a learnable gate bias initialised to 1.
        Parameters ``w_ag: [S, H, 2r]`` (A | G), ``gate_bias: [S, 1, r]``, ``w_b: [S, r, H]``,
        ``ln_weight, ln_bias: [S, 1, H]``.

    Defaults: the paper variant's (``esamp.samplers.esamp.variants``; ``rank``: the tllm variant's).

    ``init_down`` (paper only): ``"linear"`` (default) draws W_down like ``nn.Linear`` (kaiming-uniform,
    U(-1/sqrt(fan_in), 1/sqrt(fan_in))), i.e. the whole Distiller is a plain "random init" network as the
    paper says; ``"zero"`` starts each block as the identity (h_pred = h1 before the first update), an
    ablation.

    Two switches for the Distiller-learning study (neither is the paper's; both default off):
    ``input_norm="rms"`` divides each input row by its root mean square before the blocks (the first layer's
    state of Qwen2.5 has norm ~5 while the target has ~170: the residual path starts far from its target);
    ``output_bias="prompt"`` adds a learnable per-slot output bias ``out_bias: [S, 1, H]``, zero at reset and
    set from the prompt's own prefill states at admission (``set_output_bias``): an EXTENSION, since the paper
    trains and predicts from decode tokens only.
    """

    def __init__(
        self,
        kind: str,
        num_slots: int,
        hidden: int,
        intermediate: int = PAPER["intermediate"],
        rank: int = VARIANTS["tllm"]["rank"],
        device=None,
        init_down: str = PAPER["init_down"],
        input_norm: str = PAPER["input_norm"],
        output_bias: str = PAPER["output_bias"],
    ) -> None:
        super().__init__()
        checks.one_of("Distiller kind", kind, KINDS)
        checks.one_of("sampler.distiller.init_down", init_down, ("linear", "zero"))
        checks.integer("num_slots", int(num_slots))
        checks.integer("hidden", int(hidden))
        self.kind, self.hidden, self.intermediate, self.rank = kind, int(hidden), int(intermediate), int(rank)
        checks.one_of("sampler.distiller.input_norm", input_norm, INPUT_NORMS)
        checks.one_of("sampler.distiller.output_bias", output_bias, OUTPUT_BIASES)
        self.init_down, self.input_norm, self.output_bias = init_down, input_norm, output_bias
        for name, shape in self._shapes(int(num_slots)).items():
            self.register_parameter(name, nn.Parameter(torch.empty(shape, dtype=torch.float32, device=device)))
        self.reset()

    # ---------------------------------------------------------------- construction / init
    def _shapes(self, s: int) -> dict[str, tuple[int, ...]]:
        h, i, r = self.hidden, self.intermediate, self.rank
        if self.kind == "paper":
            shapes = {"w_gu1": (s, h, 2 * i), "w_down1": (s, i, h), "w_gu2": (s, h, 2 * i), "w_down2": (s, i, h)}
        else:
            shapes = {"w_ag": (s, h, 2 * r), "gate_bias": (s, 1, r), "w_b": (s, r, h),
                      "ln_weight": (s, 1, h), "ln_bias": (s, 1, h)}
        if self.output_bias == "prompt":
            shapes["out_bias"] = (s, 1, h)
        return shapes

    @property
    def num_slots(self) -> int:
        return next(iter(self.parameters())).shape[0]

    @property
    def device(self) -> torch.device:
        return next(iter(self.parameters())).device

    def _fresh(self, n: int, generator: torch.Generator | None) -> dict[str, Tensor]:
        """Fresh random weights for ``n`` slots (drawn on the bank's device, float32)."""
        kw = dict(dtype=torch.float32, device=self.device)
        out = {}
        for name, shape in self._shapes(n).items():
            t = torch.empty(shape, **kw)
            if name.startswith(("w_gu", "w_down")):  # paper: nn.Linear's default bound 1/sqrt(fan_in)
                if name.startswith("w_down") and self.init_down == "zero":
                    t.zero_()
                else:
                    bound = 1.0 / math.sqrt(shape[1])
                    t.uniform_(-bound, bound, generator=generator)
            elif name in ("w_ag", "w_b"):  # tllm: N(0, 0.02)
                t.normal_(0.0, 0.02, generator=generator)
            elif name in ("gate_bias", "ln_weight"):
                t.fill_(1.0)
            else:  # ln_bias, out_bias (set from the prompt at admission)
                t.zero_()
            out[name] = t
        return out

    @torch.no_grad()
    def reset(self, generator: torch.Generator | None = None,
              generators: list[torch.Generator] | None = None) -> None:
        """Fresh random weights for every slot (a new prompt starts with an untrained Distiller): one draw for
        the whole bank from `generator`, or slot i drawn from `generators[i]` (so a prompt's initial
        Distiller does not depend on which other prompts share its bank)."""
        if generators is None:
            for name, t in self._fresh(self.num_slots, generator).items():
                getattr(self, name).copy_(t)
            return
        if len(generators) != self.num_slots:
            raise ValueError(f"reset needs one generator per slot ({self.num_slots}), got {len(generators)}")
        for i, gen in enumerate(generators):
            for name, t in self._fresh(1, gen).items():
                getattr(self, name)[i:i + 1].copy_(t)

    @torch.no_grad()
    def reset_slots(self, slots, generator: torch.Generator | None = None) -> None:
        """Fresh random weights for the given slot indices only (continuous batching: one prompt restarts)."""
        idx = torch.as_tensor(slots, dtype=torch.long, device=self.device).reshape(-1)
        for name, t in self._fresh(int(idx.numel()), generator).items():
            getattr(self, name).index_copy_(0, idx, t)

    @torch.inference_mode(False)
    @torch.no_grad()
    def set_output_bias(self, slot: int, bias: Tensor) -> None:
        """``output_bias="prompt"``: slot's output bias := ``bias`` ([H], e.g. the mean of the prompt's own
        prefill target states), so its first prediction is already at the prompt's typical final state."""
        if self.output_bias != "prompt":
            raise ValueError("set_output_bias needs output_bias='prompt'")
        self.out_bias[slot, 0].copy_(bias.to(self.out_bias))

    @torch.inference_mode(False)
    @torch.no_grad()
    def select_slots(self, keep: Tensor) -> None:
        """Keep only slots ``keep`` (in that order): prompts left the batch and nothing took their slots."""
        for p in self.parameters():
            p.data = p.data.index_select(0, keep)

    @torch.inference_mode(False)
    @torch.no_grad()
    def resize(self, num_slots: int) -> None:
        """Change the number of slots (new tensors; weights are left uninitialised until ``reset``)."""
        for name, shape in self._shapes(int(num_slots)).items():
            p = getattr(self, name)
            p.data = torch.empty(shape, dtype=torch.float32, device=p.device)

    # ---------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tensor:
        """``x: [S, R, H]`` -> ``[S, R, H]``; row r of slot s goes through Distiller s. Float32 in and out."""
        if x.dim() != 3 or x.shape[0] != self.num_slots or x.shape[2] != self.hidden:
            raise ValueError(f"expected input [S={self.num_slots}, R, H={self.hidden}], got {tuple(x.shape)}")
        x = x.float()
        if self.input_norm == "rms":
            x = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + RMS_EPS)
        if self.kind == "paper":
            for gu, down in ((self.w_gu1, self.w_down1), (self.w_gu2, self.w_down2)):
                gate, up = torch.bmm(x, gu).chunk(2, dim=-1)
                x = x + torch.bmm(F.silu(gate) * up, down)
            y = x
        else:
            a, g = torch.bmm(x, self.w_ag).chunk(2, dim=-1)
            y = x + torch.bmm(a * F.silu(g + self.gate_bias), self.w_b)
            # Per-slot affine: normalise without weights, then broadcast the [S, 1, H] weight/bias.
            y = F.layer_norm(y, (self.hidden,), eps=LN_EPS) * self.ln_weight + self.ln_bias
        return y + self.out_bias if self.output_bias == "prompt" else y

    # ---------------------------------------------------------------- introspection
    def param_count(self, per_slot: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n // self.num_slots if per_slot else n

    def extra_repr(self) -> str:
        width = f"intermediate={self.intermediate}" if self.kind == "paper" else f"rank={self.rank}"
        return (f"kind={self.kind}, num_slots={self.num_slots}, hidden={self.hidden}, {width}, "
                f"params_per_slot={self.param_count(per_slot=True)}")
