"""The `segue` subcommands, one module per area; `segue.cli` assembles them."""


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2, no traceback."""
