"""`evaluate_codec`'s WER columns and its typed report (`CodecReport`, JSON round trip), with a
stand-in codec and recogniser (the real Whisper is covered by tests/eval/test_e2e.py)."""

import json

import numpy as np
import pytest
import torch

from segue.data.manifest import Manifest, ManifestEntry
from segue.errors import InputError
from segue.eval.codec_eval import (
    AsrScores,
    CodecReport,
    CodecRow,
    evaluate_codec,
    format_report,
    spread_over_voices,
)
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


def english_manifest(tmp_path) -> Manifest:
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
    return Manifest(tmp_path, entries)


def test_wer_of_originals_round_trips_and_coarse_levels(tmp_path):
    manifest = english_manifest(tmp_path)
    report = evaluate_codec(EchoCodec(), manifest, max_seconds=2.0, transcriber=Hears())
    assert report.asr == AsrScores(
        files=2,
        wer={"original": 0.0, "codec": 0.0, "coarse": 1.0},
        recall={"original": 1.0, "codec": 1.0, "coarse": 0.0},
    )  # no ratios against an original WER of 0
    assert json.loads(report.to_json())["asr"] == {
        "files": 2, "wer_original": 0.0, "recall_original": 1.0, "wer_codec": 0.0,
        "recall_codec": 1.0, "wer_coarse": 1.0, "recall_coarse": 0.0,
    }  # fmt: skip
    assert "WER (2 English files): original 0.0%, round trip 0.0%, coarse levels alone 100.0%" in (
        format_report(report)
    )
    plain = evaluate_codec(EchoCodec(), manifest, max_seconds=2.0)
    assert plain.asr is None and "asr" not in json.loads(plain.to_json())
    only_spanish = Manifest(tmp_path, [manifest.entries[2]])
    report = evaluate_codec(EchoCodec(), only_spanish, transcriber=Hears())
    assert report.asr == AsrScores(0) and "no English file" in format_report(report)
    assert json.loads(report.to_json())["asr"] == {"files": 0}


def test_codec_report_json_keeps_the_layout_and_round_trips(tmp_path):
    report = evaluate_codec(
        EchoCodec(), english_manifest(tmp_path), max_seconds=2.0, transcriber=Hears()
    )
    assert report.files == 5 and report.levels == 2 and report.bitrate == 2 * 2 * 50.0
    assert all(isinstance(row, CodecRow) for row in report.rows)
    assert report.metrics["si_snr"] > 30  # the full codes give the input back
    assert len(report.codebooks.usage) == len(report.codebooks.perplexity) == 2
    data = json.loads(report.to_json())
    assert list(data) == ["files", "levels", "bitrate", "metrics", "rows", "codebooks", "asr"]
    assert list(data["rows"][0])[-1] == "path" and data["rows"][0]["path"] == "en.wav"
    assert set(data["rows"][0]) == {*report.metrics, "path"}
    assert list(data["codebooks"]) == ["usage", "perplexity"]
    assert "rows" not in report.to_dict(rows=False)
    back = CodecReport.from_json(report.to_json())
    assert back == report and back.to_json() == report.to_json()
    assert format_report(data) == format_report(report)  # a parsed report is taken too
    ratios = AsrScores(1, {"original": 0.5}, {"original": 0.5}, {"codec": 2.0})
    assert ratios.to_dict()["wer_codec_ratio"] == 2.0
    assert AsrScores.from_dict(ratios.to_dict()) == ratios
    with pytest.raises(InputError, match="not a codec evaluation report"):
        CodecReport.from_dict({"files": 1})


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
