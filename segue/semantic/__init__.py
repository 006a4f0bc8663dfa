"""Semantic tokens (AudioLM's w2v-BERT + k-means tokens, made here): a HuBERT-style model trained
from audio alone, k-means tokenizers on its layers (or on MFCCs, or on a Hugging Face encoder),
and the cross-voice evaluation. See docs/semantic.md."""

from segue.semantic.config import PRESETS, SemanticConfig, preset
from segue.semantic.kmeans import KMeansCodebook, fit_kmeans
from segue.semantic.model import SemanticModel
from segue.semantic.tokenizer import SemanticTokenizer, load_tokenizer

__all__ = [
    "PRESETS",
    "KMeansCodebook",
    "SemanticConfig",
    "SemanticModel",
    "SemanticTokenizer",
    "fit_kmeans",
    "load_tokenizer",
    "preset",
]
