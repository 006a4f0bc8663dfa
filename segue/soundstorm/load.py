"""Load a SoundStorm from an exported folder or a training run folder.

    model = load_soundstorm("runs/soundstorm")        # newest valid checkpoint (EMA if any)
    model = load_soundstorm("exported/soundstorm")    # config.json + model.safetensors

`segue soundstorm export` writes the second from the first.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from segue.config import from_dict, load_config
from segue.pretrained import CONFIG_NAME, WEIGHTS_NAME, saved_model_folder
from segue.soundstorm.config import SoundStormConfig
from segue.soundstorm.model import SoundStorm


def load_soundstorm(
    location: str | os.PathLike, *, prefer_ema: bool = True, device: str | torch.device = "cpu"
) -> SoundStorm:
    """A SoundStorm in eval mode from an exported folder (`SoundStorm.save_pretrained`) or a
    training run folder (newest valid checkpoint; EMA weights when there are some)."""
    path, exported = _folder(location)
    if exported:
        model = SoundStorm.from_pretrained(path)
    else:
        from segue.soundstorm.train import SoundStormRunConfig
        from segue.train.checkpoint import load_run_weights

        config, weights = load_run_weights(path, "model", prefer_ema=prefer_ema, what="SoundStorm")
        model = SoundStorm(from_dict(SoundStormRunConfig, config).model)
        model.load_state_dict(weights)
    return model.eval().to(device)


def read_soundstorm_config(location: str | os.PathLike) -> SoundStormConfig:
    """The config of what `load_soundstorm(location)` loads, without reading its weights."""
    path, exported = _folder(location)
    if exported:
        return load_config(SoundStormConfig, path / CONFIG_NAME)
    from segue.soundstorm.train import SoundStormRunConfig
    from segue.train.checkpoint import read_run_config

    return from_dict(SoundStormRunConfig, read_run_config(path, what="SoundStorm")).model


def _folder(location: str | os.PathLike) -> tuple[Path, bool]:
    """(the folder, whether it is an exported SoundStorm rather than a run folder)."""
    return saved_model_folder(location, (CONFIG_NAME, WEIGHTS_NAME), "SoundStorm")
