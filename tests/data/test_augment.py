"""Crop augmentations: what each transform does to a signal, and their use in CropDataset."""

import numpy as np
import pytest
import torch

from segue.data import augment as aug
from segue.data.crops import CropDataset
from segue.data.manifest import ManifestEntry, write_manifest
from tests.conftest import tone, write


def peak_frequency(x: np.ndarray, sr: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / sr)[spectrum.argmax()])


def test_config_is_off_by_default_and_checked():
    assert not aug.AugmentConfig().enabled
    assert aug.AugmentConfig(reverb=0.5).enabled
    with pytest.raises(ValueError, match="probability"):
        aug.AugmentConfig(speed=1.5)
    with pytest.raises(ValueError, match="speed_range"):
        aug.AugmentConfig(speed_range=(0.3, 1.0))
    with pytest.raises(ValueError, match="rt60"):
        aug.AugmentConfig(rt60=(0.0, 0.5))


def test_speed_moves_pitch_and_duration_together():
    x = tone(1.0, freq=200.0)
    faster = aug.change_speed(x, 1.1, 16000)
    assert abs(faster.size - 16000 / 1.1) <= 2
    assert abs(peak_frequency(faster) - 220.0) < 3.0
    assert aug.change_speed(x, 1.0, 16000) is x
    rng = np.random.default_rng(0)
    factors = [aug.speed_factor(aug.AugmentConfig(speed=1.0), rng) for _ in range(50)]
    assert all(0.88 <= f <= 1.12 for f in factors) and len(set(factors)) == 50
    assert aug.speed_factor(aug.AugmentConfig(), rng) == 1.0


def test_eq_reshapes_the_spectrum_and_reverb_adds_a_tail():
    rng = np.random.default_rng(1)
    noise = (0.3 * rng.standard_normal(16000)).astype(np.float32)
    shaped = aug.peaking_eq(noise, 16000, np.random.default_rng(2), 12.0)
    bands = [np.abs(np.fft.rfft(s)) ** 2 for s in (noise, shaped)]
    ratio = np.array([b[:8000].reshape(8, 1000).sum(1) for b in bands])  # 1 kHz bands
    assert np.ptp(10 * np.log10(ratio[1] / ratio[0])) > 3.0  # some bands up, some down
    click = np.zeros(16000, np.float32)
    click[1000] = 1.0
    wet = aug.reverberate(click, 16000, np.random.default_rng(3), (0.4, 0.4), (0.5, 0.5))
    assert wet.size == click.size and np.abs(wet).max() == pytest.approx(1.0, abs=1e-6)
    assert np.sum(wet[1200:5000] ** 2) > 1e-3  # energy after the click: a room
    response = aug.room_response(16000, np.random.default_rng(4), 0.3)
    assert response.size == 4800 and response[0] == 1.0


def test_augment_keeps_the_peak_and_leaves_silence_alone():
    x = tone(0.5, freq=300.0) * 0.4
    config = aug.AugmentConfig(eq=1.0, reverb=1.0)
    y = aug.augment(x, config, 16000, np.random.default_rng(0))
    assert y.shape == x.shape and not np.allclose(y, x)
    assert np.abs(y).max() == pytest.approx(np.abs(x).max(), rel=1e-4)
    silent = np.zeros(800, np.float32)
    assert aug.augment(silent, config, 16000, np.random.default_rng(0)) is silent


@pytest.fixture
def voices(tmp_path):
    entries = []
    for i, freq in enumerate((150.0, 220.0, 310.0)):
        write(tmp_path / f"v{i}.wav", tone(3.0, freq=freq) * 0.5)
        entries.append(ManifestEntry(f"v{i}.wav", 3.0, 16000, f"v{i}", "train"))
    write_manifest(tmp_path / "m.jsonl", entries)
    return tmp_path / "m.jsonl"


def test_crops_are_augmented_reproducibly(voices):
    config = aug.AugmentConfig(speed=1.0, eq=1.0, reverb=0.5)
    plain = CropDataset(voices, 1.0, seed=5)
    off = CropDataset(voices, 1.0, seed=5, augment=aug.AugmentConfig())
    first = CropDataset(voices, 1.0, seed=5, augment=config)
    second = CropDataset(voices, 1.0, seed=5, augment=config)
    for i in range(3):
        assert torch.equal(off[i]["audio"], plain[i]["audio"])  # all-zero config: no change
        a, b = first[i], second[i]
        assert torch.equal(a["audio"], b["audio"])  # same (seed, epoch, item): same crop
        assert a["audio"].shape == (16000,) and a["length"] == 16000
        assert not torch.allclose(a["audio"], plain[i]["audio"])
    first.set_epoch(1)
    assert not torch.equal(first[0]["audio"], second[0]["audio"])
    # Speed perturbation moves the tone: 150 Hz x f.
    rng = np.random.default_rng((5, 0, 0, 2))
    factor = aug.speed_factor(config, rng)
    sped = CropDataset(voices, 1.0, seed=5, augment=aug.AugmentConfig(speed=1.0))[0]
    assert abs(peak_frequency(sped["audio"].numpy()) - 150.0 * factor) < 3.0
