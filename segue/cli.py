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


#: The modules of `segue.commands` (each has `register(sub)`) and the top-level commands each
#: adds, in `segue --help` order.
COMMAND_MODULES = {
    "data": ("data",),
    "codec": ("codec",),
    "semantic": ("semantic",),
    "lm": ("lm",),
    "soundstorm": ("soundstorm",),
    "generate": ("continue", "generate", "resynth", "bundle"),
    "evaluate": ("eval",),
    "recipe": ("recipe",),
    "serve": ("serve",),
}


def _subcommands(command: str | None = None) -> list[Callable[[argparse._SubParsersAction], None]]:
    """The `register` of each module that adds a top-level subcommand; with `command`, only the
    module that adds it, so a command imports what it needs (`segue continue` never loads the
    recipes, the trainers or the evaluation)."""
    import importlib

    return [
        importlib.import_module(f"segue.commands.{module}").register
        for module, commands in COMMAND_MODULES.items()
        if command is None or command in commands
    ]


def _command(argv: Sequence[str]) -> str | None:
    """The top-level command `argv` names (its first word that is not an option), if it is one."""
    first = next((word for word in argv if not word.startswith("-")), None)
    known = {name for commands in COMMAND_MODULES.values() for name in commands}
    return first if first in known else None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `segue` parser with every subcommand's (with `command`, that command's only); `parse`
    also merges the hidden old spellings."""
    parser = argparse.ArgumentParser(
        prog="segue", description="segue: AudioLM in PyTorch, trained from audio alone."
    )
    parser.add_argument("--version", action="version", version=f"segue {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _subcommands(command):
        add(sub)
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line parsed as `segue` runs it: hidden old spellings merged into the new
    ones and required inputs checked (`segue.commands.finish_args`); a usage error exits 2.
    Only the named command's module is imported (all of them for `segue --help` or a typo, so
    the usage lists every command)."""
    from segue.commands import finish_args

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command(argv))
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
