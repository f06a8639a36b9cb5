"""ESamp's hidden-state taps: forward hooks that read the Distiller's (source, target) pair off the model."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from esamp.samplers.esamp.variants import TAPS

if TYPE_CHECKING:
    from esamp.models import LoadedModel


class HiddenTaps:
    """Forward hooks that keep only the LAST position of two internal activations, so no forward has to
    materialise every layer's hidden states (`output_hidden_states=True` would).

    kind `layer0_to_final` (the paper's): source = output of decoder layer 0 (residual stream after layer 0);
        target = final normed hidden state (the LM head's input; the loop already has it, so no hook).
    kind `input_norms` (the public reference code's, tllm): source = output of layers[0].input_layernorm;
        target = output of layers[-1].input_layernorm.
    """

    def __init__(self, lm: LoadedModel, kind: str = TAPS[0]):
        if kind not in TAPS:
            raise ValueError(f"taps={kind!r} is not one of {TAPS}")
        self.kind = kind
        self.source: torch.Tensor | None = None
        self.target: torch.Tensor | None = None
        self._handles = []
        if kind == "layer0_to_final":
            self._handles.append(lm.layers[0].register_forward_hook(self._store("source")))
        else:
            self._handles.append(lm.layers[0].input_layernorm.register_forward_hook(self._store("source")))
            self._handles.append(lm.layers[-1].input_layernorm.register_forward_hook(self._store("target")))

    def _store(self, slot: str):
        def hook(_module, _inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            setattr(self, slot, out[:, -1])

        return hook

    def repeat(self, n: int) -> None:
        """After a shared prefill: expand the stored rows to the n samples of each prompt."""
        self.source = self.source.repeat_interleave(n, 0)
        if self.target is not None:
            self.target = self.target.repeat_interleave(n, 0)

    def scatter(self, rows: torch.Tensor, total: int) -> None:
        """After a forward of only `rows` of `total`: put the stored rows back at their row indices (zeros
        elsewhere), so the sampler sees one row per batch row."""
        for slot in ("source", "target"):
            part = getattr(self, slot)
            if part is not None:
                full = part.new_zeros((total, *part.shape[1:]))
                full[rows] = part
                setattr(self, slot, full)

    def read(self, final_hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(source, target) for the current position; `final_hidden` is the normed last hidden state."""
        target = final_hidden if self.kind == "layer0_to_final" else self.target
        return self.source, target

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
