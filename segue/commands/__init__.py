"""The `segue` subcommands, one module per area; `segue.cli` assembles them.

Every command follows one convention (docs/cli.md), built with the helpers below and nowhere
else: what it reads is positional (`add_input`), what it writes is `-o/--out` (`add_out`), the
model or part it uses is `--model` (`add_model`), and a command that runs a model takes
`--device` (default auto) and `--threads` (`add_device`, `add_threads`; `add_training` for the
training commands). Renamed spellings stay as hidden aliases for a release; `finish_args`, which
`segue.cli` calls right after parsing, merges them and enforces the inputs they made optional.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segue.errors import InputError, SegueError

if TYPE_CHECKING:
    import torch


class CommandError(SegueError):
    """A user-facing failure: printed as one line, exit status 2, no traceback."""


def device_arg(text: str) -> str:
    """argparse type of --device: "auto" or a device this machine has."""
    from segue.train.distributed import parse_device

    if text == "auto":
        return text
    try:
        parse_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type of counts that must be >= 1 (--threads, --workers)."""
    return _whole_number(text, 1)


def positive_float(text: str) -> float:
    """argparse type of finite amounts that must be > 0 (--silence-db)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type of counts where 0 means "all" or "none" (--b-per-pair)."""
    return _whole_number(text, 0)


# --- the convention: inputs, --out, --model, --device, --threads (docs/cli.md) ---------------

#: Set on an argparse action by the helpers below and read by `finish_args`: the action is a
#: hidden old spelling of this (new) action...
_ALIAS_OF = "segue_alias_of"
#: ...or it is required, which argparse cannot check itself because an old spelling may give it.
_REQUIRED = "segue_required"


class _RequiredInUsage(argparse.HelpFormatter):
    """Shows the arguments `finish_args` requires as required in the usage line (argparse only
    knows them as optional: a hidden old spelling may stand in for them)."""

    def _format_usage(self, usage, actions, groups, prefix):  # argparse's own signature
        shown = []
        for action in actions:
            if getattr(action, _REQUIRED, False):
                action = copy.copy(action)
                action.required = True
                action.nargs = {"?": None, "*": "+"}.get(action.nargs, action.nargs)
            shown.append(action)
        return super()._format_usage(usage, shown, groups, prefix)


def _require(parser: argparse.ArgumentParser, action: argparse.Action) -> None:
    """Mark `action` required (checked by `finish_args`) and show it so in `parser`'s usage."""
    setattr(action, _REQUIRED, True)
    base = parser.formatter_class
    if not issubclass(base, _RequiredInUsage):
        parser.formatter_class = type(base.__name__, (_RequiredInUsage, base), {})


def _add_alias(
    parser: argparse.ArgumentParser, target: argparse.Action, old: str, **kwargs: Any
) -> argparse.Action:
    """`old` as a hidden spelling of `target`, kept for a release: an option (`--manifest`) or,
    without a leading dash, an optional positional (codec encode's old OUTPUT; `kwargs`, the
    option's nargs, action or metavar, do not apply to it). Its own dest; `finish_args` moves its
    value to `target`."""
    dest = f"{target.dest}__alias__{old.lstrip('-').replace('-', '_')}"
    if old.startswith("-"):
        alias = parser.add_argument(old, dest=dest, default=None, help=argparse.SUPPRESS, **kwargs)
    else:
        alias = parser.add_argument(
            dest, nargs="?", default=None, metavar=old.upper(), help=argparse.SUPPRESS
        )
    setattr(alias, _ALIAS_OF, target)
    return alias


def add_input(
    parser: argparse.ArgumentParser,
    name: str,
    *,
    help: str,
    nargs: str | None = None,
    required: bool = True,
    old_flag: str | None = None,
    metavar: str | None = None,
) -> argparse.Action:
    """The positional input `name` (what the command reads): one, or with nargs="+" one or more.

    `required=False` lets it be left out (e.g. a training run that resumes). `old_flag` (e.g.
    "--manifest") keeps the option it replaces as a hidden alias; the positional is then
    optional to argparse (an optional positional always matches, hence the alias's own dest)
    and `finish_args` merges the two and enforces `required`.
    """
    if nargs not in (None, "+"):
        raise ValueError(f"add_input: nargs is None or '+', not {nargs!r}")
    optional = {None: "?", "+": "*"}[nargs]
    action = parser.add_argument(
        name,
        nargs=optional if old_flag or not required else nargs,
        default=None,
        metavar=metavar or name.upper(),
        help=help,
    )
    if old_flag:
        _add_alias(parser, action, old_flag, nargs=nargs, metavar=metavar or name.upper())
        if required:
            _require(parser, action)
    return action


def add_out(
    parser: argparse.ArgumentParser,
    help: str,
    *,
    required: bool = True,
    old: tuple[str, ...] = (),
    metavar: str = "OUT",
    **kwargs: Any,
) -> argparse.Action:
    """`-o/--out`: what the command writes. `old` keeps former spellings as hidden aliases: an
    option ("--output") or a positional name ("output": the old second positional)."""
    action = parser.add_argument(
        "-o", "--out", required=required and not old, metavar=metavar, help=help, **kwargs
    )
    for spelling in old:
        _add_alias(parser, action, spelling, metavar=metavar)
    if required and old:
        _require(parser, action)
    return action


#: What --model accepts, for the help of the commands that load a segue part.
MODEL_HELP = (
    "a training run folder (newest checkpoint, EMA weights if any), one of its checkpoints "
    "(RUN/checkpoints/step_N) or an exported folder"
)


def add_model(
    parser: argparse.ArgumentParser,
    help: str,
    *,
    required: bool = True,
    repeat: bool = False,
    old_flag: str | None = "--checkpoint",
) -> argparse.Action:
    """`--model`: the part or bundle the command uses (`help` says which locations it takes);
    `repeat=True` for commands that compare several. `old_flag` (default --checkpoint) stays a
    hidden alias."""
    kwargs: dict[str, Any] = {"action": "append"} if repeat else {}
    action = parser.add_argument(
        "--model",
        required=required and not old_flag,
        default=None,
        metavar="MODEL",
        help=help,
        **kwargs,
    )
    if old_flag:
        _add_alias(parser, action, old_flag, metavar="MODEL", **kwargs)
        if required:
            _require(parser, action)
    return action


DEVICE_HELP = "auto (CUDA when available, else the CPU), cpu, cuda, cuda:N or mps"


def add_device(
    parser: argparse.ArgumentParser, *, default: str | None = "auto", help: str = DEVICE_HELP
) -> argparse.Action:
    """`--device`: where the model runs (checked against this machine when parsed); resolve it
    with `pick_device`."""
    return parser.add_argument(
        "--device", type=device_arg, default=default, metavar="DEVICE", help=help
    )


def add_threads(parser: argparse.ArgumentParser) -> argparse.Action:
    """`--threads N`: torch CPU threads, set by `segue.cli` for every command
    (`segue.runtime.set_threads`) before it runs."""
    return parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="torch CPU threads (default: one per core this process may use)",
    )


def add_mismatched_semantic(parser: argparse.ArgumentParser, what: str) -> argparse.Action:
    """`--mismatched-semantic [SHIFT]` (0: off; default 37): score each `what` a second time
    given another utterance's semantic tokens (`segue.lm.data.conditioning_tokens`)."""
    from segue.lm.data import MISMATCH_SHIFT

    return parser.add_argument(
        "--mismatched-semantic",
        type=non_negative_int,
        nargs="?",
        const=MISMATCH_SHIFT,
        default=0,
        metavar="SHIFT",
        help=f"also score each {what} given another utterance's semantic tokens (the one SHIFT "
        f"places on, default {MISMATCH_SHIFT}): how much the model uses them",
    )


def add_training(
    parser: argparse.ArgumentParser, *, fine_tune: bool = False
) -> argparse.ArgumentParser:
    """The training commands' shared arguments (`segue.train.add_training_arguments`: -o/--out,
    --config, --set, --max-steps, --resume; --init-from where the model can be fine-tuned),
    with --device (it overrides the run config's `train.device`) and --threads."""
    from segue.train import add_training_arguments

    add_training_arguments(parser, fine_tune=fine_tune)
    add_device(
        parser,
        default=None,
        help=f"{DEVICE_HELP}; sets train.device (default: the run config's, auto unless set)",
    )
    add_threads(parser)
    return parser


def pick_device(spec: str) -> torch.device:
    """--device as a torch.device: "auto" is cuda:LOCAL_RANK (this process's GPU under
    torchrun, else cuda:0) when CUDA is available, else cpu, as in training."""
    import os

    from segue.train.distributed import DistInfo, resolve_device

    return resolve_device(spec, DistInfo(local_rank=int(os.environ.get("LOCAL_RANK", "0"))))


def command_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The (sub)parser of the command `args` were parsed for, e.g. `segue codec encode`'s."""
    while True:
        subs = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if subs is None or getattr(args, subs.dest, None) not in subs.choices:
            return parser
        parser = subs.choices[getattr(args, subs.dest)]


def _given(value: Any, action: argparse.Action) -> bool:
    return value is not None and value != [] and value != action.default


def _shown(action: argparse.Action) -> str:
    """An argument as a message names it: its option (--model) or its metavar (MANIFEST)."""
    return "/".join(action.option_strings) or str(action.metavar or action.dest)


def finish_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """After `parser.parse_args`: each hidden old spelling's value moves to its new argument
    (both given with different values is an error), then the inputs, --model and --out that an
    old spelling could have given are checked to be there. Errors are argparse's usage errors
    of the command (exit status 2). Returns `args`, changed in place."""
    command = command_parser(parser, args)
    for action in command._actions:
        target = getattr(action, _ALIAS_OF, None)
        if target is None or not hasattr(args, action.dest):
            continue
        old = getattr(args, action.dest)
        delattr(args, action.dest)
        if not _given(old, action):
            continue
        new = getattr(args, target.dest, None)
        if _given(new, target) and new != old:
            command.error(
                f"{_shown(target)} and {_shown(action)} (its old spelling) give different "
                f"values: give {_shown(target)} only"
            )
        setattr(args, target.dest, old)
    missing = [
        _shown(action)
        for action in command._actions
        if getattr(action, _REQUIRED, False) and not _given(getattr(args, action.dest), action)
    ]
    if missing:
        command.error(f"the following arguments are required: {', '.join(missing)}")
    return args


def check_output(
    path: str | Path, suffixes: tuple[str, ...], *inputs: str | None, what: str = "the output"
) -> Path:
    """An output file (`what`, in messages), refused before any compute when its name does not
    end in one of `suffixes`, it is an input of the same command (by inode: links and other
    spellings included; it would be replaced), it is a folder, or it cannot be written."""
    import os

    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise CommandError(f"{out}: {what} must end in {' or '.join(suffixes)}")
    for given in filter(None, inputs):
        try:
            same = out.exists() and Path(given).exists() and os.path.samefile(out, given)
        except OSError:
            same = False
        if same:
            raise CommandError(f"{out}: {what} is the input {given}; write to another file")
    if out.is_dir():
        raise CommandError(f"{out}: {what} is a folder; name a file")
    parent = next(p for p in (out.absolute().parent, *out.absolute().parents) if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise CommandError(f"{out}: cannot write there ({parent} is not a writable folder)")
    if out.exists() and not os.access(out, os.W_OK):
        raise CommandError(f"{out}: the file exists and is not writable")
    return out


#: Token and code arrays on disk; the format follows the file's suffix.
ARRAY_SUFFIXES = (".npy", ".pt", ".safetensors")


def check_array_output(path: str | Path, *inputs: str | None) -> Path:
    """An output of tokens or codes: it must end in .npy, .pt or .safetensors (the format is
    chosen by it, and the file is written exactly there); otherwise as `check_output`."""
    return check_output(path, ARRAY_SUFFIXES, *inputs)


def save_array(path: Path, array: Any) -> None:
    """A NumPy integer array to exactly `path`, in the format its suffix names (a .safetensors
    file holds it under the key "array"), atomically: a temporary file renamed, none left on
    failure."""
    import os

    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            with tmp.open("wb") as handle:
                np.save(handle, array)
        else:
            import torch

            tensor = torch.from_numpy(np.ascontiguousarray(array))
            if suffix == ".pt":
                torch.save(tensor, tmp)
            elif suffix == ".safetensors":
                from safetensors.torch import save_file

                save_file({"array": tensor}, str(tmp))
            else:
                raise CommandError(f"{path}: must end in {' or '.join(ARRAY_SUFFIXES)}")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_array(path: str | Path, what: str = "tokens") -> Any:
    """The NumPy array in a .npy, .pt (one tensor) or .safetensors (one tensor) file."""
    import numpy as np

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise CommandError(f"{path}: {what} must be a {' or '.join(ARRAY_SUFFIXES)} file")
    try:
        if suffix == ".npy":
            return np.load(path)
        import torch

        if suffix == ".pt":
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        else:
            from safetensors.torch import load_file

            tensors = load_file(str(path))
            if len(tensors) != 1:
                raise InputError(f"expected one tensor, found {sorted(tensors)}")
            loaded = next(iter(tensors.values()))
        if not isinstance(loaded, torch.Tensor):
            raise InputError(f"expected a tensor, found {type(loaded).__name__}")
        return loaded.numpy()
    except CommandError:
        raise
    except Exception as error:  # each format fails in its own way on a bad file
        raise CommandError(f"{path}: cannot read {what} ({error})") from error


@contextlib.contextmanager
def torchrun_ranks() -> Iterator[Any]:
    """Join torchrun's process group for a data-parallel job (a no-op in a single process).

    Yields the `DistInfo` (rank, world_size, local_rank); leaves the group on exit (after a
    barrier when the job ended well; at once on an error, which the other ranks may never reach).
    """
    import torch

    from segue.train.distributed import init_distributed, leave_process_group

    info, created = init_distributed()
    try:
        yield info
    except BaseException:
        if created:
            torch.distributed.destroy_process_group()
        raise
    if created:
        leave_process_group()


def finish_shards(out: str | Path, counts: dict[str, int], info: Any) -> None:
    """After every rank has tokenized its share: rank 0 merges the index and reports."""
    from segue.data.shards import merge_index
    from segue.train.distributed import barrier

    barrier()
    if info.is_main:
        merge_index(out)
        print(
            f"{out}: {counts['done']} tokenized, {counts['skipped']} already done, "
            f"{counts['failed']} unreadable (rank 0's share)"
        )
