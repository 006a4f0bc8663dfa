"""SoundStorm configuration: the bidirectional transformer and its decoding defaults.

Presets: `tiny` (trains and decodes on a CPU) and `base` (12 layers x 16 heads x d 1024, the
paper's size). Token spaces (`n_levels`, `codebook_size`, `semantic_vocab`: None until then, and
`ratio`) come from the token shards' meta.json when training starts
(`segue.soundstorm.train.fill_from_shards`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

from segue.config import require, unset_old_placeholders
from segue.errors import InputError


@dataclass
class SoundStormConfig:
    """Acoustic codes [Q, T] of K codes each, conditioned on semantic tokens (one per `ratio`
    frames). Decoding: `steps_first` MaskGIT iterations for level 0, `steps_rest` for each finer
    level (1: one parallel pass); `temperature` for level 0, `fine_temperature` for the rest
    (0: greedy); `noise` scales the Gumbel noise on confidences, annealed to 0 over a level.
    Placeholders: None is "not set" (docs/training.md); old configs' 0 reads as None."""

    n_levels: int | None = None  # Q
    codebook_size: int | None = None  # K (MASK is id K of every level's embedding table)
    semantic_vocab: int | None = None  # S (PAD is id S: frames past the semantic tokens)
    ratio: int = 2  # acoustic frames per semantic token (50 Hz / 25 Hz)
    d_model: int = 256
    n_layer: int = 6
    n_head: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0  # on the residual branches (and the attention weights, see below)
    attention_dropout: float | None = None  # on the attention weights; None: `dropout`
    max_frames: int = 1500  # longest sequence of acoustic frames (rotary table size)
    rope_base: float = 10000.0
    steps_first: int = 16
    steps_rest: int = 1
    temperature: float = 1.0
    fine_temperature: float = 0.0
    noise: float = 1.0

    def __post_init__(self) -> None:
        unset_old_placeholders(self, 0, "n_levels", "codebook_size", "semantic_vocab")
        require(self, lambda v: v >= 1, ">= 1", "d_model", "n_layer", "n_head", "max_frames")
        require(self, lambda v: v is None or v >= 1, ">= 1 (or null: from the token shards)",
                "n_levels", "codebook_size", "semantic_vocab")
        require(self, lambda v: v > 0, "> 0", "mlp_ratio", "rope_base")
        require(self, lambda v: 0 <= v < 1, "in [0, 1)", "dropout")
        require(self, lambda v: v is None or 0 <= v < 1, "in [0, 1) (or null: dropout)",
                "attention_dropout")
        require(self, lambda v: v >= 0, ">= 0", "temperature", "fine_temperature", "noise")
        if self.d_model % self.n_head or (self.d_model // self.n_head) % 2:
            raise InputError(
                f"d_model={self.d_model} must split into {self.n_head} heads of even size"
            )
        if self.ratio < 1 or self.steps_first < 1 or self.steps_rest < 1:
            raise InputError("ratio, steps_first and steps_rest must be >= 1")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def mask_id(self) -> int:
        return self.codebook_size

    @property
    def pad_id(self) -> int:
        return self.semantic_vocab

    def steps_per_level(self) -> list[int]:
        """Decoding iterations of each level: [steps_first, steps_rest, ...] (Q entries)."""
        return [self.steps_first] + [self.steps_rest] * (self.n_levels - 1)

    def temperatures(self) -> list[float]:
        """Sampling temperature of each level (Q entries)."""
        return [self.temperature] + [self.fine_temperature] * (self.n_levels - 1)


PRESETS: dict[str, SoundStormConfig] = {
    # 8 level-0 iterations: on the speech bundle as good as 16 and 4 on every e2e measure
    # (docs/soundstorm.md, "Passes"), with 15 passes instead of 23
    "tiny": SoundStormConfig(
        n_layer=4, n_head=3, d_model=192, dropout=0.1, max_frames=500, steps_first=8
    ),
    "base": SoundStormConfig(n_layer=12, n_head=16, d_model=1024, dropout=0.1, max_frames=1500),
}


def soundstorm_preset(name: str, **overrides) -> SoundStormConfig:
    """A copy of a named preset with fields overridden."""
    if name not in PRESETS:
        raise InputError(f"unknown SoundStorm preset {name!r}; known: {sorted(PRESETS)}")
    return replace(copy.deepcopy(PRESETS[name]), **overrides)
