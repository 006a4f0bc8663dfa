"""The command line's error convention: what the user can fix is one line and exit status 2;
anything else is a bug and keeps its traceback (exit status 1)."""

from __future__ import annotations

import pytest

from segue import cli
from segue.audio import AudioError
from segue.commands import CommandError
from segue.errors import InputError, SegueError, StateError
from segue.train.checkpoint import CheckpointError


def run_raising(monkeypatch, error: BaseException) -> int:
    """`segue boom` through cli.main, where the command raises `error`."""

    def register(sub) -> None:
        parser = sub.add_parser("boom")

        def func(args) -> None:
            raise error

        parser.set_defaults(func=func)

    monkeypatch.setattr(cli, "_subcommands", lambda command=None: [register])
    return cli.main(["boom"])


@pytest.mark.parametrize(
    "error",
    [
        CommandError("no such run: runs/x"),
        InputError("seconds must be > 0, got -1"),
        StateError("run folder locked"),
        AudioError("a.wav", "not an audio file"),
        CheckpointError("checkpoint step_10 is incomplete"),
        FileNotFoundError(2, "No such file or directory", "missing.wav"),
        FileExistsError("out.wav exists (pass --force)"),
        PermissionError(13, "Permission denied", "/root/x"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_what_the_user_can_fix_is_one_line_and_status_2(monkeypatch, capsys, error):
    assert isinstance(error, (SegueError, OSError))
    assert run_raising(monkeypatch, error) == 2
    err = capsys.readouterr().err
    assert err.startswith("segue: error: ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "error",
    [ValueError("operands could not be broadcast"), KeyError("coarse"), RuntimeError("shape")],
    ids=lambda e: type(e).__name__,
)
def test_anything_else_is_a_bug_with_its_traceback_and_status_1(monkeypatch, capsys, error):
    assert run_raising(monkeypatch, error) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in func" in err
    assert "this is a bug in segue" in err.splitlines()[-1]


def test_an_interrupt_is_status_130(monkeypatch, capsys):
    assert run_raising(monkeypatch, KeyboardInterrupt()) == 130
    assert capsys.readouterr().err.strip() == "segue: interrupted"


def test_library_input_errors_are_still_value_errors():
    """Library users who catch ValueError (the Python convention) keep working."""
    from segue.config import ConfigError
    from segue.data.manifest import ManifestError

    for cls in (InputError, AudioError, ConfigError, ManifestError):
        assert issubclass(cls, ValueError) and issubclass(cls, SegueError)
    assert issubclass(StateError, RuntimeError) and issubclass(CheckpointError, StateError)
