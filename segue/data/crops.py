"""A PyTorch Dataset of random fixed-length audio crops read straight from a manifest.

Only the crop is read from disk (seek + read), so a corpus of long files costs no more than one of
short ones. Each example also says whether the crop starts at the beginning and reaches the end of
its file: the language models put BOS/EOS only where the audio really starts or ends.

A mixed manifest (`segue.data.mix`: rows tagged with a `part`, weights in `NAME.parts.json`) is
sampled by part weight: item i draws its part by weight, then a file of that part.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from segue import audio as audio_io
from segue.data.augment import AugmentConfig, augment, change_speed, speed_factor
from segue.data.manifest import Manifest, check_files, read_manifest
from segue.data.mix import entry_probabilities, read_part_weights
from segue.errors import InputError


class CropDataset(Dataset):
    """Item i: a random crop of file i, as a dict

        audio:       [crop_samples] float32, zero-padded past `length`
        length:      int, number of real samples (< crop_samples only for short files)
        is_start:    bool, the crop starts at sample 0 of the file
        reaches_end: bool, the crop contains the file's last sample
        index:       int, the manifest row read
        start:       float, where the crop starts in the file (seconds)
        speed:       float, source seconds per crop second (1.0 unless augmented)

    Crops are random but reproducible: the start of item i in epoch e depends only on
    (seed, e, i), so a resumed run sees the same data. `end_probability` makes a share of crops
    end exactly at the end of their file (otherwise rare for long files), for EOS training.
    Files shorter than `min_seconds` are dropped at construction.

    `part_weights` ({part: weight}, read from `NAME.parts.json` beside a manifest path when not
    given) makes item i a crop of a file drawn at random (reproducibly, from (seed, epoch, i)):
    its part with probability proportional to the part's weight among the parts present, and
    one of that part's files uniformly. The dataset keeps one item per file per epoch.

    `augment` (`segue.data.augment`, off by default) perturbs speed, EQ and room of each crop,
    reproducibly from (seed, epoch, i); `length` then counts the augmented samples.
    `verify_files` opens every file's header first (`check_files`): a bad row is an error
    naming its manifest line, or, with `skip_missing`, dropped with a warning.
    """

    def __init__(
        self,
        manifest: Manifest | str | os.PathLike,
        crop_seconds: float,
        sample_rate: int = 16000,
        *,
        split: str | None = None,
        seed: int = 0,
        end_probability: float = 0.0,
        min_seconds: float = 0.0,
        normalize: audio_io.Normalization = None,
        part_weights: dict[str, float] | None = None,
        augment: AugmentConfig | None = None,
        verify_files: bool = False,
        skip_missing: bool = False,
    ):
        if not isinstance(manifest, Manifest):
            if part_weights is None:
                part_weights = read_part_weights(manifest)
            manifest = read_manifest(manifest, split=split)
        elif split is not None:
            manifest = manifest.subset(split)
        if crop_seconds <= 0:
            raise InputError(f"crop_seconds must be positive, got {crop_seconds}")
        if not 0.0 <= end_probability <= 1.0:
            raise InputError(f"end_probability must be in [0, 1], got {end_probability}")
        self.manifest = Manifest(
            manifest.root,
            [e for e in manifest.entries if e.duration >= min_seconds],
            manifest.source,
        )
        if verify_files:  # before training, not at the first batch that reaches a bad file
            self.manifest, dropped = check_files(self.manifest, skip_missing=skip_missing)
            for problem in dropped:
                print(f"warning: skipped {problem}", flush=True)
        if not self.manifest.entries:
            raise InputError(
                f"no files of at least {min_seconds}s in {manifest.root}"
                + (f" (split {split!r})" if split else "")
            )
        self.crop_seconds = crop_seconds
        self.sample_rate = sample_rate
        self.crop_samples = round(crop_seconds * sample_rate)
        self.seed = seed
        self.epoch = 0
        self.end_probability = end_probability
        self.normalize = normalize
        self.augment = augment if augment is not None and augment.enabled else None
        # A mixture: cumulative per-row probabilities (parts by weight, rows equal within one).
        probabilities = entry_probabilities(self.manifest, part_weights)
        self.cumulative = None if probabilities is None else np.cumsum(probabilities)

    def __len__(self) -> int:
        return len(self.manifest.entries)

    def set_epoch(self, epoch: int) -> None:
        """Change the crops drawn (call once per epoch, before iterating)."""
        self.epoch = epoch

    def file_index(self, index: int) -> int:
        """The manifest row item `index` reads this epoch (itself unless parts are weighted)."""
        if self.cumulative is None:
            return index
        draw = np.random.default_rng((self.seed, self.epoch, index, 1)).random()
        return min(int(np.searchsorted(self.cumulative, draw * self.cumulative[-1], "right")),
                   len(self.cumulative) - 1)

    def crop_start(self, index: int) -> float:
        """The crop's start in seconds for this epoch (deterministic)."""
        entry = self.manifest.entries[self.file_index(index)]
        slack = entry.duration - self.crop_seconds
        if slack <= 0:
            return 0.0
        rng = np.random.default_rng((self.seed, self.epoch, index))
        if rng.random() < self.end_probability:
            return slack
        return float(rng.uniform(0.0, slack))

    def __getitem__(self, index: int) -> dict:
        row = self.file_index(index)
        entry = self.manifest.entries[row]
        path = self.manifest.resolve(entry)
        start = self.crop_start(index)
        native = entry.sample_rate or audio_io.info(path).sample_rate
        rng = None
        factor = 1.0
        if self.augment is not None:
            rng = np.random.default_rng((self.seed, self.epoch, index, 2))
            factor = speed_factor(self.augment, rng)
        span = self.crop_seconds * factor  # source seconds that become the crop
        # Read a few native frames more than needed, so rounding never leaves us one sample short.
        audio = audio_io.load(
            path,
            self.sample_rate,
            offset=start,
            duration=span + 2.0 / native,
            normalize=self.normalize,
        )
        if rng is not None:
            audio = change_speed(audio[: round(span * self.sample_rate)], factor, self.sample_rate)
            audio = augment(audio, self.augment, self.sample_rate, rng)
        audio = audio[: self.crop_samples]
        length = audio.shape[0]
        reaches_end = start + span >= entry.duration - 1.0 / native
        padded = np.zeros(self.crop_samples, dtype=np.float32)
        padded[:length] = audio
        return {
            "audio": torch.from_numpy(padded),
            "length": length,
            "is_start": start == 0.0,
            "reaches_end": bool(reaches_end),
            "index": row,
            "start": float(start),
            "speed": float(factor),
        }


class FixedCrops(Dataset):
    """The first `n` items of a CropDataset, always with its epoch-0 crops: a validation set
    that stays the same from one evaluation to the next, so its metrics are comparable."""

    def __init__(self, crops: CropDataset, n: int):
        self.crops, self.n = crops, min(n, len(crops))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        return self.crops[index]


def valid_crops(
    manifest: str | os.PathLike,
    crop_seconds: float,
    sample_rate: int,
    n: int,
    *,
    skip_missing: bool = False,
) -> FixedCrops | None:
    """The fixed validation crops of a training manifest: the first `n` items of its valid split
    (parts drawn by weight in a mixture), every file checked first like the training ones.
    None when the manifest has no valid split; its other errors are raised, not hidden."""
    rows = read_manifest(manifest)
    if not any(entry.split == "valid" for entry in rows.entries):
        return None
    crops = CropDataset(
        rows.subset("valid"),
        crop_seconds,
        sample_rate,
        seed=1234,
        part_weights=read_part_weights(manifest),
        verify_files=True,
        skip_missing=skip_missing,
    )
    return FixedCrops(crops, n)
