"""Progress bar, TensorBoard scalars and audio, validation metrics."""

from __future__ import annotations

import pytest

from tests.train.tiny import tiny_config, train


def test_tensorboard_scalars_and_audio(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny_config("train.tensorboard=true", "train.progress=true", "train.log_every=2")
    trainer = train(config, tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"audio": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    expected = {
        "train/loss",
        "train/mae",
        "train/lr",
        "train/grad_norm",
        "train/items_per_s",
        "train/nan_skipped",
        "valid/mse",
    }
    assert expected <= scalars
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6, 8]
    assert [e.step for e in events.Scalars("valid/mse")] == [4, 8]
    assert "valid/tone" in events.Tags()["audio"]
    err = capsys.readouterr().err
    assert "[train 8]" in err and "[valid 8] mse" in err and "8/8" in err  # the tqdm bar
    assert trainer.validate().keys() == {"mse"}
