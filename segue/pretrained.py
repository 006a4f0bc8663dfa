"""`save_pretrained` / `from_pretrained` for every segue model: `config.json` + `model.safetensors`.

A model class sets `config_class` (a dataclass) and takes the config as its only constructor
argument; this mixin does the rest, so a saved model is a plain folder any tool can read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import load_file, save_file

from segue.config import load_config, save_config
from segue.errors import InputError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: A run's checkpoint folders, RUN/checkpoints/step_N (`segue.train.checkpoint` writes them);
#: named here because every part's loader, below the engine, takes one like a run folder.
CHECKPOINT_DIR = re.compile(r"^step_(\d+)$")
M = TypeVar("M", bound="PretrainedMixin")


class PretrainedMixin:
    """Mixin for nn.Modules built as `cls(config)` from a dataclass `config_class`."""

    config_class: ClassVar[type]
    config: Any

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write `directory/config.json` and `directory/model.safetensors` (atomically each)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_config(self.config, directory / CONFIG_NAME)
        state = {k: v.detach().contiguous().cpu() for k, v in self.saved_state().items()}
        tmp = directory / f".{WEIGHTS_NAME}.tmp"
        save_file(state, str(tmp), metadata={"format": "pt", "class": type(self).__name__})
        os.replace(tmp, directory / WEIGHTS_NAME)
        return directory

    def saved_state(self) -> dict[str, torch.Tensor]:
        """What `save_pretrained` writes: the state dict, less what loading rebuilds (a model
        may leave out buffers derived from others; training checkpoints keep everything)."""
        return self.state_dict()

    @classmethod
    def from_pretrained(
        cls: type[M], directory: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> M:
        """Load a folder written by `save_pretrained`; errors name the missing or bad file."""
        directory = Path(directory)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (directory / name).is_file():
                raise FileNotFoundError(
                    f"{directory / name}: not found (is {directory} a saved {cls.__name__}?)"
                )
        model = cls(load_config(cls.config_class, directory / CONFIG_NAME))
        state = read_safetensors(directory / WEIGHTS_NAME, map_location)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise InputError(
                f"{directory / WEIGHTS_NAME}: weights do not fit {cls.__name__} "
                f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
        return model.eval()


def is_run_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` names one checkpoint of a run (`RUN/checkpoints/step_N`) rather than a run
    folder: every loader that takes a run folder takes one of its checkpoints too."""
    path = Path(path)
    return path.parent.name == "checkpoints" and bool(CHECKPOINT_DIR.match(path.name))


def is_run_location(path: str | os.PathLike) -> bool:
    """Whether `path` is a training run folder (with checkpoints/) or one of its checkpoints."""
    path = Path(path)
    return (path / "checkpoints").is_dir() or (is_run_checkpoint(path) and path.is_dir())


def saved_model_folder(
    location: str | os.PathLike, files: tuple[str, ...], what: str
) -> tuple[Path, bool]:
    """(`location` as a Path, whether it is an exported model holding `files` rather than a
    training run folder with checkpoints/ or one of its checkpoints, `RUN/checkpoints/step_N`);
    a folder that is none of these is refused, naming them."""
    path = Path(location)
    if is_run_checkpoint(path) and path.is_dir():  # it may hold files of the same names
        return path, False
    if all((path / name).is_file() for name in files):
        return path, True
    if is_run_location(path):
        return path, False
    raise FileNotFoundError(
        f"{path}: neither an exported {what} ({' + '.join(files)}) "
        f"nor a {what} run folder (checkpoints/) or one of its checkpoints"
    )


def read_safetensors(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file; a missing, truncated or corrupt one is a ValueError
    naming it (safetensors raises several exception types, none of them a ValueError)."""
    try:
        return load_file(str(path), device=str(device))
    except Exception as error:
        raise InputError(f"{path}: cannot read weights ({error})") from error
