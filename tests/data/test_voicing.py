"""The speech test of corpora gathered from packages: silence, tones, unvoiced sound, speech."""

import numpy as np

from segue.data.voicing import highpass, non_speech_reason
from tests.data.fake_debs import beep, speechlike


def test_non_speech_reasons():
    for seed in range(3):
        assert non_speech_reason(highpass(speechlike(2.0, seed))) is None
    assert non_speech_reason(highpass(beep())) == "tone"
    two_tone = np.concatenate([beep(0.15, 800.0), beep(0.15, 1200.0)])
    assert non_speech_reason(highpass(two_tone)) == "tone"
    assert non_speech_reason(np.zeros(16000, np.float32)) == "silence"
    click = np.zeros(16000, np.float32)
    click[8000:8400] = beep(0.025, 3000.0)
    assert non_speech_reason(highpass(click)) == "silence"  # 25 ms of sound
    noise = 0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    assert non_speech_reason(highpass(noise)) == "no voice"
    assert non_speech_reason(np.zeros(100, np.float32)) == "silence"


def test_highpass_removes_dc_and_rumble():
    t = np.arange(16000) / 16000
    rumble = 0.3 + 0.3 * np.sin(2 * np.pi * 10 * t) + 0.3 * np.sin(2 * np.pi * 300 * t)
    out = highpass(rumble.astype(np.float32))[4000:]  # past the filter's settling
    assert abs(out.mean()) < 0.01
    assert 0.25 < np.abs(out).max() < 0.35  # the 300 Hz part stays
