"""The page's form -> a checked job (`Settings`), or a one-line `UserError` naming the field.

Fields (all text, as a browser sends them): task (continue | generate | resynth), seconds,
start and end (the prompt span, continue), acoustic (ar | soundstorm), temperature_semantic,
temperature_coarse, temperature_fine (empty: the bundle's), seed (empty: a random one, reported
back). Files: audio (the prompt of continue, the input of resynth), voice (resynth, optional).
File names are used in messages only, never as paths.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from segue.serve.engine import STAGES, Engine, Settings, UserError, tasks

if TYPE_CHECKING:
    import numpy as np

#: The prompt span the page proposes: the first 3 s of the file.
DEFAULT_SPAN = (0.0, 3.0)
MAX_TEMPERATURE = 2.0
_UNPRINTABLE = re.compile(r"[^\w .,()+@-]")


def display_name(name: str | None, fallback: str) -> str:
    """An uploaded file's name as the client gave it, fit for a message: its last part, odd
    characters replaced, at most 60 characters (it is never used as a path)."""
    base = re.split(r"[\\/]", name or "")[-1].strip()
    base = _UNPRINTABLE.sub("_", base)[:60]
    return base or fallback


def number(
    fields: Mapping[str, str],
    key: str,
    default: float | None,
    low: float,
    high: float,
    what: str,
    *,
    above: bool = False,
) -> float | None:
    """A number field in [low, high] ((low, high] with above=True); empty -> default."""
    text = (fields.get(key) or "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{what} must be a number, got {text[:40]!r}") from None
    if not math.isfinite(value) or value < low or (above and value <= low) or value > high:
        side = ">" if above else ">="
        raise UserError(f"{what} must be {side} {low:g} and <= {high:g}, got {text[:40]}")
    return value


def parse_job(
    engine: Engine, fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes]]
) -> Settings:
    """Check a submitted form and decode its files (blocking: run it off the event loop).

    files: field -> (the client's file name, the bytes).
    """
    from segue.acoustic import PATHS, acoustic_path

    task = (fields.get("task") or "").strip()
    if task not in tasks():
        raise UserError(f"task must be one of {', '.join(tasks())}, got {task[:40]!r}")
    model, limits = engine.model, engine.limits
    acoustic = (fields.get("acoustic") or "ar").strip()
    if acoustic not in PATHS:
        raise UserError(f"acoustic must be {' or '.join(PATHS)}, got {acoustic[:40]!r}")
    path = acoustic_path(acoustic)
    try:
        path.check(model)
    except ValueError:
        message = f"this model has no {path.label} part: choose another acoustic stage"
        raise UserError(message) from None
    stages = STAGES[1:] if task == "resynth" else STAGES
    # the temperatures that apply: the semantic LM's and those of the path's own LMs (SoundStorm
    # samples with its own schedule)
    stages = tuple(s for s in stages if s == "semantic" or s in path.stages)
    temperatures = {}
    for stage in stages:
        value = number(
            fields, f"temperature_{stage}", None, 0.0, MAX_TEMPERATURE, f"the {stage} temperature"
        )
        if value is not None:
            temperatures[stage] = value
    seed = number(fields, "seed", None, 0, 2**31 - 1, "the seed")
    if seed is not None and seed != int(seed):
        raise UserError(f"the seed must be a whole number, got {seed:g}")
    settings = Settings(
        task,
        acoustic=acoustic,
        temperatures=temperatures,
        seed=None if seed is None else int(seed),
    )
    if task in ("continue", "generate"):
        settings.seconds = number(
            fields, "seconds", None, 0.0, limits.max_seconds, "seconds to generate", above=True
        )
        if settings.seconds is None:
            raise UserError("give the seconds to generate")
    if task == "continue":
        settings.audio, settings.name = _prompt(engine, fields, files)
    elif task == "resynth":
        name, data = _file(files, "audio", "the audio to resynthesize")
        settings.name = name
        settings.audio = engine.decode(
            data, name, "audio to resynthesize", max_seconds=limits.max_seconds
        )
        if "voice" in files and files["voice"][1]:
            voice_name, voice = _file(files, "voice", "the voice")
            settings.voice = engine.decode(
                voice, voice_name, "voice", duration=limits.max_voice_seconds
            )
    return settings


def _file(files: Mapping[str, tuple[str, bytes]], key: str, what: str) -> tuple[str, bytes]:
    if key not in files:
        raise UserError(f"give {what}: upload a file, record one or pick an example")
    name, data = files[key]
    return display_name(name, key), data


def _prompt(
    engine: Engine, fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes]]
) -> tuple[np.ndarray, str]:
    """The prompt span of the uploaded file, checked against the model's context."""
    longest = engine.model.max_prompt_seconds
    start = number(fields, "start", DEFAULT_SPAN[0], 0.0, 3600.0, "the prompt start")
    end = number(fields, "end", DEFAULT_SPAN[1], 0.0, 3600.0, "the prompt end", above=True)
    if end <= start:
        raise UserError(f"the prompt ends ({end:g} s) before it starts ({start:g} s)")
    if end - start > longest:
        raise UserError(
            f"the prompt span is {end - start:g} s ({start:g} to {end:g} s); this model reads "
            f"prompts up to {longest:.2f} s (its context): pick a shorter span"
        )
    name, data = _file(files, "audio", "a prompt")
    return engine.decode(data, name, "prompt", offset=start, duration=end - start), name
