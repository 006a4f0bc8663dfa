"""Does a codec keep a held-out voice, or move it towards its training voices?

For `--files` files (at least prompt + 1 s long, one voice at a time as `segue eval e2e` picks
them) of each manifest's test split: the first `--prompt-seconds` are the prompt, the next
`--seconds` the real continuation. The continuation is scored as it is, with white noise at each
`--noise-db` SNR (the scale: plain quality loss), and through each `--codec`'s round trip:
Resemblyzer similarity to the prompt, the share closer to the prompt than to every training
voice (centroids of `--train-voices`' train split, 4 files each, as `segue eval e2e`), and the
similarity to the continuation itself. Noise lowers the similarities but leaves voices nearest
their own prompt; a codec that drifts moves them nearer its training voices. Each figure is a
mean over the files ± its standard error.

    .venv/bin/python bench/codec_voice_drift.py corpora/real/manifest.jsonl \\
        corpora/speech/manifest.jsonl --train-voices corpora/speech/manifest.jsonl \\
        --codec segue/assets/speech-tiny/codec --codec runs/codec
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from segue import audio as audio_io
from segue.codec.load import load_codec
from segue.data.manifest import read_manifest
from segue.eval.e2e import E2ESettings, round_robin, training_voices
from segue.eval.speaker import SpeakerEncoder, cosine

RATE = 16000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", nargs="+", help="manifests whose test splits are scored")
    parser.add_argument("--train-voices", required=True, help="the training corpus's manifest")
    parser.add_argument("--codec", action="append", default=[], help="codec folder (repeatable)")
    parser.add_argument("--noise-db", type=float, nargs="*", default=[20.0, 10.0])
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    speaker = SpeakerEncoder()
    settings = E2ESettings(train_manifest=args.train_voices)
    voices = training_voices(args.train_voices, settings, speaker, progress=False)
    codecs = {path: load_codec(path).eval() for path in args.codec}
    cut = round(args.prompt_seconds * RATE)
    print(f"{len(voices)} training voices; prompt {args.prompt_seconds:g} s, continuation up to "
          f"{args.seconds:g} s")  # fmt: skip
    for path in args.manifests:
        manifest = read_manifest(path, split="test")
        usable = [e for e in manifest.entries if e.duration >= args.prompt_seconds + 1.0]
        rows: dict[str, list[tuple[float, bool, float]]] = {}
        picked = list(round_robin(usable, args.seed))[: args.files]
        for entry in picked:
            audio = audio_io.load(
                manifest.resolve(entry), RATE, duration=args.prompt_seconds + args.seconds
            )
            prompt, real = audio[:cut], audio[cut:]
            power = float(np.sqrt(np.mean(real**2)))
            versions = {"as it is": real}
            for db in args.noise_db:
                noise = rng.standard_normal(len(real)) * power / 10 ** (db / 20)
                versions[f"white noise at {db:g} dB SNR"] = (real + noise).astype(np.float32)
            for name, codec in codecs.items():
                with torch.no_grad():
                    codes = codec.encode(torch.from_numpy(real)[None])
                    versions[f"round trip: {name}"] = codec.decode(codes)[0].numpy()[: len(real)]
            e_prompt, e_real = speaker.embed(prompt, RATE), speaker.embed(real, RATE)
            for name, version in versions.items():
                e = speaker.embed(version, RATE)
                nearest = max(cosine(e, c) for g, c in voices.items() if g != entry.group)
                to_prompt = cosine(e_prompt, e)
                row = (to_prompt, to_prompt > nearest, cosine(e_real, e))
                rows.setdefault(name, []).append(row)
        print(f"\n{path}: {len(picked)} files of {len({e.group for e in picked})} voices")
        print("| the real continuation | to the prompt | closer to it than every training voice "
              "| to itself |")  # fmt: skip
        print("| --- | --- | --- | --- |")
        for name, values in rows.items():
            v = np.array(values, dtype=float)  # [files, 3]
            a, se = v.mean(axis=0), v.std(axis=0, ddof=1) / np.sqrt(len(v))
            print(f"| {name} | {a[0]:.3f} ±{se[0]:.3f} | {a[1]:.0%} ±{se[1]:.0%} "
                  f"| {a[2]:.3f} ±{se[2]:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
