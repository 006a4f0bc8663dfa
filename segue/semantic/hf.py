"""Pretrained speech encoders from Hugging Face `transformers` as semantic feature extractors.

`HFExtractor.from_pretrained("facebook/w2v-bert-2.0", layer=7)` (hub id or local folder) takes the
hidden states after encoder layer `layer` of a HuBERT, wav2vec 2.0 or w2v-BERT 2.0
(`Wav2Vec2BertModel`) model; with a k-means codebook it is a `SemanticTokenizer` like ours
(`segue semantic fit-kmeans MANIFEST --model hf:facebook/w2v-bert-2.0 --layer 7 ...`).

  * Layer L is the output of encoder layer L (1-based; 0: the input of the first layer), taken by
    a forward hook; the layers above L are dropped, so deep models cost only what L needs.
    (For the "stable layer norm" variants the last layer's output is taken before the encoder's
    final LayerNorm.)
  * The models run at 50 Hz; `pool=2` (default) averages adjacent frame pairs to 25 Hz, AudioLM's
    rate (`pool=1` keeps 50 Hz). A trailing odd frame is kept on its own.
  * Input preprocessing is the model's own feature extractor when its folder has one
    (`preprocessor_config.json`: normalisation for wav2vec 2.0, 80-bin fbank stacks for
    w2v-BERT); otherwise raw audio for HuBERT/wav2vec 2.0 and default fbanks for w2v-BERT.
  * Utterances of a batch run one at a time (exact, no padding effects).

`save` writes the truncated model and its feature extractor to `hf/`, so a tokenizer folder does
not depend on the hub cache. Needs `pip install segue[hf]`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segue.errors import InputError
from segue.semantic.extractors import FeatureExtractor, per_utterance

SUPPORTED = ("hubert", "wav2vec2", "wav2vec2-bert")
HF_DIR = "hf"


def _import_transformers():
    try:
        import transformers
    except ImportError as error:
        raise ImportError("pretrained speech encoders need `pip install segue[hf]`") from error
    return transformers


def pool_frames(features: torch.Tensor, pool: int) -> torch.Tensor:
    """Average consecutive groups of `pool` frames: [n, D] -> [ceil(n / pool), D]."""
    if pool == 1:
        return features
    n = features.shape[0]
    groups = math.ceil(n / pool)
    padded = F.pad(features, (0, 0, 0, groups * pool - n)).view(groups, pool, -1)
    counts = torch.full((groups, 1), float(pool), device=features.device, dtype=features.dtype)
    counts[-1] = n - (groups - 1) * pool
    return padded.sum(dim=1) / counts


class HFExtractor(FeatureExtractor):
    """Hidden states of layer `layer` of a transformers speech encoder (see module docstring)."""

    kind = "hf"

    def __init__(
        self,
        model: nn.Module,
        processor: Any | None,
        layer: int,
        pool: int = 2,
        source: str = "",
    ):
        super().__init__()
        config = model.config
        if config.model_type not in SUPPORTED:
            raise InputError(
                f"unsupported model type {config.model_type!r}; supported: {list(SUPPORTED)}"
            )
        layers = model.encoder.layers
        if not 0 <= layer <= len(layers):
            raise InputError(f"layer must be in [0, {len(layers)}], got {layer}")
        if pool < 1:
            raise InputError(f"pool must be >= 1, got {pool}")
        keep = max(layer, 1)
        model.encoder.layers = nn.ModuleList(list(layers)[:keep])
        config.num_hidden_layers = keep
        self.model = model.eval()
        self.processor = processor
        self.layer, self.pool, self.source = layer, pool, source
        self.model_type = config.model_type
        if self.model_type == "wav2vec2-bert":
            self.sample_rate = int(processor.sampling_rate)
            native = self.sample_rate / (160 * int(processor.stride))  # 10 ms fbank, stacked
        else:
            self.sample_rate = int(getattr(processor, "sampling_rate", 16000))
            native = self.sample_rate / math.prod(config.conv_stride)
        self.native_rate = native
        self.frame_rate = native / pool
        self.dim = int(config.hidden_size)
        self._captured: list[torch.Tensor] = []
        if layer == 0:
            self.model.encoder.layers[0].register_forward_pre_hook(self._capture_input)
        else:
            self.model.encoder.layers[layer - 1].register_forward_hook(self._capture_output)

    def _capture_input(self, module: nn.Module, args: tuple) -> None:
        self._captured.append(args[0])

    def _capture_output(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._captured.append(output[0] if isinstance(output, tuple) else output)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike, layer: int, pool: int = 2, **kwargs
    ) -> HFExtractor:
        """Load a model (and its feature extractor, when it has one) by hub id or folder."""
        transformers = _import_transformers()
        name = str(name_or_path)
        model = transformers.AutoModel.from_pretrained(name, **kwargs)
        try:
            processor = transformers.AutoFeatureExtractor.from_pretrained(name, **kwargs)
        except (OSError, ValueError):
            processor = None
        if processor is None and model.config.model_type == "wav2vec2-bert":
            processor = transformers.SeamlessM4TFeatureExtractor()
        return cls(model, processor, layer, pool, source=name)

    def _inputs(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """One utterance [T] -> the model's keyword inputs, on the model's device."""
        device = next(self.model.parameters()).device
        if self.processor is None:
            return {"input_values": audio[None].to(device)}
        encoded = self.processor(
            audio.float().cpu().numpy(), sampling_rate=self.sample_rate, return_tensors="pt"
        )
        key = "input_features" if self.model_type == "wav2vec2-bert" else "input_values"
        return {key: encoded[key].to(device)}

    def forward(
        self, audio: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        def encode(utterance: torch.Tensor) -> torch.Tensor:
            self._captured.clear()
            self.model(**self._inputs(utterance))
            frames = pool_frames(self._captured[-1][0].float(), self.pool)
            self._captured.clear()
            return frames

        return per_utterance(audio, lengths, encode)

    def spec(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "pool": self.pool,
            "model_type": self.model_type,
            "source": self.source,
            "native_rate": self.native_rate,
        }

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(directory / HF_DIR)
        if self.processor is not None:
            self.processor.save_pretrained(directory / HF_DIR)

    @classmethod
    def load(cls, directory: Path, spec: dict[str, Any]) -> HFExtractor:
        extractor = cls.from_pretrained(
            directory / HF_DIR, int(spec["layer"]), int(spec["pool"]), local_files_only=True
        )
        extractor.source = spec.get("source", extractor.source)
        return extractor
