"""`segue soundstorm train|export` on synthetic token shards, through `segue.cli.main`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segue import cli
from segue.soundstorm import generate, load_soundstorm
from segue.soundstorm.load import read_soundstorm_config
from tests.lm.synthetic import K_A, K_S, LEVELS, write_shards

TRAIN = [
    "--max-steps", "3",
    "--set", "model.n_layer=1", "--set", "model.n_head=2", "--set", "model.d_model=16",
    "--set", "model.max_frames=64", "--set", "data.window_seconds=0.8",
    "--set", "train.batch_size=4", "--set", "train.num_workers=0",
    "--set", "train.progress=false", "--set", "train.tensorboard=false",
    "--set", "train.checkpoint_every=3", "--set", "train.valid_every=3",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("soundstorm_cli")
    semantic, acoustic = write_shards(root / "shards")
    out = root / "run"
    argv = ["soundstorm", "train", "--shards", str(acoustic), str(semantic), "--out", str(out)]
    assert cli.main([*argv, *TRAIN]) == 0
    return out


def test_train_writes_a_run_that_resumes(run):
    config = json.loads((run / "config.json").read_text())
    model = config["model"]
    assert (model["n_levels"], model["codebook_size"], model["semantic_vocab"]) == (
        LEVELS,
        K_A,
        K_S,
    )
    assert model["ratio"] == 2 and model["d_model"] == 16
    assert (run / "checkpoints/latest").is_file()
    assert cli.main(["soundstorm", "train", "--out", str(run), "--resume", "--max-steps", "4"]) == 0
    assert (run / "checkpoints/step_000004").is_dir()


def test_export_and_load_give_the_same_model(run, tmp_path, capsys):
    out = tmp_path / "exported"
    assert cli.main(["soundstorm", "export", "--checkpoint", str(run), "--out", str(out)]) == 0
    assert "config.json + model.safetensors" in capsys.readouterr().out
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    from_run, exported = load_soundstorm(run), load_soundstorm(out)
    assert not exported.training and exported.config == from_run.config
    semantic = torch.randint(0, K_S, (1, 6))
    a = generate(from_run, semantic, generator=torch.Generator().manual_seed(0))
    b = generate(exported, semantic, generator=torch.Generator().manual_seed(0))
    assert a.shape == (1, LEVELS, 12) and torch.equal(a, b)
    # one checkpoint of the run (RUN/checkpoints/step_N holds a config.json and a
    # model.safetensors too: the run's, not an exported model's)
    newest = run / "checkpoints" / (run / "checkpoints/latest").read_text().strip()
    assert read_soundstorm_config(newest) == from_run.config
    assert load_soundstorm(newest).config == from_run.config


def test_clear_errors(run, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="neither an exported SoundStorm"):
        load_soundstorm(tmp_path)
    shards = run.parent / "shards"
    argv = ["soundstorm", "train", "--shards", str(shards / "semantic"), "--out", str(tmp_path)]
    assert cli.main([*argv, *TRAIN]) == 2
    assert "semantic and an acoustic" in capsys.readouterr().err


def test_eval_scores_a_run_and_an_exported_model_with_their_shards(run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    argv = ["soundstorm", "eval", "--model", str(run), "--mismatched-semantic", "--json", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "masked targets" in printed and "another utterance's semantic tokens" in printed
    report = json.loads(out.read_text())
    assert report["tokens"] > 0 and len(report["level_loss"]) == LEVELS
    gain = report["mismatched_loss"] - report["loss"]
    assert np.isclose(report["semantic_gain"], gain) and np.isfinite(gain)
    # its newest checkpoint is the run's too: its own shards and crops, the same figures
    newest = run / "checkpoints" / (run / "checkpoints/latest").read_text().strip()
    argv = ["soundstorm", "eval", "--model", str(newest), "--mismatched-semantic"]
    assert cli.main([*argv, "--json", str(out)]) == 0
    assert json.loads(out.read_text()) == report
    # an exported model has no shards of its own: they must be given
    exported = tmp_path / "exported"
    assert cli.main(["soundstorm", "export", "--model", str(run), "--out", str(exported)]) == 0
    assert cli.main(["soundstorm", "eval", "--model", str(exported)]) == 2
    assert "give its SHARDS" in capsys.readouterr().err
    shards = run.parent / "shards"
    argv = ["soundstorm", "eval", str(shards / "semantic"), str(shards / "acoustic")]
    assert cli.main([*argv, "--model", str(exported), "--json", str(out)]) == 0  # 1.28 s crops
    assert json.loads(out.read_text())["tokens"] > report["tokens"]  # what the model takes
    # the run's crop length (0.8 s): the same crops and masks, the same figures
    argv += ["--model", str(exported), "--window-seconds", "0.8", "--mismatched-semantic"]
    assert cli.main([*argv, "--json", str(out)]) == 0
    assert json.loads(out.read_text()) == report
