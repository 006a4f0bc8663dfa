"""Stage-level generation: sliding coarse windows, non-overlapping fine windows, semantic
continuation past its context, legal ids everywhere, prompts kept."""

import pytest
import torch

from segue.lm import stages
from segue.lm.config import LMConfig, StageConfig
from segue.lm.layout import layout_for
from segue.lm.model import Transformer
from segue.lm.stages import (
    StageLM,
    coarse_generate,
    fine_generate,
    load_lm,
    semantic_continue,
    windows,
)

SPACES = dict(semantic_vocab=16, acoustic_vocab=8, n_coarse=2, n_levels=4)


def make_lm(stage: str, window: float, prompt: float, **kw) -> StageLM:
    config = StageConfig(
        stage=stage, window_seconds=window, prompt_seconds=prompt, temperature=1.0, **SPACES, **kw
    )
    layout = layout_for(config)
    torch.manual_seed(0)
    model = Transformer(
        LMConfig(
            vocab_size=layout.vocab_size,
            max_seq_len=layout.max_length,
            n_layer=1,
            n_head=2,
            d_model=16,
        )
    )
    return StageLM(model.eval(), config, layout)


@pytest.fixture
def calls(monkeypatch):
    """Every (context, number of tokens) that the stage functions ask `generate` for."""
    seen = []
    real = stages.generate

    def spy(model, context, ranges, **kw):
        seen.append((context.clone(), len(ranges)))
        return real(model, context, ranges, **kw)

    monkeypatch.setattr(stages, "generate", spy)
    return seen


def test_windows_cover_everything_once_with_enough_prompt():
    # fine-like: 100 frames, windows of 20 with 8 of prompt
    spans = list(windows(0, 100, 100, 20, 8))
    assert spans[0] == (0, 0, 20)
    generated = [(done, a1) for (_, _, a1), done in zip(spans, [0] + [s[2] for s in spans])]
    assert [a for a, _ in generated[1:]] == [b for _, b in generated[:-1]]  # no gap, no overlap
    assert generated[-1][1] == 100
    for s0, _, a1 in spans[1:]:
        assert a1 - s0 == 20  # full windows
        assert a1 - s0 <= 20 and s0 >= 0
    for (s0, _, _), (_, _, prev_end) in zip(spans[1:], spans):
        assert prev_end - s0 >= 8  # at least the prompt of what came before
    # coarse-like: ratio 2, semantic window 10 with 4 of prompt, 50 semantic tokens
    spans = list(windows(0, 100, 50, 10, 4, ratio=2))
    assert all(a1 <= 2 * (s0 + 10) and a0 == 2 * s0 for s0, a0, a1 in spans)
    assert spans[-1][2] == 100 and spans[-1][0] == 40
    assert list(windows(0, 6, 3, 10, 4, ratio=2)) == [(0, 0, 6)]  # shorter than one window
    with pytest.raises(ValueError, match="shorter"):
        list(windows(0, 10, 10, 4, 4))


def test_coarse_generation_slides_windows_and_keeps_levels_legal(calls):
    lm = make_lm("coarse", window=0.4, prompt=0.16)  # 10 semantic tokens, prompt 4
    layout = lm.layout
    semantic = torch.randint(0, 16, (3, 37))
    gen = torch.Generator().manual_seed(0)
    out = coarse_generate(lm, semantic, generator=gen)
    assert out.shape == (3, 2, 74) and out.min() >= 0 and out.max() < 8
    assert len(calls) > 1
    done = 0
    for context, n in calls:
        assert context.shape[1] + n - 1 <= layout.max_length
        block = context[:, : layout.window]
        assert (context[:, layout.window] == layout.sep).all()
        starts = [s for s in range(37) if torch.equal(block, semantic[:, s : s + layout.window])]
        assert starts, "the window's semantic block is a slice of the input"
        s0 = starts[0]
        prompt = layout.unflatten(context[:, layout.window + 1 :])
        assert torch.equal(prompt, out[:, :, 2 * s0 : done])  # the frames already made
        assert done == 0 or done - 2 * s0 >= 2 * 4
        done += n // 2
    assert done == 74
    # a prompt is kept as it is, and n_frames can stop short of the semantic tokens
    prompt = torch.randint(0, 8, (3, 2, 11))
    out = coarse_generate(lm, semantic, prompt, n_frames=50)
    assert out.shape == (3, 2, 50) and torch.equal(out[:, :, :11], prompt)
    with pytest.raises(ValueError, match="cover"):
        coarse_generate(lm, semantic, n_frames=75)
    with pytest.raises(ValueError, match="outside"):
        coarse_generate(lm, semantic + 16)


def test_fine_windows_do_not_overlap_and_see_the_previous_window(calls):
    lm = make_lm("fine", window=0.4, prompt=0.2)  # 20 frames: 10 new + 10 previous
    layout = lm.layout
    coarse = torch.randint(0, 8, (2, 2, 47))
    codes = fine_generate(lm, coarse)
    assert codes.shape == (2, 4, 47) and torch.equal(codes[:, :2], coarse)
    assert codes.max() < 8
    new = [n // 2 for _, n in calls]
    assert new[0] == 20 and sum(new) == 47
    assert all(n <= 10 for n in new[1:])
    for context, n in calls[1:]:
        prompt_frames = (context.shape[1] - layout.prefix_length) // 2
        assert prompt_frames + n // 2 == 20  # full windows: the rest is the previous frames
        assert prompt_frames >= 10
    prompt = torch.randint(0, 8, (2, 2, 5))
    codes = fine_generate(lm, coarse, prompt)
    assert torch.equal(codes[:, 2:, :5], prompt)
    with pytest.raises(ValueError, match="coarse must be"):
        fine_generate(lm, coarse[:, :1])
    with pytest.raises(ValueError, match="not a fine"):
        fine_generate(make_lm("coarse", 0.4, 0.2), coarse)


def test_semantic_continuation_slides_past_its_context(calls):
    lm = make_lm("semantic", window=0.8, prompt=0.4)  # 20 tokens, keep 10
    layout = lm.layout
    lm.model.head.weight.data[layout.eos] = -10 * lm.model.head.weight.data[0].abs()  # rare EOS
    prompt = torch.randint(0, 16, (2, 6))
    out = semantic_continue(lm, prompt, 45, generator=torch.Generator().manual_seed(0))
    assert out.tokens.shape[0] == 2 and len(calls) >= 3
    first, _ = calls[0]
    assert first[0, 0] == layout.bos and torch.equal(first[:, 1:], prompt)
    for context, _ in calls[1:]:
        assert context.shape[1] == 10 and (context != layout.bos).all()  # slid: no BOS
    for context, n in calls:
        assert context.shape[1] + n <= layout.max_length
    live = out.tokens[:, : int(out.lengths.min())]
    assert (live >= 0).all() and (live < 16).all()


def test_semantic_eos_ends_a_sequence(calls):
    lm = make_lm("semantic", window=0.8, prompt=0.4)
    lm.model.head.weight.data[lm.layout.eos] *= 0
    lm.model.head.weight.data[lm.layout.eos, 0] = 1e4  # EOS whenever feature 0 is positive
    out = semantic_continue(lm, None, 30, batch_size=4, generator=torch.Generator().manual_seed(1))
    for row, n, ended in zip(out.tokens, out.lengths, out.ended):
        assert (row[:n] >= 0).all() and (row[n:] == -1).all()
        assert ended or n == out.tokens.shape[1]
    assert out.ended.any() and (out.lengths > 0).any()
    with pytest.raises(ValueError, match="needs a prompt"):
        semantic_continue(lm, None, 3, from_start=False)


def test_export_and_load(tmp_path):
    lm = make_lm("fine", window=0.4, prompt=0.2)
    lm.save_pretrained(tmp_path / "fine")
    loaded = load_lm(tmp_path / "fine")
    assert loaded.stage == lm.stage and loaded.layout == lm.layout
    ids = torch.randint(0, lm.layout.vocab_size, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids), lm.model(ids))
    with pytest.raises(FileNotFoundError, match="neither"):
        load_lm(tmp_path)


def test_random_stage_lm_takes_its_sizes_from_the_layout():
    config = StageConfig(stage="coarse", window_seconds=1.0, prompt_seconds=0.5, **SPACES)
    lm = StageLM.random(config, seed=3, n_layer=1, d_model=32, n_head=2)
    layout = layout_for(config)
    assert lm.layout == layout and not lm.model.training
    assert lm.model.config.vocab_size == layout.vocab_size
    assert lm.model.config.max_seq_len == layout.max_length and lm.model.config.n_layer == 1
    again = StageLM.random(config, seed=3, n_layer=1, d_model=32, n_head=2)
    assert torch.equal(lm.model.head.weight, again.model.head.weight)  # seeded
    out = coarse_generate(lm, torch.zeros(1, 2, dtype=torch.long), generator=torch.Generator())
    assert out.shape == (1, SPACES["n_coarse"], 2 * layout.ratio)


@pytest.mark.parametrize("stage", ["semantic", "coarse", "fine"])
def test_a_batch_generates_what_each_sequence_generates_alone(stage):
    """Batched decoding (one C step for the whole batch, windows shared) gives each sequence the
    tokens it gets alone; greedy, so no random draw can differ. Windows slide in every stage."""
    lm = make_lm(stage, window=0.4, prompt=0.16)
    torch.manual_seed(1)
    for p in lm.model.parameters():  # weights large enough that argmax follows the input
        p.data.normal_(0, 0.5)
    if stage == "semantic":
        prompts = torch.randint(0, 16, (3, 5))

        def run(b: slice) -> torch.Tensor:
            return semantic_continue(lm, prompts[b], 30, eos=False, temperature=0).tokens
    elif stage == "coarse":
        semantic, prompt = torch.randint(0, 16, (3, 23)), torch.randint(0, 8, (3, 2, 6))

        def run(b: slice) -> torch.Tensor:
            return coarse_generate(lm, semantic[b], prompt[b], temperature=0)
    else:
        coarse, prompt = torch.randint(0, 8, (3, 2, 47)), torch.randint(0, 8, (3, 2, 5))

        def run(b: slice) -> torch.Tensor:
            return fine_generate(lm, coarse[b], prompt[b], temperature=0)

    together = run(slice(None))
    alone = torch.cat([run(slice(b, b + 1)) for b in range(3)])
    assert torch.equal(together, alone)
    assert not torch.equal(together[0], together[1])  # the sequences did differ
