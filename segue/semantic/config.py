"""Semantic model configuration: one dataclass, two presets (`tiny` for CPU, `base` for GPUs)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

from segue.config import require
from segue.errors import InputError


@dataclass
class SemanticConfig:
    """A HuBERT-style masked-prediction encoder that runs natively at 25 Hz.

    Front end: log-mel (n_mels bins, hop `mel_hop` = 100 Hz at 16 kHz), two stride-2 convs
    (x4 subsampling -> 25 Hz, one frame per `hop_length` = 640 samples), a transformer encoder
    with a convolutional relative position embedding, and a cosine-similarity classifier over
    `n_classes` target clusters (HuBERT's head). Masking: each valid frame starts a span of
    `mask_span` frames with probability `mask_prob` (HuBERT's p=0.08, span 10 at 50 Hz become
    p=0.16, span 5 at 25 Hz: the same 200 ms spans, the same number of starts per second).
    """

    sample_rate: int = 16000
    n_mels: int = 80
    n_fft: int = 512
    mel_hop: int = 160
    mel_cmn: bool = True  # subtract each utterance's mean log-mel (removes part of the voice)
    conv_channels: int = 256
    dim: int = 256
    n_layers: int = 6
    n_heads: int = 4
    ffn_mult: int = 4
    dropout: float = 0.1
    attention_dropout: float = 0.1
    pos_conv_kernel: int = 33  # odd: frames of relative-position context (1.3 s at 25 Hz)
    pos_conv_groups: int = 16
    mask_prob: float = 0.16
    mask_span: int = 5
    min_masks: int = 1  # spans per example at least (when it is long enough)
    n_classes: int = 100  # size of the target k-means; follows targets.k in a run config
    head_dim: int = 256
    logit_temperature: float = 0.1
    unmasked_weight: float = 0.0  # weight of the loss on unmasked frames (HuBERT: 0)
    tokenizer_layer: int = 4  # default layer for k-means tokens (fit-kmeans --layer)

    def __post_init__(self) -> None:
        require(self, lambda v: v >= 1, ">= 1", "sample_rate", "n_mels", "n_fft", "mel_hop",
                "conv_channels", "dim", "n_layers", "n_heads", "ffn_mult", "pos_conv_kernel",
                "pos_conv_groups", "mask_span", "head_dim")
        require(self, lambda v: 0 <= v < 1, "in [0, 1)", "dropout", "attention_dropout")
        require(self, lambda v: 0 <= v <= 1, "in [0, 1]", "mask_prob")
        require(self, lambda v: v >= 0, ">= 0", "min_masks", "unmasked_weight")
        require(self, lambda v: v >= 2, ">= 2", "n_classes")
        require(self, lambda v: v > 0, "> 0", "logit_temperature")
        if self.n_fft < self.mel_hop:
            raise InputError(f"n_fft={self.n_fft} must be >= mel_hop={self.mel_hop}")
        if self.dim % self.n_heads:
            raise InputError(f"dim={self.dim} is not a multiple of n_heads={self.n_heads}")
        if self.pos_conv_kernel % 2 == 0:
            raise InputError(f"pos_conv_kernel must be odd, got {self.pos_conv_kernel}")
        if self.dim % self.pos_conv_groups:
            raise InputError(f"dim={self.dim} is not a multiple of pos_conv_groups")
        if not 0 <= self.tokenizer_layer <= self.n_layers:
            raise InputError(f"tokenizer_layer must be in [0, {self.n_layers}]")

    @property
    def hop_length(self) -> int:
        """Samples per output frame (the mel hop times the x4 conv subsampling)."""
        return self.mel_hop * 4

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length


PRESETS: dict[str, SemanticConfig] = {
    # Trains on a 2-core CPU: 6 layers, d=256, 4 heads (~5 M parameters).
    "tiny": SemanticConfig(),
    # HuBERT Base's encoder (12 layers, d=768, 12 heads, 89 M parameters) at 25 Hz, for GPUs.
    "base": SemanticConfig(
        conv_channels=512,
        dim=768,
        n_layers=12,
        n_heads=12,
        pos_conv_kernel=65,
        pos_conv_groups=16,
        head_dim=256,
        dropout=0.1,
        attention_dropout=0.1,
        tokenizer_layer=6,  # HuBERT Base's unit layer
    ),
}


def preset(name: str, **overrides) -> SemanticConfig:
    """A copy of a named preset, with top-level fields overridden."""
    if name not in PRESETS:
        raise InputError(f"unknown semantic preset {name!r}; known: {sorted(PRESETS)}")
    return replace(copy.deepcopy(PRESETS[name]), **overrides)
