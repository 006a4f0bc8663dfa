"""torchrun with 2 CPU processes (gloo): DDP and FSDP match 1 process with the doubled batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segue.train.checkpoint import load_latest
from tests.train.ddp_worker import JOBS, RESUMES
from tests.train.tiny import tiny_config, train, weights

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def torchrun_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "tests.train.ddp_worker",
        str(out),
    ]
    proc = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out


def _checkpoint_weights(run: Path) -> dict[str, torch.Tensor]:
    checkpoint = load_latest(run / "checkpoints")
    return {
        f"{name}.{key}": value
        for name, state in checkpoint.weights.items()
        if not name.endswith(".ema")
        for key, value in state.items()
    }


@pytest.mark.parametrize("job", sorted(JOBS))
def test_two_processes_match_one_with_doubled_batch(torchrun_out, tmp_path, job):
    results = json.loads((torchrun_out / "results.json").read_text())[job]
    single = train(tiny_config(*JOBS[job][1]), tmp_path / "single")
    assert results["status"] == single.status == "completed"
    assert results["step"] == single.step
    assert ("FSDP" if job == "fsdp" else "DistributedDataParallel") in results["wrapper"]
    expected, got = weights(single), _checkpoint_weights(torchrun_out / job)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5, msg=key)
    assert results["valid"] == pytest.approx(single.validate(), rel=1e-4)
    if job != "gan":  # the NaN of one rank made every rank skip step 2, as the single run did
        state = load_latest(torchrun_out / job / "checkpoints").objects["state"]
        assert state["nan_total"] == single.nan_total == 1


@pytest.mark.parametrize("name", sorted(RESUMES))
def test_distributed_stop_and_resume_is_exact(torchrun_out, name):
    job, stop_at, _ = RESUMES[name]
    results = json.loads((torchrun_out / "results.json").read_text())[name]
    assert results["first_status"] == "interrupted"  # only one rank was signalled: both stopped
    assert results["first_step"] == stop_at + 1
    assert results["status"] == "completed"
    full, resumed = (
        _checkpoint_weights(torchrun_out / job),
        _checkpoint_weights(torchrun_out / name),
    )
    for key in full:
        assert torch.equal(full[key], resumed[key]), key
