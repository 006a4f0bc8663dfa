"""Non-finite losses: the step is skipped and counted; K in a row stop the run clearly."""

from __future__ import annotations

import pytest
import torch

from segue.train import COMPLETED
from tests.train.tiny import tiny_config, train, weights


def test_nan_step_is_skipped_and_counted(tmp_path):
    clean = train(tiny_config("optim.max_steps=4", "model.stop_at=2"), tmp_path / "clean")
    assert clean.step == 3
    # Step 3 (the last) is NaN: the weights after 4 steps equal those after the 3 clean ones.
    skipped = train(tiny_config("optim.max_steps=4", "model.nan_steps=[3]"), tmp_path / "nan")
    assert skipped.status == COMPLETED
    assert skipped.nan_total == 1 and skipped.nan_consecutive == 1
    assert all(torch.isfinite(value).all() for value in weights(skipped).values())
    # Adam's state did not move either: only the learning-rate schedule advanced.
    assert skipped.optimizers["main"].state_dict()["state"][0]["step"] == 3
    clean_weights = weights(clean)
    for key, value in weights(skipped).items():
        assert torch.equal(value, clean_weights[key]), key


def test_consecutive_nans_stop_with_a_clear_error(tmp_path):
    config = tiny_config(
        "model.nan_steps=[2,3,4,5,6]", "train.max_nan_steps=3", "train.checkpoint_every=1"
    )
    with pytest.raises(RuntimeError, match=r"3 consecutive steps .*non-finite.*max_nan_steps=3"):
        train(config, tmp_path)


def test_isolated_nans_do_not_stop(tmp_path):
    config = tiny_config("model.nan_steps=[1,3,5]", "train.max_nan_steps=2")
    trainer = train(config, tmp_path)
    assert trainer.status == COMPLETED and trainer.nan_total == 3
