"""Can a speaker-embedding model tell a corpus's voices apart?

Embeds `--per-voice` utterances (of at least `--min-seconds`) of up to `--voices` random voices
(groups) with resemblyzer (weights ship in its wheel) and prints the mean same-voice and
different-voice cosine similarity and 1-nearest-neighbour speaker identification, overall and
per value of a row field (`--by`: `source` for the real-speech corpus, `engine` for the TTS one,
`part` for a mixture; the 1-NN search always runs over the whole sample). Needs the eval extra
(`bash scripts/setup.sh` installs it).

    .venv/bin/python bench/corpus_voices.py corpora/speech/manifest.jsonl --by engine
    .venv/bin/python bench/corpus_voices.py corpora/real/manifest.jsonl --voices 60 --per-voice 3 \
        --min-seconds 2.5 --by source
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch
from _voices import sample_voices
from resemblyzer import VoiceEncoder

from segue import audio
from segue.data.manifest import read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", nargs="?", default="corpora/speech/manifest.jsonl")
    parser.add_argument("--voices", type=int, default=40, help="voices (groups) sampled")
    parser.add_argument("--per-voice", type=int, default=2, help="utterances per voice")
    parser.add_argument("--min-seconds", type=float, default=1.5, help="shortest utterance")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--by", default=None, help="also report per value of this row field")
    args = parser.parse_args()
    torch.set_num_threads(1)

    manifest = read_manifest(args.manifest)
    chosen = sample_voices(manifest, args.voices, args.per_voice, args.min_seconds, args.seed)
    encoder = VoiceEncoder("cpu", verbose=False)
    keys, embeddings, source = [], [], {}
    for group, entries in chosen.items():
        for entry in entries:
            keys.append(group)
            embeddings.append(encoder.embed_utterance(audio.load(manifest.resolve(entry), 16000)))
            if args.by:
                value = getattr(entry, args.by, None) or entry.extra.get(args.by, "-")
                source[group] = str(value).split("-")[0]
    emb = np.stack(embeddings)
    sim = emb @ emb.T

    def report(name: str, chosen: list[int]) -> None:
        same = [sim[a, b] for a, b in itertools.combinations(chosen, 2) if keys[a] == keys[b]]
        diff = [sim[a, b] for a, b in itertools.combinations(chosen, 2) if keys[a] != keys[b]]
        # 1-NN speaker ID against every other embedding of the sample (all sources).
        correct = sum(
            keys[max((b for b in range(len(keys)) if b != a), key=lambda b: sim[a, b])] == keys[a]
            for a in chosen
        )
        voices = len({keys[i] for i in chosen})
        print(
            f"{name:10s} {voices:3d} voices, {len(chosen):4d} utterances: same-voice cosine "
            f"{np.mean(same):.3f}, different-voice {np.mean(diff) if diff else float('nan'):.3f}"
            f" (max {np.max(diff) if diff else float('nan'):.3f}), "
            f"1-NN speaker ID {correct / len(chosen):.1%}"
        )

    report("all", list(range(len(keys))))
    sources = sorted(set(source.values()))
    if args.by:
        for name in sources:
            report(name, [i for i, g in enumerate(keys) if source[g] == name])


if __name__ == "__main__":
    main()
