"""Causal self-attention computed in blocks of queries, each against the keys it can see (CPU).

torch's CPU SDPA kernel (its flash attention for CPU) splits the keys into blocks of 512 and skips
a block only when is_causal=True and the whole block lies beyond the diagonal; with an explicit mask
(a cached prefix, packed prefix trees, padding) it computes every query against every key. In a
causal decoder a query never attends a key at a later column than its own: a cached prefix, packed
trees and padding masks only take keys away. So a block of queries [a, b) needs the keys up to
column b alone, and computing block by block does about half the attention work of a masked call
(figures in benchmarks/RESULTS.md), with the same outputs to float rounding.

Registered with transformers' AttentionInterface as "harness_sdpa" (masks built as for "sdpa");
anything it does not handle goes to transformers' own sdpa function unchanged.

A shared prefix (`shared_prefix`, see SharedPrefixLayer): when every row of a batch continues the
same cached prefix (a k-shot task's description and exemplars), the rows' queries attend it in one
call, all rows stacked as one long sequence against the prefix's keys held once, and attend their
own keys in a second; the two partial softmaxes merge by their log-sum-exp (cascade attention).
The prefix is never copied per row (nor repeated per query head group), and the prefix call is one
long sequence, the shape the kernel runs best (5-shot MMLU: see benchmarks/RESULTS.md). The
log-likelihoods match the joined computation to float rounding (the softmax is summed in two parts).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

NAME = "harness_sdpa"
QUERY_BLOCK = 64  # the best of the sizes tried (blocks of more than 512 keys fall back to the kernel's own split)


def blocked_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    shared_prefix: list | None = None,
    slots: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: query (batch, heads, q, dim), key/value (batch,
    kv heads, cached + q, dim), the 4D mask (or None: plain causal); returns (batch, q, heads, dim).
    With shared_prefix (per layer: the prefix's keys and values, batch of one), key/value hold the
    new columns only (see SharedPrefixLayer) and the mask spans prefix + new columns. With `slots`
    (continuous batching), slot_attention computes it (see slots.py)."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if slots is not None:  # continuous batching (see slots.py): the slots hold the keys and values
        from harness.models.slots import slot_attention

        return slot_attention(module, query, key, value, slots, scaling, kwargs.get("sliding_window")), None
    if shared_prefix is not None:
        prefix_key, prefix_value = shared_prefix[int(module.layer_idx)]  # type: ignore[arg-type]
        if _cascade_applies(module, prefix_key.shape[2], attention_mask, dropout, is_causal, kwargs):
            return _cascade(module, query, key, value, prefix_key, prefix_value, attention_mask, scaling), None
        rows = query.shape[0]
        key = torch.cat([prefix_key.expand(rows, -1, -1, -1), key], dim=2)
        value = torch.cat([prefix_value.expand(rows, -1, -1, -1), value], dim=2)
    q_len, kv_len = query.shape[2], key.shape[2]
    if (
        q_len <= QUERY_BLOCK
        or kv_len < q_len
        or is_causal is False
        or _unsupported(module, dropout, kwargs)
        or (attention_mask is not None and attention_mask.dim() != 4)
    ):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    cached = kv_len - q_len
    if attention_mask is None:  # causal after the cached prefix
        attention_mask = torch.ones(q_len, kv_len, dtype=torch.bool, device=query.device).tril(cached)[None, None]
    out = _by_query_blocks(
        torch.nn.functional.scaled_dot_product_attention, query, key, value, attention_mask, cached, scaling
    )
    return torch.cat(out, dim=2).transpose(1, 2).contiguous(), None


def _by_query_blocks(
    attend,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor,
    cached: int,
    scaling: float | None,
) -> list:
    """attend(...) per block of QUERY_BLOCK queries [a, b), against keys [0, cached + b) only: a
    query never sees a later column (see the module's doc)."""
    blocks = []
    for a in range(0, query.shape[2], QUERY_BLOCK):
        end = cached + a + QUERY_BLOCK
        blocks.append(
            attend(
                query[:, :, a : a + QUERY_BLOCK],
                key[:, :, :end],
                value[:, :, :end],
                attn_mask=mask[:, :, a : a + QUERY_BLOCK, :end],
                scale=scaling,
            )
        )
    return blocks


def _unsupported(module: torch.nn.Module, dropout: float, kwargs: dict) -> bool:
    return bool(
        dropout
        or not getattr(module, "is_causal", True)
        or kwargs.get("output_attentions")
        or any(kwargs.get(k) is not None for k in ("position_bias", "softcap", "cache"))
    )


def _cascade_applies(
    module: torch.nn.Module,
    cached: int,
    attention_mask: torch.Tensor | None,
    dropout: float,
    is_causal: bool | None,
    kwargs: dict,
) -> bool:
    """Every query sees every prefix column (mask None is causal after the prefix)."""
    if _unsupported(module, dropout, kwargs) or is_causal is False:
        return False
    if attention_mask is None:
        return True
    if attention_mask.dim() != 4:
        return False
    seen = attention_mask[..., :cached]
    return bool(seen.all()) if seen.dtype == torch.bool else not bool(seen.any())


def _cascade(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    prefix_key: torch.Tensor,
    prefix_value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None,
) -> torch.Tensor:
    """Attention over prefix + own columns as two calls merged by log-sum-exp (see the module's doc)."""
    from transformers.integrations.sdpa_attention import repeat_kv

    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    rows, heads, q_len, dim = query.shape
    cached = prefix_key.shape[2]
    groups = getattr(module, "num_key_value_groups", 1)
    # all rows' queries as one sequence against the prefix, held once
    stacked = query.transpose(0, 1).reshape(1, heads, rows * q_len, dim)
    out_p, lse_p = flash(stacked, repeat_kv(prefix_key, groups), repeat_kv(prefix_value, groups), scale=scaling)
    out_p = out_p.reshape(heads, rows, q_len, dim).transpose(0, 1)
    lse_p = lse_p.reshape(heads, rows, q_len).transpose(0, 1)
    # each row against its own columns: causal, or the mask's own part in blocks of queries (see blocked_sdpa)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    if attention_mask is None:
        out_o, lse_o = flash(query, key, value, is_causal=True, scale=scaling)
    else:
        own = attention_mask[..., cached:]
        if own.dtype == torch.bool:  # the kernel takes additive masks of the query's dtype
            own = torch.zeros(own.shape, dtype=query.dtype, device=own.device).masked_fill(
                ~own, torch.finfo(query.dtype).min
            )
        parts = _by_query_blocks(flash, query, key, value, own, 0, scaling)
        out_o, lse_o = torch.cat([p[0] for p in parts], dim=2), torch.cat([p[1] for p in parts], dim=2)
    lse = torch.logaddexp(lse_p, lse_o)
    out = out_p * (lse_p - lse).exp()[..., None] + out_o * (lse_o - lse).exp()[..., None]
    return out.to(query.dtype).transpose(1, 2).contiguous()


class SharedPrefixLayer(DynamicLayer):
    """Stands for a DynamicLayer holding a prefix's keys and values (batch of one) in a forward pass
    whose rows all continue that prefix: it reports the prefix's length (positions, mask sizes) and
    hands the attention only the new keys and values, which it does not keep; blocked_sdpa reads the
    prefix from `shared_prefix` (the layers' (keys, values), passed as a model keyword)."""

    def __init__(self, layer: DynamicLayer) -> None:
        super().__init__()
        self.__dict__.update(layer.__dict__)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        return key_states, value_states


def shared_prefix_view(cache: Any) -> tuple[Any, list] | None:
    """(a cache of SharedPrefixLayers, the `shared_prefix` keyword) for a DynamicCache of plain
    layers holding one row, on a model running blocked_sdpa; else None."""
    import copy

    if type(cache).__name__ != "DynamicCache" or any(
        type(layer).__name__ != "DynamicLayer" or layer.keys is None or layer.keys.shape[0] != 1
        for layer in cache.layers
    ):
        return None
    view = copy.copy(cache)
    view.layers = [SharedPrefixLayer(layer) for layer in cache.layers]
    return view, [(layer.keys, layer.values) for layer in cache.layers]


def register() -> str:
    """Make NAME a transformers attention implementation (its masks built as for "sdpa")."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, blocked_sdpa)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def use_blocked_attention(model: Any) -> bool:
    """Switch a CPU model that runs transformers' "sdpa" to blocked_sdpa; True if switched."""
    config = model.config
    if model.device.type != "cpu" or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    model.set_attn_implementation(register())
    return config._attn_implementation == NAME
