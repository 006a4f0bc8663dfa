"""The AudioLM bundle format: which parts a bundle folder holds, its `bundle.json`, and the
checks that parts fit together (`segue.pipeline.AudioLM` reads and writes bundles).

    codec/        segue Codec (config.json + model.safetensors)      segue.codec.load.load_codec
    semantic/     semantic tokenizer (tokenizer.json + k-means ...)  segue.semantic.tokenizer
    semantic_lm/  coarse_lm/  fine_lm/   exported StageLMs           segue.lm.stages.load_lm
    soundstorm/   optional: exported SoundStorm                     segue.soundstorm.load
    bundle.json   format version, rates, default sampling, free-form info
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from segue.errors import InputError
from segue.lm.layout import CoarseLayout, FineLayout, SemanticLayout
from segue.lm.stages import StageLM
from segue.semantic.tokenizer import SemanticTokenizer
from segue.soundstorm import SoundStorm

BUNDLE_NAME = "bundle.json"
BUNDLE_FORMAT = "segue-audiolm"
BUNDLE_VERSION = 1
#: Part folder -> what it holds (for error messages).
PARTS = {
    "codec": "the codec",
    "semantic": "the semantic tokenizer",
    "semantic_lm": "the semantic LM",
    "coarse_lm": "the coarse acoustic LM",
    "fine_lm": "the fine acoustic LM",
}
#: Optional part folder -> what it holds (bundles without it load fine).
OPTIONAL_PARTS = {"soundstorm": "the SoundStorm acoustic model"}


def missing_parts(path: Path) -> list[str]:
    """The required part folders `path` lacks, as "name/ (what it holds)"."""
    return [f"{name}/ ({what})" for name, what in PARTS.items() if not (path / name).is_dir()]


def read_bundle_meta(path: Path) -> dict[str, Any]:
    """bundle.json of a bundle folder, after checking that every part is there and that this
    segue reads its format version."""
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such model bundle folder")
    missing = missing_parts(path)
    if not (path / BUNDLE_NAME).is_file():
        missing.append(BUNDLE_NAME)
    if missing:
        raise FileNotFoundError(f"{path}: incomplete model bundle, missing {', '.join(missing)}")
    try:
        meta = json.loads((path / BUNDLE_NAME).read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path / BUNDLE_NAME}: unreadable ({error})") from error
    if meta.get("format") != BUNDLE_FORMAT or meta.get("version", 0) > BUNDLE_VERSION:
        raise InputError(
            f"{path / BUNDLE_NAME}: format {meta.get('format')!r} version "
            f"{meta.get('version')}; this segue reads {BUNDLE_FORMAT!r} up to {BUNDLE_VERSION}"
        )
    return meta


def check_compatible(
    codec,
    tokenizer: SemanticTokenizer,
    semantic_lm: StageLM,
    coarse_lm: StageLM,
    fine_lm: StageLM,
    soundstorm: SoundStorm | None = None,
) -> None:
    """Raise ValueError listing every way the five (or six) parts do not fit together."""
    kinds = {"semantic": SemanticLayout, "coarse": CoarseLayout, "fine": FineLayout}
    for (name, kind), lm in zip(kinds.items(), (semantic_lm, coarse_lm, fine_lm)):
        if not isinstance(lm.layout, kind):
            raise InputError(f"the {name} LM slot holds a {lm.stage.stage} LM")
    s, c, f = semantic_lm.stage, coarse_lm.stage, fine_lm.stage
    problems = []

    def differ(what: str, a: str, x, b: str, y, close: bool = False) -> None:
        same = abs(x - y) < 1e-6 if close else x == y
        if not same:
            problems.append(f"{what}: {a} {x:g} vs {b} {y:g}")

    vocab, size = tokenizer.vocab_size, codec.codebook_size
    differ("semantic vocabulary", "tokenizer", vocab, "semantic LM", s.semantic_vocab)
    differ("semantic vocabulary", "tokenizer", vocab, "coarse LM", c.semantic_vocab)
    differ("codebook size", "codec", size, "coarse LM", c.acoustic_vocab)
    differ("codebook size", "codec", size, "fine LM", f.acoustic_vocab)
    differ("coarse levels", "coarse LM", c.n_coarse, "fine LM", f.n_coarse)
    if f.n_levels > codec.n_codebooks:
        problems.append(f"levels: fine LM models {f.n_levels}, codec has {codec.n_codebooks}")
    rate = tokenizer.frame_rate
    differ("semantic rate (Hz)", "tokenizer", rate, "semantic LM", s.semantic_rate, True)
    differ("semantic rate (Hz)", "tokenizer", rate, "coarse LM", c.semantic_rate, True)
    differ("acoustic rate (Hz)", "codec", codec.frame_rate, "coarse LM", c.acoustic_rate, True)
    differ("acoustic rate (Hz)", "codec", codec.frame_rate, "fine LM", f.acoustic_rate, True)
    hop = codec.sample_rate / rate
    if abs(hop - round(hop)) > 1e-6 or round(hop) % round(codec.sample_rate / codec.frame_rate):
        problems.append(
            f"a semantic frame ({hop:g} samples at {codec.sample_rate} Hz) is not a whole "
            "number of codec frames"
        )
    if soundstorm is not None:
        m = soundstorm.config
        differ("semantic vocabulary", "tokenizer", vocab, "SoundStorm", m.semantic_vocab)
        differ("codebook size", "codec", size, "SoundStorm", m.codebook_size)
        differ("levels", "fine LM", f.n_levels, "SoundStorm", m.n_levels)
        differ("frames per semantic token", "coarse LM", coarse_lm.layout.ratio, "SoundStorm",
               m.ratio)  # fmt: skip
        if m.n_levels > codec.n_codebooks:
            problems.append(
                f"levels: SoundStorm models {m.n_levels}, codec has {codec.n_codebooks}"
            )
    if s.dedup:
        problems.append(
            "the semantic LM was trained on deduplicated tokens (the coarse LM needs all)"
        )
    if problems:
        raise InputError("incompatible AudioLM parts: " + "; ".join(problems))


def check_bundle_meta(where: Path, meta: dict[str, Any], facts: dict[str, Any]) -> None:
    """bundle.json describes the parts; where it says otherwise (`facts`: what the loaded parts
    give), one of them was swapped or the file edited: refuse rather than guess which is right."""
    wrong = [
        f"{key} {meta[key]!r} but the parts give {actual!r}"
        for key, actual in facts.items()
        if key in meta and not _same_fact(meta[key], actual)
    ]
    if wrong:
        raise InputError(f"{where} does not match its parts: {'; '.join(wrong)}")


def _same_fact(recorded: Any, actual: Any) -> bool:
    """A bundle.json value equals what the parts give (rates up to rounding)."""
    if isinstance(actual, bool) or isinstance(recorded, bool):
        return recorded is actual
    try:
        return math.isclose(float(recorded), float(actual), rel_tol=1e-6)
    except (TypeError, ValueError):
        return False


def store_half(path: Path) -> None:
    """Rewrite every float32 tensor of the bundle's safetensors files as float16 (not k-means)."""
    from safetensors.torch import load_file, save_file

    for file in sorted(path.rglob("*.safetensors")):
        if "kmeans" in file.name:
            continue
        state = load_file(str(file))
        state = {k: v.half() if v.dtype == torch.float32 else v for k, v in state.items()}
        tmp = file.with_name(f".{file.name}.tmp")
        save_file(state, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, file)
