"""The Hugging Face adapter on small randomly-initialised models saved by the test (no download)."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from segue.codec.hf import PretrainedCodec  # noqa: E402


def tiny_encodec(path):
    config = transformers.EncodecConfig(
        target_bandwidths=[1.5, 3.0],
        sampling_rate=16000,
        audio_channels=1,
        num_filters=4,
        upsampling_ratios=[4, 4, 4],
        hidden_size=16,
        codebook_size=64,
        num_lstm_layers=1,
        codebook_dim=16,
        chunk_length_s=None,
        normalize=False,
    )
    torch.manual_seed(0)
    transformers.EncodecModel(config).save_pretrained(path)


def tiny_dac(path):
    config = transformers.DacConfig(
        encoder_hidden_size=4,
        downsampling_ratios=[2, 4],
        decoder_hidden_size=16,
        upsampling_ratios=[4, 2],
        n_codebooks=3,
        codebook_size=32,
        codebook_dim=4,
        hidden_size=16,
        sampling_rate=16000,
    )
    torch.manual_seed(0)
    transformers.DacModel(config).save_pretrained(path)


@pytest.mark.parametrize("build, kind", [(tiny_encodec, "encodec"), (tiny_dac, "dac")])
def test_adapter_round_trip(tmp_path, build, kind):
    build(tmp_path / kind)
    codec = PretrainedCodec.from_pretrained(tmp_path / kind, local_files_only=True)
    assert codec.kind == kind and codec.sample_rate == 16000
    audio = torch.randn(2, 1600) * 0.1
    codes = codec.encode(audio)
    frames = -(-1600 // codec.hop_length)
    assert codes.shape == (2, codec.n_codebooks, frames) and codes.dtype == torch.int64
    assert int(codes.max()) < codec.codebook_size and 1 <= codec.n_coarse <= codec.n_codebooks
    decoded = codec.decode(codes)
    assert decoded.shape[0] == 2 and abs(decoded.shape[-1] - 1600) < codec.hop_length
    # Decoding is a deterministic function of the codes, and coarse levels alone decode too.
    assert torch.equal(decoded, codec.decode(codes))
    assert codec.decode(codes[:, :1]).shape == decoded.shape
    # Encoding is deterministic (eval mode: no quantizer dropout).
    assert torch.equal(codes, codec.encode(audio))


def test_adapter_errors(tmp_path):
    with pytest.raises(OSError):
        PretrainedCodec.from_pretrained(tmp_path / "missing", local_files_only=True)
    tiny_dac(tmp_path / "dac")
    codec = PretrainedCodec.from_pretrained(tmp_path / "dac", local_files_only=True)
    with pytest.raises(ValueError, match="expected codes"):
        codec.decode(torch.zeros(1, 9, 4, dtype=torch.long))
