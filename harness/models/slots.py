"""KV slots for continuous batching: a fixed buffer of rows that requests enter and leave while the
others keep decoding, after one shared prefix whose keys and values are held once.

Each slot is one row of a preallocated buffer per layer, (slots, kv heads, width, head dim): a
request's own tokens (its prompt after the shared prefix, left-padded within its admission group,
then what it generates) are written in place at its next column, never concatenated (a
DynamicCache's torch.cat copies every row's whole cache at every step). Live requests always
occupy slots [0, n), so the live part of a buffer is a plain slice and attends without a copy.

The attention (slot_attention, reached through blocked_sdpa's `slots` keyword) takes the new
queries, keys and values of the rows in the forward pass, writes the keys and values into their
slots and attends, in one softmax, the shared prefix (every row's queries against the prefix's
keys, held once: no per-row copy, no repeat per query-head group) and each row's own columns up
to its own (masked per row: its padding and unwritten columns take no weight). Sliding-window
layers (Gemma 3) mask by absolute position, as transformers' sliding-window mask does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

QUERY_BLOCK = 128  # a prefill's queries go in blocks of this many (bounded scores, causal skips)


@dataclass
class Pass:
    """The rows of one forward pass: slots [first, first + rows); row r's queries sit at its own
    columns base[r] + i, its own tokens begin at column lo[r] (before: padding)."""

    first: int
    base: torch.Tensor  # (rows,) long
    lo: torch.Tensor  # (rows,) long


def _kv_layout(model: Any) -> tuple[int, int, int]:
    """(layers, kv heads, head dim) of a decoder's KV cache."""
    cfg = getattr(model.config, "text_config", None) or model.config
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    return cfg.num_hidden_layers, kv_heads, getattr(cfg, "head_dim", None) or cfg.hidden_size // heads


class SlotBuffers:
    """Per layer: the slots' keys and values, and the shared prefix's (batch of one, or None)."""

    def __init__(self, model: Any, slots: int, width: int) -> None:
        layers, kv_heads, head_dim = _kv_layout(model)
        shape = (slots, kv_heads, width, head_dim)
        dtype, device = model.dtype, model.device
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.prefix: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.prefix_len = 0
        self.current: Pass | None = None

    @staticmethod
    def bytes_per_slot(model: Any, width: int) -> int:
        layers, kv_heads, head_dim = _kv_layout(model)
        return 2 * layers * kv_heads * head_dim * width * model.dtype.itemsize

    def take_prefix(self, slot: int, length: int) -> None:
        """Slot `slot`'s first `length` columns become the shared prefix (copied out: the slot is reused)."""
        self.prefix = [
            (k[slot : slot + 1, :, :length].clone(), v[slot : slot + 1, :, :length].clone())
            for k, v in zip(self.keys, self.values)
        ]
        self.prefix_len = length

    def move(self, src: int, dst: int) -> None:
        """Slot src's contents into slot dst (keeps the live slots contiguous)."""
        for k, v in zip(self.keys, self.values):
            k[dst].copy_(k[src])
            v[dst].copy_(v[src])


def slot_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    buffers: SlotBuffers,
    scaling: float | None,
    sliding_window: int | None,
) -> torch.Tensor:
    """query (rows, heads, q, dim), key/value (rows, kv heads, q, dim): the pass's new columns.
    Returns (rows, q, heads, dim), as transformers' attention functions do."""
    now = buffers.current
    assert now is not None, "slot attention outside a slot pass"
    layer = int(module.layer_idx)  # type: ignore[arg-type]
    rows, q_len = query.shape[0], query.shape[2]
    keys, values = buffers.keys[layer], buffers.values[layer]
    live = slice(now.first, now.first + rows)
    if q_len == 1:
        index = torch.arange(now.first, now.first + rows, device=key.device)
        keys[index, :, now.base] = key[:, :, 0]
        values[index, :, now.base] = value[:, :, 0]
        width = int(now.base.max()) + 1
        return _attend(query, 0, width, keys[live], values[live], now, buffers, layer, scaling, sliding_window)
    # an admission group: every row writes the same columns (left-padded prompts), and its queries
    # go in blocks, each against the columns up to its last (a query never sees a later one)
    start = int(now.base[0])
    keys[live, :, start : start + q_len] = key
    values[live, :, start : start + q_len] = value
    blocks = [
        _attend(
            query[:, :, a : a + QUERY_BLOCK],
            a,
            start + min(q_len, a + QUERY_BLOCK),
            keys[live],
            values[live],
            now,
            buffers,
            layer,
            scaling,
            sliding_window,
        )
        for a in range(0, q_len, QUERY_BLOCK)
    ]
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)


def _attend(
    query: torch.Tensor,
    offset: int,
    width: int,
    keys: torch.Tensor,
    values: torch.Tensor,
    now: Pass,
    buffers: SlotBuffers,
    layer: int,
    scaling: float | None,
    sliding_window: int | None,
) -> torch.Tensor:
    """Queries at own columns base + offset + i against the prefix and own columns [0, width)."""
    rows, heads, q_len, dim = query.shape
    kv_heads = keys.shape[1]
    groups = heads // kv_heads
    own_k, own_v = keys[:, :, :width], values[:, :, :width]
    scale = scaling if scaling is not None else dim**-0.5
    # (rows, kv heads, groups * q, dim): head h reads kv head h // groups, as repeat_kv lays them out
    grouped = query.reshape(rows, kv_heads, groups * q_len, dim)
    scores = torch.matmul(grouped, own_k.transpose(-1, -2)) * scale  # (rows, kv, gq, width)
    column = torch.arange(width, device=query.device)
    at = now.base[:, None] + offset + torch.arange(q_len, device=query.device)[None, :]  # (rows, q): query columns
    visible = (column[None, None, :] <= at[:, :, None]) & (column[None, None, :] >= now.lo[:, None, None])
    visible |= column[None, None, :] == at[:, :, None]  # a padding query sees itself (finite junk, never read)
    prefix_len = 0 if buffers.prefix is None else buffers.prefix_len
    q_pos = prefix_len + at - now.lo[:, None]  # absolute positions: prefix columns 0.., own columns after lo
    if sliding_window is not None:
        k_pos = prefix_len + column[None, :] - now.lo[:, None]  # (rows, width)
        visible &= (q_pos[:, :, None] - k_pos[:, None, :]) < sliding_window
    mask = visible[:, None, None].expand(rows, 1, groups, q_len, width).reshape(rows, 1, groups * q_len, width)
    scores = scores.masked_fill(~mask, float("-inf"))
    if prefix_len:
        prefix_k, prefix_v = buffers.prefix[layer]  # type: ignore[index]
        # every row's queries against the prefix held once: (kv, rows * gq, dim) @ (kv, dim, prefix)
        stacked = grouped.transpose(0, 1).reshape(kv_heads, rows * groups * q_len, dim)
        pre = torch.matmul(stacked, prefix_k[0].transpose(-1, -2)) * scale
        pre = pre.reshape(kv_heads, rows, groups * q_len, prefix_len).transpose(0, 1)
        if sliding_window is not None:
            grouped_pos = q_pos[:, None, None, :].expand(rows, 1, groups, q_len).reshape(rows, 1, groups * q_len, 1)
            seen = (grouped_pos - torch.arange(prefix_len, device=query.device)) < sliding_window
            pre = pre.masked_fill(~seen, float("-inf"))
        scores = torch.cat([pre, scores], dim=-1)
    probs = torch.softmax(scores.float(), dim=-1).to(query.dtype)
    out = torch.matmul(probs[..., prefix_len:], own_v)  # (rows, kv, gq, dim)
    if prefix_len:
        part = probs[..., :prefix_len].transpose(0, 1).reshape(kv_heads, rows * groups * q_len, prefix_len)
        out = out + torch.matmul(part, prefix_v[0]).reshape(kv_heads, rows, groups * q_len, dim).transpose(0, 1)
    return out.reshape(rows, heads, q_len, dim).transpose(1, 2).contiguous()
