"""The token layout of each stage: which id means what, and how a training sequence is laid out.

Every layout puts the codes first and four specials after them, so no special can collide with
a code:

    [0, n_codes)   codes (each level of acoustic tokens in its own range)
    n_codes        EOS   (the file ends here; right after the codes, so "codes or EOS" is one
                          contiguous range)
    n_codes + 1    BOS   (the file starts here)
    n_codes + 2    SEP   (conditioning ends, targets begin)
    n_codes + 3    PAD

Sequences (Ks semantic codebook, Ka acoustic codebook, Q' coarse of Q levels, r = 2 acoustic
frames per semantic token; a window holds W semantic tokens or F acoustic frames):

    semantic  [BOS] s_0 s_1 ... s_{n-1} [EOS]                          ids s          in [0, Ks)
    coarse    s_0 .. s_{m-1} PAD.. SEP  c^0_0 c^1_0 .. c^{Q'-1}_0 c^0_1 .. [EOS]
              (the semantic block right-padded to W, so the distance from an acoustic frame to
              its semantic token never changes)                     level q  in [Ks+q*Ka, +Ka)
    fine      c^0_0 .. c^{Q'-1}_0 c^0_1 .. PAD.. SEP  f^{Q'}_0 .. f^{Q-1}_0 f^{Q'}_1 .. [EOS]
              (the coarse block right-padded to F frames)           level q  in [q*Ka, +Ka)

BOS only where a sequence starts at the file's first frame, EOS only where it reaches the file's
last frame. Targets at a position may only be that position's level (or EOS for the semantic
stage): `target_ranges` gives the legal [lo, hi) of each generated token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from segue.errors import InputError
from segue.lm.config import StageConfig


def flatten_levels(codes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """codes [..., L, T] (level q in [0, K)) -> ids [..., T*L], frame by frame, + offsets[q]."""
    return (codes + offsets[:, None]).transpose(-1, -2).reshape(*codes.shape[:-2], -1)


def unflatten_levels(ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Inverse of `flatten_levels`: ids [..., T*L] -> codes [..., L, T]."""
    levels = offsets.numel()
    if ids.shape[-1] % levels:
        raise InputError(f"{ids.shape[-1]} ids are not whole frames of {levels} levels")
    frames = ids.reshape(*ids.shape[:-1], -1, levels)
    return (frames - offsets).transpose(-1, -2)


@dataclass(frozen=True)
class _Specials:
    n_codes: int

    @property
    def eos(self) -> int:
        return self.n_codes

    @property
    def bos(self) -> int:
        return self.n_codes + 1

    @property
    def sep(self) -> int:
        return self.n_codes + 2

    @property
    def pad(self) -> int:
        return self.n_codes + 3

    @property
    def vocab_size(self) -> int:
        return self.n_codes + 4


@dataclass(frozen=True)
class SemanticLayout(_Specials):
    """[BOS] semantic tokens [EOS]; `window` tokens at most. Generated tokens: codes or EOS."""

    window: int = 0

    @property
    def max_length(self) -> int:
        return self.window + 2

    @property
    def prefix_length(self) -> int:
        return 0  # every token after the first is a target

    def sequence(self, tokens: torch.Tensor, *, bos: bool, eos: bool) -> torch.Tensor:
        """tokens [n] -> ids [n + bos + eos]."""
        parts = [torch.tensor([self.bos])] if bos else []
        parts.append(tokens.long())
        if eos:
            parts.append(torch.tensor([self.eos]))
        return torch.cat(parts)

    def target_ranges(self, n: int) -> list[tuple[int, int]]:
        return [(0, self.eos + 1)] * n


@dataclass(frozen=True)
class _AcousticLayout(_Specials):
    acoustic_vocab: int = 0
    first_level: int = 0  # level of the first generated token's range
    n_target_levels: int = 0

    def level_range(self, q: int) -> tuple[int, int]:
        lo = self.level_offset(q)
        return lo, lo + self.acoustic_vocab

    def level_offset(self, q: int) -> int:
        raise NotImplementedError

    def _offsets(self, levels: range) -> torch.Tensor:
        return torch.tensor([self.level_offset(q) for q in levels])

    def target_ranges(self, n: int) -> list[tuple[int, int]]:
        """Legal [lo, hi) of n generated tokens starting at a frame boundary."""
        levels = range(self.first_level, self.first_level + self.n_target_levels)
        cycle = [self.level_range(q) for q in levels]
        return [cycle[i % len(cycle)] for i in range(n)]

    def flatten(self, codes: torch.Tensor) -> torch.Tensor:
        """Target codes [..., levels, T] -> ids [..., T * levels]."""
        levels = range(self.first_level, self.first_level + self.n_target_levels)
        return flatten_levels(codes.long(), self._offsets(levels).to(codes.device))

    def unflatten(self, ids: torch.Tensor) -> torch.Tensor:
        """Target ids [..., T * levels] -> codes [..., levels, T]."""
        levels = range(self.first_level, self.first_level + self.n_target_levels)
        return unflatten_levels(ids, self._offsets(levels).to(ids.device))


@dataclass(frozen=True)
class CoarseLayout(_AcousticLayout):
    """Semantic tokens of a window, SEP, then the first Q' acoustic levels frame by frame."""

    semantic_vocab: int = 0
    window: int = 0  # semantic tokens per window
    ratio: int = 2  # acoustic frames per semantic token

    def level_offset(self, q: int) -> int:
        return self.semantic_vocab + q * self.acoustic_vocab

    @property
    def frames(self) -> int:
        """Acoustic frames per window."""
        return self.ratio * self.window

    @property
    def prefix_length(self) -> int:
        return self.window + 1

    @property
    def max_length(self) -> int:
        return self.prefix_length + self.frames * self.n_target_levels + 1

    def prefix(self, semantic: torch.Tensor) -> torch.Tensor:
        """semantic [..., m <= window] -> [..., window + 1]: right-padded with PAD, then SEP."""
        m = semantic.shape[-1]
        if m > self.window:
            raise InputError(f"{m} semantic tokens do not fit a window of {self.window}")
        tail = torch.full((*semantic.shape[:-1], self.window - m + 1), self.pad)
        tail[..., -1] = self.sep
        return torch.cat([semantic.long(), tail.to(semantic.device)], dim=-1)

    def sequence(self, semantic: torch.Tensor, coarse: torch.Tensor, *, eos: bool) -> torch.Tensor:
        """semantic [m], coarse [Q', frames] -> ids [window + 1 + frames * Q' (+ 1)]."""
        parts = [self.prefix(semantic), self.flatten(coarse)]
        if eos:
            parts.append(torch.tensor([self.eos]))
        return torch.cat(parts)


@dataclass(frozen=True)
class FineLayout(_AcousticLayout):
    """Coarse levels of a window frame by frame, SEP, then the fine levels frame by frame."""

    n_coarse: int = 0
    window: int = 0  # acoustic frames per window

    def level_offset(self, q: int) -> int:
        return q * self.acoustic_vocab

    @property
    def frames(self) -> int:
        return self.window

    @property
    def prefix_length(self) -> int:
        return self.window * self.n_coarse + 1

    @property
    def max_length(self) -> int:
        return self.prefix_length + self.window * self.n_target_levels + 1

    def prefix(self, coarse: torch.Tensor) -> torch.Tensor:
        """coarse [..., Q', m <= window] -> [..., window * Q' + 1]: PAD-padded, then SEP."""
        m = coarse.shape[-1]
        if m > self.window:
            raise InputError(f"{m} frames do not fit a window of {self.window}")
        ids = flatten_levels(coarse.long(), self._offsets(range(self.n_coarse)).to(coarse.device))
        tail = torch.full((*ids.shape[:-1], (self.window - m) * self.n_coarse + 1), self.pad)
        tail[..., -1] = self.sep
        return torch.cat([ids, tail.to(ids.device)], dim=-1)

    def sequence(self, coarse: torch.Tensor, fine: torch.Tensor, *, eos: bool) -> torch.Tensor:
        """coarse [Q', frames], fine [Q - Q', frames] -> ids."""
        parts = [self.prefix(coarse), self.flatten(fine)]
        if eos:
            parts.append(torch.tensor([self.eos]))
        return torch.cat(parts)


Layout = SemanticLayout | CoarseLayout | FineLayout


def layout_for(stage: StageConfig) -> Layout:
    """The layout of a stage whose token spaces are filled in (see `StageConfig`)."""
    if stage.stage == "semantic":
        if not stage.semantic_vocab:
            raise InputError("semantic stage: semantic_vocab is not set (read it from shards)")
        window = round(stage.window_seconds * stage.semantic_rate)
        return SemanticLayout(n_codes=stage.semantic_vocab, window=window)
    q_coarse, q_all, ka = stage.n_coarse, stage.n_levels, stage.acoustic_vocab
    if not ka or not q_coarse:
        raise InputError(f"{stage.stage} stage: acoustic_vocab/n_coarse are not set")
    if stage.stage == "coarse":
        if not stage.semantic_vocab:
            raise InputError("coarse stage: semantic_vocab is not set")
        return CoarseLayout(
            n_codes=stage.semantic_vocab + q_coarse * ka,
            acoustic_vocab=ka,
            first_level=0,
            n_target_levels=q_coarse,
            semantic_vocab=stage.semantic_vocab,
            window=round(stage.window_seconds * stage.semantic_rate),
            ratio=stage.ratio,
        )
    if (q_all or 0) <= q_coarse:
        raise InputError(f"fine stage: needs n_levels ({q_all}) > n_coarse ({q_coarse})")
    return FineLayout(
        n_codes=q_all * ka,
        acoustic_vocab=ka,
        first_level=q_coarse,
        n_target_levels=q_all - q_coarse,
        n_coarse=q_coarse,
        window=round(stage.window_seconds * stage.acoustic_rate),
    )


def dedup(tokens: torch.Tensor) -> torch.Tensor:
    """Consecutive repeats removed: [5, 5, 2, 2, 5] -> [5, 2, 5] (1-d)."""
    return torch.unique_consecutive(tokens)


def prompt_frames(stage: StageConfig) -> int:
    """The prompt kept when a window slides, in the stage's conditioning frames."""
    rate = stage.acoustic_rate if stage.stage == "fine" else stage.semantic_rate
    return round(stage.prompt_seconds * rate)


def shared_ids(
    old: Layout, new: Layout, *, semantic: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(new ids, old ids) that mean the same token in two layouts of one stage: the specials,
    the acoustic levels both have (same codebook size), and, with `semantic` (one tokenizer),
    the semantic codes of one vocabulary. Fine-tuning on another semantic tokenizer's tokens
    carries the others over (`semantic=False`)."""
    pairs = [(new.eos + i, old.eos + i) for i in range(4)]  # EOS BOS SEP PAD
    old_s = old.n_codes if isinstance(old, SemanticLayout) else getattr(old, "semantic_vocab", 0)
    new_s = new.n_codes if isinstance(new, SemanticLayout) else getattr(new, "semantic_vocab", 0)
    if semantic and old_s and old_s == new_s:
        pairs += [(i, i) for i in range(new_s)]
    acoustic = isinstance(old, _AcousticLayout) and isinstance(new, _AcousticLayout)
    if acoustic and old.acoustic_vocab == new.acoustic_vocab:
        levels = min(old.first_level + old.n_target_levels, new.first_level + new.n_target_levels)
        for q in range(levels):
            pairs += zip(range(*new.level_range(q)), range(*old.level_range(q)))
    new_ids, old_ids = zip(*sorted(pairs))
    return torch.tensor(new_ids), torch.tensor(old_ids)
