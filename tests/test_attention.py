"""Blocked causal attention (harness.models.attention) against one torch SDPA call over the whole mask."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from harness.models.attention import QUERY_BLOCK, blocked_sdpa


def reference(query, key, value, mask, groups):
    key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask).transpose(1, 2)


@pytest.mark.parametrize("cached", [0, 37])
def test_blocked_attention_equals_one_masked_call(cached):
    torch.manual_seed(0)
    rows, heads, groups, q_len, dim = 2, 6, 3, 3 * QUERY_BLOCK + 17, 16
    query = torch.randn(rows, heads, q_len, dim)
    key, value = torch.randn(2, rows, heads // groups, cached + q_len, dim)
    # a packed row: a trunk, then two branches that see the trunk and themselves, not each other;
    # the other row is plain causal with right padding
    allowed = torch.ones(rows, 1, q_len, cached + q_len, dtype=torch.bool).tril(cached)
    allowed[0, :, 150:, cached + 100:cached + 150] = False
    mask = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    module = SimpleNamespace(num_key_value_groups=groups, is_causal=True)
    for given in (mask, allowed):  # transformers passes either an additive float or a boolean mask
        out, _ = blocked_sdpa(module, query, key, value, given)
        torch.testing.assert_close(out, reference(query, key, value, mask, groups), atol=2e-6, rtol=1e-5)
    causal = torch.zeros(q_len, cached + q_len).masked_fill(
        ~torch.ones(q_len, cached + q_len, dtype=torch.bool).tril(cached), torch.finfo(torch.float32).min)
    out, _ = blocked_sdpa(module, query, key, value, None)  # no mask: causal after the cached prefix
    torch.testing.assert_close(out, reference(query, key, value, causal, groups), atol=2e-6, rtol=1e-5)


def test_what_it_does_not_handle_goes_to_transformers_sdpa():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(1)
    query, key, value = torch.randn(3, 1, 2, 4, 2 * QUERY_BLOCK, 8)
    encoder = SimpleNamespace(num_key_value_groups=1, is_causal=False)  # bidirectional: every key counts
    out, _ = blocked_sdpa(encoder, query, key, value, None)
    torch.testing.assert_close(out, sdpa_attention_forward(encoder, query, key, value, None)[0])
    assert not torch.allclose(out, blocked_sdpa(SimpleNamespace(num_key_value_groups=1, is_causal=True),
                                                query, key, value, None)[0])
