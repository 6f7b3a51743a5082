"""KV slots for continuous batching: a fixed buffer of rows that requests enter and leave while the
others keep decoding, each after its preamble (its task's shared prefix), whose keys and values are
held once however many rows read it; rows of several preambles share one batch.

Each slot is one row of a preallocated buffer per layer, (slots, kv heads, width, head dim): a
request's own tokens (its prompt after the shared prefix, from column 0: an admission group's
prompts have one length, see continuous.py; then what it generates) are written in place at its
next column, never concatenated (a DynamicCache's torch.cat copies every row's whole cache at
every step). Live requests always occupy slots [0, n), so the live part of a buffer is a plain
slice and attends without a copy. A decode step attends every column of the slots, so a row's
sums run over the same columns whoever its batch mates are, and round the same: a row's logits do
not depend on its batch (a resumed run samples what the uninterrupted one did).

The attention (slot_attention, reached through blocked_sdpa's `slots` keyword) takes the new
queries, keys and values of the rows in the forward pass, writes the keys and values into their
slots and attends, in one softmax, the row's preamble (the queries of the rows that read it against
its keys, held once: no per-row copy, no repeat per query-head group; with several preambles in a
pass each row's scores are padded to the longest, the padding weightless) and each row's own
columns up to its own (masked per row: its unwritten columns take no weight). Sliding-window
layers (Gemma 3) mask by absolute position, as transformers' sliding-window mask does.

A model in bfloat16 or float16 keeps its slots in float32 (the keys and values are its own, held
exactly) and attends in float32: transformers' SDPA kernels compute the scores and the softmax in
float32 and round only the output, while a bf16 matmul would round every score (an error of
|score| / 256 in a logit of the softmax), several times the kernel's error in the attention output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

QUERY_BLOCK = 128  # a prefill's queries go in blocks of this many (bounded scores, causal skips)


@dataclass
class Pass:
    """The rows of one forward pass: slots [first, first + rows); row r's queries sit at its own
    columns base[r] + i, its own tokens begin at column 0 (nothing is padded). spans: which rows
    read which held preamble, as (index into SlotBuffers.prefixes, the rows, None for all of them);
    prefix_len: each row's preamble length (None: no row has one)."""

    first: int
    base: torch.Tensor  # (rows,) long
    spans: list[tuple[int, torch.Tensor | None]] = field(default_factory=list)
    prefix_len: torch.Tensor | None = None  # (rows,) long

    @staticmethod
    def of(first: int, base: torch.Tensor, prefixes: list[int], buffers: SlotBuffers) -> Pass:
        """The pass of rows whose preambles are prefixes[r] (an index into buffers.prefixes, or -1)."""
        device = base.device
        present = sorted({p for p in prefixes if p >= 0})
        if not present:
            return Pass(first, base)
        if len(present) == 1 and len(set(prefixes)) == 1:
            spans: list[tuple[int, torch.Tensor | None]] = [(present[0], None)]
        else:
            spans = [(p, torch.tensor([r for r, q in enumerate(prefixes) if q == p], device=device)) for p in present]
        lengths = torch.tensor([buffers.prefix_lens[p] if p >= 0 else 0 for p in prefixes], device=device)
        return Pass(first, base, spans, lengths)


def slot_dtype(model: Any) -> torch.dtype:
    """The slots' dtype: the model's, at least float32 (see the module's doc)."""
    return torch.promote_types(model.dtype, torch.float32)


def _kv_layout(model: Any) -> tuple[int, int, int]:
    """(layers, kv heads, head dim) of a decoder's KV cache."""
    cfg = getattr(model.config, "text_config", None) or model.config
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    return cfg.num_hidden_layers, kv_heads, getattr(cfg, "head_dim", None) or cfg.hidden_size // heads


class SlotBuffers:
    """Per layer: the slots' keys and values; and the preambles (per layer a batch of one each) that
    rows read, each held once however many rows read it (rows of several tasks share one batch)."""

    def __init__(self, model: Any, slots: int, width: int) -> None:
        layers, kv_heads, head_dim = _kv_layout(model)
        shape = (slots, kv_heads, width, head_dim)
        dtype, device = slot_dtype(model), model.device
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.prefixes: list[list[tuple[torch.Tensor, torch.Tensor]] | None] = []
        self.prefix_lens: list[int] = []
        self.current: Pass | None = None

    @staticmethod
    def bytes_per_slot(model: Any, width: int) -> int:
        layers, kv_heads, head_dim = _kv_layout(model)
        return 2 * layers * kv_heads * head_dim * width * slot_dtype(model).itemsize

    def take_prefix(self, slot: int, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Slot `slot`'s first `length` columns, per layer (copied out: the slot is reused)."""
        return [
            (k[slot : slot + 1, :, :length].clone(), v[slot : slot + 1, :, :length].clone())
            for k, v in zip(self.keys, self.values)
        ]

    def hold_prefix(self, kv: list[tuple[torch.Tensor, torch.Tensor]], length: int) -> int:
        """Hold a preamble's keys and values; returns its index (what Pass.of takes)."""
        self.prefixes.append(kv)
        self.prefix_lens.append(length)
        return len(self.prefixes) - 1

    def release_prefix(self, index: int) -> None:
        """No row reads preamble `index` any more: its memory goes."""
        self.prefixes[index] = None

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
        keys[index, :, now.base] = key[:, :, 0].to(keys.dtype)
        values[index, :, now.base] = value[:, :, 0].to(values.dtype)
        width = keys.shape[2]
        return _attend(query, 0, width, keys[live], values[live], now, buffers, layer, scaling, sliding_window)
    # an admission group: every row writes the same columns (prompts of one length), and its queries
    # go in blocks, each against the columns up to its last (a query never sees a later one)
    start = int(now.base[0])
    keys[live, :, start : start + q_len] = key.to(keys.dtype)
    values[live, :, start : start + q_len] = value.to(values.dtype)
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
    """Queries at own columns base + offset + i against their preamble and own columns [0, width)."""
    rows, heads, q_len, dim = query.shape
    kv_heads = keys.shape[1]
    groups = heads // kv_heads
    own_k, own_v = keys[:, :, :width], values[:, :, :width]
    scale = scaling if scaling is not None else dim**-0.5
    # (rows, kv heads, groups * q, dim): head h reads kv head h // groups, as repeat_kv lays them out
    grouped = query.to(keys.dtype).reshape(rows, kv_heads, groups * q_len, dim)
    scores = torch.matmul(grouped, own_k.transpose(-1, -2)) * scale  # (rows, kv, gq, width)
    column = torch.arange(width, device=query.device)
    at = now.base[:, None] + offset + torch.arange(q_len, device=query.device)[None, :]  # (rows, q): query columns
    visible = column[None, None, :] <= at[:, :, None]
    before = 0 if now.prefix_len is None else now.prefix_len[:, None]
    q_pos = before + at  # absolute positions: preamble columns 0.., own columns after
    if sliding_window is not None:
        k_pos = before + column[None, :]  # (rows, width)
        visible &= (q_pos[:, :, None] - k_pos[:, None, :]) < sliding_window
    mask = visible[:, None, None].expand(rows, 1, groups, q_len, width).reshape(rows, 1, groups * q_len, width)
    scores = scores.masked_fill(~mask, float("-inf"))
    # each span's rows against its preamble held once: (kv, rows * gq, dim) @ (kv, dim, preamble)
    widest = max((buffers.prefix_lens[p] for p, _ in now.spans), default=0)
    if now.spans:
        grouped_pos = q_pos[:, None, None, :].expand(rows, 1, groups, q_len).reshape(rows, 1, groups * q_len, 1)
        if now.spans[0][1] is None:  # one preamble for every row
            pre = _prefix_scores(grouped, grouped_pos, buffers, now.spans[0][0], layer, scale, sliding_window)
        else:  # several: each row's scores padded to the widest, the padding weightless
            pre = scores.new_full((rows, kv_heads, groups * q_len, widest), float("-inf"))
            for p, members in now.spans:
                assert members is not None
                part = _prefix_scores(grouped[members], grouped_pos[members], buffers, p, layer, scale, sliding_window)
                pre[members, :, :, : buffers.prefix_lens[p]] = part
        scores = torch.cat([pre, scores], dim=-1)
    probs = torch.softmax(scores.float(), dim=-1).to(keys.dtype)
    out = torch.matmul(probs[..., widest:], own_v)  # (rows, kv, gq, dim)
    for p, members in now.spans:
        length = buffers.prefix_lens[p]
        _, prefix_v = buffers.prefixes[p][layer]  # type: ignore[index]
        weights = probs if members is None else probs[members]
        n = weights.shape[0]
        part = weights[..., :length].transpose(0, 1).reshape(kv_heads, n * groups * q_len, length)
        read = torch.matmul(part, prefix_v[0]).reshape(kv_heads, n, groups * q_len, dim).transpose(0, 1)
        if members is None:
            out = out + read
        else:
            out.index_add_(0, members, read)
    return out.reshape(rows, heads, q_len, dim).transpose(1, 2).to(query.dtype).contiguous()


def _prefix_scores(
    grouped: torch.Tensor,
    grouped_pos: torch.Tensor,
    buffers: SlotBuffers,
    index: int,
    layer: int,
    scale: float,
    sliding_window: int | None,
) -> torch.Tensor:
    """Scores (rows, kv, gq, preamble) of grouped queries (rows, kv, gq, dim) against preamble `index`."""
    rows, kv_heads, gq, dim = grouped.shape
    length = buffers.prefix_lens[index]
    prefix_k, _ = buffers.prefixes[index][layer]  # type: ignore[index]
    stacked = grouped.transpose(0, 1).reshape(kv_heads, rows * gq, dim)
    pre = torch.matmul(stacked, prefix_k[0].transpose(-1, -2)) * scale
    pre = pre.reshape(kv_heads, rows, gq, length).transpose(0, 1)
    if sliding_window is not None:
        seen = (grouped_pos - torch.arange(length, device=grouped.device)) < sliding_window
        pre = pre.masked_fill(~seen, float("-inf"))
    return pre
