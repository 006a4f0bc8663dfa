"""Layers shared by segue's models, apart from any model (DAC's `dac.nn` idea): the transformer
block (`transformer.py`) and rotary positions (`rotary.py`). Imports torch only."""

from segue.nn.rotary import apply_rotary, rotary_table, step_rotary
from segue.nn.transformer import (
    MLP,
    Attention,
    Block,
    init_residuals,
    init_weights,
    upgrade_keys,
    upgrade_state_dict,
)

__all__ = [
    "MLP",
    "Attention",
    "Block",
    "apply_rotary",
    "init_residuals",
    "init_weights",
    "rotary_table",
    "step_rotary",
    "upgrade_keys",
    "upgrade_state_dict",
]
