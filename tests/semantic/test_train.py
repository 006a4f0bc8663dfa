"""A few steps through the shared engine: targets fitted into the run, loss finite, checkpoint ->
model -> tokenizer, and iteration 2 with the iteration-1 run as teacher."""

import math

import pytest
import torch

from segue.config import apply_overrides
from segue.semantic.extractors import ModelExtractor
from segue.semantic.fit import fit_tokenizer
from segue.semantic.tokenizer import SemanticTokenizer
from segue.semantic.train import (
    IGNORE,
    SemanticDataConfig,
    SemanticRunConfig,
    SemanticTask,
    TargetsConfig,
    load_model_from_run,
    run_config_for_preset,
)
from segue.train import Trainer
from tests.conftest import quick_run_overrides
from tests.semantic.conftest import small_model_config


def run_config(manifest, run, steps=3, teacher="") -> SemanticRunConfig:
    config = SemanticRunConfig(
        model=small_model_config(),
        data=SemanticDataConfig(manifest=str(manifest), crop_seconds=0.6, valid_crop_seconds=0.6),
        targets=TargetsConfig(path=str(run / "targets"), teacher=teacher, k=8, niter=5),
    )
    return apply_overrides(
        config,
        quick_run_overrides(steps),
    )


def test_iterations_1_and_2_through_the_engine(corpus, tmp_path):
    config = run_config(corpus, tmp_path / "it1")
    assert config.model.n_classes == 8  # follows targets.k
    trainer = Trainer(SemanticTask(config), config, tmp_path / "it1")
    rows = [trainer.train_step() for _ in range(2)]
    assert all(math.isfinite(v) for row in rows for v in row.values())
    assert 0 < rows[0]["mask_fraction"] <= 1
    valid = trainer.validate()
    assert math.isfinite(valid["loss"]) and 0 <= valid["acc_masked"] <= 1
    trainer.fit()
    trainer.close()
    targets = SemanticTokenizer.load(tmp_path / "it1/targets")
    assert targets.kind == "mfcc" and targets.vocab_size == 8

    model = load_model_from_run(tmp_path / "it1")
    state = trainer.raw_modules["model"].state_dict()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())

    # checkpoint -> tokenizer -> folder -> the same tokens
    from segue.data.manifest import read_manifest

    train = read_manifest(corpus, split="train")
    tokenizer = fit_tokenizer(ModelExtractor(model, 1), train, 8, niter=5, progress=False)
    audio = torch.randn(2, 16000) * 0.1
    tokens = tokenizer.tokenize(audio)
    assert tokens.shape == (2, 25) and int(tokens.max()) < 8
    loaded = SemanticTokenizer.load(tokenizer.save(tmp_path / "tok"))
    assert loaded.kind == "segue" and torch.equal(loaded.tokenize(audio), tokens)

    # iteration 2: targets are k-means of the iteration-1 model's layer 1, made on the fly
    config2 = run_config(corpus, tmp_path / "it2", steps=2, teacher=str(tmp_path / "it1"))
    config2 = apply_overrides(config2, ["targets.layer=1"])
    task = SemanticTask(config2)
    trainer = Trainer(task, config2, tmp_path / "it2")
    assert task.targets.kind == "segue" and task.targets.extractor.layer == 1
    assert trainer.fit().status == "completed"
    trainer.close()

    # ... or from a tokenizer folder fitted beforehand (`fit-kmeans --k K`), used as it is
    config3 = run_config(corpus, tmp_path / "it2b", steps=1, teacher=str(tmp_path / "tok"))
    task = SemanticTask(config3)
    Trainer(task, config3, tmp_path / "it2b").close()
    assert torch.equal(task.targets.tokenize(audio), tokens)


def test_batch_targets_ignore_padding(corpus, tmp_path):
    config = run_config(corpus, tmp_path / "run")
    task = SemanticTask(config)
    task.setup(torch.device("cpu"))
    audio = torch.randn(2, 9600) * 0.1
    audio[1, 4000:] = 0
    targets = task.batch_targets(audio, torch.tensor([9600, 4000]))
    assert targets.shape == (2, 15)
    assert (targets[0] != IGNORE).all()
    assert (targets[1, :7] != IGNORE).all() and (targets[1, 7:] == IGNORE).all()


def test_configuration_errors(tmp_path):
    with pytest.raises(ValueError, match="manifest"):
        SemanticTask(SemanticRunConfig(targets=TargetsConfig(path="x")))
    with pytest.raises(ValueError, match="teacher"):
        run_config_for_preset("tiny", "m.jsonl", iteration=2)
    assert run_config_for_preset("tiny", "m", 2, teacher="t").model.n_classes == 500
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        load_model_from_run(tmp_path)
