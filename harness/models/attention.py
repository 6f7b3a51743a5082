"""Causal self-attention computed in blocks of queries, each against the keys it can see (CPU).

torch's CPU SDPA kernel (its flash attention for CPU) splits the keys into blocks of 512 and skips
a block only when is_causal=True and the whole block lies beyond the diagonal; with an explicit mask
(a cached prefix, packed prefix trees, padding) it computes every query against every key. In a
causal decoder a query never attends a key at a later column than its own: a cached prefix, packed
trees and padding masks only take keys away. So a block of queries [a, b) needs the keys up to
column b alone, and computing block by block does about half the attention work of a masked call.
Measured here on 8 rows x 570 keys x 9 heads: 28 ms a layer against 45 ms, the same outputs to 4e-7;
+5.6 % on a whole forward pass of 8 packed rows of 543 tokens (SmolLM2-135M, fp32, 2 threads).

Registered with transformers' AttentionInterface as "harness_sdpa" (masks built as for "sdpa");
anything it does not handle goes to transformers' own sdpa function unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

NAME = "harness_sdpa"
QUERY_BLOCK = 64  # 32-256 measured; 64 best (blocks of more than 512 keys fall back to the kernel's own split)


def blocked_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                 attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                 is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: query (batch, heads, q, dim), key/value (batch,
    kv heads, cached + q, dim), the 4D mask (or None: plain causal); returns (batch, q, heads, dim)."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    q_len, kv_len = query.shape[2], key.shape[2]
    if (q_len <= QUERY_BLOCK or kv_len < q_len or dropout or is_causal is False
            or not getattr(module, "is_causal", True) or kwargs.get("output_attentions")
            or any(kwargs.get(k) is not None for k in ("position_bias", "softcap", "cache"))
            or (attention_mask is not None and attention_mask.dim() != 4)):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    cached = kv_len - q_len
    if attention_mask is None:  # causal after the cached prefix
        attention_mask = torch.ones(q_len, kv_len, dtype=torch.bool, device=query.device).tril(cached)[None, None]
    out = []
    for a in range(0, q_len, QUERY_BLOCK):
        b = min(a + QUERY_BLOCK, q_len)
        out.append(torch.nn.functional.scaled_dot_product_attention(
            query[:, :, a:b], key[:, :, : cached + b], value[:, :, : cached + b],
            attn_mask=attention_mask[:, :, a:b, : cached + b], scale=scaling))
    return torch.cat(out, dim=2).transpose(1, 2).contiguous(), None


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
