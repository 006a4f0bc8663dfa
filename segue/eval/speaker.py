"""Speaker similarity with a pretrained speaker encoder (Resemblyzer's GE2E d-vectors).

    encoder = SpeakerEncoder()
    a, b = encoder.embed(x), encoder.embed(y)          # [T] float32 at 16 kHz -> [256] unit
    encoder.similarity(x, y)                            # cosine, in [-1, 1]
    ref = reference_pairs(manifest, "test", n_pairs=32)  # real same / different voice cosines

`reference_pairs` puts a model's numbers in context: a continuation that keeps its prompt's voice
should score like two real files of one voice, not like two different voices.
"""

from __future__ import annotations

import itertools
import os
import random
import warnings
from collections import defaultdict

import numpy as np

from segue.data.manifest import Manifest, read_manifest
from segue.errors import InputError

#: The rate Resemblyzer's encoder works at.
SAMPLE_RATE = 16000
#: Shorter than this (0.1 s) after voice-activity trimming: embed the untrimmed audio instead.
MIN_TRIMMED = 1600


def _require(module: str, package: str, install: str | None = None):
    """Import an optional evaluation dependency, or say which pip package provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        how = install or f"pip install {package}, or pip install 'segue[eval]'"
        raise ImportError(
            f"this evaluation needs the `{package}` package ({how}): {error}"
        ) from error


class SpeakerEncoder:
    """Resemblyzer's VoiceEncoder, loaded on first use (weights ship inside its wheel)."""

    label = "speaker similarity (Resemblyzer cosine)"

    def __init__(self, device: str = "cpu"):
        self.device = device
        self._encoder = None
        self._preprocess = None

    def _load(self):
        if self._encoder is None:
            with warnings.catch_warnings():  # scipy.ndimage.morphology, librosa, torch.load
                warnings.simplefilter("ignore")
                _require("webrtcvad", "webrtcvad-wheels")
                resemblyzer = _require(
                    "resemblyzer",
                    "resemblyzer",
                    "pip install 'segue[eval]' && pip install --no-deps resemblyzer",
                )
                self._encoder = resemblyzer.VoiceEncoder(self.device, verbose=False)
            self._preprocess = resemblyzer.preprocess_wav
        return self._encoder

    def embed(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Audio [T] (or [1, T]) -> unit-norm d-vector [256] (zeros for silent audio).

        Resemblyzer's preprocessing normalises the volume and trims long silences; when that
        leaves under 0.1 s (no speech found), the untrimmed audio is embedded instead.
        """
        encoder = self._load()
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        if sample_rate != SAMPLE_RATE:
            from segue.audio import resample

            x = resample(x, sample_rate, SAMPLE_RATE)
        if x.size == 0 or not np.isfinite(x).all():
            raise InputError(f"cannot embed audio of {x.size} samples with NaN/inf or none")
        if float(np.abs(x).max()) < 1e-6:
            return np.zeros(256, dtype=np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trimmed = self._preprocess(np.clip(x, -1.0, 1.0))
        if trimmed.size < MIN_TRIMMED:
            trimmed = x
        embedding = np.asarray(encoder.embed_utterance(trimmed.astype(np.float32)), np.float32)
        norm = float(np.linalg.norm(embedding))
        return embedding / norm if norm > 0 else embedding

    def similarity(self, a: np.ndarray, b: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
        """Cosine similarity of the voices of two signals [T] and [T'] (lengths may differ)."""
        return cosine(self.embed(a, sample_rate), self.embed(b, sample_rate))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors [D]; 0.0 when either is zero."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norms) if norms > 0 else 0.0


def reference_pairs(
    manifest: Manifest | str | os.PathLike,
    split: str | None = "test",
    n_pairs: int = 32,
    seed: int = 0,
    *,
    encoder: SpeakerEncoder | None = None,
    seconds: float | tuple[float | None, float | None] | None = None,
) -> dict[str, list[float]]:
    """Cosine similarities of real corpus audio: {"same": [...], "different": [...]}.

    same: up to n_pairs pairs of two different files of one group (voice); different: up to
    n_pairs pairs of files of two different groups. seconds: only the first seconds of each
    file, or (first file's, second file's) to mirror a prompt / continuation pair.
    Files that cannot be read are skipped.
    """
    manifest = _split(manifest, split)
    encoder = encoder or SpeakerEncoder()
    first, second = seconds if isinstance(seconds, tuple) else (seconds, seconds)
    by_group: dict[str, list] = defaultdict(list)
    for entry in manifest.entries:
        by_group[entry.group].append(entry)
    rng = random.Random(seed)
    cache: dict[tuple[str, float | None], np.ndarray | None] = {}

    def embedding(entry, duration: float | None) -> np.ndarray | None:
        key = (entry.path, duration)
        if key not in cache:
            cache[key] = _embed_file(manifest, entry, encoder, duration)
        return cache[key]

    def collect(candidates: list[tuple]) -> list[float]:
        out = []
        for a, b in candidates:
            if len(out) >= n_pairs:
                break
            ea, eb = embedding(a, first), embedding(b, second)
            if ea is not None and eb is not None:
                out.append(cosine(ea, eb))
        return out

    # Same voice: each group's pairs shuffled, interleaved round-robin so no voice dominates.
    groups = sorted(by_group)
    per_group = []
    for name in groups:
        files = sorted(by_group[name], key=lambda e: e.path)
        per_group.append([(files[i], files[j]) for i, j in _index_pairs(len(files), n_pairs, rng)])
    rng.shuffle(per_group)
    same = [p for row in itertools.zip_longest(*per_group) for p in row if p is not None]
    # Different voices: random files of distinct (ordered) group pairs.
    different = [
        (rng.choice(by_group[groups[i]]), rng.choice(by_group[groups[j]]))
        for i, j in _index_pairs(len(groups), 4 * n_pairs, rng)
    ]
    return {"same": collect(same), "different": collect(different)}


def _embed_file(manifest: Manifest, entry, encoder, seconds: float | None) -> np.ndarray | None:
    """The embedding of an entry's first `seconds` (all: None); None when the file cannot be
    read or is silent (peak <= 1e-4)."""
    from segue import audio as audio_io
    from segue.audio import AudioError

    try:
        audio = audio_io.load(manifest.resolve(entry), SAMPLE_RATE, duration=seconds)
    except AudioError:
        return None
    if audio.size == 0 or float(np.abs(audio).max()) <= 1e-4:
        return None
    return encoder.embed(audio, SAMPLE_RATE)


def _split(manifest: Manifest | str | os.PathLike, split: str | None) -> Manifest:
    """The manifest (read if a path), only `split`'s entries unless split is None."""
    if not isinstance(manifest, Manifest):
        return read_manifest(manifest, split=split)
    return manifest if split is None else manifest.subset(split)


def _index_pairs(n: int, k: int, rng: random.Random) -> list[tuple[int, int]]:
    """Up to k distinct ordered pairs (i, j), i != j, of range(n), in random order."""
    if n < 2:
        return []
    if n * (n - 1) <= 4 * k:
        pairs = list(itertools.permutations(range(n), 2))
        rng.shuffle(pairs)
        return pairs[:k]
    chosen: dict[tuple[int, int], None] = {}
    while len(chosen) < k:
        i, j = rng.sample(range(n), 2)
        chosen[(i, j)] = None
    return list(chosen)


def voice_centroids(
    manifest: Manifest | str | os.PathLike,
    split: str | None = "train",
    files_per_voice: int = 4,
    seed: int = 0,
    *,
    encoder: SpeakerEncoder | None = None,
    seconds: float | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Each voice's (group's) centroid: {group: unit [256]}, the normalised mean of the
    embeddings of up to `files_per_voice` of its files (seeded pick; the first `seconds` of
    each). Unreadable and silent files are skipped; a voice with none left has no centroid.

    A continuation nearer to some training voice's centroid than to its own prompt has drifted
    to a voice the model learned, the failure a new user hears first."""
    from tqdm.auto import tqdm

    if files_per_voice < 1:
        raise InputError(f"files_per_voice must be >= 1, got {files_per_voice}")
    manifest = _split(manifest, split)
    encoder = encoder or SpeakerEncoder()
    rng = random.Random(seed)
    by_group: dict[str, list] = defaultdict(list)
    for entry in sorted(manifest.entries, key=lambda e: e.path):
        by_group[entry.group].append(entry)
    centroids = {}
    for group in tqdm(sorted(by_group), desc="training voices", disable=not progress):
        files = by_group[group]
        rng.shuffle(files)
        embeddings = []
        for entry in files:
            if len(embeddings) >= files_per_voice:
                break
            embedding = _embed_file(manifest, entry, encoder, seconds)
            if embedding is not None:
                embeddings.append(embedding)
        if embeddings:
            mean = np.mean(embeddings, axis=0)
            norm = float(np.linalg.norm(mean))
            if norm > 0:
                centroids[group] = (mean / norm).astype(np.float32)
    return centroids
