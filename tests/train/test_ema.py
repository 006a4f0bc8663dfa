"""EMA of weights: update rule, temporary swap, state dict, engine integration."""

from __future__ import annotations

import torch
from torch import nn

from segue.train.ema import EMA
from tests.train.tiny import tiny_config, train


def test_update_swap_and_state():
    module = nn.Linear(2, 1)
    module.register_buffer("count", torch.tensor(5.0))
    ema = EMA({"m": module}, decay=0.75)
    start = module.weight.detach().clone()
    with torch.no_grad():
        module.weight.add_(4.0)
    ema.update()
    expected = start + 0.25 * 4.0
    assert torch.allclose(ema.shadow["m"]["weight"], expected)
    with ema.applied():
        assert torch.allclose(module.weight, expected)
    assert torch.allclose(module.weight, start + 4.0)  # restored

    state = ema.state_dict("m")
    assert set(state) == {"weight", "bias", "count"} and torch.equal(state["count"], module.count)
    other = EMA({"m": module}, decay=0.75)
    other.load_state_dict("m", state)
    assert torch.equal(other.shadow["m"]["weight"], ema.shadow["m"]["weight"])


def test_engine_keeps_an_ema_and_validates_with_it(tmp_path):
    trainer = train(tiny_config("train.ema_decay=0.9"), tmp_path)
    assert trainer.ema.num_updates == trainer.step == 8
    weight = trainer.raw_modules["model"].layers[0].weight
    assert not torch.equal(trainer.ema.shadow["model"]["layers.0.weight"], weight)
    with_ema = trainer.validate()
    trainer.train_cfg.valid_with_ema = False
    assert trainer.validate() != with_ema
