"""Codec losses: multi-scale mel reconstruction, compressed complex STFT, least-squares
adversarial, feature matching."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segue.features import compress, mel_filterbank, stft_magnitude


def multiscale_mel_loss(
    fake: torch.Tensor,
    real: torch.Tensor,
    sample_rate: int,
    windows: tuple[int, ...],
    bins: tuple[int, ...],
) -> torch.Tensor:
    """Mean over scales of L1(log10 mel) + L1(mel) between [B, 1, T] signals (DAC's recipe).

    Small windows pin down transients, large ones pitch and formants.
    """
    fake, real = fake[:, 0], real[:, 0]
    total = fake.new_zeros(())
    for window, n_mels in zip(windows, bins):
        filters = mel_filterbank(window, n_mels, sample_rate).to(fake)
        mel_fake = filters @ stft_magnitude(fake, window, window // 4)
        mel_real = filters @ stft_magnitude(real, window, window // 4)
        total = total + F.l1_loss(
            torch.log10(mel_fake.clamp_min(1e-5)), torch.log10(mel_real.clamp_min(1e-5))
        )
        total = total + F.l1_loss(mel_fake, mel_real)
    return total / len(windows)


def complex_stft_loss(
    fake: torch.Tensor, real: torch.Tensor, windows: tuple[int, ...], power: float = 0.3
) -> torch.Tensor:
    """Mean over windows of L1 between power-law compressed complex STFTs of [B, 1, T] signals.

    Each bin becomes |S|^power with S's phase, so quiet bins count and a wrong phase costs as
    much as a wrong magnitude: unlike mel terms, a phase-shifted copy does not score zero.
    """
    total = fake.new_zeros(())
    for window in windows:
        hann = torch.hann_window(window, device=fake.device, dtype=fake.dtype)
        specs = [
            torch.stft(x[:, 0], window, window // 4, window=hann, return_complex=True)
            for x in (fake, real)
        ]
        fake_c, real_c = (compress(s, power) for s in specs)
        total = total + (fake_c - real_c).abs().mean()
    return total / len(windows)


def discriminator_loss(real_outputs, fake_outputs) -> torch.Tensor:
    """LSGAN: push D(real) -> 1 and D(fake) -> 0, summed over sub-discriminators."""
    loss = 0.0
    for (real_logits, _), (fake_logits, _) in zip(real_outputs, fake_outputs):
        loss = loss + torch.mean((1 - real_logits) ** 2) + torch.mean(fake_logits**2)
    return loss


def generator_adversarial_loss(fake_outputs) -> torch.Tensor:
    """LSGAN generator side: push D(fake) -> 1."""
    return sum(torch.mean((1 - logits) ** 2) for logits, _ in fake_outputs)


def feature_matching_loss(real_outputs, fake_outputs) -> torch.Tensor:
    """L1 between discriminator feature maps of real and fake, averaged over layers."""
    loss, count = 0.0, 0
    for (_, real_features), (_, fake_features) in zip(real_outputs, fake_outputs):
        for real, fake in zip(real_features, fake_features):
            loss = loss + F.l1_loss(fake, real.detach())
            count += 1
    return loss / max(count, 1)
