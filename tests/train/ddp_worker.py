"""Run by torchrun from test_distributed.py: tiny trainings sharing one gloo process group.

    torchrun --standalone --nproc_per_node=2 -m tests.train.ddp_worker OUT

Each job trains into OUT/<job>; rank 0 writes OUT/results.json (status, step, validation).
`JOBS` pairs each distributed run with the single-process run it must match (2 processes x
batch 2 x 2 micro-batches == 1 process x batch 8).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from segue.train.distributed import leave_process_group
from tests.train.tiny import tiny_config, train

_REGRESSION = ["train.ema_decay=0.9", "model.nan_steps=[2]", "train.valid_every=3"]
JOBS: dict[str, tuple[list[str], list[str]]] = {
    # name: (overrides under torchrun with 2 processes, the single-process equivalent)
    "ddp": (
        [*_REGRESSION, "model.nan_rank=1", "train.batch_size=2", "optim.grad_accum=2"],
        [*_REGRESSION, "train.batch_size=8"],
    ),
    "fsdp": (
        [
            *_REGRESSION,
            "model.nan_rank=1",
            "train.batch_size=2",
            "optim.grad_accum=2",
            "train.distributed=fsdp",
        ],
        [*_REGRESSION, "train.batch_size=8"],
    ),
    "gan": (
        ["model.kind=gan", "train.batch_size=4"],
        ["model.kind=gan", "train.batch_size=8"],
    ),
}
# name: (job, the step during which one rank is signalled, that rank)
RESUMES = {"ddp_resume": ("ddp", 3, 1), "fsdp_resume": ("fsdp", 4, 0)}


def main(out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    results = {}
    for name, (overrides, _) in JOBS.items():
        trainer = train(tiny_config(*overrides), out / name)
        results[name] = {
            "status": trainer.status,
            "step": trainer.step,
            "valid": trainer.validate(),
            "wrapper": type(next(iter(trainer.models.values()))).__name__,
        }
    for name, (job, stop_at, rank) in RESUMES.items():
        overrides = JOBS[job][0]
        first = train(
            tiny_config(*overrides, f"model.stop_at={stop_at}", f"model.stop_rank={rank}"),
            out / name,
        )
        second = train(tiny_config(*overrides), out / name, resume=True)
        results[name] = {
            "first_status": first.status,
            "first_step": first.step,
            "status": second.status,
            "step": second.step,
        }
    if dist.get_rank() == 0:
        (out / "results.json").write_text(json.dumps(results, indent=2))
    leave_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
