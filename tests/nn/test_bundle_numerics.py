"""The shipped bundle's numbers, pinned: a seeded continuation and seeded forward passes of each
model built on `segue.nn` (semantic model, the three LMs, SoundStorm), as loaded from
`segue/assets/speech-tiny` (weights saved before the blocks moved to `segue.nn`, so this also
checks that their keys still load).

The values were recorded before the transformer blocks were unified; a change to the block math
(or to how the old keys load) moves them. Other CPUs may sum in another order: the tolerance is
a few float32 roundings (the fused C step and the PyTorch step differ by
~2e-7 of the absolute sum), far below what a different sampled token does to the audio.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
import torch

import segue
from segue.pipeline import AudioLM

ASSETS = Path(segue.__file__).parent / "assets"
#: name -> (sum, sum of absolute values) of an output, in float64.
PINNED = {
    "semantic.logits": (-357.16975886933506, 6094.985254338011),
    "semantic.features": (4681.7465499304235, 15641.890050049871),
    "semantic_lm.forward": (-6423.919374466799, 145705.45416949072),
    "semantic_lm.extend.b1.torch": (-973.7329400740564, 9032.469072904438),
    "semantic_lm.extend.b2.torch": (-1016.5730207338929, 17845.18945221603),
    "semantic_lm.extend.b1.fused": (-973.7327495378559, 9032.469304830709),
    "coarse_lm.forward": (-999978.7307879502, 1563820.505927903),
    "coarse_lm.extend.b1.torch": (-50291.932680770755, 88429.2960446477),
    "coarse_lm.extend.b2.torch": (-107021.67623769492, 178849.4700882882),
    "coarse_lm.extend.b1.fused": (-50291.91235790376, 88429.27651846394),
    "fine_lm.forward": (-3447586.85068251, 4319384.458926935),
    "fine_lm.extend.b1.torch": (-211756.90781836025, 273964.5847680997),
    "fine_lm.extend.b2.torch": (-416526.41101278365, 527149.6793291941),
    "fine_lm.extend.b1.fused": (-211756.93044333262, 273964.60123441636),
    "soundstorm.logits": (-5006.25602686614, 1250463.70857266),
    # The continuations' audio since the codec's decoder was trained on real voices (2026-12-07;
    # the same tokens: before it, (86.22199161341996, 3570.826569022989) and
    # (108.10857802728424, 3067.476272605476)). SoundStorm: 8 level-0 iterations since the
    # bundle's config changed from 16 (docs/soundstorm.md "Passes").
    "continue.ar": (6.686350687552476, 3583.569293775974),
    "continue.soundstorm": (15.483214104169747, 3072.491044661292),
}


@pytest.fixture(scope="module")
def bundle() -> AudioLM:
    return AudioLM.from_pretrained(ASSETS / "speech-tiny")


def prompt(seconds: float = 1.0) -> torch.Tensor:
    audio, rate = sf.read(ASSETS / "prompt-speech.wav", dtype="float32")
    return torch.from_numpy(audio[: round(seconds * rate)])


def _ids(vocab: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randint(vocab, shape, generator=torch.Generator().manual_seed(seed))


@torch.inference_mode()
def outputs(model: AudioLM) -> dict[str, torch.Tensor]:
    """Seeded outputs of every transformer of the bundle (and of a short continuation)."""
    out = {}
    audio = prompt()
    semantic = model.tokenizer.extractor.model
    batch = torch.stack([audio, torch.cat([audio[:12000], torch.zeros(4000)])])
    out["semantic.logits"] = semantic(batch, torch.tensor([16000, 12000]))
    out["semantic.features"] = semantic.features(audio[None], layer=4)[0]
    for name in ("semantic_lm", "coarse_lm", "fine_lm"):
        lm = getattr(model, name).model
        vocab = lm.config.vocab_size
        ids = _ids(vocab, (2, 48), seed=1)
        out[f"{name}.forward"] = lm(ids)
        for step, batch_size in (("torch", 1), ("torch", 2), ("fused", 1)):
            cache = lm.new_cache(batch_size, 64, fused=step == "fused")
            rows = [lm.extend(ids[:batch_size, :40], cache)]  # prefill
            rows += [lm.extend(ids[:batch_size, t : t + 1], cache) for t in range(40, 44)]
            rows.append(lm.extend(ids[:batch_size, 44:48], cache))  # a chunk after the cache
            out[f"{name}.extend.b{batch_size}.{step}"] = torch.stack(rows)
    storm = model.soundstorm
    c = storm.config
    codes = _ids(c.codebook_size, (2, c.n_levels, 40), seed=2)
    codes[:, 3:] = torch.where(_ids(2, (2, c.n_levels - 3, 40), seed=3) == 1, c.codebook_size, 0)
    tokens = _ids(c.semantic_vocab, (2, 20), seed=4)
    out["soundstorm.logits"] = storm(codes, tokens, torch.tensor([40, 31]))
    out["continue.ar"] = model.continue_(audio, 0.5, seed=0, progress=False)
    out["continue.soundstorm"] = model.continue_(
        audio, 0.5, seed=0, progress=False, acoustic="soundstorm"
    )
    return out


def stats(tensor: torch.Tensor) -> tuple[float, float]:
    t = tensor.double()
    return float(t.sum()), float(t.abs().sum())


def test_the_bundle_gives_the_pinned_numbers(bundle):
    got = {name: stats(t) for name, t in outputs(bundle).items()}
    assert set(got) == set(PINNED)
    for name, (total, size) in PINNED.items():
        assert got[name][1] == pytest.approx(size, rel=1e-6), name
        assert got[name][0] == pytest.approx(total, rel=1e-6, abs=1e-6 * size), name
