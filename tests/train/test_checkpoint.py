"""Checkpoints: atomic under a crash mid-write, verified, rotated, with fallback on corruption."""

from __future__ import annotations

import json

import pytest
import torch

from segue.train import COMPLETED
from segue.train import checkpoint as ckpt
from tests.train.tiny import tiny_config, train


def _save(root, step, value=None, keep_last=None):
    value = float(step) if value is None else value
    return ckpt.save_checkpoint(
        root,
        step,
        weights={"model": {"w": torch.full((3,), value), "b": torch.zeros(2)}},
        objects={"state": {"step": step, "rng": torch.arange(4)}},
        config={"lr": 0.1},
        keep_last=keep_last,
    )


def test_round_trip(tmp_path):
    path = _save(tmp_path, 7)
    assert path.name == "step_000007" and (tmp_path / "latest").read_text().strip() == path.name
    loaded = ckpt.load_latest(tmp_path)
    assert loaded.step == 7 and loaded.config == {"lr": 0.1}
    assert torch.equal(loaded.weights["model"]["w"], torch.full((3,), 7.0))
    assert loaded.objects["state"]["step"] == 7


def test_tied_weights_are_saved(tmp_path):
    shared = torch.randn(4, 2)
    ckpt.save_checkpoint(tmp_path, 1, weights={"m": {"a": shared, "b": shared, "c": shared[1:]}})
    loaded = ckpt.load_latest(tmp_path).weights["m"]
    assert torch.equal(loaded["a"], loaded["b"]) and torch.equal(loaded["c"], shared[1:])


def test_crash_mid_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    real_write, calls = ckpt._write_bytes, []

    def crashing_write(path, data):
        calls.append(path)
        if len(calls) == 2:  # the first file is written, the second one "crashes"
            raise OSError("disk full (simulated)")
        return real_write(path, data)

    monkeypatch.setattr(ckpt, "_write_bytes", crashing_write)
    with pytest.raises(OSError, match="simulated"):
        _save(tmp_path, 3)
    monkeypatch.undo()

    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_000001", "step_000002"]
    assert (tmp_path / "latest").read_text().strip() == "step_000002"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp folder removed
    assert ckpt.load_latest(tmp_path).step == 2


def test_killed_writer_leftovers_are_ignored_and_cleaned(tmp_path):
    _save(tmp_path, 1)
    # What a SIGKILL mid-write leaves: a half-written temporary folder.
    leftover = tmp_path / ".tmp-step_000002-12345"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"\x00" * 10)
    # ... or a temporary file of the `latest` pointer, killed during its write.
    pointer = tmp_path / ".latest.k2n4x9.tmp"
    pointer.write_text("step_0000")
    assert ckpt.load_latest(tmp_path).step == 1
    ckpt.clean_temporary(tmp_path)
    assert not leftover.exists() and not pointer.exists()
    assert (tmp_path / "latest").read_text().strip() == "step_000001"


def test_corrupt_latest_falls_back_to_previous(tmp_path):
    _save(tmp_path, 1)
    latest = _save(tmp_path, 2)
    data = bytearray((latest / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the weights
    (latest / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match="checksum"):
        ckpt.verify_checkpoint(latest)
    with pytest.warns(RuntimeWarning, match=r"step_000002.*checksum|resuming from step_000001"):
        loaded = ckpt.load_latest(tmp_path)
    assert loaded.step == 1


def test_truncated_and_missing_files_are_detected(tmp_path):
    path = _save(tmp_path, 1)
    (path / "state.pt").write_bytes((path / "state.pt").read_bytes()[:10])
    with pytest.raises(ckpt.CheckpointError, match="truncated"):
        ckpt.verify_checkpoint(path)
    (path / "state.pt").unlink()
    with pytest.raises(ckpt.CheckpointError, match=r"missing file state\.pt"):
        ckpt.verify_checkpoint(path)
    (path / "manifest.json").unlink()
    with pytest.raises(ckpt.CheckpointError, match="incomplete"):
        ckpt.load_latest(tmp_path)  # the only checkpoint is damaged: a clear error


def test_keep_last_n(tmp_path):
    for step in range(1, 6):
        _save(tmp_path, step, keep_last=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_000004", "step_000005"]


def test_saving_the_same_step_again_replaces_it(tmp_path):
    _save(tmp_path, 3, value=1.0)
    _save(tmp_path, 3, value=2.0)
    assert ckpt.load_latest(tmp_path).weights["model"]["w"][0] == 2.0


def test_trainer_checkpoint_contents(tmp_path):
    config = tiny_config(
        "optim.max_steps=4", "train.checkpoint_every=2", "train.keep_last=1", "train.ema_decay=0.5"
    )
    trainer = train(config, tmp_path)
    root = tmp_path / "checkpoints"
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step_000004"]
    checkpoint = ckpt.load_latest(root)
    assert set(checkpoint.weights) == {"model", "model.ema"}
    assert set(checkpoint.objects) == {"optim", "state"}
    state = checkpoint.objects["state"]
    assert state["step"] == 4 and len(state["rng"]) == 1
    assert {"epoch", "batch_in_epoch", "samples_in_epoch", "nan_total"} <= set(state)
    assert checkpoint.config == json.loads((tmp_path / "config.json").read_text())
    assert checkpoint.config["optim"]["max_steps"] == 4
    for key, value in trainer.raw_modules["model"].state_dict().items():
        assert torch.equal(checkpoint.weights["model"][key], value)
    assert not torch.equal(
        checkpoint.weights["model.ema"]["layers.0.weight"],
        checkpoint.weights["model"]["layers.0.weight"],
    )


def test_trainer_resumes_from_previous_when_latest_is_corrupt(tmp_path):
    train(tiny_config("optim.max_steps=4", "train.checkpoint_every=2"), tmp_path)
    weights_file = tmp_path / "checkpoints" / "step_000004" / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:-7])
    with pytest.warns(RuntimeWarning, match="resuming from step_000002"):
        trainer = train(
            tiny_config("optim.max_steps=4", "train.checkpoint_every=2"), tmp_path, resume=True
        )
    assert trainer.resumed_from.name == "step_000002"
    assert trainer.status == COMPLETED and trainer.step == 4
    assert ckpt.load_latest(tmp_path / "checkpoints").step == 4  # rewritten, valid again
