"""Synthetic token shards with a learnable structure, written with `TokenShardWriter`.

Semantic tokens (25 Hz, K_S codes) walk up by one every two frames from a random start; the
acoustic frames (50 Hz, Q levels of K_A codes, the first N_COARSE coarse) are a function of the
semantic token and the frame's parity, and the fine levels a function of the coarse ones: every
stage can learn its targets almost perfectly from its conditioning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segue.data.shards import TokenShardWriter, merge_index

K_S, K_A, LEVELS, N_COARSE = 16, 8, 4, 2


def semantic_tokens(rng: np.random.Generator, n: int) -> np.ndarray:
    start = int(rng.integers(0, K_S))
    return ((start + np.arange(n) // 2) % K_S).astype(np.int64)


def acoustic_tokens(semantic: np.ndarray, frames: int) -> np.ndarray:
    """[LEVELS, frames], frame j follows semantic token j // 2."""
    j = np.arange(frames)
    s = semantic[np.minimum(j // 2, len(semantic) - 1)]
    coarse = [(s + q + (j % 2)) % K_A for q in range(N_COARSE)]
    fine = [(coarse[0] + coarse[1] + q) % K_A for q in range(LEVELS - N_COARSE)]
    return np.stack(coarse + fine).astype(np.int64)


def write_shards(
    root: Path, n_files: int = 12, seed: int = 0, lengths: tuple[int, int] = (20, 60)
) -> tuple[Path, Path]:
    """(semantic shards, acoustic shards) under root; the last 3 files are the valid split."""
    rng = np.random.default_rng(seed)
    sem = TokenShardWriter(
        root / "semantic", kind="semantic", levels=1, vocab_size=K_S, frame_rate=25.0
    )
    ac = TokenShardWriter(
        root / "acoustic",
        kind="acoustic",
        levels=LEVELS,
        vocab_size=K_A,
        frame_rate=50.0,
        extra_meta={"n_coarse": N_COARSE},
    )
    for i in range(n_files):
        n = int(rng.integers(*lengths))
        tokens = semantic_tokens(rng, n)
        frames = 2 * n - int(rng.integers(0, 2))  # sometimes one frame short, as real files
        info = {
            "group": f"g{i % 3}",
            "split": "valid" if i >= n_files - 3 else "train",
            "duration": n / 25,
        }
        sem.add(f"f{i:03d}.wav", tokens[None], info)
        ac.add(f"f{i:03d}.wav", acoustic_tokens(tokens, frames), info)
    for writer in (sem, ac):
        writer.flush()
        merge_index(writer.out)
    return root / "semantic", root / "acoustic"


def relabel_semantic(source: Path, out: Path, vocab_size: int = 20) -> Path:
    """The semantic shards of `source` as another tokenizer would give them: each token s
    becomes (5 s + 3) % K_S in a vocabulary of `vocab_size` codes (same files, splits, timing)."""
    from segue.data.shards import TokenShards

    shards = TokenShards(source)
    writer = TokenShardWriter(
        out, kind="semantic", levels=1, vocab_size=vocab_size, frame_rate=25.0
    )
    for i, entry in enumerate(shards.entries):
        writer.add(entry.key, (5 * shards.tokens(i) + 3) % K_S, dict(entry.info))
    writer.flush()
    merge_index(out)
    return out
