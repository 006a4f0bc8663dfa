"""Content invariance: DTW, speed perturbation with warped targets, the alignment loss (two
synthetic "voices" of the same content are pulled together) and the training step using both."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from segue.config import apply_overrides
from segue.data.manifest import ManifestEntry, write_manifest
from segue.data.pairs import SentencePairs, WithPairs
from segue.semantic.invariance import (
    InvarianceConfig,
    alignment_loss,
    dtw_path,
    resample_fft,
    speed_perturb,
    warp_frames,
)
from segue.semantic.train import IGNORE, SemanticTask
from segue.train import Trainer
from tests.conftest import write
from tests.semantic.conftest import RATE, utterance
from tests.semantic.test_train import run_config


def test_dtw_recovers_a_known_warp():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((12, 4))
    repeats = np.array([1, 2, 1, 3, 1, 1, 2, 1, 1, 1, 2, 1])
    b = np.repeat(a, repeats, axis=0)  # b stretches some frames of a
    cost = ((a[:, None] - b[None]) ** 2).sum(-1)
    path = dtw_path(cost)
    assert tuple(path[0]) == (0, 0) and tuple(path[-1]) == (11, len(b) - 1)
    assert (np.diff(path, axis=0) >= 0).all() and (np.diff(path, axis=0).sum(1) >= 1).all()
    assert np.array_equal(path[:, 0], np.repeat(np.arange(12), repeats))  # every b frame -> its a
    assert np.array_equal(path[:, 1], np.arange(len(b)))
    with pytest.raises(ValueError, match="empty"):
        dtw_path(np.zeros((0, 3)))


def test_resampling_moves_pitch_and_duration():
    t = np.arange(RATE) / RATE
    tone = torch.tensor(np.sin(2 * np.pi * 400 * t), dtype=torch.float32)
    faster = resample_fft(tone, round(RATE / 1.25))  # 1.25x faster: 0.8 s, 500 Hz
    assert faster.shape == (12800,)
    spectrum = np.abs(np.fft.rfft(faster.numpy()))
    assert abs(np.argmax(spectrum) * RATE / len(faster) - 500) < 2
    audio = torch.stack([tone, tone])
    audio[1, 8000:] = 0
    out, lengths = speed_perturb(audio, torch.tensor([RATE, 8000]), torch.tensor([1.0, 0.8]))
    assert torch.equal(out[0], tone) and lengths.tolist() == [RATE, 10000]
    assert (out[1, 10000:] == 0).all() and out[1, :10000].abs().max() > 0.5


def test_targets_follow_the_perturbed_frames():
    targets = torch.arange(10).repeat(2, 1)
    targets[1, 8:] = IGNORE
    warped = warp_frames(targets, torch.tensor([1.0, 2.0]), torch.tensor([10, 4]), IGNORE)
    assert torch.equal(warped[0], targets[0])  # factor 1: unchanged
    assert warped[1].tolist() == [1, 3, 5, 7] + [IGNORE] * 6  # frame g <- clean (g + 1/2) * 2


def two_voices(sentences: int, frames: int, seed: int = 0):
    """Content sequences [S, F, 8] "spoken" by two voices: each voice a fixed random linear map
    plus a strong constant offset (the voice dominates the raw features); voice B drawls every
    third frame (a time warp)."""
    content = np.random.default_rng(seed).standard_normal((sentences, frames, 8))
    rng = np.random.default_rng(99)  # the same two voices whatever the content
    voices = [(rng.standard_normal((8, 16)), 4 * rng.standard_normal(16)) for _ in range(2)]
    a = content @ voices[0][0] + voices[0][1]
    warp = np.sort(np.concatenate([np.arange(frames), np.arange(0, frames, 3)]))
    b = content[:, warp] @ voices[1][0] + voices[1][1]
    as_tensor = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    return as_tensor(content), as_tensor(a), as_tensor(b), warp


def nearest_partner_accuracy(encoder, a, b, warp) -> float:
    """Share of B's frames whose nearest A frame (over every sentence) is its own content."""
    with torch.no_grad():
        ea = nn.functional.normalize(encoder(a).flatten(0, 1), dim=-1)
        eb = nn.functional.normalize(encoder(b).flatten(0, 1), dim=-1)
    sentences, frames = a.shape[:2]
    truth = (torch.arange(sentences)[:, None] * frames + torch.tensor(warp)[None]).flatten()
    return float(((eb @ ea.T).argmax(-1) == truth).float().mean())


def test_alignment_loss_pulls_two_voices_of_the_same_content_together():
    torch.manual_seed(0)
    content, a, b, warp = two_voices(sentences=6, frames=20)
    # Paths from DTW on the content (the teacher's role); they recover the warp.
    paths = [dtw_path(torch.cdist(content[s], content[s, warp]).numpy()) for s in range(6)]
    assert all(np.array_equal(path[:, 0], warp) for path in paths)
    encoder = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
    lengths_a, lengths_b = torch.full((6,), a.shape[1]), torch.full((6,), b.shape[1])
    before = nearest_partner_accuracy(encoder, a, b, warp)
    _, start = alignment_loss(encoder(a), encoder(b), lengths_a, lengths_b, paths)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=3e-3)
    for _ in range(300):
        loss, metrics = alignment_loss(encoder(a), encoder(b), lengths_a, lengths_b, paths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = nearest_partner_accuracy(encoder, a, b, warp)
    assert before < 0.3 and after > 0.9, (before, after)
    assert metrics["align_cos"] > start["align_cos"] + 0.3 and metrics["align_acc"] > 0.9
    # held-out sentences in the same two voices: the invariance generalises
    _, a2, b2, warp2 = two_voices(sentences=6, frames=20, seed=1)
    assert nearest_partner_accuracy(encoder, a2, b2, warp2) > 0.9
    with pytest.raises(ValueError, match="at least 2 pairs"):
        alignment_loss(a[:1], b[:1], lengths_a[:1], lengths_b[:1], paths[:1])


def test_invariance_config_refuses_nonsense():
    for bad in ({"perturb": 1.5}, {"pairs": 1}, {"perturb_range": (0.3, 1.0)},
                {"temperature": 0.0}):
        with pytest.raises(ValueError, match="invariance"):
            InvarianceConfig(**bad)
    assert not InvarianceConfig().aligns and InvarianceConfig(pairs=2).aligns


@pytest.fixture
def paired_corpus(tmp_path):
    """train: 4 sentences, each in voices 0 and 1 (sentence 3 also in voice 2, but 3 s long);
    valid: 2 utterances."""
    entries = []

    def add(split, sentence, voice, seconds):
        path = f"v{voice}/s{sentence}.wav"
        write(tmp_path / path, utterance(sentence, voice, seconds))
        entries.append(ManifestEntry(path, seconds, RATE, f"v{voice}", split=split,
                                     extra={"sentence_id": f"s{sentence}"}))

    for sentence in range(4):
        for voice in (0, 1):
            add("train", sentence, voice, 0.6 + 0.1 * voice)
    add("train", 3, 2, 3.0)
    add("train", 7, 0, 0.8)  # one voice only: never paired
    add("valid", 10, 3, 0.6)
    add("valid", 11, 3, 0.6)
    write_manifest(tmp_path / "manifest.jsonl", entries)
    return tmp_path / "manifest.jsonl"


def test_sentence_pairs(paired_corpus):
    pairs = SentencePairs(paired_corpus, max_seconds=1.0, split="train", seed=3)
    assert len(pairs) == 4  # s0-s3; v2's 3 s utterance and the lone s7 are left out
    for index in range(8):
        first, second = pairs.entries(index)
        assert first.extra["sentence_id"] == second.extra["sentence_id"]
        assert first.group != second.group and {first.group, second.group} == {"v0", "v1"}
    item = pairs[0]
    assert item["pair_audio"].shape == (2, RATE) and item["pair_length"].tolist() in (
        [9600, 11200], [11200, 9600])
    assert (item["pair_audio"][0, int(item["pair_length"][0]):] == 0).all()
    again = SentencePairs(paired_corpus, max_seconds=1.0, split="train", seed=3)
    assert torch.equal(again[0]["pair_audio"], item["pair_audio"])  # reproducible
    with pytest.raises(ValueError, match="two voices"):
        SentencePairs(paired_corpus, max_seconds=1.0, split="valid")
    combined = WithPairs([{"audio": torch.zeros(3)}] * 5, pairs)
    assert len(combined) == 5 and set(combined[4]) == {"audio", "pair_audio", "pair_length"}


def test_training_with_perturbation_and_pairs(paired_corpus, tmp_path):
    config = run_config(paired_corpus, tmp_path / "run", steps=3)
    config = apply_overrides(config, [
        "invariance.perturb=1.0", "invariance.pairs=2", "invariance.pair_seconds=1.0",
        "data.crop_seconds=0.6",
    ])
    task = SemanticTask(config)
    trainer = Trainer(task, config, tmp_path / "run")
    row = trainer.train_step()
    assert {"align_loss", "align_cos", "align_acc", "loss_masked"} <= set(row)
    assert all(math.isfinite(v) for v in row.values())
    # the alignment loss trains the blocks up to the tokenizer layer (1 of 2), not above
    model = trainer.raw_modules["model"]
    batch = next(iter(torch.utils.data.DataLoader(task.train_dataset(), batch_size=2)))

    def gradients(weight: float) -> dict[str, torch.Tensor]:
        task.config.invariance.weight = weight
        torch.manual_seed(0)  # the same perturbation, masks and dropout
        model.zero_grad()
        task._step(model, batch, training=True)[0].backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    full, tiny = gradients(1.0), gradients(1e-6)
    task.config.invariance.weight = 1.0
    qkv = "blocks.{}.attn.qkv.weight".format
    assert not torch.allclose(full[qkv(0)], tiny[qkv(0)])
    assert torch.allclose(full[qkv(1)], tiny[qkv(1)])
    assert trainer.fit().status == "completed"
    trainer.close()
    # perturbation alone (no pairs) trains too; validation is never perturbed
    config = apply_overrides(config, ["invariance.pairs=0"])
    trainer = Trainer(SemanticTask(config), config, tmp_path / "perturb-only")
    assert "align_loss" not in trainer.train_step()
    assert math.isfinite(trainer.validate()["loss"])
    trainer.close()
