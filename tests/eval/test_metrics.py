import numpy as np
import pytest

from segue.eval import metrics


@pytest.fixture
def speechlike():
    """A 2 s harmonic signal with a syllable-rate envelope (PESQ/STOI need speech-like input)."""
    t = np.arange(32000) / 16000
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    return (0.3 * voiced * envelope).astype(np.float32)


def test_si_snr_known_values(speechlike):
    rng = np.random.default_rng(0)
    assert metrics.si_snr(speechlike, speechlike) > 60
    assert metrics.si_snr(3 * speechlike, speechlike) > 60  # scale-invariant
    noise = rng.standard_normal(speechlike.shape)
    noise *= np.linalg.norm(speechlike) / np.linalg.norm(noise) / np.sqrt(10)  # 10 dB SNR
    assert abs(metrics.si_snr(speechlike + noise, speechlike) - 10) < 0.5


def test_mel_distance_orders_degradations(speechlike):
    rng = np.random.default_rng(0)
    assert metrics.mel_distance(speechlike, speechlike) == 0
    slight = metrics.mel_distance(speechlike + 0.001 * rng.standard_normal(32000), speechlike)
    heavy = metrics.mel_distance(speechlike + 0.1 * rng.standard_normal(32000), speechlike)
    assert 0 < slight < heavy


@pytest.mark.skipif(
    not metrics.available("pesq") or not metrics.available("pystoi"),
    reason="pesq/pystoi not installed",
)
def test_pesq_and_stoi_order_degradations(speechlike):
    rng = np.random.default_rng(0)
    noisy = speechlike + 0.05 * rng.standard_normal(32000).astype(np.float32)
    clean_pesq, noisy_pesq = (
        metrics.pesq_wb(speechlike, speechlike),
        metrics.pesq_wb(noisy, speechlike),
    )
    assert clean_pesq > 4.0 and noisy_pesq < clean_pesq - 1
    assert metrics.stoi(speechlike, speechlike) > 0.99
    assert metrics.stoi(noisy, speechlike) < metrics.stoi(speechlike, speechlike)


def test_mean_skips_missing_and_empty_is_an_error(speechlike):
    rows = [{"a": 1.0, "b": None}, {"a": 3.0, "b": None}]
    assert metrics.mean_metrics(rows) == {"a": 2.0, "b": None}
    with pytest.raises(ValueError, match="empty"):
        metrics.si_snr(np.zeros(0), np.zeros(0))


@pytest.mark.skipif(not metrics.available("visqol"), reason="visqol-python not installed")
def test_visqol_orders_degradations(speechlike):
    rng = np.random.default_rng(0)
    noisy = speechlike + 0.05 * rng.standard_normal(32000).astype(np.float32)
    assert metrics.visqol(speechlike, speechlike) > metrics.visqol(noisy, speechlike) + 0.5


@pytest.mark.skipif(not metrics.available("resemblyzer"), reason="resemblyzer not installed")
def test_speaker_similarity_is_one_for_the_same_audio_and_lower_for_another_voice(tmp_path):
    import shutil
    import subprocess

    from segue import audio as audio_io

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("needs espeak-ng")
    text = "it is a good day to read a book in the garden"
    voices = {}
    for name, voice in (("male", "en-us"), ("female", "en-us+f4")):
        path = tmp_path / f"{name}.wav"
        subprocess.run([espeak, "-v", voice, "-w", str(path), text], check=True)
        voices[name] = audio_io.load(path, 16000)
    male, female = voices["male"], voices["female"]
    rng = np.random.default_rng(0)
    noisy = male + 0.003 * rng.standard_normal(len(male)).astype(np.float32)
    assert metrics.speaker_similarity(male, male) == pytest.approx(1.0, abs=1e-5)
    other = metrics.speaker_similarity(female, male)
    assert metrics.speaker_similarity(noisy, male) > 0.9 > other
    assert set(metrics.all_metrics(male, male)) >= {"pesq", "stoi", "visqol", "speaker"}
