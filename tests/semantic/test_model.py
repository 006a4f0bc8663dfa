"""The model runs natively at 25 Hz, its frames line up with the MFCC targets', and padding
stays out of the valid frames."""

import pytest
import torch

from segue.semantic.config import preset
from segue.semantic.extractors import MFCCExtractor
from segue.semantic.model import SemanticModel
from tests.semantic.conftest import small_model_config


@pytest.mark.parametrize("samples", [640, 641, 16000, 16320, 23999])
def test_frames_at_25_hz_align_with_mfcc_targets(samples):
    model = SemanticModel(small_model_config()).eval()
    audio = torch.randn(2, samples) * 0.1
    lengths = torch.tensor([samples, samples // 2])
    with torch.no_grad():
        logits = model(audio, lengths)
        states, frame_lengths = model.features(audio, lengths, layer=1)
    frames = -(-samples // 640)
    assert model.frame_rate == 25.0
    assert logits.shape == (2, frames, 8) and states.shape == (2, frames, 32)
    assert frame_lengths.tolist() == [frames, -(-(samples // 2) // 640)]
    targets, target_lengths = MFCCExtractor()(audio, lengths)
    assert targets.shape == (2, frames, 39)
    assert torch.equal(target_lengths, frame_lengths)


def test_padding_does_not_leak_into_valid_frames():
    torch.manual_seed(0)
    model = SemanticModel(small_model_config()).eval()
    short = torch.randn(640 * 10) * 0.1
    batch = torch.randn(2, 640 * 20)  # garbage past the short item's length
    batch[0, : short.numel()] = short
    zeros = batch.clone()
    zeros[0, short.numel() :] = 0
    lengths = torch.tensor([short.numel(), 640 * 20])
    with torch.no_grad():
        alone, _ = model.features(short[None])
        padded, frame_lengths = model.features(batch, lengths)
        zero_padded, _ = model.features(zeros, lengths)
    assert frame_lengths.tolist() == [10, 20]
    torch.testing.assert_close(padded, zero_padded, atol=0, rtol=0)  # padding content is unseen
    # Batched vs alone: only the last frame's STFT window differs (zeros vs reflected audio).
    torch.testing.assert_close(padded[0, :7], alone[0, :7], atol=2e-2, rtol=1e-2)


def test_mask_embedding_replaces_masked_frames():
    model = SemanticModel(small_model_config(n_layers=1, tokenizer_layer=0)).eval()
    audio = torch.randn(1, 6400) * 0.1
    mask = torch.zeros(1, 10, dtype=torch.bool)
    mask[0, 3:6] = True
    with torch.no_grad():
        plain = model.front(audio)
        masked = model.front(audio)
        masked[mask] = model.mask_embedding
        states, _ = model.features(audio, mask=mask, layer=0)
    torch.testing.assert_close(states, model.position(masked))
    assert not torch.allclose(states, model.position(plain))


def test_presets_and_save_load(tmp_path):
    assert preset("tiny").n_layers == 6 and preset("base").dim == 768
    with pytest.raises(ValueError, match="unknown"):
        preset("huge")
    model = SemanticModel(small_model_config())
    model.save_pretrained(tmp_path / "m")
    loaded = SemanticModel.from_pretrained(tmp_path / "m")
    audio = torch.randn(1, 8000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(audio), model.eval()(audio))


@pytest.mark.parametrize(
    "override, message",
    [
        ({"n_heads": 0}, "n_heads must be >= 1"),
        ({"n_layers": 0}, "n_layers must be >= 1"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"mask_prob": -0.1}, "mask_prob must be in"),
        ({"n_classes": 1}, "n_classes must be >= 2"),
        ({"logit_temperature": 0.0}, "logit_temperature must be > 0"),
        ({"mel_hop": 0}, "mel_hop must be >= 1"),
        ({"n_fft": 100}, "n_fft=100 must be >= mel_hop"),
    ],
)
def test_settings_that_make_no_model_are_refused(override, message):
    with pytest.raises(ValueError, match=message):
        preset("tiny", **override)
