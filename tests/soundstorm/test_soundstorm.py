"""SoundStorm: the training mask, the model's shapes, decoding's invariants, a few train steps."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader

from segue.config import apply_overrides
from segue.errors import InputError
from segue.lm.data import conditioning_tokens
from segue.soundstorm import (
    SoundStorm,
    SoundStormConfig,
    generate,
    generate_windowed,
    mask_codes,
    mask_codes_seeded,
    mask_ratio,
)
from segue.soundstorm.evaluate import evaluate_soundstorm
from segue.soundstorm.load import load_soundstorm
from segue.soundstorm.train import (
    SoundStormDataConfig,
    SoundStormRunConfig,
    SoundStormTask,
    build_dataset,
    masked_loss,
)
from segue.train import Trainer
from tests.conftest import quick_run_overrides
from tests.lm.synthetic import K_A, K_S, LEVELS, write_shards

Q, K, S = 3, 8, 10


def tiny_model(seed: int = 0, **overrides) -> SoundStorm:
    torch.manual_seed(seed)
    settings = dict(
        n_levels=Q, codebook_size=K, semantic_vocab=S, d_model=32, n_layer=2, n_head=2,
        max_frames=64, steps_first=4, steps_rest=2,
    )  # fmt: skip
    config = SoundStormConfig(**{**settings, **overrides})
    return SoundStorm(config).eval()


def random_batch(batch: int = 2, ts: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    semantic = torch.randint(0, S, (batch, ts), generator=g)
    codes = torch.randint(0, K, (batch, Q, 2 * ts), generator=g)
    return semantic, codes


# --- masking ------------------------------------------------------------------------------------


def test_cosine_mask_ratio_at_known_points():
    assert float(mask_ratio(0.0)) == pytest.approx(1.0)
    assert float(mask_ratio(0.5)) == pytest.approx(math.cos(math.pi / 4))
    assert float(mask_ratio(1.0)) == pytest.approx(0.0, abs=1e-12)
    ratios = mask_ratio(torch.linspace(0, 1, 11))
    assert torch.all(ratios[1:] <= ratios[:-1])


def test_training_mask_structure():
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, K, (64, Q, 20), generator=g)
    lengths = torch.randint(1, 21, (64,), generator=g)
    m = mask_codes(codes, K, lengths, g)
    assert m.inputs.shape == codes.shape and m.loss_mask.shape == (64, 20)
    hidden = m.inputs == K
    frames = torch.arange(20)
    for b in range(64):
        p, q, n = int(m.prompt[b]), int(m.level[b]), int(lengths[b])
        assert 0 <= p < n and 0 <= q < Q
        assert not hidden[b, :, :p].any()  # the prompt is never masked
        assert not hidden[b, :, n:].any()  # nor the padding
        assert not hidden[b, :q].any()  # coarser levels are given
        assert hidden[b, q + 1 :, p:n].all()  # finer levels are all masked past the prompt
        assert torch.equal(m.loss_mask[b], hidden[b, q])  # loss exactly on level q's masks
        assert m.loss_mask[b].sum() >= 1
        assert not m.loss_mask[b, (frames < p) | (frames >= n)].any()
        assert torch.equal(m.inputs[b][~hidden[b]], codes[b][~hidden[b]])
    # mask ratios spread over (0, 1]: the cosine schedule, not a fixed fraction
    fractions = [
        float(m.loss_mask[b].sum()) / int(lengths[b] - m.prompt[b])
        for b in range(64)
        if lengths[b] - m.prompt[b] >= 8
    ]
    assert min(fractions) < 0.5 < max(fractions)


def test_training_mask_is_deterministic_with_a_generator():
    codes = torch.randint(0, K, (4, Q, 12))
    a = mask_codes(codes, K, generator=torch.Generator().manual_seed(3))
    b = mask_codes(codes, K, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.level, b.level)


def test_level_weights_draw_levels_by_their_weights():
    codes = torch.randint(0, K, (3000, Q, 12))
    g = torch.Generator().manual_seed(0)
    level = mask_codes(codes, K, generator=g, level_weights=torch.tensor([2.0, 0.0, 1.0])).level
    counts = torch.bincount(level, minlength=Q).float() / len(level)
    assert counts[1] == 0 and abs(counts[0] - 2 / 3) < 0.04 and abs(counts[2] - 1 / 3) < 0.04
    uniform = mask_codes(codes, K, generator=torch.Generator().manual_seed(0))
    same = mask_codes(codes, K, generator=torch.Generator().manual_seed(0), level_weights=None)
    assert torch.equal(uniform.inputs, same.inputs)  # None: the uniform draw as before
    for bad in ([1.0, 1.0], [1.0, -1.0, 1.0], [0.0, 0.0, 0.0]):
        with pytest.raises(ValueError, match="level_weights"):
            mask_codes(codes[:2], K, level_weights=torch.tensor(bad))


# --- model --------------------------------------------------------------------------------------


def test_model_output_shapes_and_levels_argument():
    model = tiny_model()
    semantic, codes = random_batch(batch=2, ts=8)
    logits = model(codes, semantic)
    assert logits.shape == (2, Q, 16, K)
    one = model(codes, semantic, levels=1)
    assert one.shape == (2, 16, K)
    torch.testing.assert_close(one, logits[:, 1], rtol=1e-4, atol=1e-5)
    per_item = model(codes, semantic, levels=torch.tensor([2, 0]))
    torch.testing.assert_close(per_item[0], logits[0, 2], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(per_item[1], logits[1, 0], rtol=1e-4, atol=1e-5)
    # masked codes and an odd frame count (the last semantic token covers one frame)
    masked = codes[:, :, :15].clone()
    masked[:, 1:] = K
    assert model(masked, semantic).shape == (2, Q, 15, K)


def test_attention_is_bidirectional_and_padding_is_ignored():
    model = tiny_model()
    semantic, codes = random_batch(batch=1, ts=8)
    changed = codes.clone()
    changed[0, 0, -1] = (changed[0, 0, -1] + 1) % K
    a, b = model(codes, semantic), model(changed, semantic)
    assert not torch.allclose(a[:, :, 0], b[:, :, 0])  # frame 0 sees the last frame
    # with lengths, frames past the end change nothing before it
    lengths = torch.tensor([10])
    a, b = model(codes, semantic, lengths), model(changed, semantic, lengths)
    torch.testing.assert_close(a[:, :, :10], b[:, :, :10])


def test_save_and_load_pretrained(tmp_path):
    model = tiny_model()
    semantic, codes = random_batch()
    loaded = SoundStorm.from_pretrained(model.save_pretrained(tmp_path / "ss"))
    torch.testing.assert_close(loaded(codes, semantic), model(codes, semantic))


# --- decoding -----------------------------------------------------------------------------------


def test_decode_keeps_prompt_and_decided_tokens_and_goes_level_by_level():
    model = tiny_model()
    semantic, codes = random_batch(batch=3, ts=10)
    prompt = codes[:, :, :6]
    history: list[tuple[int, int, torch.Tensor]] = []
    out = generate(
        model,
        semantic,
        prompt,
        n_frames=20,
        steps_per_level=[5, 2, 1],
        temperature=1.0,
        generator=torch.Generator().manual_seed(0),
        on_step=lambda level, step, c: history.append((level, step, c)),
    )
    assert out.shape == (3, Q, 20) and out.dtype == torch.long
    assert ((out >= 0) & (out < K)).all()
    assert torch.equal(out[:, :, :6], prompt)
    assert [(lv, s) for lv, s, _ in history] == [(0, s) for s in range(1, 6)] + [
        (1, 1),
        (1, 2),
        (2, 1),
    ]
    previous = torch.full_like(out, K)
    previous[:, :, :6] = prompt
    n_new = 14
    for level, step, current in history:
        decided = previous != K
        assert torch.equal(current[decided], previous[decided])  # never changed once decided
        assert torch.equal(current[:, :, :6], prompt)
        assert (current[:, level + 1 :, 6:] == K).all()  # finer levels untouched
        assert (current[:, :level] != K).all()  # coarser levels complete
        steps = [5, 2, 1][level]
        remain = 0 if step == steps else math.floor(n_new * math.cos(math.pi / 2 * step / steps))
        assert ((current[:, level] == K).sum(1) == remain).all()  # the cosine schedule
        previous = current
    assert torch.equal(history[-1][2], out)


def test_decode_is_deterministic_with_a_seed_and_varies_across_seeds():
    model = tiny_model()
    semantic, codes = random_batch(batch=2, ts=8)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return generate(model, semantic, codes[:, :, :4], temperature=1.0, generator=g)

    a, b, c = run(1), run(1), run(2)
    assert a.shape == (2, Q, 16)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_decode_without_prompt_and_greedy_defaults():
    model = tiny_model()
    semantic, _ = random_batch(batch=2, ts=5)
    out = generate(model, semantic, None, n_frames=9, temperature=0.0, noise=0.0)
    assert out.shape == (2, Q, 9) and ((out >= 0) & (out < K)).all()
    assert torch.equal(out, generate(model, semantic, None, n_frames=9, temperature=0.0, noise=0.0))
    assert model.training is False



def test_decode_with_given_levels_starts_at_the_first_level_not_given():
    """given [B, G, T]: those levels stay as given on every frame (prompt frames included), the
    decoding starts at level G, and what it decodes there depends on what was given."""
    model = tiny_model()
    semantic, codes = random_batch(batch=2, ts=10)
    history = []
    run = dict(n_frames=20, temperature=0.0, noise=0.0)
    out = generate(model, semantic, codes[:, :, :4], given=codes[:, :1], **run,
                   on_step=lambda level, step, c: history.append(level))  # fmt: skip
    assert torch.equal(out[:, :1], codes[:, :1]) and torch.equal(out[:, :, :4], codes[:, :, :4])
    assert sorted(set(history)) == [1, 2] and ((out >= 0) & (out < K)).all()
    other = generate(model, semantic, codes[:, :, :4], given=(codes[:, :1] + 1) % K, **run)
    assert not torch.equal(out[:, 1:], other[:, 1:])
    both = generate(model, semantic, None, given=codes[:, :2], **run)
    assert torch.equal(both[:, :2], codes[:, :2])
    for bad in (codes[:, :0], codes, codes[:, :1, :10], codes[:1, :1]):
        with pytest.raises(ValueError, match="given"):
            generate(model, semantic, None, given=bad, **run)


def test_windowed_decode_keeps_given_levels_in_every_window():
    model = tiny_model(max_frames=16)  # windows of 8 tokens
    semantic, codes = random_batch(batch=1, ts=20)
    out = generate_windowed(model, semantic, codes[:, :, :6], given=codes[:, :2])
    assert out.shape == (1, Q, 40) and torch.equal(out[:, :2], codes[:, :2])
    assert torch.equal(out[:, :, :6], codes[:, :, :6])

# --- training -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("soundstorm_shards"))


def tiny_run(shards, steps: int) -> SoundStormRunConfig:
    config = SoundStormRunConfig(
        data=SoundStormDataConfig(
            semantic_shards=str(shards[0]), acoustic_shards=str(shards[1]), window_seconds=0.8
        )
    )
    config.model = SoundStormConfig(d_model=32, n_layer=2, n_head=2, max_frames=64)
    settings = quick_run_overrides(
        steps, batch_size=8, every=steps, warmup=3, log_every=10, lr=3e-3
    )
    return apply_overrides(config, settings)


def test_level_weights_train_only_the_levels_weighted_and_are_checked(shards, monkeypatch):
    """level_weights: the training steps' masks predict only the weighted levels, validation's
    keep the uniform draw (runs compare); a wrong count is refused when the task is made."""
    from segue.soundstorm import train as train_module

    config = tiny_run(shards, 1)
    config.level_weights = [1.0] + [0.0] * (LEVELS - 1)
    task = SoundStormTask(config)
    task.setup(torch.device("cpu"))
    drawn = []

    def spy(real):
        def draw(*args):
            masked = real(*args)
            drawn.append(masked.level)
            return masked

        return draw

    for name in ("mask_codes", "mask_codes_seeded"):
        monkeypatch.setattr(train_module, name, spy(getattr(train_module, name)))
    batch = next(iter(DataLoader(task.train_dataset(), batch_size=16)))
    task.train_step({"model": task.model}, batch, 0)
    assert (drawn[-1] == 0).all()
    task.valid_step({"model": task.model}, batch)
    assert (drawn[-1] != 0).any()  # uniform over the levels
    config = tiny_run(shards, 1)
    config.level_weights = [1.0, 2.0]
    with pytest.raises(InputError, match=f"level_weights must be {LEVELS} weights"):
        SoundStormTask(config)


def test_validation_masks_follow_the_item_not_its_batch(shards):
    """Each validation crop's mask is seeded by its index: the loss of the same crops is the same
    in any order and batching (one seed per batch gave every batch the same draws)."""
    task = SoundStormTask(tiny_run(shards, 1))
    task.setup(torch.device("cpu"))
    items = [task.train_dataset()[i] for i in range(8)]  # the valid split has 3 crops
    batch = DataLoader(items, batch_size=8).__iter__().__next__()
    loss = task.valid_step({"model": task.model}, batch)["loss"]
    backwards = DataLoader(items[::-1], batch_size=8).__iter__().__next__()
    assert task.valid_step({"model": task.model}, backwards)["loss"] == pytest.approx(loss)
    masked = mask_codes_seeded(batch["codes"], K_A, batch["length"], batch["index"])
    again = mask_codes_seeded(backwards["codes"], K_A, backwards["length"], backwards["index"])
    assert torch.equal(masked.level, again.level.flip(0))
    assert torch.equal(masked.level, batch["index"] % LEVELS)  # every level equally often
    with pytest.raises(ValueError, match="level must be"):
        mask_codes(batch["codes"], K_A, level=torch.full((8,), LEVELS))


def test_dataset_items_align_semantic_and_acoustic(shards):
    task = SoundStormTask(tiny_run(shards, 1))
    m = task.config.model
    assert (m.n_levels, m.codebook_size, m.semantic_vocab, m.ratio) == (LEVELS, K_A, K_S, 2)
    dataset = task.train_dataset()
    item = dataset[0]
    assert item["semantic"].shape == (task.window,) and item["codes"].shape == (LEVELS, 40)
    n = int(item["length"])
    frames = torch.arange(n)
    s = item["semantic"][frames // 2]
    # the synthetic structure: coarse level 0 = (semantic + frame parity) % K_A
    assert torch.equal(item["codes"][0, :n], (s + frames % 2) % K_A)


def test_training_learns_the_synthetic_structure_and_decodes_it(shards, tmp_path):
    config = tiny_run(shards, steps=200)
    task = SoundStormTask(config)
    trainer = Trainer(task, config, tmp_path / "run")
    first = trainer.validate()
    before = first["loss"]
    trainer.fit()
    last = trainer.validate()
    after = last["loss"]
    trainer.close()
    assert after < 0.5 * before, (before, after)
    # validation's semantic gain: near 0 untrained, large once the codes follow the semantic tokens
    assert abs(first["semantic_gain"]) < 0.2 < 1.0 < last["semantic_gain"], (first, last)
    # decoding a validation utterance from its semantic tokens and a 4-frame prompt
    model = trainer.raw_modules["model"].eval()
    item = task.valid_dataset()[0]
    n = int(item["length"]) // 2 * 2
    semantic, codes = item["semantic"][None, : n // 2], item["codes"][None, :, :n]
    out = generate(model, semantic, codes[:, :, :4], temperature=0.0)
    accuracy = (out[0, :, 4:] == codes[0, :, 4:]).float().mean()
    assert accuracy > 0.4, accuracy  # chance: 1 / 8
    # the evaluation: seeded masks; another utterance's semantic tokens cost this model a lot
    # (its codes are a function of them), on level 0 most of all
    # (each crop 4 times: 4 masks, so that every level is drawn)
    own = ConcatDataset([build_dataset(config, task.window, "train", seed=1234)] * 4)
    other = build_dataset(config, task.window, "train", seed=1234, semantic_shift=3)
    first = evaluate_soundstorm(model, own, batch_size=4)
    assert first == evaluate_soundstorm(model, own, batch_size=4)
    mismatched = evaluate_soundstorm(model, ConcatDataset([other] * 4), batch_size=4)
    assert first.tokens == mismatched.tokens > 0 and first.windows == len(own)
    assert mismatched.loss > first.loss, (first, mismatched)
    assert mismatched.level_loss[0] > first.level_loss[0] + 0.5, (first, mismatched)
    assert math.isclose(trainer.validate()["loss"], after)  # evaluation left the model as it was


def test_mismatched_crops_keep_the_codes_and_change_the_semantic_tokens(shards):
    config = tiny_run(shards, 1)
    task = SoundStormTask(config)
    own = build_dataset(config, task.window, "train", seed=5)
    other = build_dataset(config, task.window, "train", seed=5, semantic_shift=2)
    n = len(own)
    for i in range(n):
        a, b = own[i], other[i]
        assert torch.equal(a["codes"], b["codes"]) and torch.equal(a["length"], b["length"])
        valid = -(-int(a["length"]) // 2)  # semantic tokens over the valid frames
        mine = conditioning_tokens(own.semantic, own.pairs, i)
        tiled = conditioning_tokens(own.semantic, own.pairs, i, shift=2)
        theirs = own.semantic.tokens(own.pairs[(i + 2) % n][1])[0]
        common = min(len(mine), len(theirs))  # tiled when shorter, cut when longer
        assert len(tiled) == len(mine) and torch.equal(
            tiled[:common], torch.tensor(theirs[:common])
        )
        # the crop takes the same span of the other utterance's tokens (tiled) as of its own
        starts = [
            k for k in range(len(mine)) if torch.equal(a["semantic"][:valid], mine[k : k + valid])
        ]
        assert any(torch.equal(b["semantic"][:valid], tiled[k : k + valid]) for k in starts)
    with pytest.raises(InputError, match="semantic_shift"):
        build_dataset(config, task.window, "train", semantic_shift=-1)


def test_validation_scores_mismatched_crops_only_when_asked(shards):
    """data.valid_semantic_gain: each validation item carries its crop with another utterance's
    semantic tokens (same codes, so the same masks); off, the items are the plain crops."""
    config = tiny_run(shards, 1)
    item = SoundStormTask(config).valid_dataset()[0]
    assert torch.equal(item["codes"], item["mismatched"]["codes"])
    assert not torch.equal(item["semantic"], item["mismatched"]["semantic"])
    config.data.valid_semantic_gain = False
    assert "mismatched" not in SoundStormTask(config).valid_dataset()[0]


def test_masked_loss_is_finite_on_padded_batches():
    model = tiny_model()
    semantic, codes = random_batch(batch=3, ts=8)
    batch = {"semantic": semantic, "codes": codes, "length": torch.tensor([16, 5, 1])}
    loss, correct, count = masked_loss(model, batch, K, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and 0 <= int(correct) <= int(count) and int(count) >= 3


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.n_head=0", "n_head must be >= 1"),  # was a ZeroDivisionError
        ("model.n_layer=0", "n_layer must be >= 1"),
        ("model.dropout=1.5", "dropout must be in"),
        ("model.attention_dropout=-0.1", "attention_dropout must be in"),
        ("model.temperature=-1", "temperature must be >= 0"),
        ("model.codebook_size=-4", "codebook_size must be >= 1"),
        ("model.max_frames=0", "max_frames must be >= 1"),
    ],
)
def test_settings_that_make_no_model_are_refused(override, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(SoundStormRunConfig(), [override])


def test_fine_tuning_starts_from_the_saved_model(shards, tmp_path):
    """train.init_from: the saved model's shape, sampling settings and weights; the run's
    dropout; a model with other token spaces than the shards' is refused."""
    base = tiny_run(shards, steps=20)
    trainer = Trainer(SoundStormTask(base), base, tmp_path / "base")
    trainer.fit()
    trained = trainer.validate()["loss"]
    trainer.close()
    load_soundstorm(tmp_path / "base").save_pretrained(tmp_path / "exported")
    for source in ("base", "exported"):
        config = apply_overrides(
            SoundStormRunConfig(data=base.data),  # the default preset: not the saved shape
            [*quick_run_overrides(1, batch_size=8), f"train.init_from={tmp_path / source}",
             "model.dropout=0.05"],
        )
        trainer = Trainer(SoundStormTask(config), config, tmp_path / f"from-{source}")
        assert config.model == replace(base.model, dropout=0.05, attention_dropout=None)
        assert trainer.validate()["loss"] == pytest.approx(trained, rel=1e-5)
        trainer.close()
    other = SoundStorm(replace(base.model, codebook_size=K_A + 1))
    other.save_pretrained(tmp_path / "other")
    config = apply_overrides(tiny_run(shards, 1), [f"train.init_from={tmp_path / 'other'}"])
    with pytest.raises(ValueError, match="codebook_size"):
        SoundStormTask(config)


def test_fine_tuning_on_another_semantic_tokenizer_starts_its_embeddings_fresh(shards, tmp_path):
    from tests.lm.synthetic import relabel_semantic

    base = tiny_run(shards, steps=2)
    trainer = Trainer(SoundStormTask(base), base, tmp_path / "base")
    trainer.fit()
    trainer.close()
    old = load_soundstorm(tmp_path / "base").state_dict()
    other = relabel_semantic(shards[0], tmp_path / "other", vocab_size=20)
    config = apply_overrides(tiny_run(shards, 1), [
        f"train.init_from={tmp_path / 'base'}", f"data.semantic_shards={other}",
        "new_semantic_tokens=true",
    ])  # fmt: skip
    tuned = Trainer(SoundStormTask(config), config, tmp_path / "tuned")
    state = tuned.raw_modules["model"].state_dict()
    tuned.close()
    assert config.model.semantic_vocab == 20 and state["semantic.weight"].shape[0] == 21
    assert all(torch.equal(state[k], v) for k, v in old.items() if k != "semantic.weight")
    assert torch.equal(state["semantic.weight"][-1], old["semantic.weight"][-1])  # PAD
    assert not torch.equal(state["semantic.weight"][:K_S], old["semantic.weight"][:K_S])
