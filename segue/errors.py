"""segue's errors: what a user can fix, apart from what is a bug.

    SegueError            a failure the user can fix (bad input, a missing part, a busy run
    |                     folder): `segue` prints its message as one line and exits with 2
    +-- InputError        a bad value: an argument, a file's content, a config (also a ValueError,
    |                     so `except ValueError` keeps working for library users)
    +-- StateError        something on disk or in the environment is not as needed: a corrupt
                          checkpoint, a locked run, a package that cannot be fetched (also a
                          RuntimeError)

Anything else that reaches the command line is a bug: it keeps its traceback, with a line
asking to report it. Errors of the operating system about files (not found, exists, permission)
are the user's too.
"""

from __future__ import annotations


class SegueError(Exception):
    """A failure the user can fix: the command line prints it as one line (exit status 2)."""


class InputError(SegueError, ValueError):
    """A value that cannot be used: an argument, a file's content, a config field."""


class StateError(SegueError, RuntimeError):
    """Something on disk or around the process that is not as the command needs it."""
