"""A preallocated KV cache with one write position per row, for the decoding loop's continuous batching.

Why not transformers' caches: `DynamicCache` grows every layer's tensors with `torch.cat` at every step (the
whole cache is copied each step) and all rows share one sequence length, so rows of prompts that entered the
batch at different times would need left padding that shifts under them. Here each layer owns fixed buffers
`[rows, kv_heads, width, head_dim]`; row r's tokens sit at columns `0 .. length[r]-1` (no padding at all),
a decode step writes column `length[r]` of every row in place.

Attention at a decode step, two ways:
- Grouped (the loop's way whenever the model runs SDPA attention): the rows of one prompt slot share their
  length, so each slot attends exactly its own columns `0 .. length` of a contiguous block of rows, read in
  place (`RowCache.attend`, one SDPA call per slot and layer, installed as the attention function
  `esamp_rowcache` while `grouped_attention(model)` is active). Nothing is gathered or masked, and a row's
  attention never depends on how long the other slots' prompts are.
- Masked (any other attention implementation, and the contrastive sampler's amateur): one call over the
  columns `0 .. max(length)` of every row with an additive 4D mask built once per step and shared by all
  layers (HF bodies pass a 4D mask through as "already prepared"); with a subset of rows forwarded, their
  columns are gathered (one copy of rows x span per layer).
Why grouped: with continuous batching some slot is nearly always deep into its answer, so the masked way
reads (and, for a subset, copies) ~prompt + max_new columns for every row at every step, about as many bytes
as the weights on Qwen2.5-0.5B at 128 rows, while a slot's own length is on average half that.

A prompt entering rows `rows` is prefilled on its own (batch 1: its numbers never depend on other prompts),
and its prefill K/V are copied into those rows (`load`).
"""
from __future__ import annotations

import contextlib
import threading

import torch
import torch.nn.functional as F

ATTENTION_NAME = "esamp_rowcache"
_STEP = threading.local()  # the RowCache whose grouped decode step is running in this thread (or None)


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
        self._groups: list[tuple] | None = None  # grouped step: (q_lo, q_hi, c_lo, c_hi, columns, pad rows)

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
        if self._groups is not None:  # grouped step: `attend` reads each slot's columns in place
            return k, v
        if self._subset is not None:  # slice first: the gather copies only the span read, not the full width
            rows = self._subset
            return k[:, :, : self._span].index_select(0, rows), v[:, :, : self._span].index_select(0, rows)
        return k[:, :, : self._span], v[:, :, : self._span]

    def begin_step(self, span: int, rows: torch.Tensor | None = None,
                   groups: list[tuple[int, int, int]] | None = None) -> torch.Tensor:
        """Before a one-token forward of every row (or only of `rows`, sorted row indices): write positions =
        current lengths; `span` (a host int, >= max(length) + 1 over the forwarded rows) columns are read.
        `groups` (grouped attention; needs `grouped_attention(model)` active): `(lo, hi, columns)` per prompt
        slot, cache rows `lo .. hi-1` attending their first `columns` columns; every forwarded row lies in one
        group and its length + 1 must equal the group's `columns` (checked on the host lengths by the caller).
        Returns the 4D attention mask for the model call (a placeholder in a grouped step)."""
        if span > self.width:
            raise RuntimeError(f"row cache overflow: {span} > width {self.width}")
        self._subset = rows
        self._row_index = torch.arange(self.rows, device=self.length.device) if rows is None else rows
        self._cols = self.length if rows is None else self.length.index_select(0, rows)
        self._span = int(span)
        if groups is not None:
            self._groups = self._plan(groups, rows)
            _STEP.cache = self
            # HF bodies pass a 4D mask through untouched; `attend` never reads it
            return torch.zeros((self._row_index.numel(), 1, 1, 1), dtype=self.dtype, device=self.length.device)
        cols = torch.arange(self._span, device=self.length.device)
        keep = (cols[None, :] <= self._cols[:, None])[:, None, None, :]  # [rows, 1, 1, span]
        # An additive mask (0 / -inf) in the cache's dtype gives SDPA the same output bits as the boolean mask,
        # without converting the boolean mask again in every layer (CPU, 64 rows x 200 columns: ~10% of the
        # attention call). Column 0 is always kept, so no row is fully masked.
        return torch.zeros(keep.shape, dtype=self.dtype, device=keep.device).masked_fill_(~keep, float("-inf"))

    def _plan(self, groups, rows: torch.Tensor | None) -> list[tuple]:
        """Per group: the forwarded rows' positions q_lo..q_hi in the step's batch, the cache block c_lo..c_hi
        holding them, its column count, and (when finished rows sit between them) their offsets in the block:
        those blocks are attended whole, with zero queries for the rows not forwarded (no gather)."""
        fwd = None if rows is None else rows.tolist()
        plan, q = [], 0
        for lo, hi, columns in groups:
            if columns > self._span or columns < 1:
                raise RuntimeError(f"group of rows {lo}..{hi - 1}: {columns} columns outside 1..span {self._span}")
            if fwd is None:
                plan.append((lo, hi, lo, hi, columns, None))
                continue
            q_lo = q
            while q < len(fwd) and fwd[q] < hi:
                q += 1
            if q == q_lo:
                continue  # no forwarded row in this group
            c_lo, c_hi = fwd[q_lo], fwd[q - 1] + 1
            if c_lo < lo:
                raise RuntimeError(f"forwarded row {c_lo} lies in no group")
            pad = None if c_hi - c_lo == q - q_lo else torch.tensor(fwd[q_lo:q], device=self.length.device) - c_lo
            plan.append((q_lo, q, c_lo, c_hi, columns, pad))
        if fwd is not None and q != len(fwd):
            raise RuntimeError(f"forwarded rows {fwd[q:]} lie in no group")
        return plan

    def attend(self, module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               scaling: float | None) -> torch.Tensor:
        """Grouped decode-step attention of one layer: query `[rows, heads, 1, d]` of the forwarded rows, key and
        value the layer's whole buffers; returns `[rows, 1, heads, d]` as HF attention functions do. GQA query
        heads are packed onto their K/V head (`[rows, kv_heads, heads / kv_heads, d]`), as transformers' SDPA
        path does at one query token."""
        rows, heads, _, dim = query.shape
        kv_heads = key.shape[1]
        q = query.reshape(rows, kv_heads, heads // kv_heads, dim)
        out = torch.empty_like(q)
        for q_lo, q_hi, c_lo, c_hi, columns, pad in self._groups:
            k, v = key[c_lo:c_hi, :, :columns], value[c_lo:c_hi, :, :columns]
            if pad is None:
                out[q_lo:q_hi] = F.scaled_dot_product_attention(q[q_lo:q_hi], k, v, scale=scaling)
            else:
                block = q.new_zeros((c_hi - c_lo,) + q.shape[1:]).index_copy_(0, pad, q[q_lo:q_hi])
                out[q_lo:q_hi] = F.scaled_dot_product_attention(block, k, v, scale=scaling).index_select(0, pad)
        return out.reshape(rows, heads, 1, dim).transpose(1, 2).contiguous()

    def end_step(self) -> None:
        if self._groups is not None:
            self._groups = None
            _STEP.cache = None
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


def _rowcache_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """The attention function `esamp_rowcache`: a grouped RowCache decode step in this thread attends slot by
    slot (`RowCache.attend`); every other call (prefills, other models) is transformers' SDPA, unchanged."""
    cache = getattr(_STEP, "cache", None)
    if cache is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if key.shape[0] != cache.rows or query.shape[2] != 1:
        raise RuntimeError(f"attention call {tuple(query.shape)} / {tuple(key.shape)} inside a grouped RowCache step "
                           f"of {cache.rows} rows: only the step's own one-token forward may run there")
    return cache.attend(module, query, key, value, scaling), None


def _register() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, _rowcache_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)  # prefills build SDPA's masks


@contextlib.contextmanager
def grouped_attention(model):
    """While active, `model` (a transformers model running SDPA attention) uses `esamp_rowcache`, which is SDPA
    except in grouped RowCache steps. Yields whether grouped steps are possible: False (and nothing changes)
    for any other attention implementation (eager, flash, ...), whose numbers the masked path keeps."""
    config = model.config
    if getattr(config, "_attn_implementation", None) != "sdpa":
        yield False
        return
    _register()
    config._attn_implementation = ATTENTION_NAME
    try:
        yield True
    finally:
        config._attn_implementation = "sdpa"


def _layer_kv(cache, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys, values) of one layer of a transformers cache, across the 4.x / 5.x layouts."""
    if hasattr(cache, "layers"):
        return cache.layers[layer].keys, cache.layers[layer].values
    return cache.key_cache[layer], cache.value_cache[layer]
