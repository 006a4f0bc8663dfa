"""Feature extractors that k-means turns into tokens: MFCCs, a segue semantic model's layer, or
(in `segue.semantic.hf`) a layer of a Hugging Face speech encoder.

Every extractor maps audio [B, T] at `sample_rate` (zero-padded past `lengths` [B]) to
(features [B, F, dim], frame_lengths [B]) at `frame_rate`, and can describe itself as JSON
(`spec`) plus files in a folder (`save`), so a tokenizer folder is self-contained.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from segue.errors import InputError
from segue.features import deltas, mfcc
from segue.semantic.masking import frame_mask


def _lengths(audio: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    if lengths is None:
        return torch.full((audio.shape[0],), audio.shape[-1], device=audio.device)
    return torch.as_tensor(lengths, device=audio.device)


def per_utterance(
    audio: torch.Tensor,
    lengths: torch.Tensor | None,
    encode: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `encode` (one utterance [T] -> frames [F, D]) on each row of `audio` [B, T] cut to its
    length, and zero-pad the results into (features [B, F_max, D], frame_lengths [B]): exact for
    models that cannot mask padding (pretrained encoders)."""
    if audio.dim() == 1:
        audio = audio[None]
    lengths = [audio.shape[-1]] * audio.shape[0] if lengths is None else lengths.tolist()
    outputs = [encode(row[: int(length)]) for row, length in zip(audio, lengths)]
    frame_lengths = torch.tensor([o.shape[0] for o in outputs], device=audio.device)
    frames = int(frame_lengths.max())
    features = torch.stack([F.pad(o, (0, 0, 0, frames - o.shape[0])) for o in outputs])
    return features.to(audio.device), frame_lengths


class FeatureExtractor(nn.Module):
    """Base class: `forward(audio [B, T], lengths [B] | None) -> (features, frame_lengths)`."""

    kind: ClassVar[str]
    sample_rate: int
    frame_rate: float
    dim: int

    def spec(self) -> dict[str, Any]:
        """JSON-ready description, stored in tokenizer.json (`kind` is added by the caller)."""
        return {}

    def save(self, directory: Path) -> None:
        """Write the files `load` needs besides `spec` (weights) under `directory`."""

    @classmethod
    def load(cls, directory: Path, spec: dict[str, Any]) -> FeatureExtractor:
        raise NotImplementedError


class MFCCExtractor(FeatureExtractor):
    """13 MFCCs + deltas + delta-deltas (39-d) at 100 Hz, averaged over `pool` frames.

    pool=4 gives 25 Hz frames aligned with the semantic model's (frame f covers samples
    [f * 640, (f + 1) * 640)): HuBERT's iteration-1 targets, and the MFCC k-means baseline.
    cmn=True subtracts each utterance's mean of the static coefficients (over its valid frames):
    cepstral mean normalisation, which removes the long-term spectral envelope (part of the voice).
    """

    kind = "mfcc"

    def __init__(
        self,
        sample_rate: int = 16000,
        hop: int = 160,
        pool: int = 4,
        n_mfcc: int = 13,
        cmn: bool = False,
    ):
        super().__init__()
        self.sample_rate, self.hop, self.pool, self.n_mfcc = sample_rate, hop, pool, n_mfcc
        self.cmn = cmn
        self.frame_rate = sample_rate / (hop * pool)
        self.dim = 3 * n_mfcc

    def forward(
        self, audio: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if audio.dim() == 1:
            audio = audio[None]
        step = self.hop * self.pool
        frames = -(-audio.shape[-1] // step)
        padded = F.pad(audio.float(), (0, frames * step - audio.shape[-1]))
        coefficients = mfcc(padded, self.sample_rate, n_mfcc=self.n_mfcc, hop=self.hop)
        coefficients = coefficients[..., : frames * self.pool]  # [B, 13, 4F]
        lengths = _lengths(audio, lengths)
        if self.cmn:
            valid = frame_mask(
                torch.div(lengths + self.hop - 1, self.hop, rounding_mode="floor"),
                coefficients.shape[-1],
            )[:, None].to(coefficients.dtype)
            mean = (coefficients * valid).sum(-1, keepdim=True) / valid.sum(-1, keepdim=True)
            coefficients = coefficients - mean
        first = deltas(coefficients)
        stacked = torch.cat([coefficients, first, deltas(first)], dim=1)  # [B, 39, 4F]
        pooled = stacked.view(*stacked.shape[:2], frames, self.pool).mean(dim=-1)
        frame_lengths = torch.div(_lengths(audio, lengths) + step - 1, step, rounding_mode="floor")
        return pooled.transpose(1, 2), frame_lengths

    def spec(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "hop": self.hop,
            "pool": self.pool,
            "n_mfcc": self.n_mfcc,
            "cmn": self.cmn,
        }

    @classmethod
    def load(cls, directory: Path, spec: dict[str, Any]) -> MFCCExtractor:
        return cls(**spec)


class ModelExtractor(FeatureExtractor):
    """The hidden states after block `layer` of a `SemanticModel` (25 Hz)."""

    kind = "segue"

    def __init__(self, model: nn.Module, layer: int):
        super().__init__()
        if not 0 <= layer <= model.config.n_layers:
            raise InputError(f"layer must be in [0, {model.config.n_layers}], got {layer}")
        self.model = model.eval()
        self.layer = layer
        self.sample_rate = model.sample_rate
        self.frame_rate = model.frame_rate
        self.dim = model.config.dim

    def forward(
        self, audio: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.features(audio, lengths, layer=self.layer)

    def spec(self) -> dict[str, Any]:
        return {"layer": self.layer}

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(directory / "model")

    @classmethod
    def load(cls, directory: Path, spec: dict[str, Any]) -> ModelExtractor:
        from segue.semantic.model import SemanticModel

        return cls(SemanticModel.from_pretrained(directory / "model"), int(spec["layer"]))


#: kind -> "module:Class", imported on demand (the HF adapter needs `transformers`).
EXTRACTORS = {
    "mfcc": "segue.semantic.extractors:MFCCExtractor",
    "segue": "segue.semantic.extractors:ModelExtractor",
    "hf": "segue.semantic.hf:HFExtractor",
    "whisper": "segue.semantic.whisper:WhisperExtractor",
}


def load_extractor(directory: Path, kind: str, spec: dict[str, Any]) -> FeatureExtractor:
    """Rebuild the extractor of a tokenizer folder from its kind and spec."""
    if kind not in EXTRACTORS:
        raise InputError(f"{directory}: unknown feature kind {kind!r}; known: {sorted(EXTRACTORS)}")
    module, name = EXTRACTORS[kind].split(":")
    return getattr(importlib.import_module(module), name).load(directory, spec)
