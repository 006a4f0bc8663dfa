"""The Trainer's data: batched, sharded DataLoaders and a resumable stream of training batches.

`build_data` turns a task's map-style datasets into DataLoaders over `ResumableBatchSampler`s
(training: shuffled per epoch, full batches only; validation: in order, split across ranks).
`TrainBatches` hands out training batches endlessly, epoch after epoch, and can be put back to
any (epoch, batch in epoch) position, which is what a checkpoint saves.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from segue.errors import InputError
from segue.train.config import TrainConfig
from segue.train.distributed import DistInfo, ResumableBatchSampler
from segue.train.task import TrainTask


def move_to_device(obj: Any, device: torch.device) -> Any:
    """Tensors inside dicts/lists/tuples moved to `device`; anything else unchanged."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {key: move_to_device(value, device) for key, value in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(move_to_device(value, device) for value in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to_device(value, device) for value in obj)
    return obj


class TrainBatches:
    """Training batches without end: each epoch's loader in turn, from a settable position.

    `epoch` and `batch_in_epoch` (batches already handed out in that epoch) say where the
    stream is; `seek` moves it. Datasets with `set_epoch(epoch)` get it called at each epoch.
    """

    def __init__(self, dataset: Any, sampler: ResumableBatchSampler, loader: DataLoader) -> None:
        self.dataset = dataset
        self.sampler = sampler
        self.loader = loader
        self.epoch = 0
        self.batch_in_epoch = 0
        self._iter: Iterator[Any] | None = None

    def seek(self, epoch: int, batch_in_epoch: int) -> None:
        """Continue from batch `batch_in_epoch` of epoch `epoch` at the next `next()`."""
        self.epoch = epoch
        self.batch_in_epoch = batch_in_epoch
        self._iter = None

    def close(self) -> None:
        """Stop the current epoch's worker processes (the stream goes on from the same position
        at the next `next()`). Call it on every way out of a training loop: an exception keeps
        the loader iterator alive in its traceback, and at interpreter exit its workers, still
        waiting, would keep the process from ending."""
        iterator, self._iter = self._iter, None
        shutdown_workers(iterator)

    def next(self) -> Any:
        """The next batch, starting a new epoch when the current one is used up."""
        while True:
            if self._iter is None:
                if hasattr(self.dataset, "set_epoch"):
                    self.dataset.set_epoch(self.epoch)
                self.sampler.set_position(self.epoch, self.batch_in_epoch)
                self._iter = iter(self.loader)
            try:
                batch = next(self._iter)
            except StopIteration:
                self.epoch += 1
                self.batch_in_epoch = 0
                self._iter = None
                continue
            self.batch_in_epoch += 1
            return batch


def build_data(
    task: TrainTask, train_cfg: TrainConfig, info: DistInfo, device: torch.device
) -> tuple[TrainBatches, ResumableBatchSampler | None, DataLoader | None]:
    """(training batches, validation sampler, validation loader) for `task` on this rank.

    The validation pair is (None, None) when the task has no (or an empty) validation set.
    Raises ValueError when the training set gives no full batch per process.
    """
    dataset = task.train_dataset()
    train_sampler = ResumableBatchSampler(
        len(dataset),
        train_cfg.batch_size,
        rank=info.rank,
        world_size=info.world_size,
        seed=train_cfg.seed,
        shuffle=True,
        drop_last=True,
    )
    if len(train_sampler) == 0:
        raise InputError(
            f"training set of {len(dataset)} items gives no full batch of {train_cfg.batch_size} "
            f"per process with {info.world_size} process(es)"
        )
    train_loader = make_loader(task, dataset, train_sampler, train_cfg, info, device)
    batches = TrainBatches(dataset, train_sampler, train_loader)
    valid = task.valid_dataset()
    valid_sampler = valid_loader = None
    if valid is not None and len(valid) > 0:
        valid_sampler = ResumableBatchSampler(
            len(valid),
            train_cfg.batch_size,
            rank=info.rank,
            world_size=info.world_size,
            shuffle=False,
            drop_last=False,
        )
        valid_loader = make_loader(task, valid, valid_sampler, train_cfg, info, device)
    return batches, valid_sampler, valid_loader


def make_loader(
    task: TrainTask,
    dataset: Any,
    sampler: ResumableBatchSampler,
    train_cfg: TrainConfig,
    info: DistInfo,
    device: torch.device,
) -> DataLoader:
    """A DataLoader of `dataset` batched by `sampler` and collated by the task."""
    generator = torch.Generator().manual_seed(train_cfg.seed + info.rank)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=task.collate,
        num_workers=train_cfg.num_workers,
        pin_memory=device.type == "cuda",
        generator=generator,
        worker_init_fn=_ignore_stop_signals,
    )


def shutdown_workers(iterator: Any) -> None:
    """End the worker processes of a DataLoader iterator now (a no-op for single-process ones).

    PyTorch has no public call for it: `_shutdown_workers` is what the iterator's own `__del__`
    runs, which an exception's traceback can postpone to interpreter exit, where it hangs.
    """
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGTERM/SIGINT to the trainer: schedulers (and `pkill -f`)
    signal the whole process group, and a worker dying first would crash the run instead of
    letting it checkpoint and exit cleanly."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
