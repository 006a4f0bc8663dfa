"""Does every RVQ level refine? Residual norm after each level, and quality per bitrate.

For a few test files: the norm of what is left to quantize after each level (it should fall),
then mel distance and STOI of the decoding with 1, 3 and all levels (they should improve).

    .venv/bin/python bench/codec_levels.py runs/codec-tiny [corpora/speech/manifest.jsonl]
"""

import sys

import torch

from segue import audio
from segue.codec.load import load_codec
from segue.data.manifest import read_manifest
from segue.eval.metrics import mel_distance, stoi

codec = load_codec(sys.argv[1])
manifest = read_manifest(
    sys.argv[2] if len(sys.argv) > 2 else "corpora/speech/manifest.jsonl", split="test"
)
hop = codec.hop_length
for entry in manifest.entries[:3]:
    x = audio.load(manifest.resolve(entry), codec.sample_rate, duration=4.0)
    x = x[: len(x) // hop * hop]
    with torch.no_grad():
        latents = codec.encoder(torch.from_numpy(x)[None, None])
        residual, norms = latents.clone(), [round(latents.norm().item())]
        for level in codec.quantizer.levels:
            residual = residual - level(residual)[0]
            norms.append(round(residual.norm().item()))
        decoded = {
            n: codec.decoder(codec.quantizer(latents, n).quantized)[0, 0].numpy()
            for n in (1, 3, codec.n_codebooks)
        }
    quality = " ".join(
        f"q{n} mel {mel_distance(y, x):.3f} stoi {stoi(y, x):.3f}" for n, y in decoded.items()
    )
    print(f"residual norms {norms} | {quality}")
