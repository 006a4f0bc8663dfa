"""Small synthetic corpora for the semantic tests: "sentences" are sequences of tone segments,
"voices" shift their pitch and level; nothing is downloaded."""

from __future__ import annotations

import numpy as np
import pytest

from segue.data.manifest import ManifestEntry, write_manifest
from segue.semantic.config import SemanticConfig
from tests.conftest import write

RATE = 16000


def utterance(sentence: int, voice: int, seconds: float = 1.0) -> np.ndarray:
    """Tone segments (0.1 s each) whose pitches spell `sentence`, shifted by `voice`, + noise."""
    rng = np.random.default_rng(1000 * sentence + voice)
    notes = np.random.default_rng(sentence).integers(0, 8, size=int(seconds * 10))
    factor = 1.0 + 0.15 * voice
    t = np.arange(int(0.1 * RATE)) / RATE
    segments = [np.sin(2 * np.pi * 200.0 * 2 ** (n / 4) * factor * t) for n in notes]
    audio = 0.3 * np.concatenate(segments) + 0.01 * rng.standard_normal(len(t) * len(notes))
    return (audio * (0.5 + 0.2 * voice)).astype(np.float32)


def small_model_config(**overrides) -> SemanticConfig:
    """A model small enough to train a few steps in a test."""
    fields = dict(
        n_mels=40,
        conv_channels=32,
        dim=32,
        n_layers=2,
        n_heads=2,
        pos_conv_kernel=5,
        pos_conv_groups=4,
        head_dim=16,
        n_classes=8,
        tokenizer_layer=1,
    )
    fields.update(overrides)
    return SemanticConfig(**fields)


@pytest.fixture
def corpus(tmp_path):
    """train: 6 utterances (6 sentences, 3 voices); valid: 2; test: 3 sentences x 3 voices."""
    entries = []

    def add(split: str, sentence: int, voice: int, seconds: float) -> None:
        path = f"v{voice}/s{sentence}.wav"
        write(tmp_path / path, utterance(sentence, voice, seconds))
        entries.append(
            ManifestEntry(
                path, seconds, RATE, f"v{voice}", split=split, extra={"sentence_id": f"s{sentence}"}
            )
        )

    for sentence in range(6):
        add("train", sentence, sentence % 3, 1.0 + 0.1 * sentence)
    add("valid", 10, 3, 1.0)
    add("valid", 11, 3, 0.8)
    for sentence in (20, 21, 22):
        for voice in (4, 5, 6):
            add("test", sentence, voice, 0.6 + 0.1 * (sentence - 20))
    write_manifest(tmp_path / "manifest.jsonl", entries)
    return tmp_path / "manifest.jsonl"
