"""`evaluate_codec`'s WER columns, with a stand-in codec and recogniser (the real Whisper is
covered by tests/eval/test_e2e.py)."""

import numpy as np
import pytest
import torch

from segue.data.manifest import Manifest, ManifestEntry
from segue.eval.codec_eval import evaluate_codec, format_report, spread_over_voices
from tests.conftest import tone, write

pytest.importorskip("jiwer")


class EchoCodec:
    """Full codes give the input back; the coarse level alone gives silence."""

    sample_rate, frame_rate, codebook_size, n_codebooks, n_coarse, hop = 16000, 50.0, 4, 2, 1, 320

    def encode(self, audio: torch.Tensor, n_quantizers=None) -> torch.Tensor:
        self.audio = audio
        return torch.zeros(1, self.n_codebooks, -(-audio.shape[-1] // self.hop), dtype=torch.long)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.shape[1] < self.n_codebooks:
            return torch.zeros(1, codes.shape[-1] * self.hop)
        return torch.nn.functional.pad(self.audio, (0, codes.shape[-1] * self.hop))


class Hears:
    """Recognises "hello world" in anything audible, nothing in silence."""

    def transcribe(self, audio: np.ndarray, sample_rate: int = 16000) -> str:
        return "Hello, world!" if np.abs(audio).max() > 0.01 else ""


def test_wer_of_originals_round_trips_and_coarse_levels(tmp_path):
    entries = []
    for name, extra, seconds in (
        ("en", {"text": "hello world", "language": "en"}, 0.5),
        ("untagged", {"text": "Hello world."}, 0.5),  # TTS manifests carry no language
        ("es", {"text": "hola mundo", "language": "es"}, 0.5),  # not English: no WER
        ("long", {"text": "hello world"}, 3.0),  # cut by max_seconds: no WER
        ("silent-text", {}, 0.5),
    ):
        write(tmp_path / f"{name}.wav", tone(seconds))
        entries.append(ManifestEntry(f"{name}.wav", seconds, 16000, name, "test", extra))
    manifest = Manifest(tmp_path, entries)
    report = evaluate_codec(EchoCodec(), manifest, max_seconds=2.0, transcriber=Hears())
    assert report["asr"] == {
        "files": 2, "wer_original": 0.0, "wer_codec": 0.0, "wer_coarse": 1.0,
        "recall_original": 1.0, "recall_codec": 1.0, "recall_coarse": 0.0,
    }  # no ratios against an original WER of 0
    assert "WER (2 English files): original 0.0%, round trip 0.0%, coarse levels alone 100.0%" in (
        format_report(report)
    )
    assert "asr" not in evaluate_codec(EchoCodec(), manifest, max_seconds=2.0)
    only_spanish = Manifest(tmp_path, [entries[2]])
    report = evaluate_codec(EchoCodec(), only_spanish, transcriber=Hears())
    assert report["asr"] == {"files": 0} and "no English file" in format_report(report)


def test_per_voice_spreads_the_files_over_the_voices():
    entries = [ManifestEntry(f"{g}{i}.wav", 1.0, 16000, g, "test") for g in "abc" for i in range(3)]
    picked = spread_over_voices(entries, 2)
    assert [e.path for e in picked] == ["a0.wav", "b0.wav", "c0.wav", "a1.wav", "b1.wav", "c1.wav"]
    assert spread_over_voices(entries, None) == entries


def test_word_recall_counts_reference_words_found_and_ignores_insertions():
    from segue.eval.asr import word_recall

    assert word_recall(["a b c d"], ["a b c d"]) == 1.0
    assert word_recall(["a b c d"], ["x a y b z w v u t"]) == 0.5  # babble costs nothing
    assert word_recall(["the the cat"], ["the cat"]) == pytest.approx(2 / 3)  # clipped counts
    assert word_recall(["a b", "c d e f"], ["a b", ""]) == pytest.approx(2 / 6)  # pooled
    with pytest.raises(ValueError, match="must not be empty"):
        word_recall([""], ["a"])
