import re

import pytest
import torch

from segue.codec import Codec, CodecConfig, preset
from segue.codec.config import DiscriminatorConfig, SpectralConfig
from segue.codec.discriminators import Discriminators
from segue.codec.losses import (
    complex_stft_loss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    multiscale_mel_loss,
)
from segue.codec.modules import (
    Decoder,
    ISTFTDecoder,
    PaddedConv1d,
    PaddedConvTranspose1d,
    Snake,
    inverse_stft,
)


def small_config(**overrides) -> CodecConfig:
    base = dict(
        channels=4,
        latent_dim=16,
        n_codebooks=4,
        n_coarse=2,
        codebook_size=32,
        codebook_dim=4,
        discriminator=DiscriminatorConfig(
            periods=(2, 3), period_channels=2, stft_windows=(256, 128), stft_channels=2
        ),
        stft=SpectralConfig(dim=16, layers=2),
        istft=SpectralConfig(dim=16, layers=2),
    )
    base.update(overrides)
    return CodecConfig(**base)


def test_presets_match_the_paper_layout():
    audiolm = preset("audiolm")
    assert audiolm.hop_length == 320 and audiolm.frame_rate == 50
    assert audiolm.bitrate == 6000 and audiolm.n_coarse == 4 and audiolm.n_codebooks == 12
    tiny = preset("tiny")
    assert tiny.frame_rate == 50 and tiny.n_coarse < tiny.n_codebooks
    with pytest.raises(ValueError, match="unknown codec preset"):
        preset("huge")
    with pytest.raises(ValueError, match="n_coarse"):
        CodecConfig(n_coarse=13)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    "kernel, stride, dilation", [(7, 1, 1), (7, 1, 9), (8, 4, 1), (16, 8, 1), (10, 5, 1), (3, 1, 1)]
)
def test_conv_length_arithmetic(kernel, stride, dilation, causal):
    x = torch.randn(2, 3, 40 * stride)
    y = PaddedConv1d(3, 5, kernel, stride=stride, dilation=dilation, causal=causal)(x)
    assert y.shape == (2, 5, 40)
    if stride > 1:
        z = PaddedConvTranspose1d(5, 3, kernel, stride, causal=causal)(y)
        assert z.shape == x.shape


@pytest.mark.parametrize("causal", [False, True])
def test_inference_layout_computes_what_training_computes(causal):
    """Without autograd on a CPU, the conv encoder and decoder run as 2-D channels-last
    convolutions and Snake in place (`run_channels_last`); with autograd they take the readable
    1-D path. Both give the same numbers, causal or centred, odd paddings included."""
    torch.manual_seed(0)
    model = Codec(small_config(causal=causal, strides=(2, 5, 8), channels=6)).eval()
    for module in model.modules():  # Snake's alphas away from 1, so its terms matter
        if isinstance(module, Snake):
            module.alpha.data.uniform_(0.3, 3.0)
    audio = torch.randn(2, 1, 80 * 17) * 0.3
    with torch.no_grad():
        latents = model.encoder(audio)
        decoded = model.decoder(latents)
    with torch.enable_grad():
        readable_latents = model.encoder(audio)
        readable = model.decoder(readable_latents)
    assert readable.requires_grad and not decoded.requires_grad
    assert latents.shape == readable_latents.shape == (2, 16, 17)
    assert decoded.shape == readable.shape == audio.shape and decoded.is_contiguous()
    torch.testing.assert_close(latents, readable_latents.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(decoded, readable.detach(), atol=1e-5, rtol=1e-5)
    for kernel, stride in ((4, 2), (9, 3), (7, 3)):  # polyphase (K = m s), and the general case
        up = PaddedConvTranspose1d(3, 5, kernel, stride, causal=causal)
        x = torch.randn(2, 3, 11)
        with torch.no_grad():
            two_d = up(x[:, :, None].contiguous(memory_format=torch.channels_last))[:, :, 0]
            torch.testing.assert_close(two_d, up(x), atol=1e-6, rtol=1e-6)
    snake, x = Snake(3), torch.randn(2, 3, 50)
    snake.alpha.data = torch.tensor([[[0.5], [1.0], [2.0]]])
    expected = x + torch.sin(snake.alpha * x) ** 2 / snake.alpha
    with torch.no_grad():
        torch.testing.assert_close(snake(x), expected)
        torch.testing.assert_close(snake(x[:, :, None])[:, :, 0], expected)  # [B, C, 1, T]
    torch.testing.assert_close(snake(x), expected)


@pytest.mark.parametrize("encoder", ["conv", "stft"])
def test_causal_encoder_ignores_the_future(encoder):
    model = Codec(small_config(causal=True, encoder=encoder)).eval()
    x = torch.randn(1, 1, 3200)
    y = x.clone()
    y[..., 1600:] = torch.randn(1, 1, 1600)
    a, b = model.encoder(x), model.encoder(y)
    assert torch.allclose(a[..., :5], b[..., :5], atol=1e-6)  # frames before sample 1600
    assert not torch.allclose(a[..., -1], b[..., -1])


@pytest.mark.parametrize("length", [320, 1000, 3200])
def test_encode_decode_shapes(length):
    model = Codec(small_config()).eval()
    codes = model.encode(torch.randn(2, length) * 0.1)
    frames = -(-length // 320)
    assert codes.shape == (2, 4, frames) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 32
    audio = model.decode(codes)
    assert audio.shape == (2, frames * 320)
    assert model.decode(codes[:, :2]).shape == audio.shape  # coarse levels alone decode too
    with pytest.raises(ValueError, match="codes must be in"):
        model.decode(codes + 100)
    with pytest.raises(ValueError, match="mono audio"):
        model.encode(torch.randn(2, 2, 320))


def test_losses_are_finite_and_backpropagate():
    cfg = small_config()
    model, disc = Codec(cfg).train(), Discriminators(cfg.discriminator)
    x = torch.randn(2, 1, 1600) * 0.1
    out = model(x)
    fake, real = disc(out.audio), disc(x)
    losses = {
        "mel": multiscale_mel_loss(out.audio, x, 16000, (64, 256), (10, 40)),
        "adv": generator_adversarial_loss(fake),
        "fm": feature_matching_loss(real, fake),
        "commit": out.quantizer.commitment_loss,
        "book": out.quantizer.codebook_loss,
        "disc": discriminator_loss(real, fake),
    }
    for name, value in losses.items():
        assert torch.isfinite(value) and value.dim() == 0, name
    sum(v for k, v in losses.items() if k != "disc").backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert model.quantizer.levels[0].codebook.weight.grad is not None


def test_mel_loss_is_zero_for_identical_and_grows_with_noise():
    x = torch.randn(1, 1, 4000) * 0.1
    same = multiscale_mel_loss(x, x, 16000, (64, 256), (10, 40))
    close = multiscale_mel_loss(x + 0.001 * torch.randn_like(x), x, 16000, (64, 256), (10, 40))
    far = multiscale_mel_loss(x + 0.1 * torch.randn_like(x), x, 16000, (64, 256), (10, 40))
    assert same == 0 and 0 < close < far


def test_save_and_load_pretrained_round_trip(tmp_path):
    model = Codec(small_config()).eval()
    x = torch.randn(1, 640) * 0.1
    model.save_pretrained(tmp_path / "codec")
    loaded = Codec.from_pretrained(tmp_path / "codec")
    assert loaded.config == model.config
    assert torch.equal(loaded.encode(x), model.encode(x))
    assert torch.allclose(loaded.decode(model.encode(x)), model.decode(model.encode(x)))
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        Codec.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "codec" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read weights"):
        Codec.from_pretrained(tmp_path / "codec")


def test_a_saved_codec_leaves_out_the_ema_sums_and_loading_rebuilds_them(tmp_path):
    """`embed_sum` (as large as the codebook) is embed x cluster_size: `save_pretrained` leaves
    it out (the shipped codec is 2 MB smaller), loading rebuilds it, and a file that has it (an
    older export) loads it as it is. Codes and audio are the same either way."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    model = Codec(small_config(quantizer="ema")).train()
    x = torch.randn(2, 1, 3200) * 0.1
    model(x)  # k-means initialises every level's codes
    with torch.no_grad():  # as after some EMA updates: uneven counts, sums = codes x counts
        for level in model.quantizer.levels:
            level.cluster_size.uniform_(0.5, 3.0)
            level.embed_sum.copy_(level.embed * level.cluster_size[:, None])
    model.eval()
    model.save_pretrained(tmp_path / "slim")
    saved = load_file(str(tmp_path / "slim" / "model.safetensors"))
    assert not any(k.endswith("embed_sum") for k in saved)
    assert any(k.endswith(".embed") for k in saved)
    slim = Codec.from_pretrained(tmp_path / "slim")
    for level, original in zip(slim.quantizer.levels, model.quantizer.levels):
        torch.testing.assert_close(level.embed_sum, level.embed * level.cluster_size[:, None])
        assert torch.equal(level.embed, original.embed)
    codes = model.encode(x[:, 0])
    assert torch.equal(slim.encode(x[:, 0]), codes)
    assert torch.equal(slim.decode(codes), model.decode(codes))
    full = {k: v.contiguous() for k, v in model.state_dict().items()}  # an older export
    save_file(full, str(tmp_path / "slim" / "model.safetensors"))
    older = Codec.from_pretrained(tmp_path / "slim")
    for level, original in zip(older.quantizer.levels, model.quantizer.levels):
        assert torch.equal(level.embed_sum, original.embed_sum)


KINDS = [("conv", "conv"), ("conv", "istft"), ("stft", "istft")]


@pytest.mark.parametrize(("encoder", "decoder"), KINDS)
@pytest.mark.parametrize("causal", [False, True])
def test_windowed_encode_and_decode_equal_one_pass(causal, encoder, decoder):
    """Long audio is coded a window at a time with the receptive field as context: the same
    codes and audio as one pass, in bounded memory (a 20-minute file took 12.4 GB in one)."""
    torch.manual_seed(0)
    codec = Codec(small_config(causal=causal, encoder=encoder, decoder=decoder)).eval()
    audio = 0.3 * torch.randn(2, 16000 * 3 + 123)
    full = codec.encode(audio, window_seconds=None)
    for window in (0.2, 0.5, 1.3):
        assert torch.equal(codec.encode(audio, window_seconds=window), full)
        assert torch.equal(codec.encode(audio, 2, window_seconds=window), full[:, :2])
    one_pass = codec.decode(full, window_seconds=None)
    windowed = codec.decode(full, window_seconds=0.3)
    assert windowed.shape == one_pass.shape == (2, full.shape[-1] * codec.hop_length)
    torch.testing.assert_close(windowed, one_pass, atol=1e-5, rtol=1e-5)
    hop = codec.hop_length
    for start in (1, 37, full.shape[-1] - 1):  # skipped frames are context only
        for window in (None, 0.3):
            tail = codec.decode(full, start=start, window_seconds=window)
            torch.testing.assert_close(tail, one_pass[:, start * hop :], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="start frame"):
        codec.decode(full, start=full.shape[-1])


@pytest.mark.parametrize(("encoder", "decoder"), KINDS)
def test_the_context_bounds_cover_the_receptive_fields(encoder, decoder):
    """Measured: a change at one input sample (one latent frame) reaches no further than the
    bounds that windowing relies on."""
    torch.manual_seed(1)
    codec = Codec(small_config(encoder=encoder, decoder=decoder)).eval()
    hop = codec.hop_length
    x = 0.3 * torch.randn(1, 1, hop * 64)
    y = x.clone()
    y[..., hop * 32] += 1.0
    with torch.no_grad():
        changed = (codec.encoder(x) - codec.encoder(y)).abs().amax(1)[0] > 0
    frames = torch.nonzero(changed)[:, 0]
    reach = max(32 - int(frames.min()), int(frames.max()) - 32) * hop
    assert 0 < reach <= codec.encoder.context_samples
    latents = torch.randn(1, 16, 64)
    moved = latents.clone()
    moved[..., 32] += 1.0
    with torch.no_grad():
        diff = (codec.decoder(latents) - codec.decoder(moved)).abs()[0, 0] > 1e-7
    samples = torch.nonzero(diff)[:, 0]
    reach = max(32 * hop - int(samples.min()), int(samples.max()) - 33 * hop) / hop
    assert 0 < reach <= codec.decoder.context_frames


@pytest.mark.parametrize(("override", "message"), [
    ({"channels": 0}, "channels must be >= 1"),
    ({"codebook_size": 1}, "codebook_size must be >= 2"),
    ({"strides": (2, 0)}, "strides must be >= 1"),
    ({"quantizer_dropout": 1.5}, "quantizer_dropout must be in [0, 1]"),
    ({"quantizer": "lfq"}, "quantizer must be 'factorized' or 'ema'"),
])
def test_codec_config_refuses_what_makes_no_codec(override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        small_config(**override)


ISTFT = {"decoder": "istft"}


def test_inverse_stft_inverts_torch_stft():
    """Overlap-add of Hann-windowed frames divided by the squared-window envelope gives back
    the signal; "same" trimming lines frame f up with samples [f * hop, (f + 1) * hop)."""
    hop, n_fft = 80, 320
    window = torch.hann_window(n_fft, dtype=torch.float64)
    x = torch.randn(2, hop * 30, dtype=torch.float64)
    pad = (n_fft - hop) // 2
    spec = torch.stft(
        torch.nn.functional.pad(x, (pad, pad)), n_fft, hop, window=window, center=False,
        return_complex=True,
    )
    assert spec.shape[-1] == 30
    y = inverse_stft(spec, hop, window, causal=False)
    assert y.shape == x.shape
    torch.testing.assert_close(y[:, hop:-hop], x[:, hop:-hop])


@pytest.mark.parametrize("causal", [False, True])
def test_istft_decoder_shapes_and_causality(causal):
    torch.manual_seed(0)
    codec = Codec(small_config(causal=causal, **ISTFT)).eval()
    assert isinstance(codec.decoder, ISTFTDecoder)
    latents = torch.randn(2, 16, 20)
    audio = codec.decoder(latents)
    assert audio.shape == (2, 1, 20 * codec.hop_length) and torch.isfinite(audio).all()
    changed = latents.clone()
    changed[..., 12:] = torch.randn(2, 16, 8)
    before = codec.hop_length * 12
    same = torch.allclose(codec.decoder(changed)[..., :before], audio[..., :before], atol=1e-6)
    assert same == causal  # a causal decoder's past samples ignore later frames


def test_spectral_config_is_checked():
    with pytest.raises(ValueError, match="decoder must be 'conv' or 'istft'"):
        small_config(decoder="vocoder")
    with pytest.raises(ValueError, match="istft needs dim >= 1"):
        small_config(decoder="istft", istft=SpectralConfig(dim=0))
    with pytest.raises(ValueError, match="encoder must be 'conv' or 'stft'"):
        small_config(encoder="mel")
    with pytest.raises(ValueError, match="stft needs dim >= 1"):
        small_config(stft=SpectralConfig(layers=-1))


def test_complex_stft_loss_sees_the_phase_that_mel_misses():
    """A copy with every component's phase moved (a Hilbert-style 90 degree shift) has the same
    spectrogram magnitudes: mel barely notices, the complex term scores it far from identical."""
    torch.manual_seed(0)
    x = torch.randn(1, 1, 8000) * 0.1
    spectrum = torch.fft.rfft(x)
    shifted = torch.fft.irfft(spectrum * 1j, n=x.shape[-1])
    windows = (256, 512)
    assert complex_stft_loss(x, x, windows) == 0
    phase_error = complex_stft_loss(shifted, x, windows)
    noise = complex_stft_loss(x + 0.01 * torch.randn_like(x), x, windows)
    assert phase_error > 3 * noise > 0
    mel_shift = multiscale_mel_loss(shifted, x, 16000, (256, 512), (40, 80))
    mel_noise = multiscale_mel_loss(x + 0.01 * torch.randn_like(x), x, 16000, (256, 512), (40, 80))
    assert mel_shift < mel_noise  # the magnitude-only term cannot tell
    assert torch.isfinite(complex_stft_loss(torch.zeros_like(x), x, windows))


def test_the_bundled_codec_still_decodes_as_before(tmp_path):
    """A codec saved before the inverse-STFT decoder existed has no `decoder` (nor `encoder`,
    `stft`, `istft`) key: it loads the transposed-convolution decoder and decodes fixed codes to
    the samples the same weights give with today's config (the shipped codec, re-pinned when its
    decoder was trained on real voices, 2026-12-07)."""
    import json
    import shutil
    from pathlib import Path

    import segue

    shipped = Path(segue.__file__).parent / "assets/speech-tiny/codec"
    old = tmp_path / "old"
    shutil.copytree(shipped, old)
    config = json.loads((old / "config.json").read_text())
    for key in ("decoder", "encoder", "stft", "istft"):
        config.pop(key, None)
    (old / "config.json").write_text(json.dumps(config))
    seeded = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 1024, (1, 8, 25), generator=seeded)  # 8 levels of 1024 codes
    expected = [-0.025968, -0.001292, 0.008862, -0.003794, -0.035432, 0.093268, 0.032328, -0.025871]
    for folder in (shipped, old):
        codec = Codec.from_pretrained(folder)
        assert codec.config.decoder == "conv" and isinstance(codec.decoder, Decoder)
        assert (codec.n_codebooks, codec.codebook_size) == (8, 1024)
        audio = codec.decode(codes)[0]
        torch.testing.assert_close(audio[::1000], torch.tensor(expected), atol=2e-4, rtol=0)
        assert abs(float(audio.abs().sum()) - 295.070) < 0.05
