"""How semantic are the tokens? Cross-voice consistency on held-out voices.

In the eval split the same sentence (`sentence_id`) is spoken by several held-out voices. For
each tokenizer every utterance is tokenized and deduplicated (repeats collapsed), then:

  same_ned   mean normalised edit distance (Levenshtein / max length) between the two
             utterances of every cross-voice pair of the same sentence (lower: more invariant)
  diff_ned   the same between different sentences in different voices: the "unrelated" ceiling
  abx_error  utterance-level ABX: A, X = one sentence in voices v1, v2; B = another sentence in
             voice v2 (the voice cue favours B). Error when d(A, X) >= d(B, X) (ties count half).
             One B per pair by default; `b_per_pair=0` takes every other sentence of X's voice
             (ZeroSpeech's average over all triplets). `abx_error_se`: the standard error over
             pairs (each pair's mean error), what separates two tokenizers on few pairs
  rate       deduplicated tokens per second;  perplexity  exp(entropy) of the (raw) token
             distribution, the number of clusters effectively used;  rtf  tokenizing time / audio

Baselines: MFCC k-means with the same K, and the codec's first RVQ level (`CodecLevelTokenizer`).
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from segue import audio as audio_io
from segue.data.manifest import Manifest, ManifestEntry
from segue.errors import InputError
from segue.semantic.fit import module_device
from segue.semantic.metrics import dedup, normalized_edit_distance, perplexity


class Tokenizer(Protocol):
    sample_rate: int
    frame_rate: float
    vocab_size: int

    def tokenize(self, audio: torch.Tensor) -> torch.Tensor: ...


class CodecLevelTokenizer:
    """One RVQ level of an acoustic codec (`segue.codec.load.load_codec`) as a token stream."""

    def __init__(self, codec: Any, level: int = 0):
        self.codec, self.level = codec, level
        self.sample_rate = int(codec.sample_rate)
        self.frame_rate = float(codec.frame_rate)
        self.vocab_size = int(codec.codebook_size)
        # the audio goes where the codec's weights are (the CPU for a stand-in without any)
        self.device = module_device(codec) if isinstance(codec, torch.nn.Module) else "cpu"

    @torch.no_grad()
    def tokenize(self, audio: torch.Tensor) -> torch.Tensor:
        audio = torch.as_tensor(audio, dtype=torch.float32, device=self.device)
        if audio.dim() == 1:
            audio = audio[None]
        return self.codec.encode(audio)[:, self.level]


@dataclass
class EvalSet:
    """Utterances to tokenize and the index pairs/triplets to compare."""

    entries: list[ManifestEntry]
    pairs: list[tuple[int, int]]  # (A, X): same sentence, different voices
    triplets: list[tuple[int, int, int]]  # (A, X, B): B another sentence in X's voice
    sentences: int


def build_eval_set(
    manifest: Manifest, max_sentences: int | None = None, seed: int = 0, b_per_pair: int = 1
) -> EvalSet:
    """Pairs and triplets from the entries that carry `sentence_id` (voice = `group`); each pair
    gets `b_per_pair` Bs drawn at random (0: all of them)."""
    if b_per_pair < 0:
        raise InputError(f"b_per_pair must be >= 0 (0: every B), got {b_per_pair}")
    by_sentence: dict[str, dict[str, ManifestEntry]] = defaultdict(dict)
    by_voice: dict[str, list[ManifestEntry]] = defaultdict(list)
    for entry in sorted(manifest.entries, key=lambda e: e.path):
        sentence = entry.extra.get("sentence_id")
        if sentence is None:
            continue
        by_sentence[str(sentence)].setdefault(entry.group, entry)
        by_voice[entry.group].append(entry)
    sentences = sorted(s for s, voices in by_sentence.items() if len(voices) >= 2)
    if not sentences:
        raise InputError(
            "no sentence is spoken by two voices here: the eval split needs entries with a "
            "`sentence_id` field shared across voices (groups)"
        )
    rng = np.random.default_rng(seed)
    if max_sentences is not None and max_sentences < len(sentences):
        sentences = sorted(rng.choice(sentences, max_sentences, replace=False).tolist())
    entries: list[ManifestEntry] = []
    position: dict[str, int] = {}

    def index(entry: ManifestEntry) -> int:
        if entry.path not in position:
            position[entry.path] = len(entries)
            entries.append(entry)
        return position[entry.path]

    pairs, triplets = [], []
    for sentence in sentences:
        voices = sorted(by_sentence[sentence])
        for first, second in itertools.combinations(voices, 2):
            a, x = by_sentence[sentence][first], by_sentence[sentence][second]
            pairs.append((index(a), index(x)))
            others = [e for e in by_voice[second] if e.extra.get("sentence_id") != sentence]
            if b_per_pair == 1 and others:  # the original single draw (same Bs as before)
                others = [others[int(rng.integers(len(others)))]]
            elif 0 < b_per_pair < len(others):
                others = [others[i] for i in sorted(rng.choice(len(others), b_per_pair, False))]
            for b in others:
                triplets.append((position[a.path], position[x.path], index(b)))
    return EvalSet(entries, pairs, triplets, len(sentences))


def _score(
    tokens: list[np.ndarray], eval_set: EvalSet, seconds: float, vocab_size: int
) -> dict[str, float]:
    units = [dedup(t) for t in tokens]
    distance: dict[tuple[int, int], float] = {}

    def d(i: int, j: int) -> float:
        key = (min(i, j), max(i, j))
        if key not in distance:
            distance[key] = normalized_edit_distance(units[i], units[j])
        return distance[key]

    same = [d(a, x) for a, x in eval_set.pairs]
    diff = [d(a, b) for a, _, b in eval_set.triplets]
    abx = [
        1.0 if d(a, x) > d(b, x) else 0.5 if d(a, x) == d(b, x) else 0.0
        for a, x, b in eval_set.triplets
    ]
    by_pair: dict[tuple[int, int], list[float]] = defaultdict(list)
    for (a, x, _), error in zip(eval_set.triplets, abx):
        by_pair[(a, x)].append(error)
    pair_means = [float(np.mean(errors)) for errors in by_pair.values()]
    se = (
        float(np.std(pair_means, ddof=1) / np.sqrt(len(pair_means)))
        if len(pair_means) > 1
        else float("nan")
    )
    used = np.unique(np.concatenate(tokens)).size if tokens else 0
    return {
        "same_ned": float(np.mean(same)),
        "same_ned_std": float(np.std(same)),
        "diff_ned": float(np.mean(diff)) if diff else float("nan"),
        "abx_error": float(np.mean(abx)) if abx else float("nan"),
        "abx_error_se": se,
        "rate": sum(u.size for u in units) / seconds,
        "perplexity": perplexity(tokens, vocab_size),
        "used": int(used),
    }


def evaluate(
    tokenizers: dict[str, Tokenizer],
    manifest: Manifest,
    *,
    max_sentences: int | None = None,
    seed: int = 0,
    b_per_pair: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Score every tokenizer on the same pairs; returns a JSON-ready report."""
    eval_set = build_eval_set(manifest, max_sentences, seed, b_per_pair)
    tokens: dict[str, list[np.ndarray]] = {name: [] for name in tokenizers}
    timing = dict.fromkeys(tokenizers, 0.0)
    seconds = 0.0
    rates = sorted({t.sample_rate for t in tokenizers.values()})
    for entry in tqdm(eval_set.entries, desc="eval", unit="file", disable=not progress):
        path = manifest.resolve(entry)
        audio = {rate: audio_io.load(path, rate) for rate in rates}
        seconds += audio[rates[0]].shape[0] / rates[0]
        for name, tokenizer in tokenizers.items():
            start = time.perf_counter()
            ids = tokenizer.tokenize(torch.from_numpy(audio[tokenizer.sample_rate]))
            timing[name] += time.perf_counter() - start
            tokens[name].append(ids[0].cpu().numpy().astype(np.int64))
    rows = {}
    for name, tokenizer in tokenizers.items():
        rows[name] = {
            "frame_rate": float(tokenizer.frame_rate),
            "vocab_size": int(tokenizer.vocab_size),
            **_score(tokens[name], eval_set, seconds, tokenizer.vocab_size),
            "rtf": timing[name] / seconds,
        }
    return {
        "sentences": eval_set.sentences,
        "utterances": len(eval_set.entries),
        "pairs": len(eval_set.pairs),
        "triplets": len(eval_set.triplets),
        "seconds": seconds,
        "tokenizers": rows,
    }


def format_table(report: dict[str, Any]) -> str:
    """One table, tokenizers side by side (rows), the measures as columns."""
    header = (
        "tokenizer",
        "Hz",
        "K",
        "same NED ↓",
        "diff NED",
        "ABX err ↓ ±se",
        "tok/s",
        "perplexity",
        "used",
        "RTF",
    )
    rows = [header]
    for name, r in report["tokenizers"].items():
        rows.append(
            (
                name,
                f"{r['frame_rate']:g}",
                str(r["vocab_size"]),
                f"{r['same_ned']:.3f}",
                f"{r['diff_ned']:.3f}",
                f"{100 * r['abx_error']:.1f}% ±{100 * r.get('abx_error_se', float('nan')):.1f}",
                f"{r['rate']:.1f}",
                f"{r['perplexity']:.0f}",
                str(r["used"]),
                f"{r['rtf']:.4f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    summary = (
        f"{report['sentences']} sentences, {report['utterances']} utterances "
        f"({report['seconds'] / 60:.1f} min), {report['pairs']} same-sentence cross-voice pairs, "
        f"{report['triplets']} ABX triplets"
    )
    return "\n".join([summary, *lines])
