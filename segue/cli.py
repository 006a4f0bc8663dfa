"""The `segue` command: `segue --help` lists the subcommands, each has its own `--help`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from segue import __version__
from segue.commands import CommandError


def _subcommands() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Each entry adds one top-level subcommand (and its own subcommands) to the parser."""
    from segue.commands import (
        codec,
        data,
        evaluate,
        generate,
        lm,
        recipe,
        semantic,
        serve,
        soundstorm,
    )

    return [
        data.register,
        codec.register,
        semantic.register,
        lm.register,
        soundstorm.register,
        generate.register,
        evaluate.register,
        recipe.register,
        serve.register,
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segue", description="segue: AudioLM in PyTorch, trained from audio alone."
    )
    parser.add_argument("--version", action="version", version=f"segue {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _subcommands():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `segue` console script; returns the exit status."""
    from segue.runtime import configure_cpu

    configure_cpu()  # before anything imports torch
    from segue.audio import AudioError
    from segue.config import ConfigError
    from segue.data.manifest import ManifestError
    from segue.train.checkpoint import CheckpointError
    from segue.train.lock import RunLockedError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (
        CommandError,
        FileExistsError,
        AudioError,
        ConfigError,
        ManifestError,
        CheckpointError,
        RunLockedError,
        FileNotFoundError,
        ValueError,
    ) as error:
        print(f"segue: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("segue: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
