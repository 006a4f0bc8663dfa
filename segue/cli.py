"""The `segue` command: `segue --help` lists the subcommands, each has its own `--help`."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence

from segue import __version__
from segue.errors import SegueError

#: Errors of the operating system about a path the user named: theirs to fix, like a SegueError.
FILE_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


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
    """The `segue` parser and every subcommand's; `parse` also merges the hidden old spellings."""
    parser = argparse.ArgumentParser(
        prog="segue", description="segue: AudioLM in PyTorch, trained from audio alone."
    )
    parser.add_argument("--version", action="version", version=f"segue {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _subcommands():
        add(sub)
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line parsed as `segue` runs it: hidden old spellings merged into the new
    ones and required inputs checked (`segue.commands.finish_args`); a usage error exits 2."""
    from segue.commands import finish_args

    parser = build_parser()
    return finish_args(parser, parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `segue` console script; returns the exit status.

    A `SegueError` (bad input, a missing or busy file: see `segue.errors`) or an error of the
    operating system about a file prints one line and returns 2; anything else is a bug in
    segue: its traceback is printed, with a line asking to report it, and 1 is returned.
    """
    from segue.runtime import configure_cpu, set_threads

    configure_cpu()  # before anything imports torch
    args = parse(argv)
    set_threads(getattr(args, "threads", None))  # --threads, the same way for every command
    try:
        args.func(args)
    except (SegueError, *FILE_ERRORS) as error:
        print(f"segue: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("segue: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print(
            "segue: this is a bug in segue, not in what was asked of it: please report it with "
            "the command you ran and the traceback above",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
