"""Stop-and-resume gives bit-identical results to an uninterrupted run (CPU, one process)."""

from __future__ import annotations

import pytest
import torch

from segue.train import COMPLETED, INTERRUPTED
from tests.train.tiny import assert_identical, tiny_config, train, weights

# Dropout and input noise use the global RNG, validation runs in between, EMA is on,
# gradients are accumulated and the run crosses epoch boundaries (64 items / 8 per batch).
REGRESSION = [
    "model.dropout=0.2",
    "model.noise=0.1",
    "train.ema_decay=0.9",
    "optim.grad_accum=3",
    "optim.max_steps=10",
    "train.valid_every=3",
]


def _optimizer_states(trainer):
    out = {}
    for name, optimizer in trainer.optimizers.items():
        for index, state in optimizer.state_dict()["state"].items():
            for key, value in state.items():
                out[f"{name}.{index}.{key}"] = torch.as_tensor(value)
    return out


def _ema(trainer):
    return {f"{m}.{k}": v for m, shadow in trainer.ema.shadow.items() for k, v in shadow.items()}


@pytest.mark.parametrize(
    ("extra", "stop_at"),
    [
        (REGRESSION, 4),
        (["model.kind=gan", "model.disc_start=3", "optim.max_steps=7"], 1),  # before D starts
        (["model.kind=gan", "model.disc_start=3", "optim.max_steps=7"], 4),  # after
    ],
    ids=["regression", "gan-before-disc", "gan-after-disc"],
)
def test_stop_and_resume_is_bit_identical(tmp_path, extra, stop_at):
    full = train(tiny_config(*extra), tmp_path / "full")
    assert full.status == COMPLETED

    stopped = train(tiny_config(*extra, f"model.stop_at={stop_at}"), tmp_path / "split")
    assert stopped.status == INTERRUPTED
    assert stopped.step == stop_at + 1  # the signalled step finished, then it saved and left
    resumed = train(tiny_config(*extra), tmp_path / "split", resume=True)
    assert resumed.resumed_from is not None and resumed.resumed_from.name.endswith(
        f"{stop_at + 1:06d}"
    )
    assert resumed.status == COMPLETED and resumed.step == full.step

    assert_identical(weights(full), weights(resumed))
    assert_identical(_optimizer_states(full), _optimizer_states(resumed))
    for name in full.schedulers:
        assert full.schedulers[name].get_last_lr() == resumed.schedulers[name].get_last_lr()
    if full.ema is not None:
        assert_identical(_ema(full), _ema(resumed))
    assert (full.epoch, full.batch_in_epoch) == (resumed.epoch, resumed.batch_in_epoch)


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    trainer = train(tiny_config("optim.max_steps=2"), tmp_path / "run", resume=True)
    assert trainer.status == COMPLETED and trainer.resumed_from is None


def test_existing_run_needs_resume(tmp_path):
    train(tiny_config("optim.max_steps=2"), tmp_path / "run")
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config("optim.max_steps=2"), tmp_path / "run")


def test_resume_can_extend_the_run(tmp_path):
    train(tiny_config("optim.max_steps=3"), tmp_path / "run")
    longer = train(tiny_config("optim.max_steps=5"), tmp_path / "run", resume=True)
    assert longer.step == 5
    assert longer.schedulers["main"].lr_lambdas[0].total_steps == 5


def test_a_resume_that_changes_the_model_is_refused_and_keeps_the_config(tmp_path):
    """It used to rewrite config.json before failing, so every later plain --resume failed."""
    from segue.train.checkpoint import CheckpointError

    run = tmp_path / "run"
    train(tiny_config("optim.max_steps=2"), run)
    before = (run / "config.json").read_text()
    with pytest.raises(CheckpointError, match=r"This resume changes model\.hidden: 16 -> 8"):
        train(tiny_config("optim.max_steps=4", "model.hidden=8"), run, resume=True)
    assert (run / "config.json").read_text() == before
    trainer = train(tiny_config("optim.max_steps=4"), run, resume=True)  # still resumes
    assert trainer.step == 4 and trainer.resumed_from is not None


def test_relative_data_paths_are_saved_absolute(tmp_path, monkeypatch):
    """A run started with a relative --manifest, resumed from another folder, found nothing."""
    import json

    from segue.cli import main
    from segue.data.manifest import ManifestEntry, write_manifest
    from tests.conftest import quick_run_overrides, tone, write

    entries = []
    for i in range(3):
        write(tmp_path / "corpus" / f"g{i}.wav", tone(1.0, freq=200.0 * (i + 1)))
        entries.append(ManifestEntry(f"g{i}.wav", 1.0, 16000, f"g{i}", "train"))
    write_manifest(tmp_path / "corpus" / "m.jsonl", entries)
    monkeypatch.chdir(tmp_path)
    sets = [x for o in quick_run_overrides(1) for x in ("--set", o)]
    assert main(["codec", "train", "--manifest", "corpus/m.jsonl", "--out", "run", *sets]) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"]["manifest"] == str(tmp_path / "corpus" / "m.jsonl")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # resumed from another folder: the data is still found
    sets = [x for o in quick_run_overrides(2) for x in ("--set", o)]
    assert main(["codec", "train", "--out", str(tmp_path / "run"), "--resume", *sets]) == 0
