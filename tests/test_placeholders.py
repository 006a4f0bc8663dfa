"""One placeholder convention (docs/training.md, "Placeholders"): None is "not set", and configs
saved with the old spellings (0 for a size filled in later, 0 / 1.0 for sampling filters that are
off, -1 for "the model's layer") load as the new one."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from segue.config import from_dict, load_config, to_dict
from segue.errors import InputError
from segue.lm.config import LMConfig, StageConfig, model_preset, stage_preset
from segue.lm.train import LMRunConfig, run_config_for
from segue.pipeline import PipelineSampling, SamplingConfig
from segue.semantic.invariance import InvarianceConfig
from segue.semantic.train import SemanticRunConfig, TargetsConfig
from segue.soundstorm.config import SoundStormConfig
from segue.soundstorm.train import SoundStormRunConfig


def test_new_configs_spell_not_set_as_none():
    lm = model_preset("audiolm")
    assert (lm.vocab_size, lm.max_seq_len, lm.n_kv_head) == (None, None, None)
    assert lm.kv_heads == lm.n_head
    stage = stage_preset("tiny", "coarse")
    assert (stage.semantic_vocab, stage.acoustic_vocab, stage.n_coarse, stage.n_levels) == (
        None, None, None, None
    )
    storm = SoundStormConfig()
    assert (storm.n_levels, storm.codebook_size, storm.semantic_vocab) == (None, None, None)
    assert TargetsConfig().layer is None and InvarianceConfig().layer is None


def test_old_run_configs_load_as_new_ones(tmp_path):
    """A run's config.json written before the convention (0 / -1 placeholders) reads as None."""
    old = to_dict(run_config_for("coarse", "audiolm"))
    old["model"].update(vocab_size=0, max_seq_len=0, n_kv_head=0)
    old["stage"].update(semantic_vocab=0, acoustic_vocab=0, n_coarse=0, n_levels=0, top_k=0,
                        top_p=1.0)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    config = load_config(LMRunConfig, path)
    assert config == run_config_for("coarse", "audiolm")
    assert config.model.vocab_size is None and config.stage.top_p is None

    storm = to_dict(SoundStormRunConfig())
    storm["model"].update(n_levels=0, codebook_size=0, semantic_vocab=0)
    assert from_dict(SoundStormRunConfig, storm) == SoundStormRunConfig()

    semantic = to_dict(SemanticRunConfig())
    semantic["targets"]["layer"] = -1
    semantic["invariance"]["layer"] = -1
    assert from_dict(SemanticRunConfig, semantic) == SemanticRunConfig()


def test_filled_in_values_and_real_settings_are_kept():
    lm = from_dict(LMConfig, {"vocab_size": 1028, "max_seq_len": 252, "n_kv_head": 1})
    assert (lm.vocab_size, lm.max_seq_len, lm.n_kv_head) == (1028, 252, 1)
    stage = from_dict(StageConfig, {"stage": "fine", "n_coarse": 3, "n_levels": 8, "top_k": 50,
                                    "top_p": 0.9})
    assert (stage.n_coarse, stage.n_levels, stage.top_k, stage.top_p) == (3, 8, 50, 0.9)
    assert from_dict(TargetsConfig, {"layer": 0}).layer == 0  # layer 0 is a layer, not "unset"


@pytest.mark.parametrize(
    "build",
    [
        lambda: LMConfig(vocab_size=-3),
        lambda: StageConfig(n_levels=-1),
        lambda: StageConfig(top_p=1.5),
        lambda: SoundStormConfig(codebook_size=-4),
        lambda: SamplingConfig(top_k=-1),
        lambda: TargetsConfig(layer=-2),
        lambda: InvarianceConfig(layer=-2),
    ],
)
def test_values_that_are_neither_set_nor_unset_are_refused(build):
    with pytest.raises(InputError):
        build()


def test_sampling_has_one_spelling_for_off_and_samples_as_before():
    """top_k 0 (the CLI's `--top-k-STAGE 0`, older bundles) and top_p 1.0 read as None: off;
    the settings handed to the stages are those the old spellings gave, so draws are unchanged."""
    old = SamplingConfig(0.8, top_k=0, top_p=1.0)
    assert (old.top_k, old.top_p) == (None, None)
    assert old == SamplingConfig(0.8)
    assert old.kwargs() == {"temperature": 0.8, "top_k": 0, "top_p": 1.0}
    assert replace(SamplingConfig(0.6, top_k=20), top_k=0).top_k is None
    bundle = {s: {"temperature": 0.6, "top_k": 0, "top_p": 1.0} for s in ("semantic", "coarse",
                                                                          "fine")}
    assert from_dict(PipelineSampling, bundle) == PipelineSampling(
        SamplingConfig(0.6), SamplingConfig(0.6), SamplingConfig(0.6)
    )
