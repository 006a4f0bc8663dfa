"""The acoustic paths as objects: names convert once, the pipeline takes either, a path reports
its own progress stages and checks the bundle's parts."""

from __future__ import annotations

import pytest
import torch

from segue.acoustic import AR, PATHS, SOUNDSTORM, AcousticPath, acoustic_path
from segue.pipeline import ACOUSTIC, stage_names
from tests.test_pipeline import speech_like


def test_names_and_objects_convert_to_the_same_path():
    assert acoustic_path("ar") is AR and acoustic_path(AR) is AR
    assert acoustic_path("soundstorm") is SOUNDSTORM and acoustic_path(SOUNDSTORM) is SOUNDSTORM
    assert tuple(PATHS) == ACOUSTIC == ("ar", "soundstorm")
    for bad in ("fast", "AR", None, 3):
        with pytest.raises(ValueError, match="acoustic must be one of"):
            acoustic_path(bad)
    assert repr(SOUNDSTORM) == "<acoustic path 'soundstorm'>"


def test_each_path_reports_its_own_stages():
    assert stage_names("continue", AR) == ["tokenize", "semantic", "coarse", "fine", "decode"]
    assert stage_names("generate", "soundstorm") == ["semantic", "soundstorm", "decode"]
    assert stage_names("resynth", SOUNDSTORM) == ["tokenize", "soundstorm", "decode"]


def test_a_new_path_plugs_in_without_touching_the_pipeline(monkeypatch):
    """A path object the pipeline has never heard of: it is called with the semantic tokens and
    the prompt's codes, its stages are reported, and its codes are decoded."""
    from tests.test_pipeline import tiny_audiolm

    model = tiny_audiolm()
    seen = {}

    class Silence(AcousticPath):
        name, label, stages = "silence", "all-zero codes", ("zeros",)

        def check(self, model) -> None:
            seen["checked"] = True

        def generate(self, model, semantic, codes, sampling, generator, stage) -> torch.Tensor:
            stage("zeros")
            seen["semantic"], seen["codes"] = semantic.shape, codes.shape
            frames = model.ratio * semantic.shape[1]
            return torch.zeros(semantic.shape[0], model.n_levels, frames, dtype=torch.long)

    names = []
    prompt = speech_like(0.5)
    out = model.continue_(prompt, 0.2, seed=0, progress=names.append, acoustic=Silence())
    assert names == ["tokenize", "semantic", "zeros", "decode"] and seen["checked"]
    total = seen["semantic"][1]
    assert seen["codes"][:2] == (1, model.n_levels) and seen["codes"][2] < model.ratio * total
    assert out.shape == (1, prompt.shape[-1] + round(0.2 * model.sample_rate))


def test_the_object_and_its_name_give_the_same_audio():
    from tests.test_pipeline import tiny_audiolm

    model = tiny_audiolm()
    prompt = speech_like(0.5)
    by_name = model.continue_(prompt, 0.2, seed=4, progress=False, acoustic="ar")
    by_object = model.continue_(prompt, 0.2, seed=4, progress=False, acoustic=AR)
    assert torch.equal(by_name, by_object)
