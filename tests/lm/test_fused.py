"""The fused batch-1 decoding step (C, segue/lm/csrc/decode_step.c) against the PyTorch step."""

import pytest
import torch

from segue.lm import fused
from segue.lm.config import LMConfig
from segue.lm.model import Transformer
from segue.lm.sampling import generate

needs_compiler = pytest.mark.skipif(fused.library() is None, reason="no C compiler here")


def small(half_values: bool = False, **kw) -> Transformer:
    torch.manual_seed(0)
    config = LMConfig(**{"vocab_size": 300, "max_seq_len": 64, "n_layer": 2, "n_head": 4,
                         "d_model": 64, **kw})  # fmt: skip
    model = Transformer(config).eval()
    if half_values:  # as loaded from a bundle saved in float16
        with torch.no_grad():
            for param in model.parameters():
                param.copy_(param.half().float())
    return model


def steps(model: Transformer, ids: torch.Tensor, *, fused: bool, lo=0, hi=None):
    """Logits of every single-token step after a 5-token prefill, and the final cache."""
    cache = model.new_cache(1, ids.shape[1], fused=fused)
    assert (cache.fused is not None) == fused
    model.extend(ids[:, :5], cache)
    out = [model.extend(ids[:, t : t + 1], cache, lo, hi) for t in range(5, ids.shape[1])]
    return torch.cat(out), cache


@needs_compiler
@pytest.mark.parametrize("half_values", [False, True], ids=["float32", "float16-values"])
@pytest.mark.parametrize("kv_heads", [0, 1, 2], ids=["multi-head", "multi-query", "grouped"])
def test_fused_steps_match_the_pytorch_steps(kv_heads, half_values):
    model = small(half_values, n_kv_head=kv_heads)
    ids = torch.randint(0, 300, (1, 40))
    with torch.inference_mode():
        want, want_cache = steps(model, ids, fused=False, lo=7, hi=250)
        got, got_cache = steps(model, ids, fused=True, lo=7, hi=250)
    assert got_cache.fused.weights.half == half_values  # float16 reads only when exact
    assert got.shape == want.shape == (35, 243)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(got_cache.kv, want_cache.kv, atol=2e-5, rtol=1e-5)
    assert got_cache.length == want_cache.length == 40


@needs_compiler
def test_fused_steps_match_the_full_forward_and_the_whole_vocabulary():
    model = small(mlp_ratio=3.0, d_model=48, n_head=3)  # hidden 144, head size 16
    ids = torch.randint(0, 300, (1, 20))
    with torch.no_grad():
        full = model(ids)
        got, _ = steps(model, ids, fused=True)
    torch.testing.assert_close(got[:-1], full[0, 5:-1], atol=2e-5, rtol=1e-5)


@needs_compiler
def test_greedy_generation_is_the_same_with_and_without_the_fused_step(monkeypatch):
    model = small(True, n_kv_head=1)
    prompt = torch.randint(0, 300, (1, 4))
    fused_run = generate(model, prompt, [(0, 300)] * 30, temperature=0).tokens
    original = Transformer.new_cache
    monkeypatch.setattr(
        Transformer, "new_cache", lambda self, *a, **k: original(self, *a, **k, fused=False)
    )
    assert torch.equal(generate(model, prompt, [(0, 300)] * 30, temperature=0).tokens, fused_run)


@needs_compiler
def test_fused_weights_follow_parameter_updates():
    model = small()
    ids = torch.randint(0, 300, (1, 12))
    with torch.no_grad():
        before = model.fused_weights()
        assert model.fused_weights() is before  # reused while nothing changes
        model.blocks[1].mlp.up.weight.mul_(1.5)
        assert model.fused_weights() is not before
        want, _ = steps(model, ids, fused=False)
        got, _ = steps(model, ids, fused=True)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


def test_only_batch_one_float32_caches_are_fused():
    model = small()
    assert model.new_cache(2, 8).fused is None
    assert model.new_cache(1, 8, dtype=torch.float64).fused is None


@pytest.fixture
def fresh_library(monkeypatch, tmp_path):
    """library() rebuilt from scratch under the test's environment, and forgotten after."""
    monkeypatch.setenv("SEGUE_CACHE_DIR", str(tmp_path))
    fused.library.cache_clear()
    yield
    fused.library.cache_clear()


def test_the_fused_step_can_be_switched_off(monkeypatch, fresh_library):
    monkeypatch.setenv(fused.DISABLE, "0")
    assert fused.library() is None
    assert small().new_cache(1, 8).fused is None


def test_without_a_compiler_decoding_warns_and_falls_back(monkeypatch, fresh_library, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.warns(UserWarning, match="no fused decoding step"):
        assert fused.library() is None
    model = small()
    cache = model.new_cache(1, 8)
    assert cache.fused is None
    with torch.no_grad():
        assert model.extend(torch.tensor([[1]]), cache).shape == (1, 300)


@needs_compiler
def test_a_build_is_cached_by_source_and_flags(fresh_library, tmp_path):
    assert fused.library() is not None
    built = list((tmp_path / "kernels").glob("decode_step-*.so"))
    assert len(built) == 1
    mtime = built[0].stat().st_mtime_ns
    fused.library.cache_clear()
    assert fused.library() is not None
    assert built[0].stat().st_mtime_ns == mtime  # found, not rebuilt


@needs_compiler
def test_a_model_made_in_inference_mode_gets_fresh_fused_weights():
    with torch.inference_mode():
        model = small()
        first = model.fused_weights()
        model.head.weight.mul_(2.0)  # no version counter to tell: remade every time
        assert model.fused_weights() is not first
        ids = torch.randint(0, 300, (1, 10))
        want, _ = steps(model, ids, fused=False)
        got, _ = steps(model, ids, fused=True)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


@needs_compiler
def test_the_fused_step_refuses_out_of_range_ids_and_logit_ranges():
    model = small()
    cache = model.new_cache(1, 8)
    with torch.no_grad():
        model.extend(torch.tensor([[1, 2]]), cache)
        with pytest.raises(IndexError, match="outside the vocabulary"):
            model.extend(torch.tensor([[300]]), cache)
        with pytest.raises(ValueError, match="logit range"):
            model.extend(torch.tensor([[3]]), cache, 10, 301)


@needs_compiler
def test_a_model_that_has_decoded_can_still_be_copied_and_pickled():
    import copy
    import pickle

    model = small()
    with torch.no_grad():
        steps(model, torch.randint(0, 300, (1, 8)), fused=True)
    twin = copy.deepcopy(model)  # e.g. an EMA copy of a model that sampled during training
    assert pickle.loads(pickle.dumps(model)).config == model.config
    with torch.no_grad():
        got, _ = steps(twin, torch.randint(0, 300, (1, 8)), fused=True)
    assert got.shape == (3, 300)
