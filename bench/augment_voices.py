"""How far does each crop augmentation move a voice? (Resemblyzer, on a corpus's real voices)

For `--voices` groups with `--per-voice` utterances of at least `--min-seconds`, embeds each
utterance as it is and through each augmentation of `segue.data.augment` (speed x0.9 and x1.1,
random EQ, synthetic room), and prints per transform, against a no-op baseline run in the same
job:
  - self: cosine similarity of the augmented utterance to its own voice's centroid (of the
    other, unaugmented utterances);
  - nearest other: its similarity to the nearest other voice's centroid;
  - new voice: share of augmented utterances closer to some other voice than to their own
    (or, read the other way, how often the transform made the voice unrecognisable).
A transform that lowers `self` toward the different-voice level without making the voice
another known voice adds speaker diversity; this is a proxy, not the bundle-level measurement.

    .venv/bin/python bench/augment_voices.py corpora/real/manifest.jsonl --split train
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _voices import sample_voices
from resemblyzer import VoiceEncoder

from segue import audio
from segue.data import augment as aug
from segue.data.manifest import read_manifest

SR = 16000


def transforms(seed: int) -> dict[str, object]:
    def eq(x, rng):
        return aug.augment(x, aug.AugmentConfig(eq=1.0), SR, rng)

    def room(x, rng):
        return aug.augment(x, aug.AugmentConfig(reverb=1.0), SR, rng)

    return {
        "none": lambda x, rng: x,
        "speed 0.9": lambda x, rng: aug.change_speed(x, 0.9, SR),
        "speed 1.1": lambda x, rng: aug.change_speed(x, 1.1, SR),
        "eq +-6 dB": eq,
        "room": room,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("--split", default="train")
    parser.add_argument("--voices", type=int, default=20)
    parser.add_argument("--per-voice", type=int, default=4)
    parser.add_argument("--min-seconds", type=float, default=2.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    manifest = read_manifest(args.manifest, split=args.split)
    chosen = sample_voices(manifest, args.voices, args.per_voice, args.min_seconds, args.seed)
    groups = list(chosen)
    encoder = VoiceEncoder("cpu", verbose=False)
    wavs = {g: [audio.load(manifest.resolve(e), SR) for e in es] for g, es in chosen.items()}
    plain = {g: np.stack([encoder.embed_utterance(w) for w in ws]) for g, ws in wavs.items()}
    print(f"{len(groups)} voices x {args.per_voice} utterances ({args.split} split)")
    print(f"{'transform':10s}  self   nearest other  new voice")
    for name, transform in transforms(args.seed).items():
        selves, others, new = [], [], 0
        nrng = np.random.default_rng(args.seed)
        for g in groups:
            for k, wav in enumerate(wavs[g]):
                e = encoder.embed_utterance(np.asarray(transform(wav, nrng), np.float32))
                own = np.delete(plain[g], k, axis=0).mean(0)
                own /= np.linalg.norm(own)
                other = max(float(e @ (c := plain[h].mean(0)) / np.linalg.norm(c))
                            for h in groups if h != g)
                selves.append(float(e @ own))
                others.append(other)
                new += other > selves[-1]
        total = len(selves)
        print(f"{name:10s}  {np.mean(selves):.3f}  {np.mean(others):.3f}          "
              f"{new / total:.1%}")


if __name__ == "__main__":
    main()
