"""Dataclass configs: JSON round trip, config files and `a.b.c=value` command-line overrides.

Every model and run in segue is described by a (possibly nested) dataclass. This module turns
them into plain dicts and back, strictly: an unknown key or a value of the wrong type is an error
that names the field, never a silent default.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from segue.errors import InputError

T = TypeVar("T")


class ConfigError(InputError):
    """A config file, dict or override that does not fit its dataclass."""


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass instance as a JSON-ready dict (tuples become lists)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a dataclass instance, got {type(config).__name__}")
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type[T], data: dict[str, Any], *, where: str = "") -> T:
    """Build dataclass `cls` from `data`, recursing into nested dataclasses.

    Missing keys take the field default; unknown keys raise ConfigError.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown field(s) {unknown}; known: {sorted(fields)}"
        )
    kwargs = {
        name: _coerce(hints[name], value, f"{where}.{name}" if where else name)
        for name, value in data.items()
    }
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check/convert a JSON value to annotation `tp` (dataclass, Optional, list, tuple, scalars)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where=where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(f"{where}: {value!r} fits none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            items = [_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
        else:
            item_tp = args[0] if args else Any
            items = [_coerce(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def cache_dir() -> Path:
    """segue's cache folder (compiled kernels, fetched packages, file checks): `$SEGUE_CACHE_DIR`,
    else `$XDG_CACHE_HOME/segue`, else `~/.cache/segue`. Safe to delete at any time."""
    if os.environ.get("SEGUE_CACHE_DIR"):
        return Path(os.environ["SEGUE_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "segue"


def require(config: Any, test: Callable[[Any], bool], what: str, *names: str) -> None:
    """Refuse a config whose fields `names` fail `test`, naming the field and the range `what`
    (for `__post_init__`: `require(self, lambda v: v >= 1, ">= 1", "n_layer", "n_head")`)."""
    for name in names:
        value = getattr(config, name)
        if not test(value):
            raise InputError(f"{name} must be {what}, got {value!r}")


def unset_old_placeholders(config: Any, old: Any, *names: str) -> None:
    """Read fields `names` that hold `old` (how configs saved before the one convention spelt
    "not set": 0, -1, "", ...) as None, so that old config.json files load as new ones. See
    "Placeholders" in docs/training.md; for `__post_init__`."""
    for name in names:
        value = getattr(config, name)
        if value is not None and not isinstance(value, bool) and value == old:
            setattr(config, name, None)


def _parse_override_value(text: str) -> Any:
    """`3e-4` -> 3e-4, `true` -> True, `[1,2]` -> [1, 2], `null` -> None, anything else: str."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered in ("none", "null"):
            return None
        return text


def apply_overrides(config: T, overrides: list[str] | tuple[str, ...]) -> T:
    """Return a copy of `config` with `dotted.field=value` overrides applied and type-checked.

    Example: apply_overrides(cfg, ["optim.lr=3e-4", "model.n_layer=4"]).
    """
    data = to_dict(config)
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override {override!r} is not of the form key=value")
        key, raw = override.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise ConfigError(
                    f"override {key!r}: {'.'.join(parts[: depth + 1])} is not a section"
                )
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"override {key!r}: no field {parts[-1]!r}; known: {sorted(node)}")
        value = _parse_override_value(raw)
        if isinstance(node[parts[-1]], str) and not isinstance(value, str):
            value = raw  # a string field keeps the literal text (e.g. name=123)
        node[parts[-1]] = value
    return from_dict(type(config), data)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
    return flat


def config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """What differs between two configs (dataclasses or their dicts), one `a.b: old -> new`
    line per field, sorted; a field only one side has shows `(none)` on the other."""
    before = _flatten(to_dict(old) if dataclasses.is_dataclass(old) else old, prefix)
    after = _flatten(to_dict(new) if dataclasses.is_dataclass(new) else new, prefix)
    return [
        f"{key}: {before.get(key, '(none)')} -> {after.get(key, '(none)')}"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The process's umask, read once (reading it means setting it, which is not thread-safe).
UMASK = _umask()


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new, never half.

    The file gets the permissions any new file of the user's gets (0666 minus the umask,
    typically 0644), not the 0600 of the temporary file it starts as.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_config(config: Any, path: str | os.PathLike) -> None:
    """Save a dataclass config as pretty JSON, atomically."""
    write_atomic(path, (json.dumps(to_dict(config), indent=2, sort_keys=True) + "\n").encode())


def load_config(cls: type[T], path: str | os.PathLike) -> T:
    """Load dataclass `cls` from a JSON (or, on Python >= 3.11, TOML) file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(path.read_text())
        else:
            data = json.loads(path.read_text())
    except (ValueError, ImportError) as error:
        raise ConfigError(f"{path}: cannot parse config ({error})") from error
    try:
        return from_dict(cls, data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from error
