"""The training engine shared by every segue model (see docs/training.md)."""

from segue.train.checkpoint import CheckpointError
from segue.train.cli import add_training_arguments, config_from_args, run_training
from segue.train.config import OptimConfig, RunConfig, TrainConfig
from segue.train.engine import COMPLETED, INTERRUPTED, FitResult, Trainer, train_to_end
from segue.train.task import OptimizerSpec, Phase, TrainTask

__all__ = [
    "COMPLETED",
    "INTERRUPTED",
    "CheckpointError",
    "FitResult",
    "OptimConfig",
    "OptimizerSpec",
    "Phase",
    "RunConfig",
    "TrainConfig",
    "TrainTask",
    "Trainer",
    "add_training_arguments",
    "config_from_args",
    "run_training",
    "train_to_end",
]
