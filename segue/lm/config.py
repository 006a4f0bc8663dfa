"""Language-model configuration: the transformer (`LMConfig`) and its stage (`StageConfig`).

Presets: `tiny` (trains and samples on a laptop CPU) and `audiolm` (12 layers x 16 heads x
d 1024, the paper's windows: 30 s semantic context, 10 s coarse windows, non-overlapping 3 s
fine windows conditioned on the previous 3 s).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Literal

from segue.config import require, unset_old_placeholders
from segue.errors import InputError

Stage = Literal["semantic", "coarse", "fine"]
STAGES: tuple[str, ...] = ("semantic", "coarse", "fine")


@dataclass
class LMConfig:
    """A decoder-only transformer: pre-norm blocks, SDPA attention, rotary positions.

    `attention_dropout` 0 keeps training on PyTorch's fused attention kernel: dropout on the
    attention weights makes the CPU fall back to the [B, H, T, T] math path (docs/training.md,
    "CPU training speed").

    `vocab_size` and `max_seq_len` come from the stage's layout (None until training fills them
    in). Placeholders: None is "not set" (see docs/training.md); old configs' 0 reads as None.
    """

    vocab_size: int | None = None
    max_seq_len: int | None = None
    n_layer: int = 6
    n_head: int = 4
    n_kv_head: int | None = None  # key/value heads; None: n_head (multi-head), 1: multi-query
    d_model: int = 256
    mlp_ratio: float = 4.0
    dropout: float = 0.0  # on the residual branches (and the attention weights, see below)
    attention_dropout: float | None = None  # on the attention weights; None: `dropout`
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        unset_old_placeholders(self, 0, "vocab_size", "max_seq_len", "n_kv_head")
        require(self, lambda v: v is None or 0 <= v < 1, "in [0, 1) (or null: dropout)",
                "attention_dropout")
        require(self, lambda v: v >= 1, ">= 1", "n_layer", "n_head", "d_model")
        require(self, lambda v: v is None or v >= 1, ">= 1 (or null: from the layout)",
                "vocab_size", "max_seq_len")
        if not self.mlp_ratio > 0 or not 0 <= self.dropout < 1 or not self.rope_base > 0:
            raise InputError(
                f"need mlp_ratio > 0, 0 <= dropout < 1, rope_base > 0; got {self.mlp_ratio}, "
                f"{self.dropout}, {self.rope_base}"
            )
        if self.d_model % self.n_head or (self.d_model // self.n_head) % 2:
            raise InputError(
                f"d_model={self.d_model} must split into {self.n_head} heads of even size"
            )
        if self.kv_heads < 1 or self.n_head % self.kv_heads:
            raise InputError(
                f"n_head={self.n_head} is not a multiple of n_kv_head={self.n_kv_head}"
            )

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


def frames_per_token(acoustic_rate: float, semantic_rate: float) -> int:
    """Acoustic frames per semantic token (2 for 50 Hz codes and 25 Hz semantic tokens); the
    acoustic rate must be a whole multiple of the semantic one."""
    ratio = acoustic_rate / semantic_rate
    if ratio < 1 or abs(ratio - round(ratio)) > 1e-6:
        raise InputError(
            f"acoustic rate {acoustic_rate} Hz is not a whole multiple of the "
            f"semantic rate {semantic_rate} Hz"
        )
    return round(ratio)


@dataclass
class StageConfig:
    """One stage of AudioLM: what a sequence holds, how long it is, how it is sampled.

    Every sequence spans `window_seconds` of audio. When generation runs past a window, the
    window slides so that the last `prompt_seconds` already generated become the next window's
    prompt (fine stage: windows of `window - prompt` new seconds, never overlapping, each
    conditioned on the previous `prompt` seconds). Token spaces (None: not set) are read from
    the shards' meta.json when training starts. Sampling: `top_k` and `top_p` None: off.
    Placeholders: see docs/training.md; old configs' 0 (and top_p 1.0) read as None.
    """

    stage: Stage = "semantic"
    window_seconds: float = 10.0
    prompt_seconds: float = 5.0
    dedup: bool = False  # semantic stage: drop consecutive repeats (the coarse stage needs them)
    temperature: float = 0.6
    top_k: int | None = None
    top_p: float | None = None
    semantic_vocab: int | None = None
    semantic_rate: float = 25.0
    acoustic_vocab: int | None = None
    acoustic_rate: float = 50.0
    n_coarse: int | None = None  # Q': acoustic levels modelled by the coarse stage
    n_levels: int | None = None  # Q: all acoustic levels (the fine stage models Q' .. Q-1)

    def __post_init__(self) -> None:
        unset_old_placeholders(
            self, 0, "semantic_vocab", "acoustic_vocab", "n_coarse", "n_levels", "top_k"
        )
        unset_old_placeholders(self, 1.0, "top_p")
        require(self, lambda v: v is None or v >= 1, ">= 1 (or null: from the token shards)",
                "semantic_vocab", "acoustic_vocab", "n_coarse", "n_levels")
        require(self, lambda v: v is None or v >= 1, ">= 1 (or null: off)", "top_k")
        require(self, lambda v: v is None or 0 < v < 1, "in (0, 1) (or null: off)", "top_p")
        if self.stage not in STAGES:
            raise InputError(f"unknown stage {self.stage!r}; known: {list(STAGES)}")
        if not 0 <= self.prompt_seconds < self.window_seconds:
            raise InputError(
                f"prompt_seconds={self.prompt_seconds} must be in [0, window_seconds="
                f"{self.window_seconds})"
            )

    @property
    def ratio(self) -> int:
        """Acoustic frames per semantic token (2 for 50 Hz codes and 25 Hz semantic tokens)."""
        return frames_per_token(self.acoustic_rate, self.semantic_rate)


MODEL_PRESETS: dict[str, LMConfig] = {
    # no dropout on the attention weights: 1.7x faster CPU steps (the fused attention kernel),
    # the same fine-LM losses to step 500 (docs/training.md, "CPU training speed")
    "tiny": LMConfig(
        n_layer=4, n_head=3, n_kv_head=1, d_model=192, dropout=0.1, attention_dropout=0.0
    ),
    "audiolm": LMConfig(n_layer=12, n_head=16, d_model=1024, dropout=0.1),
}

# (window_seconds, prompt_seconds, temperature) per stage; temperatures are the paper's.
_WINDOWS: dict[str, dict[str, tuple[float, float, float]]] = {
    "tiny": {"semantic": (10.0, 5.0, 0.6), "coarse": (4.0, 2.0, 0.8), "fine": (2.0, 1.0, 0.6)},
    "audiolm": {
        "semantic": (30.0, 15.0, 0.6),
        "coarse": (10.0, 5.0, 0.8),
        "fine": (6.0, 3.0, 0.6),
    },
}


def model_preset(name: str, **overrides) -> LMConfig:
    """A copy of a named transformer preset with fields overridden."""
    if name not in MODEL_PRESETS:
        raise InputError(f"unknown LM preset {name!r}; known: {sorted(MODEL_PRESETS)}")
    return replace(copy.deepcopy(MODEL_PRESETS[name]), **overrides)


def stage_preset(name: str, stage: str, **overrides) -> StageConfig:
    """The windows and sampling temperature of `stage` in preset `name`."""
    if name not in _WINDOWS:
        raise InputError(f"unknown LM preset {name!r}; known: {sorted(_WINDOWS)}")
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}; known: {list(STAGES)}")
    window, prompt, temperature = _WINDOWS[name][stage]
    config = StageConfig(
        stage=stage, window_seconds=window, prompt_seconds=prompt, temperature=temperature
    )
    return replace(config, **overrides)
