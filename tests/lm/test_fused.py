"""The fused decoding step (C, segue/lm/csrc/decode_step.c) against the PyTorch step, at batch 1
and batched, and its struct ABI."""

import ctypes

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
    """Logits [T - 5, B, hi - lo] of every single-token step after a 5-token prefill of ids
    [B, T], and the final session."""
    cache = model.new_cache(ids.shape[0], ids.shape[1], fused=fused)
    assert cache.fused == fused
    model.extend(ids[:, :5], cache)
    out = [model.extend(ids[:, t : t + 1], cache, lo, hi) for t in range(5, ids.shape[1])]
    return torch.stack(out), cache


@needs_compiler
@pytest.mark.parametrize("half_values", [False, True], ids=["float32", "float16-values"])
@pytest.mark.parametrize("kv_heads", [0, 1, 2], ids=["multi-head", "multi-query", "grouped"])
def test_fused_steps_match_the_pytorch_steps(kv_heads, half_values):
    model = small(half_values, n_kv_head=kv_heads)
    ids = torch.randint(0, 300, (1, 40))
    with torch.inference_mode():
        want, want_cache = steps(model, ids, fused=False, lo=7, hi=250)
        got, got_cache = steps(model, ids, fused=True, lo=7, hi=250)
    assert got_cache.backend.weights.half == half_values  # float16 reads only when exact
    assert got.shape == want.shape == (35, 1, 243)
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
    torch.testing.assert_close(got[:-1, 0], full[0, 5:-1], atol=2e-5, rtol=1e-5)


@needs_compiler
@pytest.mark.parametrize("half_values", [False, True], ids=["float32", "float16-values"])
@pytest.mark.parametrize("batch", [2, 5, 8, 16])
def test_batched_fused_steps_match_the_pytorch_steps_and_each_sequence_alone(batch, half_values):
    """Batches that fill the C step's tiles of four sequences, and ones that leave a remainder;
    a width (d_model 80, hidden 240) that is not a multiple of the vector tiles, so the column
    tails run too."""
    model = small(half_values, n_kv_head=2, d_model=80, n_head=4, mlp_ratio=3.0)
    ids = torch.randint(0, 300, (batch, 24))
    with torch.inference_mode():
        want, want_cache = steps(model, ids, fused=False, lo=3, hi=291)
        got, got_cache = steps(model, ids, fused=True, lo=3, hi=291)
        alone = torch.cat([steps(model, ids[b : b + 1], fused=True, lo=3, hi=291)[0]
                           for b in range(batch)], dim=1)  # fmt: skip
    assert got.shape == want.shape == (19, batch, 288)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(got, alone, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(got_cache.kv, want_cache.kv, atol=2e-5, rtol=1e-5)


@needs_compiler
def test_batched_sampling_is_the_same_as_sampling_each_prompt_alone():
    model = small(True)
    prompts = torch.randint(0, 300, (6, 4))
    together = generate(model, prompts, [(0, 300)] * 25, temperature=0).tokens
    for b in range(6):
        alone = generate(model, prompts[b : b + 1], [(0, 300)] * 25, temperature=0).tokens
        assert torch.equal(alone[0], together[b]), b


@needs_compiler
def test_the_struct_layout_is_checked_against_the_c_side():
    lib = fused.library()
    names = [name for name, _ in fused.StepArgs._fields_]
    out = (ctypes.c_int64 * (2 * len(names) + 1))()
    assert lib.segue_step_layout(out, len(out)) == len(out)
    assert lib.segue_step_layout(out, len(out) - 1) == -1  # too short an array: refused
    assert out[0] == ctypes.sizeof(fused.StepArgs)

    fields = fused.StepArgs._fields_

    class Swapped(ctypes.Structure):  # two fields of one type swapped: same size and offsets
        _fields_ = [fields[1], fields[0], *fields[2:]]

    class Narrower(ctypes.Structure):  # one field of another width: the offsets after it move
        _fields_ = [*fields[:3], (fields[3][0], ctypes.c_int32), *fields[4:]]

    class Longer(ctypes.Structure):  # a field added on this side only
        _fields_ = [*fields, ("extra", ctypes.c_int64)]

    original = fused.StepArgs
    try:
        for wrong in (Swapped, Narrower, Longer):
            fused.StepArgs = wrong
            with pytest.raises(RuntimeError, match="does not match StepArgs"):
                fused._check_layout(lib)
    finally:
        fused.StepArgs = original
    fused._check_layout(lib)  # the real one passes


@needs_compiler
def test_a_step_refuses_a_wrong_struct_size_and_too_little_scratch():
    model = small()
    with torch.inference_mode():
        cache = model.new_cache(3, 8)
        step = cache.backend
        ids = torch.zeros(3, 1, dtype=torch.long)
        step.args.scratch_floats -= 1
        with pytest.raises(RuntimeError, match="status -2"):
            step.step(ids, 0, 0, 300)
        step.args.scratch_floats += 1
        step.args.size += 8
        with pytest.raises(RuntimeError, match="status -1"):
            step.step(ids, 0, 0, 300)
        step.args.size -= 8
        assert step.step(ids, 0, 0, 300).shape == (3, 300)


@needs_compiler
def test_out_of_range_tokens_in_a_batch_are_refused_before_the_c_step():
    model = small()
    with torch.inference_mode():
        cache = model.new_cache(3, 8)
        for bad in (300, -1):
            with pytest.raises(IndexError, match=f"token id {bad} is outside"):
                model.extend(torch.tensor([[0], [bad], [1]]), cache)
        with pytest.raises(ValueError, match="logit range"):
            model.extend(torch.tensor([[0], [1], [2]]), cache, 5, 301)


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


def test_only_small_float32_cpu_batches_are_fused():
    model = small()
    available = fused.library() is not None
    assert model.new_cache(2, 8).fused == available
    assert model.new_cache(fused.MAX_BATCH, 8).fused == available
    assert not model.new_cache(fused.MAX_BATCH + 1, 8).fused
    assert not model.new_cache(1, 8, dtype=torch.float64).fused
    assert not model.new_cache(1, 8, fused=False).fused


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
    assert not small().new_cache(1, 8).fused


def test_without_a_compiler_decoding_warns_and_falls_back(monkeypatch, fresh_library, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.warns(UserWarning, match="no fused decoding step"):
        assert fused.library() is None
    model = small()
    cache = model.new_cache(1, 8)
    assert not cache.fused
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
    assert got.shape == (3, 1, 300)
