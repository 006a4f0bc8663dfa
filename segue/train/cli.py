"""Command-line glue shared by every model's `train` subcommand.

def add_train_parser(subparsers):
    parser = subparsers.add_parser("train", help="train the LM")
    add_training_arguments(parser)
    parser.set_defaults(func=lambda args: run_training(
        LMTask(cfg := config_from_args(LMRunConfig, args)), cfg, args))
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar

from segue.config import apply_overrides, load_config
from segue.errors import InputError

T = TypeVar("T")


def add_training_arguments(
    parser: argparse.ArgumentParser, *, fine_tune: bool = False
) -> argparse.ArgumentParser:
    """Add -o/--out, --config, --set KEY=VALUE (repeatable), --max-steps and --resume; with
    `fine_tune`, --init-from (the task implements `TrainTask.load_initial`)."""
    parser.add_argument(
        "-o",
        "--out",
        required=True,
        type=Path,
        metavar="OUT",
        help="run folder (checkpoints, logs)",
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="run config file (.json or .toml)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set optim.lr=3e-4 (repeatable)",
    )
    parser.add_argument("--max-steps", type=int, default=None, help="same as optim.max_steps")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the run folder's newest valid checkpoint (fresh start if none)",
    )
    if fine_tune:
        parser.add_argument(
            "--init-from",
            default=None,
            metavar="MODEL",
            help="fine-tune: start from these trained weights (an exported model, a bundle's "
            "folder for this model, or a run folder); the model's shape (and an LM's stage) "
            "come from them, optimizer and schedule start fresh; same as train.init_from",
        )
    return parser


def config_from_args(cls: type[T], args: argparse.Namespace, *, default: T | None = None) -> T:
    """The run config: defaults < --config file (or, on --resume, OUT/config.json) < --set.

    `default` replaces `cls()` as the base (e.g. a model preset). --max-steps N, --device D
    and --init-from M (where the parser has them and they were given) are applied last, as
    `optim.max_steps=N`, `train.device=D` and `train.init_from=M`.
    """
    saved = Path(args.out) / "config.json"
    if args.config is not None:
        config = load_config(cls, args.config)
    elif getattr(args, "resume", False) and saved.is_file():
        config = load_config(cls, saved)
    else:
        config = default if default is not None else cls()
    overrides = list(args.overrides or [])
    if args.max_steps is not None:
        overrides.append(f"optim.max_steps={args.max_steps}")
    if getattr(args, "device", None) is not None:
        overrides.append(f"train.device={args.device}")
    if getattr(args, "init_from", None) is not None:
        overrides.append(f"train.init_from={args.init_from}")
    return apply_overrides(config, overrides)


#: Config fields that name files or folders (manifests, shards, teachers, targets).
PATH_FIELDS = frozenset(
    {"manifest", "semantic_shards", "acoustic_shards", "teacher", "path", "init_from"}
)


def absolute_paths(config: T) -> T:
    """`config` with every relative path in a PATH_FIELDS field made absolute (in place), so
    that the run folder's config.json still finds its data (and its own targets) when the run
    is resumed from another working folder."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            absolute_paths(value)
        elif (
            field.name in PATH_FIELDS
            and isinstance(value, str)
            and value
            and not os.path.isabs(value)
            and ":" not in value  # hf:<model> and other non-paths
        ):
            setattr(config, field.name, os.path.abspath(value))
    return config


def run_training(task: Any, config: Any, args: argparse.Namespace) -> int:
    """Train `task` into args.out: 0 when completed; stopped by SIGTERM/SIGINT, a
    KeyboardInterrupt (`train_to_end`: status 130, `--resume` goes on)."""
    from segue.train.engine import train_to_end

    if config.optim.max_steps < 1:
        raise InputError(f"optim.max_steps={config.optim.max_steps}: nothing to train")
    absolute_paths(config)  # config.json must find the data from any working folder
    train_to_end(task, config, args.out, resume=args.resume)
    return 0
