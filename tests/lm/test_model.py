"""The transformer: causal, and its KV-cached steps give the same logits as a full forward."""

import pytest
import torch

from segue.lm.config import LMConfig, model_preset
from segue.lm.model import Transformer


def small(**kw) -> Transformer:
    torch.manual_seed(0)
    config = LMConfig(**{"vocab_size": 40, "max_seq_len": 64, "n_layer": 2, "n_head": 2,
                         "d_model": 32, **kw})  # fmt: skip
    return Transformer(config).eval()


@pytest.mark.parametrize("kv_heads", [0, 1, 2], ids=["multi-head", "multi-query", "grouped"])
def test_cached_steps_match_the_full_forward(kv_heads):
    model = small(n_head=4, n_kv_head=kv_heads)
    assert model.new_cache(1).kv.shape[3] == (kv_heads or 4)
    ids = torch.randint(0, 40, (3, 30))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(3, 30)
        prompt = 7
        got = [model.extend(ids[:, :prompt], cache)]
        for t in range(prompt, 30):
            got.append(model.extend(ids[:, t : t + 1], cache))
    assert cache.length == 30
    torch.testing.assert_close(
        torch.stack(got[:-1], 1), full[:, prompt - 1 : -1], atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(got[-1], full[:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kv_heads", [0, 1])
def test_chunked_prefill_and_vocab_slice_match_the_full_forward(kv_heads):
    model = small(n_head=4, n_kv_head=kv_heads)
    ids = torch.randint(0, 40, (2, 20))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(2)
        model.extend(ids[:, :8], cache)
        part = model.extend(ids[:, 8:15], cache, 10, 30)  # a chunk after cached tokens
        torch.testing.assert_close(part, full[:, 14, 10:30], atol=1e-5, rtol=1e-5)
        last = model.extend(ids[:, 15:], cache)
    torch.testing.assert_close(last, full[:, -1], atol=1e-5, rtol=1e-5)


def test_future_tokens_do_not_change_past_logits():
    model = small()
    ids = torch.randint(0, 40, (1, 16))
    other = ids.clone()
    other[:, 10:] = (other[:, 10:] + 1) % 40
    with torch.no_grad():
        a, b = model(ids), model(other)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_cache_and_positions_are_bounded():
    model = small()
    cache = model.new_cache(1, 4)
    with pytest.raises(ValueError, match="cannot take"):
        model.extend(torch.zeros(1, 5, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_dropout_only_in_training():
    model = small(dropout=0.5)
    ids = torch.randint(0, 40, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), model(ids))
        model.train()
        assert not torch.allclose(model(ids), model(ids))


def test_attention_dropout_defaults_to_dropout_and_can_be_off():
    """None (configs written before the field) keeps dropout on the attention weights; 0 turns
    only that off (training then stays on SDPA's fused kernel), the residual dropout stays."""
    model = small(dropout=0.2)
    assert all(b.attn.dropout == 0.2 and b.drop.p == 0.2 for b in model.blocks)
    model = small(dropout=0.2, attention_dropout=0.0)
    assert all(b.attn.dropout == 0.0 and b.drop.p == 0.2 for b in model.blocks)
    ids = torch.randint(0, 40, (2, 12))
    model.train()
    assert not torch.allclose(model(ids), model(ids))  # still regularised


def test_presets_and_save_load(tmp_path):
    assert model_preset("audiolm").n_layer == 12 and model_preset("audiolm").d_model == 1024
    model = small()
    Transformer.from_pretrained(model.save_pretrained(tmp_path / "m"))
    loaded = Transformer.from_pretrained(tmp_path / "m")
    ids = torch.randint(0, 40, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids))
    with pytest.raises(ValueError, match="vocab_size"):
        Transformer(LMConfig())
    with pytest.raises(ValueError, match="heads"):
        LMConfig(d_model=30, n_head=4)
    with pytest.raises(ValueError, match="multiple of n_kv_head"):
        LMConfig(n_head=4, n_kv_head=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_head": 0}, "n_head must be >= 1"),
        ({"n_layer": 0}, "n_layer must be >= 1"),
        ({"dropout": 1.5}, "0 <= dropout < 1"),
        ({"attention_dropout": 1.0}, "attention_dropout must be in"),
    ],
)
def test_lm_config_refuses_what_makes_no_model(kwargs, message):
    from segue.lm.config import LMConfig

    with pytest.raises(ValueError, match=message):
        LMConfig(**kwargs)
