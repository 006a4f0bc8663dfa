"""Engine details: precision, signals, misuse of the task interface."""

from __future__ import annotations

import math
import os
import signal

import pytest
import torch

from segue.train import INTERRUPTED, Phase, Trainer
from tests.train.tiny import TinyRegression, make_task, tiny_config, train


def test_auto_precision_is_fp32_on_cpu(tmp_path):
    trainer = Trainer(make_task(tiny_config().model), tiny_config(), tmp_path)
    assert trainer.device.type == "cpu" and trainer.autocast_dtype() is None


def test_bf16_native_follows_the_cpu(monkeypatch):
    from segue.train import step

    cpu = torch.device("cpu")
    monkeypatch.setattr(step, "cpu_has_native_bf16", lambda: True)
    assert step.autocast_dtype("bf16-native", cpu) == torch.bfloat16
    assert step.autocast_dtype("auto", cpu) is None  # "auto" stays fp32 on a CPU
    monkeypatch.setattr(step, "cpu_has_native_bf16", lambda: False)
    assert step.autocast_dtype("bf16-native", cpu) is None
    assert step.autocast_dtype("bf16", cpu) == torch.bfloat16  # forced, emulated or not


def test_bf16_autocast_when_asked(tmp_path, monkeypatch):
    seen = []
    original = TinyRegression.train_step

    def spy(self, models, batch, step):
        seen.append(torch.is_autocast_enabled("cpu"))
        return original(self, models, batch, step)

    monkeypatch.setattr(TinyRegression, "train_step", spy)
    trainer = train(tiny_config("train.precision=bf16", "optim.max_steps=2"), tmp_path)
    assert seen == [True, True] and trainer.status == "completed"
    assert all(p.dtype == torch.float32 for p in trainer.raw_modules["model"].parameters())

    from tests.train.tiny import TinyGAN

    phases = TinyGAN.train_step

    def generator_spy(self, models, batch, step):
        for phase in phases(self, models, batch, step):
            seen.append(torch.is_autocast_enabled("cpu"))
            yield phase

    monkeypatch.setattr(TinyGAN, "train_step", generator_spy)
    seen.clear()
    train(
        tiny_config("train.precision=bf16", "optim.max_steps=1", "model.kind=gan"), tmp_path / "g"
    )
    assert seen == [True]


def test_sigint_checkpoints_and_second_sigint_aborts(tmp_path, monkeypatch):
    original = TinyRegression.train_step
    count = {"n": 0}

    def interrupting(self, models, batch, step):
        if step == 1:
            count["n"] += 1
            os.kill(os.getpid(), signal.SIGINT)
            if count["n"] == 2:
                os.kill(os.getpid(), signal.SIGINT)
        return original(self, models, batch, step)

    monkeypatch.setattr(TinyRegression, "train_step", interrupting)
    previous = signal.getsignal(signal.SIGINT)
    trainer = train(tiny_config(), tmp_path / "once")
    assert trainer.status == INTERRUPTED and trainer.step == 2
    assert signal.getsignal(signal.SIGINT) is previous  # handlers restored
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(), tmp_path / "twice")


def test_bare_loss_with_several_optimizers_is_an_error(tmp_path, monkeypatch):
    from tests.train.tiny import TinyGAN

    monkeypatch.setattr(TinyGAN, "train_step", lambda self, models, batch, step: torch.zeros(()))
    with pytest.raises(TypeError, match="several optimizers"):
        train(tiny_config("model.kind=gan"), tmp_path)


def test_two_phases_for_one_optimizer_is_an_error(tmp_path, monkeypatch):
    def twice(self, models, batch, step):
        x, y = batch
        loss = (models["model"](x) - y).pow(2).mean()
        return [Phase("main", loss), Phase("main", loss)]

    monkeypatch.setattr(TinyRegression, "train_step", twice)
    with pytest.raises(ValueError, match="two phases"):
        train(tiny_config(), tmp_path)


def test_too_small_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no full batch"):
        train(tiny_config("model.n_train=4"), tmp_path)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_error_in_training_ends_the_process_whatever_the_workers(tmp_path, workers):
    """A failing read with DataLoader workers used to leave the process waiting on them at
    exit, forever (a cluster job would hold its GPUs until its wall-clock limit)."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "tests.train.tiny", "--out", str(tmp_path / "run"),
               "--max-steps", "50", "--set", f"train.num_workers={workers}",
               "--set", "model.fail_item=5", "--set", "train.progress=false"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0
    assert "item 5: cannot read it" in result.stderr


@pytest.mark.parametrize(("device", "message"), [
    ("gpu", "not a device name"), ("cuda", "no CUDA device"), ("xla", "segue runs on"),
])
def test_a_device_this_machine_lacks_is_a_clear_error(tmp_path, device, message):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match=message):
        train(tiny_config(f"train.device={device}"), tmp_path / "run")


def test_one_run_per_folder_at_a_time(tmp_path, capsys):
    """Two runs into one --out used to both 'succeed', the folder holding a mix of the two."""
    import json
    import socket

    from segue.train.lock import RunLockedError

    first = Trainer(make_task(tiny_config().model), tiny_config(), tmp_path / "run")
    with pytest.raises(RunLockedError, match=rf"another process is training in this folder "
                                             rf"\(pid {os.getpid()} on "):
        Trainer(make_task(tiny_config().model), tiny_config(), tmp_path / "run")
    first.fit()  # the folder is released when training ends
    second = Trainer(make_task(tiny_config().model), tiny_config("optim.max_steps=12"),
                     tmp_path / "run", resume=True)
    second.fit()
    second.close()
    assert second.step == 12
    # A holder that died without releasing: its record is left, the lock is not.
    lock = tmp_path / "run" / ".lock"
    lock.write_text(json.dumps({"pid": 999999, "host": socket.gethostname(), "started": 0}))
    third = train(tiny_config("optim.max_steps=13"), tmp_path / "run", resume=True)
    assert third.step == 13
    assert "taking over from pid 999999" in capsys.readouterr().out


def test_fit_returns_how_it_ended_and_the_last_numbers(tmp_path):
    """What a caller (a recipe step) reports after training: no subclass needed to catch it."""
    from segue.train import COMPLETED, FitResult

    trainer = Trainer(make_task(tiny_config().model), tiny_config(), tmp_path / "run")
    result = trainer.fit()
    trainer.close()
    assert isinstance(result, FitResult) and result.status == COMPLETED and not result.interrupted
    assert result.step == trainer.step == 8
    assert result.train and all(math.isfinite(v) for v in result.train.values())
    assert "items_per_s" in result.train and result.valid == trainer.last_valid != {}

    stopped = Trainer(make_task(tiny_config().model), tiny_config("optim.max_steps=12"),
                      tmp_path / "run", resume=True)  # fmt: skip
    stopped.request_stop()
    result = stopped.fit()
    stopped.close()
    assert result.status == INTERRUPTED and result.interrupted and result.step == 9


def test_a_task_that_cannot_be_fine_tuned_says_so(tmp_path):
    with pytest.raises(ValueError, match="TinyRegression cannot start from saved weights"):
        train(tiny_config("train.init_from=somewhere"), tmp_path)
