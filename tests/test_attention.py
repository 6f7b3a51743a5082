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
    allowed[0, :, 150:, cached + 100 : cached + 150] = False
    mask = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    module = SimpleNamespace(num_key_value_groups=groups, is_causal=True)
    for given in (mask, allowed):  # transformers passes either an additive float or a boolean mask
        out, _ = blocked_sdpa(module, query, key, value, given)
        torch.testing.assert_close(out, reference(query, key, value, mask, groups), atol=2e-6, rtol=1e-5)
    causal = torch.zeros(q_len, cached + q_len).masked_fill(
        ~torch.ones(q_len, cached + q_len, dtype=torch.bool).tril(cached), torch.finfo(torch.float32).min
    )
    out, _ = blocked_sdpa(module, query, key, value, None)  # no mask: causal after the cached prefix
    torch.testing.assert_close(out, reference(query, key, value, causal, groups), atol=2e-6, rtol=1e-5)


def test_what_it_does_not_handle_goes_to_transformers_sdpa():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(1)
    query, key, value = torch.randn(3, 1, 2, 4, 2 * QUERY_BLOCK, 8)
    encoder = SimpleNamespace(num_key_value_groups=1, is_causal=False)  # bidirectional: every key counts
    out, _ = blocked_sdpa(encoder, query, key, value, None)
    torch.testing.assert_close(out, sdpa_attention_forward(encoder, query, key, value, None)[0])
    assert not torch.allclose(
        out, blocked_sdpa(SimpleNamespace(num_key_value_groups=1, is_causal=True), query, key, value, None)[0]
    )


@pytest.mark.parametrize("packed", [False, True], ids=["causal", "packed"])
def test_rows_after_a_shared_prefix_attend_it_held_once_with_the_same_outputs(packed):
    # cascade attention: every row's queries against the prefix in one call, against their own
    # columns in another, merged by log-sum-exp; the prefix's keys are given once (batch of one)
    torch.manual_seed(2)
    rows, heads, groups, q_len, cached, dim = 3, 6, 3, 2 * QUERY_BLOCK + 9, 150, 16
    query = torch.randn(rows, heads, q_len, dim)
    key, value = torch.randn(2, rows, heads // groups, q_len, dim)
    prefix_key, prefix_value = torch.randn(2, 1, heads // groups, cached, dim)
    full_key = torch.cat([prefix_key.expand(rows, -1, -1, -1), key], dim=2)
    full_value = torch.cat([prefix_value.expand(rows, -1, -1, -1), value], dim=2)
    allowed = torch.ones(rows, 1, q_len, cached + q_len, dtype=torch.bool).tril(cached)
    if packed:  # two trees in row 1: the second sees the prefix and itself, not the first
        allowed[1, :, 70:, cached : cached + 70] = False
    mask = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    module = SimpleNamespace(num_key_value_groups=groups, is_causal=True, layer_idx=1)
    shared = [None, (prefix_key, prefix_value)]
    expected = reference(query, full_key, full_value, mask, groups)
    for given in (mask, allowed) if packed else (None, mask):
        out, _ = blocked_sdpa(module, query, key, value, given, shared_prefix=shared)
        torch.testing.assert_close(out, expected, atol=2e-6, rtol=1e-5)


def test_a_prefix_some_rows_do_not_fully_see_is_joined_to_each_row_instead():
    from harness.models import attention

    torch.manual_seed(3)
    rows, heads, q_len, cached, dim = 2, 4, QUERY_BLOCK + 5, 90, 8
    query = torch.randn(rows, heads, q_len, dim)
    key, value = torch.randn(2, rows, heads, q_len, dim)
    prefix_key, prefix_value = torch.randn(2, 1, heads, cached, dim)
    allowed = torch.ones(rows, 1, q_len, cached + q_len, dtype=torch.bool).tril(cached)
    allowed[0, :, :, :10] = False  # row 0 does not see the prefix's first columns
    mask = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    module = SimpleNamespace(num_key_value_groups=1, is_causal=True, layer_idx=0)
    assert not attention._cascade_applies(module, cached, mask, 0.0, None, {})
    assert attention._cascade_applies(module, cached, mask[1:], 0.0, None, {})
    out, _ = blocked_sdpa(module, query, key, value, mask, shared_prefix=[(prefix_key, prefix_value)])
    full_key = torch.cat([prefix_key.expand(rows, -1, -1, -1), key], dim=2)
    full_value = torch.cat([prefix_value.expand(rows, -1, -1, -1), value], dim=2)
    torch.testing.assert_close(out, reference(query, full_key, full_value, mask, 1), atol=2e-6, rtol=1e-5)


def bf16_errors(out_ours, query, full_key, full_value, allowed, groups):
    """Mean |error| against float64 of ours and of torch's SDPA on the same bf16 inputs (what
    transformers runs for lm-eval's HFLM in bf16)."""
    exact = reference(query.double(), full_key.double(), full_value.double(), allowed, groups)
    torch_bf16 = reference(query, full_key, full_value, allowed, groups)
    return (out_ours.double() - exact).abs().mean(), (torch_bf16.double() - exact).abs().mean()


def test_bf16_slot_attention_is_as_close_to_float64_as_torch_sdpa_in_bf16():
    # continuous batching's attention: a bf16 matmul would round every score before the softmax
    from harness.models.slots import Pass, SlotBuffers, slot_attention

    torch.manual_seed(5)
    rows, heads, groups, q_len, cached, dim = 4, 9, 3, 100, 200, 64
    config = SimpleNamespace(
        num_attention_heads=heads,
        num_key_value_heads=heads // groups,
        num_hidden_layers=1,
        hidden_size=heads * dim,
        head_dim=dim,
    )
    model = SimpleNamespace(config=config, dtype=torch.bfloat16, device=torch.device("cpu"))
    buffers = SlotBuffers(model, rows, q_len + 1)
    prefix_key, prefix_value = (
        torch.randn(2, 1, heads // groups, cached, dim) * torch.tensor([2.0, 1.0])[:, None, None, None, None]
    ).bfloat16()
    scratch = SlotBuffers(model, 1, cached)  # the preamble's slot, taken as the rows' held preamble
    scratch.keys[0][0], scratch.values[0][0] = prefix_key[0], prefix_value[0]
    held = buffers.hold_prefix(scratch.take_prefix(0, cached), cached)
    zero = torch.zeros(rows, dtype=torch.long)
    buffers.current = Pass.of(0, zero, [held] * rows, buffers)  # an admission group: whole prompts
    query = (2 * torch.randn(rows, heads, q_len, dim)).bfloat16()
    key, value = (
        torch.randn(2, rows, heads // groups, q_len, dim) * torch.tensor([2.0, 1.0])[:, None, None, None, None]
    ).bfloat16()
    module = SimpleNamespace(layer_idx=0)
    out = slot_attention(module, query, key, value, buffers, None, None)
    allowed = torch.ones(rows, 1, q_len, cached + q_len, dtype=torch.bool).tril(cached)
    full_key = torch.cat([prefix_key.expand(rows, -1, -1, -1), key], dim=2)
    full_value = torch.cat([prefix_value.expand(rows, -1, -1, -1), value], dim=2)
    assert out.dtype == torch.bfloat16
    ours, torch_bf16 = bf16_errors(out, query, full_key, full_value, allowed, groups)
    assert ours <= torch_bf16
    # then a decoding step: one new query, key and value per row, written at column q_len
    buffers.current = Pass.of(0, torch.full((rows,), q_len), [held] * rows, buffers)
    query = (2 * torch.randn(rows, heads, 1, dim)).bfloat16()
    key, value = torch.randn(2, rows, heads // groups, 1, dim).bfloat16()
    out = slot_attention(module, query, key, value, buffers, None, None)
    full_key, full_value = torch.cat([full_key, key], dim=2), torch.cat([full_value, value], dim=2)
    ours, torch_bf16 = bf16_errors(out, query, full_key, full_value, None, groups)
    assert ours <= torch_bf16
