"""`segue lm train|eval|sample|export` on synthetic token shards, through `segue.cli.parse`."""

import json

import numpy as np
import pytest

from segue import cli
from segue.commands import CommandError
from tests.lm.synthetic import K_A, K_S, LEVELS, N_COARSE, write_shards

TRAIN = [
    "--max-steps", "4",
    "--set", "model.n_layer=1", "--set", "model.n_head=2", "--set", "model.d_model=16",
    "--set", "train.batch_size=4", "--set", "train.num_workers=0",
    "--set", "train.progress=false", "--set", "train.tensorboard=false",
    "--set", "train.checkpoint_every=4", "--set", "train.valid_every=4",
]  # fmt: skip
WINDOWS = {"semantic": ["1.2", "0.6"], "coarse": ["0.4", "0.2"], "fine": ["0.4", "0.2"]}


def run(*argv):
    args = cli.parse(["lm", *map(str, argv)])
    return args.func(args)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm_cli")
    semantic, acoustic = write_shards(root / "shards")
    shards = {"semantic": [semantic], "coarse": [acoustic, semantic], "fine": [acoustic]}
    for stage, (window, prompt) in WINDOWS.items():
        run("train", *shards[stage], "--stage", stage, "--out", root / stage,
            *TRAIN, "--set", f"stage.window_seconds={window}",
            "--set", f"stage.prompt_seconds={prompt}")  # fmt: skip
    return root


def test_train_writes_a_run_that_resumes(runs):
    config = json.loads((runs / "coarse/config.json").read_text())
    assert config["stage"]["semantic_vocab"] == K_S and config["stage"]["n_coarse"] == N_COARSE
    assert (runs / "coarse/checkpoints/latest").is_file()
    run("train", "--stage", "coarse", "--out", runs / "coarse", "--resume", "--max-steps", "5")
    assert (runs / "coarse/checkpoints/step_000005").is_dir()


def test_eval_prints_loss_perplexity_accuracy_and_baselines(runs, capsys, tmp_path):
    for stage in WINDOWS:
        run("eval", "--model", runs / stage, "--json", tmp_path / f"{stage}.json")
        printed = capsys.readouterr().out
        assert "perplexity" in printed and "unigram entropy" in printed
        report = json.loads((tmp_path / f"{stage}.json").read_text())
        assert report["stage"] == stage and report["tokens"] > 0
        assert np.isclose(report["perplexity"], np.exp(report["loss"]))


def test_eval_scores_the_coarse_lm_on_mismatched_semantic_tokens(runs, capsys, tmp_path):
    out = tmp_path / "coarse.json"
    run("eval", "--model", runs / "coarse", "--mismatched-semantic", "--json", out)
    printed = capsys.readouterr().out
    assert "another utterance's semantic tokens" in printed
    report = json.loads(out.read_text())
    gain = report["mismatched_level_loss"] - report["level_loss"]
    assert np.isclose(report["semantic_gain"], gain) and np.isfinite(gain)
    with pytest.raises(CommandError, match="coarse LM, not a fine LM"):
        run("eval", "--model", runs / "fine", "--mismatched-semantic")


def test_sample_chains_the_three_stages(runs, capsys, tmp_path):
    out = tmp_path / "sample.npz"
    run("sample", "--semantic-lm", runs / "semantic", "--coarse-lm", runs / "coarse",
        "--fine-lm", runs / "fine", "--seconds", "1.0", "--batch-size", "2",
        "--out", out)  # fmt: skip
    printed = capsys.readouterr().out
    assert "tok/s" in printed and "fine" in printed
    result = np.load(out)
    t = result["semantic"].shape[1]
    assert result["semantic"].shape == (2, 25)  # no --eos: exactly --seconds
    assert result["coarse"].shape == (2, N_COARSE, 2 * t)
    assert result["codes"].shape == (2, LEVELS, 2 * t)
    assert result["codes"].max() < K_A and (result["codes"][:, :N_COARSE] == result["coarse"]).all()
    # one stage alone, conditioned on a file
    np.save(tmp_path / "coarse.npy", result["coarse"][0])
    run("sample", "--fine-lm", runs / "fine", "--coarse", tmp_path / "coarse.npy",
        "--out", tmp_path / "fine.npz")  # fmt: skip
    assert np.load(tmp_path / "fine.npz")["codes"].shape == (1, LEVELS, 2 * t)


def test_export_then_eval_with_explicit_shards(runs, tmp_path, capsys):
    run("export", "--model", runs / "fine", "--out", tmp_path / "fine")
    run("eval", runs / "shards/acoustic", "--model", tmp_path / "fine", "--max-items", "2")
    assert "fine LM" in capsys.readouterr().out


def test_clear_errors(runs, tmp_path):
    with pytest.raises(CommandError, match="at least one"):
        run("sample", "--out", tmp_path / "x.npz")
    with pytest.raises(CommandError, match="needs coarse codes"):
        run("sample", "--fine-lm", runs / "fine", "--out", tmp_path / "x.npz")
    with pytest.raises(CommandError, match="two acoustic"):
        run("train", runs / "shards/acoustic", runs / "shards/acoustic", "--stage", "fine",
            "--out", tmp_path / "r")  # fmt: skip
    with pytest.raises(CommandError, match="coarse LM"):
        run("train", "--stage", "fine", "--out", runs / "coarse", "--resume")
    with pytest.raises(ValueError, match="needs semantic token shards"):
        run("train", runs / "shards/acoustic", "--stage", "coarse", "--out", tmp_path / "r")
    with pytest.raises(FileNotFoundError, match="neither"):
        run("eval", "--model", tmp_path)
    run("export", "--model", runs / "fine", "--out", tmp_path / "fine")
    with pytest.raises(ValueError, match="needs acoustic token shards"):
        run("eval", "--model", tmp_path / "fine")
    with pytest.raises(CommandError, match="split 'nope'"):
        run("eval", "--model", runs / "fine", "--split", "nope")


def test_train_init_from_fine_tunes_an_exported_lm(runs, tmp_path):
    run("export", "--model", runs / "fine", "--out", tmp_path / "exported")
    run("train", runs / "shards/acoustic", "--stage", "fine", "--out", tmp_path / "tuned",
        "--init-from", tmp_path / "exported", "--max-steps", "2",
        "--set", "train.batch_size=4", "--set", "train.num_workers=0",
        "--set", "train.progress=false", "--set", "train.tensorboard=false")  # fmt: skip
    config = json.loads((tmp_path / "tuned/config.json").read_text())
    exported = json.loads((tmp_path / "exported/config.json").read_text())
    assert config["train"]["init_from"] == str(tmp_path / "exported")
    assert (config["model"]["d_model"], config["stage"]["window_seconds"]) == (
        exported["d_model"], float(WINDOWS["fine"][0])
    )  # the saved LM's, not the command's defaults (the tiny preset: d 192, 4 s windows)
    with pytest.raises(SystemExit):  # the semantic model cannot be fine-tuned: no such flag
        cli.parse(["semantic", "train", "m.jsonl", "-o", "x", "--init-from", "y"])
