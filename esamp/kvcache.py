"""A preallocated KV cache with one write position per row, for the decoding loop's continuous batching.

Why not transformers' caches: `DynamicCache` grows every layer's tensors with `torch.cat` at every step (the
whole cache is copied each step) and all rows share one sequence length, so rows of prompts that entered the
batch at different times would need left padding that shifts under them. Here each layer owns fixed buffers
`[rows, kv_heads, width, head_dim]`; row r's tokens sit at columns `0 .. length[r]-1` (no padding at all),
a decode step writes column `length[r]` of every row in place, and attention reads the columns
`0 .. max(length)` through an additive 4D mask that is built once per step and shared by all layers (HF
bodies pass a 4D mask through as "already prepared").

A prompt entering rows `rows` is prefilled on its own (batch 1: its numbers never depend on other prompts),
and its prefill K/V are copied into those rows (`load`).

`ModelStream` is one model decoded over the loop's rows with its own `RowCache`: the loop runs the model's
(the expert's), and a sampler that needs a second model alongside (contrastive decoding's amateur) runs its
own, so no sampler touches a cache's buffers. Rows are slot-major: row = slot * n + sample.
"""
from __future__ import annotations

import torch


class RowCache:
    """KV buffers for `rows` rows of up to `width` tokens; implements the `update` call of HF attention."""

    def __init__(self, model, rows: int, width: int, device, dtype):
        cfg = model.config
        if any(t != "full_attention" for t in getattr(cfg, "layer_types", None) or ["full_attention"]):
            raise ValueError(f"model {cfg.model_type}: sliding-window layers are not supported by the decoding "
                             "loop's row cache (all layers must use full attention)")
        heads = cfg.num_key_value_heads or cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.layers = cfg.num_hidden_layers
        self.width = int(width)
        shape = (rows, heads, self.width, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(self.layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(self.layers)]
        self.length = torch.zeros(rows, dtype=torch.long, device=device)  # tokens held per row
        self.dtype = dtype
        self._cols: torch.Tensor | None = None  # write column per forwarded row during a decode step
        self._subset: torch.Tensor | None = None  # the rows a decode step forwards (None: all)
        self._span = 0                           # columns attention reads during a decode step

    @property
    def rows(self) -> int:
        return self.keys[0].shape[0]

    # ------------------------------------------------------------------ the model's side
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        """Decode step: key/value `[rows, heads, 1, d]` go to column `length[r]` of each row; returns the
        first `span` columns of every row (a view: nothing is copied), or, when the step forwards only some
        rows (`begin_step(span, rows)`), of those rows (a gather of rows x span columns)."""
        if self._cols is None:
            raise RuntimeError("RowCache.update outside a decode step (call begin_step first)")
        k, v = self.keys[layer_idx], self.values[layer_idx]
        # advanced-index assignment writes rows x heads x head_dim values (scatter_ with an expanded index was
        # measured to copy whole buffers: 37 ms of a 163 ms Qwen-0.5B step)
        k[self._row_index, :, self._cols] = key_states[:, :, 0]
        v[self._row_index, :, self._cols] = value_states[:, :, 0]
        if self._subset is not None:  # slice first: the gather copies only the span read, not the full width
            rows = self._subset
            return k[:, :, : self._span].index_select(0, rows), v[:, :, : self._span].index_select(0, rows)
        return k[:, :, : self._span], v[:, :, : self._span]

    def begin_step(self, span: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Before a one-token forward of every row (or only of `rows`, sorted row indices): write positions =
        current lengths; `span` (a host int, >= max(length) + 1 over the forwarded rows) columns are read.
        Returns the 4D attention mask for the model call."""
        if span > self.width:
            raise RuntimeError(f"row cache overflow: {span} > width {self.width}")
        self._subset = rows
        self._row_index = torch.arange(self.rows, device=self.length.device) if rows is None else rows
        self._cols = self.length if rows is None else self.length.index_select(0, rows)
        self._span = int(span)
        cols = torch.arange(self._span, device=self.length.device)
        keep = (cols[None, :] <= self._cols[:, None])[:, None, None, :]  # [rows, 1, 1, span]
        # An additive mask (0 / -inf) in the cache's dtype gives SDPA the same output bits as the boolean mask,
        # without converting the boolean mask again in every layer (CPU, 64 rows x 200 columns: ~10% of the
        # attention call). Column 0 is always kept, so no row is fully masked.
        return torch.zeros(keep.shape, dtype=self.dtype, device=keep.device).masked_fill_(~keep, float("-inf"))

    def end_step(self) -> None:
        if self._subset is None:
            self.length = self.length + 1
        else:  # rows left out of the step do not advance (they are finished; their tokens are not used)
            self.length = self.length.index_add(0, self._subset, torch.ones_like(self._subset))
        self._cols = self._subset = None

    # ------------------------------------------------------------------ the loop's side
    def load(self, rows: torch.Tensor, prefill_cache, length: int) -> None:
        """Copy a batch-1 prefill's K/V (a DynamicCache of `length` tokens) into every row of `rows`."""
        if length > self.width:
            raise RuntimeError(f"prompt of {length} tokens does not fit the row cache width {self.width}")
        for layer in range(self.layers):
            k, v = _layer_kv(prefill_cache, layer)
            self.keys[layer][rows, :, :length] = k[0, :, :length]
            self.values[layer][rows, :, :length] = v[0, :, :length]
        self.length[rows] = length

    def reorder(self, parents: torch.Tensor) -> None:
        """Row i continues row parents[i] (beam search): one copy of the buffers."""
        self.select(parents)

    def select(self, keep: torch.Tensor) -> None:
        """Keep only rows `keep` (a prompt left and no other took its rows): one copy of the buffers."""
        self.keys = [k.index_select(0, keep) for k in self.keys]
        self.values = [v.index_select(0, keep) for v in self.values]
        self.length = self.length.index_select(0, keep)

    def widen(self, width: int) -> None:
        """Grow every row to `width` columns (one copy; the tokens held stay where they are)."""
        for buffers in (self.keys, self.values):
            for layer, old in enumerate(buffers):
                new = old.new_zeros((*old.shape[:2], width, old.shape[3]))
                new[:, :, : self.width] = old
                buffers[layer] = new
        self.width = int(width)


class ModelStream:
    """One model decoded over `slots` slots of n rows (slot-major), each row at its own position.

    `prefill(slot, ids)` forwards a prompt alone (batch 1) and copies its K/V into the slot's n rows; `step`
    forwards one token per row. The cache holds `width` columns per row; without a width (a sampler sees
    prompts one at a time) it is sized at the first prefill and grows (one copy) when a longer prompt enters.
    The host keeps each slot's cache length, so a step knows the columns to read without a device sync."""

    def __init__(self, lm, slots: int, n: int, max_new_tokens: int, device, width: int | None = None):
        self.lm, self.n, self.max_new_tokens, self.device = lm, n, max_new_tokens, device
        self.slots = slots
        self.cache = None if width is None else RowCache(lm.model, slots * n, width, device, lm.dtype)
        self.slot_length = [0] * slots  # tokens in the cache of each slot's rows (host copy)

    def prefill(self, slot: int, prompt_ids: list[int]):
        """Prompt `prompt_ids` enters `slot`: the model's output on it alone (`last_hidden_state` (1, L, H)),
        its K/V copied into the slot's rows."""
        self._fit(len(prompt_ids) + self.max_new_tokens)
        with torch.no_grad():
            out = self.lm.decoder(input_ids=torch.tensor([prompt_ids], device=self.device), use_cache=True)
        rows = torch.arange(slot * self.n, (slot + 1) * self.n, device=self.device)
        self.cache.load(rows, out.cache, len(prompt_ids))
        self.slot_length[slot] = len(prompt_ids)
        return out

    def step(self, input_ids: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Row r takes token `input_ids[r]` at its own position; returns the final hidden state (B, H) of the
        forwarded rows (all, or only `rows`, sorted: the others neither compute nor advance)."""
        cache = self.cache
        mask = cache.begin_step(max(self.slot_length) + 1, rows)
        every = slice(None) if rows is None else rows
        with torch.no_grad():
            out = self.lm.decoder(input_ids=input_ids[every, None], attention_mask=mask,
                                  position_ids=cache.length[every, None], cache=cache, use_cache=True)
        cache.end_step()
        self.slot_length = [length + 1 for length in self.slot_length]
        return out.last_hidden_state[:, -1]

    def reorder(self, parents: torch.Tensor) -> None:
        """Row i continues row parents[i] (beam search, within a slot)."""
        self.cache.reorder(parents)

    def select(self, keep_slots: list[int]) -> None:
        """Keep only slots `keep_slots` (in order): the others left the batch."""
        keep = torch.cat([torch.arange(g * self.n, (g + 1) * self.n, device=self.device) for g in keep_slots])
        self.cache.select(keep)
        self.slots = len(keep_slots)
        self.slot_length = [self.slot_length[g] for g in keep_slots]

    def _fit(self, width: int) -> None:
        if self.cache is None:
            self.cache = RowCache(self.lm.model, self.slots * self.n, width, self.device, self.lm.dtype)
        elif width > self.cache.width:
            self.cache.widen(max(width, self.cache.width + self.cache.width // 4))


def _layer_kv(cache, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys, values) of one layer of a transformers cache, across the 4.x / 5.x layouts."""
    if hasattr(cache, "layers"):
        return cache.layers[layer].keys, cache.layers[layer].values
    return cache.key_cache[layer], cache.value_cache[layer]
