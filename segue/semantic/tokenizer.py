"""`SemanticTokenizer`: a feature extractor (MFCC, segue model layer, HF model layer) + a k-means
codebook = audio -> semantic tokens.

    tokenizer.tokenize(audio [T] or [B, T] float32 at `sample_rate`) -> LongTensor [B, F]

at `frame_rate` (25 Hz for segue models, MFCCs and pooled HF models) with `vocab_size` ids.

The optional **silence gate** (`SilenceGate`, `with_silence_gate`) gives every frame quieter than
the loudest frame by more than `db` decibels one token, the token of digital silence: a noise
floor is recording conditions, not content, yet a speech encoder turns it into a run of varying
tokens that makes the same word in two recordings look different (measured in
docs/semantic.md). The acoustic tokens still carry the noise.
A tokenizer folder holds everything needed to rebuild it:

    tokenizer.json       feature kind + spec, sample/frame rate, vocab size, how it was fitted,
                         the silence gate if any
    kmeans.safetensors   mean [D], std [D] (per-dimension normalisation), centroids [K, D]
    model/ or hf/        the feature model's weights (segue: config.json + model.safetensors)
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from segue.config import write_atomic
from segue.data.manifest import Manifest
from segue.data.shards import tokenize_manifest
from segue.errors import InputError
from segue.pretrained import read_safetensors
from segue.semantic.extractors import FeatureExtractor, load_extractor
from segue.semantic.kmeans import KMeansCodebook
from segue.semantic.masking import frame_mask

TOKENIZER_NAME = "tokenizer.json"
#: Long audio is tokenized this many seconds at a time, with this much context on each side.
WINDOW_SECONDS, CONTEXT_SECONDS = 30.0, 5.0
CODEBOOK_NAME = "kmeans.safetensors"
RUN_TOKENIZER_DIR = "tokenizer"  # where fit-kmeans puts a run's tokenizer by default


@dataclass(frozen=True)
class SilenceGate:
    """Frames more than `db` below the loudest frame (of the utterance, or of the 30 s window
    of long audio) get `token`."""

    db: float
    token: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.db) and self.db > 0):
            raise InputError(f"the silence gate's db must be > 0, got {self.db}")
        if self.token < 0:
            raise InputError(f"the silence token must be >= 0, got {self.token}")


def quiet_frames(
    audio: torch.Tensor, frame_lengths: torch.Tensor, hop: int, frames: int, db: float
) -> torch.Tensor:
    """bool [B, F]: valid frames (frame f = samples [hop f, hop (f + 1))) of audio [B, T] whose
    mean power is more than `db` below the row's loudest valid frame."""
    rows, samples = audio.shape
    audio = F.pad(audio, (0, max(0, frames * hop - samples)))[:, : frames * hop]
    level = 10 * torch.log10(audio.float().reshape(rows, frames, hop).pow(2).mean(-1) + 1e-12)
    valid = frame_mask(frame_lengths.to(audio.device), frames)
    peak = level.masked_fill(~valid, float("-inf")).amax(dim=1, keepdim=True)
    return valid & (level < peak - db)


class SemanticTokenizer(nn.Module):
    """Features -> per-dimension normalisation -> nearest centroid (see the module docstring)."""

    def __init__(
        self,
        extractor: FeatureExtractor,
        codebook: KMeansCodebook,
        info: dict[str, Any] | None = None,
        silence: SilenceGate | None = None,
    ):
        super().__init__()
        if extractor.dim != codebook.dim:
            raise InputError(
                f"codebook of {codebook.dim}-d centroids for {extractor.dim}-d features"
            )
        if silence is not None and silence.token >= codebook.k:
            raise InputError(f"silence token {silence.token} outside the {codebook.k} clusters")
        self.extractor = extractor
        self.codebook = codebook
        self.info = dict(info or {})
        self.silence = silence
        self.eval()

    def with_silence_gate(self, db: float | None) -> SemanticTokenizer:
        """This tokenizer with a silence gate of `db` decibels (None: without one); the silence
        token is the one 1 s of digital silence gets. Returns self."""
        self.silence = None
        if db is not None:
            zeros = torch.zeros(1, self.sample_rate, device=self.device)
            token = int(torch.mode(self.tokenize_with_lengths(zeros)[0][0]).values)
            self.silence = SilenceGate(float(db), token)
        return self

    @property
    def kind(self) -> str:
        return self.extractor.kind

    @property
    def sample_rate(self) -> int:
        return self.extractor.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.extractor.frame_rate

    @property
    def vocab_size(self) -> int:
        return self.codebook.k

    @property
    def device(self) -> torch.device:
        return self.codebook.centroids.device

    @torch.no_grad()
    def tokenize_with_lengths(
        self, audio: torch.Tensor | np.ndarray, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens [B, F] int64, valid frames [B]); tokens past a length are padding."""
        audio = torch.as_tensor(audio, dtype=torch.float32, device=self.device)
        if audio.dim() == 1:
            audio = audio[None]
        if audio.dim() != 2:
            raise InputError(f"expected audio [T] or [B, T], got {tuple(audio.shape)}")
        if audio.shape[-1] == 0:
            raise InputError("cannot tokenize empty audio")
        with torch.autocast(self.device.type, enabled=False):
            features, frame_lengths = self.extractor(audio, lengths)
            tokens = self.codebook(features)
        if self.silence is not None:
            if lengths is not None:  # what lies past a length is not part of the utterance
                lengths = torch.as_tensor(lengths, device=audio.device)
                audio = audio * frame_mask(lengths, audio.shape[-1])
            hop = round(self.sample_rate / self.frame_rate)
            quiet = quiet_frames(audio, frame_lengths, hop, tokens.shape[1], self.silence.db)
            tokens = tokens.masked_fill(quiet, self.silence.token)
        return tokens, frame_lengths

    def tokenize(
        self,
        audio: torch.Tensor | np.ndarray,
        lengths: torch.Tensor | None = None,
        *,
        window_seconds: float | None = WINDOW_SECONDS,
        context_seconds: float = CONTEXT_SECONDS,
    ) -> torch.Tensor:
        """Audio [T] / [B, T] at `sample_rate` -> tokens [B, F] int64 at `frame_rate`.

        Audio longer than `window_seconds` + twice `context_seconds` (and no `lengths`) is
        tokenized a window at a time, each seen with `context_seconds` on both sides, so memory
        stays bounded (attention over a whole 20-minute file would not fit). Local features
        (MFCCs) give the same tokens as one pass; a model that attends over its input sees
        `context_seconds` around each window instead of everything (None: one pass).
        """
        audio = torch.as_tensor(audio, dtype=torch.float32, device=self.device)
        if audio.dim() == 1:
            audio = audio[None]
        step = self.sample_rate / self.frame_rate  # samples per token
        if (
            window_seconds is None
            or lengths is not None
            or audio.dim() != 2
            or audio.shape[-1] <= (window_seconds + 2 * context_seconds) * self.sample_rate
        ):
            return self.tokenize_with_lengths(audio, lengths)[0]
        frames = math.ceil(audio.shape[-1] / step)
        size = max(1, round(window_seconds * self.frame_rate))
        context = round(context_seconds * self.frame_rate)
        pieces = []
        for start in range(0, frames, size):
            end = min(frames, start + size)
            left, right = max(0, start - context), min(frames, end + context)
            tokens = self.tokenize_with_lengths(
                audio[:, round(left * step) : round(right * step)]
            )[0]
            pieces.append(tokens[:, start - left : end - left])
        return torch.cat(pieces, dim=1)

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.tokenize(audio, lengths)

    def describe(self) -> dict[str, Any]:
        """What tokenizer.json holds."""
        return {
            "kind": self.kind,
            "features": self.extractor.spec(),
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "vocab_size": self.vocab_size,
            "dim": self.codebook.dim,
            "fit": self.info,
            "silence": None if self.silence is None else asdict(self.silence),
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the tokenizer folder (tokenizer.json last, so a complete file means complete)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.extractor.save(directory)
        state = {k: v.detach().contiguous().cpu() for k, v in self.codebook.state_dict().items()}
        tmp = directory / f".{CODEBOOK_NAME}.tmp"
        save_file(state, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, directory / CODEBOOK_NAME)
        write_atomic(
            directory / TOKENIZER_NAME, (json.dumps(self.describe(), indent=1) + "\n").encode()
        )
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> SemanticTokenizer:
        """Read a folder written by `save` (on CPU, eval mode)."""
        directory = Path(directory)
        for name in (TOKENIZER_NAME, CODEBOOK_NAME):
            if not (directory / name).is_file():
                raise FileNotFoundError(
                    f"{directory / name}: not found (is {directory} a semantic tokenizer folder?)"
                )
        try:
            description = json.loads((directory / TOKENIZER_NAME).read_text())
            state = read_safetensors(directory / CODEBOOK_NAME)
            codebook = KMeansCodebook(state["mean"], state["std"], state["centroids"])
        except (ValueError, KeyError) as error:
            raise InputError(f"{directory}: damaged tokenizer folder ({error})") from error
        extractor = load_extractor(directory, description["kind"], description["features"])
        silence = description.get("silence")
        gate = None if silence is None else SilenceGate(float(silence["db"]), int(silence["token"]))
        return cls(extractor, codebook, description.get("fit"), gate)

    def tokenize_manifest(
        self,
        manifest: Manifest,
        out: str | os.PathLike,
        *,
        source: str | os.PathLike,
        rank: int = 0,
        world_size: int = 1,
    ) -> dict[str, int]:
        """Token shards of every file of `manifest` in `out` (this rank's share; resumable,
        `segue.data.shards.tokenize_manifest`), their meta naming the tokenizer folder
        `source`. Returns {"done", "skipped", "failed"}."""

        def tokens(audio: np.ndarray) -> np.ndarray:
            return self.tokenize(torch.from_numpy(audio)).cpu().numpy()  # [1, frames]

        with torch.inference_mode():
            return tokenize_manifest(
                manifest,
                out,
                tokens,
                kind="semantic",
                levels=1,
                vocab_size=self.vocab_size,
                frame_rate=self.frame_rate,
                sample_rate=self.sample_rate,
                rank=rank,
                world_size=world_size,
                extra_meta={"tokenizer": str(Path(source).resolve()), "tokenizer_kind": self.kind},
                desc="semantic tokens",
            )


def find_tokenizer(location: str | os.PathLike) -> Path:
    """A tokenizer folder, or a training run folder holding one in `tokenizer/`."""
    path = Path(location)
    if (path / TOKENIZER_NAME).is_file():
        return path
    if (path / RUN_TOKENIZER_DIR / TOKENIZER_NAME).is_file():
        return path / RUN_TOKENIZER_DIR
    if (path / "checkpoints").is_dir():
        raise FileNotFoundError(
            f"{path}: a training run without a tokenizer; fit one first with "
            f"`segue semantic fit-kmeans MANIFEST --model {path}`"
        )
    raise FileNotFoundError(
        f"{path}: not a semantic tokenizer folder ({TOKENIZER_NAME}) nor a run folder holding "
        f"{RUN_TOKENIZER_DIR}/{TOKENIZER_NAME}"
    )


def load_tokenizer(location: str | os.PathLike) -> SemanticTokenizer:
    """Load a tokenizer from its folder or from a run folder (`RUN/tokenizer`)."""
    return SemanticTokenizer.load(find_tokenizer(location))
