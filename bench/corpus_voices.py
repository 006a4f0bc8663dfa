"""Can a speaker-embedding model tell the speech corpus's voices apart?

Embeds two utterances of each of 40 random voices with resemblyzer (weights ship in its wheel)
and prints the mean same-voice and different-voice cosine similarity and 1-nearest-neighbour
speaker identification. Needs `pip install librosa webrtcvad-wheels` and
`pip install --no-deps resemblyzer`.

    .venv/bin/python bench/corpus_voices.py [corpora/speech/manifest.jsonl]
"""

import itertools
import random
import sys

import numpy as np
import torch
from resemblyzer import VoiceEncoder

from segue import audio
from segue.data.manifest import read_manifest

torch.set_num_threads(1)
m = read_manifest(sys.argv[1] if len(sys.argv) > 1 else "corpora/speech/manifest.jsonl")
by = {}
for e in m.entries:
    by.setdefault(e.group, []).append(e)
rng = random.Random(0)
groups = sorted(g for g in by if len(by[g]) >= 2)
rng.shuffle(groups)
groups = groups[:40]
enc = VoiceEncoder("cpu", verbose=False)
emb = {}
for g in groups:
    for e in by[g][:2]:
        emb[(g, e.path)] = enc.embed_utterance(audio.load(m.resolve(e), 16000))
keys = list(emb)
same = [float(emb[a] @ emb[b]) for a, b in itertools.combinations(keys, 2) if a[0] == b[0]]
diff = [float(emb[a] @ emb[b]) for a, b in itertools.combinations(keys, 2) if a[0] != b[0]]
# speaker ID: nearest other utterance is from the same voice
correct = 0
for a in keys:
    best = max((b for b in keys if b != a), key=lambda b: emb[a] @ emb[b])
    correct += best[0] == a[0]
print(
    f"{len(groups)} voices: same-voice cosine {np.mean(same):.3f}, "
    f"different-voice {np.mean(diff):.3f} (max {np.max(diff):.3f}), "
    f"1-NN speaker ID {correct / len(keys):.1%}"
)
