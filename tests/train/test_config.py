"""Run configs: JSON round trip, --config / --set / --max-steps / --resume, and the CLI run."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from segue.config import ConfigError, apply_overrides, from_dict, load_config, save_config, to_dict
from segue.train import RunConfig, add_training_arguments, config_from_args
from segue.train.checkpoint import load_latest
from tests.train.tiny import TinyRunConfig

ROOT = Path(__file__).resolve().parents[2]


def _parse(*argv: str) -> argparse.Namespace:
    return add_training_arguments(argparse.ArgumentParser()).parse_args(list(argv))


def test_round_trip(tmp_path):
    config = apply_overrides(
        TinyRunConfig(),
        [
            "optim.lr=1e-3",
            "optim.betas=[0.8,0.99]",
            "optim.grad_clip=null",
            "train.distributed=fsdp",
            "train.ema_decay=0.999",
            "model.nan_steps=[1,2]",
        ],
    )
    assert from_dict(TinyRunConfig, to_dict(config)) == config
    save_config(config, tmp_path / "config.json")
    assert load_config(TinyRunConfig, tmp_path / "config.json") == config
    assert config.optim.betas == (0.8, 0.99) and config.optim.grad_clip is None


def test_bad_overrides_are_errors():
    with pytest.raises(ConfigError, match="distributed"):
        apply_overrides(RunConfig(), ["train.distributed=mpi"])
    with pytest.raises(ConfigError, match="no field 'lrr'"):
        apply_overrides(RunConfig(), ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="batch_size"):
        apply_overrides(RunConfig(), ["train.batch_size=big"])


def test_config_from_args_layers(tmp_path):
    file_config = apply_overrides(TinyRunConfig(), ["optim.lr=0.5", "train.seed=3"])
    save_config(file_config, tmp_path / "base.json")
    args = _parse(
        "--out",
        str(tmp_path / "run"),
        "--config",
        str(tmp_path / "base.json"),
        "--set",
        "optim.lr=3e-4",
        "--set",
        "model.hidden=8",
        "--max-steps",
        "7",
    )
    config = config_from_args(TinyRunConfig, args)
    assert config.optim.lr == 3e-4  # --set beats the file
    assert config.train.seed == 3  # from the file
    assert config.model.hidden == 8 and config.optim.max_steps == 7
    assert args.resume is False and args.out == tmp_path / "run"


def test_default_replaces_the_class_defaults(tmp_path):
    preset = apply_overrides(TinyRunConfig(), ["model.hidden=3", "optim.lr=0.2"])
    args = _parse("--out", str(tmp_path), "--set", "optim.lr=0.1")
    config = config_from_args(TinyRunConfig, args, default=preset)
    assert config.model.hidden == 3 and config.optim.lr == 0.1


def test_resume_reads_the_run_config(tmp_path):
    run = tmp_path / "run"
    save_config(apply_overrides(TinyRunConfig(), ["model.hidden=5"]), run / "config.json")
    config = config_from_args(
        TinyRunConfig, _parse("--out", str(run), "--resume", "--max-steps", "9")
    )
    assert config.model.hidden == 5 and config.optim.max_steps == 9
    fresh = config_from_args(TinyRunConfig, _parse("--out", str(run)))
    assert fresh.model.hidden == TinyRunConfig().model.hidden


def test_cli_run_survives_sigterm_then_resumes(tmp_path):
    """A real process gets SIGTERM during step 2: it checkpoints step 3 and exits 130 (not 0:
    `train && next` must not go on with an unfinished run)."""
    out = tmp_path / "run"
    settings = [
        "--set",
        "train.num_workers=0",
        "--set",
        "train.progress=false",
        "--set",
        "train.batch_size=8",
        "--set",
        "optim.warmup_steps=1",
        "--set",
        "train.tensorboard=false",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "tests.train.tiny",
        "--out",
        str(out),
        "--max-steps",
        "6",
        "--set",
        "model.stop_at=2",
        *settings,
    ]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert f"signal {int(signal.SIGTERM)}" in proc.stderr and "--resume" in proc.stderr
    checkpoint = load_latest(out / "checkpoints")
    assert checkpoint.step == 3 and checkpoint.config["model"]["stop_at"] == 2
    saved = json.loads((out / "config.json").read_text())
    assert saved == checkpoint.config

    from tests.train.tiny import main

    assert main(["--out", str(out), "--resume"]) == 0  # the run's own config.json, 6 steps
    assert load_latest(out / "checkpoints").step == 6


@pytest.mark.parametrize(("override", "message"), [
    ("optim.warmup_steps=-10", "warmup_steps must be >= 0"),
    ("optim.grad_clip=-1", "grad_clip must be > 0"),
    ("optim.lr=0", "lr must be > 0"),
    ("optim.grad_accum=0", "grad_accum must be >= 1"),
    ("optim.min_lr_ratio=2", "min_lr_ratio must be in [0, 1]"),
])
def test_optim_settings_that_make_no_sense_are_refused(override, message):
    from segue.config import ConfigError, apply_overrides
    from segue.train.config import RunConfig

    with pytest.raises((ValueError, ConfigError), match=re.escape(message)):
        apply_overrides(RunConfig(), [override])


def test_a_run_of_zero_steps_is_refused(tmp_path):
    """`optim.max_steps=0` used to exit 0 having done nothing."""
    from segue.train import run_training
    from tests.train.tiny import make_task, tiny_config

    args = argparse.Namespace(out=tmp_path / "run", resume=False)
    with pytest.raises(ValueError, match=r"optim\.max_steps=0: nothing to train"):
        run_training(make_task(tiny_config().model), tiny_config("optim.max_steps=0"), args)
    assert not (tmp_path / "run").exists()
