"""Pairs of utterances that say the same thing in two voices, for content-invariance training.

The TTS corpus speaks each sentence (`sentence_id`) in several voices (`group`); the real-voice
corpus does so for its letters and digits. `SentencePairs` yields such pairs, each utterance
read whole (so an alignment of the two covers all of both); `WithPairs` adds one pair to each
item of another dataset, so a training batch carries both and one loader feeds the step.
"""

from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
import torch
from torch.utils.data import Dataset

from segue import audio as audio_io
from segue.data.manifest import Manifest, ManifestEntry, read_manifest
from segue.errors import InputError


class SentencePairs(Dataset):
    """Item i: one sentence spoken by two different voices, as a dict

        pair_audio:  [2, max_samples] float32, each utterance zero-padded past its length
        pair_length: [2] int64, real samples of each

    Sentences are those of `split` that at least two voices speak with utterances no longer
    than `max_seconds`. Item i is sentence i mod n; its two voices are drawn from
    (seed, epoch, i), so a resumed run sees the same pairs.
    """

    def __init__(
        self,
        manifest: Manifest | str | os.PathLike,
        max_seconds: float,
        sample_rate: int = 16000,
        *,
        split: str | None = "train",
        seed: int = 0,
        normalize: audio_io.Normalization = None,
    ):
        if max_seconds <= 0:
            raise InputError(f"max_seconds must be > 0, got {max_seconds}")
        self.manifest = (
            manifest if isinstance(manifest, Manifest) else read_manifest(manifest, split=split)
        )
        self.sample_rate = sample_rate
        self.max_samples = round(max_seconds * sample_rate)
        self.seed, self.epoch, self.normalize = seed, 0, normalize
        voices: dict[str, dict[str, ManifestEntry]] = defaultdict(dict)
        for entry in sorted(self.manifest.entries, key=lambda e: e.path):
            sentence = entry.extra.get("sentence_id")
            if sentence is not None and entry.duration <= max_seconds:
                voices[str(sentence)].setdefault(entry.group, entry)
        self.sentences = [
            sorted(by_voice.values(), key=lambda e: e.group)
            for _, by_voice in sorted(voices.items())
            if len(by_voice) >= 2
        ]
        if not self.sentences:
            raise InputError(
                f"no sentence of {self.manifest.source or 'the manifest'} is spoken by two voices "
                f"(groups) in at most {max_seconds:g} s: pairs need rows with a shared "
                "`sentence_id`"
            )

    def __len__(self) -> int:
        return len(self.sentences)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def entries(self, index: int) -> tuple[ManifestEntry, ManifestEntry]:
        """The two utterances of item `index` this epoch."""
        utterances = self.sentences[index % len(self.sentences)]
        rng = np.random.default_rng((self.seed, self.epoch, index, 3))
        first, second = rng.choice(len(utterances), size=2, replace=False)
        return utterances[int(first)], utterances[int(second)]

    def __getitem__(self, index: int) -> dict:
        audio = torch.zeros(2, self.max_samples)
        lengths = torch.zeros(2, dtype=torch.int64)
        for row, entry in enumerate(self.entries(index)):
            samples = audio_io.load(
                self.manifest.resolve(entry), self.sample_rate, normalize=self.normalize
            )[: self.max_samples]
            if samples.shape[0] == 0:
                raise InputError(f"{entry.path}: no audio")
            audio[row, : samples.shape[0]] = torch.from_numpy(samples)
            lengths[row] = samples.shape[0]
        return {"pair_audio": audio, "pair_length": lengths}


class WithPairs(Dataset):
    """Item i of `base` (a dict) with item i of `pairs` added (its keys must not clash)."""

    def __init__(self, base: Dataset, pairs: SentencePairs):
        self.base, self.pairs = base, pairs

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        for dataset in (self.base, self.pairs):
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        return {**self.base[index], **self.pairs[index]}
