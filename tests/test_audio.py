from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from segue import audio
from tests.conftest import tone, write


def test_load_resamples_and_downmixes(tmp_path):
    path = write(tmp_path / "stereo.flac", tone(1.0, 44100, channels=2), 44100)
    x = audio.load(path, 16000)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(x.shape[0] - 16000) <= 1
    # The 440 Hz tone survives resampling: its spectral peak stays at 440 Hz.
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * 16000 / x.shape[0] - 440) < 2


def test_load_native_rate_is_exact(tmp_path):
    data = tone(0.5, 22050)
    path = write(tmp_path / "a.wav", data, 22050, subtype="FLOAT")
    np.testing.assert_array_equal(audio.load(path), data)


def test_segment_read_matches_full_read(tmp_path):
    data = np.random.default_rng(0).uniform(-0.5, 0.5, 48000).astype(np.float32)
    path = write(tmp_path / "noise.flac", data, 16000, subtype="PCM_24")
    full = audio.load(path)
    part = audio.load(path, offset=1.25, duration=0.5)
    np.testing.assert_array_equal(part, full[20000:28000])
    # A segment running past the end is cut at the end.
    assert audio.load(path, offset=2.9, duration=1.0).shape[0] == 1600


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_formats_libsndfile_reads(tmp_path, fmt):
    path = tmp_path / f"x.{fmt}"
    sf.write(str(path), tone(1.0), 16000, format=fmt.upper())
    x = audio.load(path, 16000)
    assert abs(x.shape[0] - 16000) < 2000  # mp3 adds codec delay/padding
    assert np.isfinite(x).all() and np.abs(x).max() > 0.1


def test_normalization(tmp_path):
    path = write(tmp_path / "quiet.wav", 0.01 * tone(1.0))
    peak = np.abs(audio.load(path, normalize="peak")).max()
    assert np.isclose(peak, audio.PEAK_TARGET, atol=1e-3)
    rms = np.sqrt(np.mean(audio.load(path, normalize="rms") ** 2))
    assert np.isclose(rms, audio.RMS_TARGET, rtol=1e-2)
    silent = write(tmp_path / "silent.wav", np.zeros(1600, np.float32))
    np.testing.assert_array_equal(audio.load(silent, normalize="peak"), 0.0)
    assert audio.is_silent(audio.load(silent)) and not audio.is_silent(tone(0.1))
    with pytest.raises(ValueError, match="normalize"):
        audio.normalize_audio(tone(0.1), "loud")


@pytest.mark.parametrize(
    "name, cause",
    [
        ("missing.wav", "file not found"),
        ("empty.wav", "empty file"),
        ("text.wav", "not a readable audio file"),
        ("truncated.wav", "truncated"),
        ("nan.wav", "NaN or infinite"),
        ("zero.wav", "no samples"),
        ("folder", "directory"),
    ],
)
def test_bad_input_names_file_and_cause(tmp_path, name, cause):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("hello " * 100)
    good = write(tmp_path / "good.wav", tone(1.0)).read_bytes()
    (tmp_path / "truncated.wav").write_bytes(good[: len(good) // 2])
    nan = tone(0.2)
    nan[5] = np.inf
    write(tmp_path / "nan.wav", nan, subtype="FLOAT")
    write(tmp_path / "zero.wav", np.zeros(0, np.float32))
    (tmp_path / "folder").mkdir()
    with pytest.raises(audio.AudioError, match=cause) as info:
        audio.load(tmp_path / name, 16000)
    assert str(tmp_path / name) in str(info.value)
    assert info.value.path == str(tmp_path / name)


def test_bad_segment_and_info(tmp_path):
    path = write(tmp_path / "a.wav", tone(1.0))
    with pytest.raises(audio.AudioError, match="past the end"):
        audio.load(path, offset=2.0)
    with pytest.raises(audio.AudioError, match="invalid segment"):
        audio.load(path, duration=0)
    meta = audio.info(path)
    assert (meta.sample_rate, meta.num_frames, meta.channels) == (16000, 16000, 1)
    assert meta.duration == 1.0


def test_save_round_trip_and_refusals(tmp_path):
    x = torch.from_numpy(tone(0.25))[None]  # [1, T] torch is accepted
    audio.save(tmp_path / "out.flac", x, 16000)
    y = audio.load(tmp_path / "out.flac")
    np.testing.assert_allclose(y, x[0].numpy(), atol=1e-4)
    assert not list(Path(tmp_path).glob(".*tmp"))
    with pytest.raises(audio.AudioError, match="NaN"):
        audio.save(tmp_path / "bad.wav", np.array([0.0, np.nan]), 16000)
    with pytest.raises(audio.AudioError, match="mono"):
        audio.save(tmp_path / "bad.wav", np.zeros((2, 10)), 16000)
    with pytest.raises(audio.AudioError, match="extension"):
        audio.save(tmp_path / "bad.xyz", np.zeros(10), 16000)
