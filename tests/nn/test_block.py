"""segue.nn: the transformer block (causal flag, masks, grouped heads, KV cache, the decoding
step), the rotary helpers, and the names weights were saved under before the block moved here."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from segue.nn import (
    Block,
    apply_rotary,
    init_residuals,
    init_weights,
    rotary_table,
    step_rotary,
    upgrade_keys,
    upgrade_state_dict,
)

D, H, T = 32, 4, 12


def block(seed: int = 0, **options) -> Block:
    torch.manual_seed(seed)
    b = Block(D, H, **options)
    b.apply(init_weights)
    init_residuals([b], n_layer=2)
    return b.eval()


def inputs(batch: int = 2, length: int = T, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, D, generator=g), rotary_table(64, D // H)[:length]


@pytest.mark.parametrize("rotary", [True, False])
def test_causal_outputs_ignore_the_future_bidirectional_ones_do_not(rotary):
    x, rope = inputs()
    rope = rope if rotary else None
    changed = x.clone()
    changed[:, 7:] += 1.0  # the future of positions 0..6
    for causal in (True, False):
        b = block(causal=causal)
        before, after = b(x, rope), b(changed, rope)
        assert before.shape == x.shape
        same_past = torch.equal(before[:, :7], after[:, :7])
        assert same_past == causal
        assert not torch.allclose(before[:, 7:], after[:, 7:])


def test_a_padding_mask_hides_keys_and_combines_with_causal():
    x, rope = inputs()
    mask = torch.ones(2, 1, 1, T, dtype=torch.bool)
    mask[1, ..., 9:] = False  # item 1 has 9 valid frames
    changed = x.clone()
    changed[1, 9:] = 5.0
    for causal in (False, True):
        b = block(causal=causal)
        before, after = b(x, rope, mask), b(changed, rope, mask)
        torch.testing.assert_close(before[1, :9], after[1, :9], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(before[0], b(x[:1], rope)[0], rtol=1e-6, atol=1e-6)


def test_grouped_kv_heads_equal_multi_head_attention_with_repeated_kv():
    x, rope = inputs()
    gqa = block(n_kv_head=2, causal=True)
    mha = block(causal=True)
    hd = D // H
    q, k, v = gqa.attn.qkv.weight.detach().split([H * hd, 2 * hd, 2 * hd])
    k, v = (w.view(2, 1, hd, D).expand(2, 2, hd, D).reshape(H * hd, D) for w in (k, v))
    state = dict(gqa.state_dict())
    state["attn.qkv.weight"] = torch.cat([q, k, v])  # kv head g serves query heads 2g, 2g + 1
    mha.load_state_dict(state)
    torch.testing.assert_close(gqa(x, rope), mha(x, rope), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_kv_head", [None, 2, 1])
def test_kv_cache_chunks_and_steps_equal_the_full_forward(n_kv_head):
    x, rope = inputs()
    b = block(n_kv_head=n_kv_head, causal=True)
    full = b(x, rope)
    kv = torch.zeros(2, 2, b.attn.n_kv_head, 16, D // H)  # [2, B, G, L, hd]
    # a 5-position prefill, then a chunk of 3 after it, then one position at a time
    chunks = [b(x[:, :5], rope[:5], kv=kv, start=0), b(x[:, 5:8], rope[5:8], kv=kv, start=5)]
    weights = b.step_weights()
    cos, sin, swap = step_rotary(rotary_table(64, D // H), H, b.attn.n_kv_head)
    for pos in range(8, T):
        y = b.step(x[:, pos], weights, (cos[pos], sin[pos], swap), kv, pos)
        chunks.append(y[:, None])
    torch.testing.assert_close(torch.cat(chunks, 1), full, rtol=1e-5, atol=1e-5)


def test_step_refuses_blocks_it_cannot_run():
    with pytest.raises(ValueError, match="causal blocks without biases"):
        block().step_weights()
    with pytest.raises(ValueError, match="causal blocks without biases"):
        block(causal=True, bias=True).step_weights()


def test_options_build_the_layers_they_name():
    b = Block(D, H, n_kv_head=1, mlp_ratio=2.0, bias=True, gelu="none", dropout=0.1)
    assert b.attn.qkv.weight.shape == ((H + 2) * D // H, D) and b.attn.qkv.bias is not None
    assert b.mlp.up.weight.shape == (2 * D, D) and b.norm1.bias is not None
    assert b.attn.dropout == 0.1 and b.mlp.dropout == 0.0
    assert Block(D, H, dropout=0.1, attn_dropout=0.0).attn.dropout == 0.0
    with pytest.raises(ValueError, match="must split"):
        Block(D, 3)
    with pytest.raises(ValueError, match="must split"):
        Block(D, H, n_kv_head=3)
    std = block().attn.proj.weight.std().item()
    assert std == pytest.approx(0.02 / math.sqrt(4), rel=0.2)  # residual projections: depth


def test_rotary_table_rotates_pairs_by_position_times_frequency():
    table = rotary_table(10, 8, base=100.0)  # [T, hd/2, (cos, sin)]
    assert table.shape == (10, 4, 2) and table.dtype == torch.float32
    angle = 3 * 100.0 ** (-2 / 8)  # position 3, pair 1
    assert table[3, 1].tolist() == pytest.approx([math.cos(angle), math.sin(angle)], rel=1e-6)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 10, 3, 8, generator=g)  # [B, T, H, hd]
    rotated = apply_rotary(x, table)
    assert torch.equal(rotated[:, 0], x[:, 0])  # position 0: no rotation
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))  # a rotation
    # q at position i and k at position j meet at their distance only: shift both by 4
    q, k = torch.randn(1, 1, 1, 8, generator=g), torch.randn(1, 1, 1, 8, generator=g)

    def score(i: int, j: int) -> torch.Tensor:
        return (apply_rotary(q, table[i : i + 1]) * apply_rotary(k, table[j : j + 1])).sum()

    torch.testing.assert_close(score(5, 2), score(9, 6))
    assert apply_rotary(x.bfloat16(), table).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="even head_dim"):
        rotary_table(4, 7)


def test_step_rotary_is_apply_rotary_on_a_fused_qkv_row():
    hd, heads, groups = 8, 4, 2
    table = rotary_table(6, hd)
    cos, sin, swap = step_rotary(table, heads, groups, torch.float64)
    assert cos.shape == sin.shape == (6, (heads + 2 * groups) * hd) and cos.dtype == torch.float64
    row = torch.randn(6, (heads + 2 * groups) * hd)
    rotated = (row * cos + row[:, swap] * sin).float()
    q, k, v = row.split([heads * hd, groups * hd, groups * hd], dim=-1)
    expect = [
        apply_rotary(q.view(1, 6, heads, hd), table).flatten(2)[0],
        apply_rotary(k.view(1, 6, groups, hd), table).flatten(2)[0],
        v,  # values are not rotated
    ]
    torch.testing.assert_close(rotated, torch.cat(expect, -1))


class _Model(nn.Module):
    def __init__(self, **options):
        super().__init__()
        self.blocks = nn.ModuleList([Block(D, H, **options) for _ in range(2)])
        self.head = nn.Linear(D, 3)  # not a block: its names stay


LM_LEGACY = ["qkv", "proj", "up", "down"]  # the LMs and SoundStorm before segue.nn
SEMANTIC_LEGACY = ["qkv", "out", "ffn.0", "ffn.3"]  # the semantic model before segue.nn


@pytest.mark.parametrize(("bias", "legacy"), [(False, LM_LEGACY), (True, SEMANTIC_LEGACY)])
def test_weights_saved_under_the_old_names_load(bias, legacy):
    torch.manual_seed(0)
    model = _Model(bias=bias)
    state = model.state_dict()
    new = ["attn.qkv", "attn.proj", "mlp.up", "mlp.down"]
    old = dict(state)
    for key in list(old):
        for before, after in zip(legacy, new):
            if key.startswith("blocks.") and f".{after}." in key:
                old[key.replace(f".{after}.", f".{before}.")] = old.pop(key)
    assert old.keys() != state.keys() and "head.weight" in old
    assert upgrade_keys(model, old) == list(upgrade_state_dict(model, old))
    assert set(upgrade_keys(model, old)) == set(state)
    fresh = _Model(bias=bias)
    fresh.load_state_dict(old)  # strict: the pre-hook renames
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in state.items())
    fresh.load_state_dict(state)  # today's names load as they are
    names = [f"model.{k}" for k in old]  # optimizer parameter names, in a container
    container = nn.ModuleDict({"model": model})
    assert upgrade_keys(container, names) == [f"model.{k}" for k in upgrade_keys(model, old)]
