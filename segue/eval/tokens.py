"""What a semantic token tells about the acoustic codes at its time, and around it.

For each lag k, the plug-in mutual information I(s_t ; c^q_{r(t+k)}) between the semantic token
t and acoustic level q at the first frame of token t + k (r frames per token), pooled over a
split's files. The plug-in estimate is biased upward by the table's size against the number of
pairs, so the same estimate on the pairs with the codes shuffled (no dependence; a seeded
permutation) is reported beside it and subtracted: `excess` in nats.

Read: a peak at lag 0 says the tokens are time-aligned with the codes; its height is what an
acoustic model can take from the right token for that level (an upper bound for one token and
one frame); the level far from 0 is what they share over the whole utterance (the voice, the
recording). A tokenizer + codec pair whose lag-0 excess is small leaves the acoustic model to
find the codes from its acoustic context: resynthesis from the tokens then keeps few words.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np

from segue.data.shards import TokenShards
from segue.errors import InputError
from segue.lm.config import frames_per_token
from segue.lm.data import join_utterances


def plugin_information(x: np.ndarray, y: np.ndarray) -> float:
    """Plug-in mutual information (nats) of paired non-negative ints x, y [N]."""
    if x.shape != y.shape or x.size == 0:
        raise InputError(f"need paired, non-empty samples, got {x.shape} and {y.shape}")
    ky = int(y.max()) + 1
    joint = np.bincount(x.astype(np.int64) * ky + y, minlength=(int(x.max()) + 1) * ky)
    p = joint.reshape(-1, ky) / x.size
    px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / (px * py)[nz])).sum())


@dataclass
class LagInformation:
    """I(s_t ; c_{r(t+lag)}) over `pairs` pairs; `shuffled`: the same with the codes permuted."""

    lag: int
    information: float
    shuffled: float
    pairs: int

    @property
    def excess(self) -> float:
        return self.information - self.shuffled


@dataclass
class TokenInformation:
    """Per lag, what the semantic tokens of `files` files tell about acoustic level `level`."""

    level: int
    files: int
    lags: list[LagInformation]

    def at(self, lag: int) -> LagInformation:
        return next(row for row in self.lags if row.lag == lag)

    @property
    def aligned(self) -> float:
        """Excess nats at lag 0."""
        return self.at(0).excess

    @property
    def far(self) -> float:
        """Mean excess nats at the farthest lags (-max, +max): what is shared utterance-wide."""
        far = max(abs(row.lag) for row in self.lags)
        rows = [row.excess for row in self.lags if abs(row.lag) == far]
        return float(np.mean(rows))

    def to_json(self, **extra) -> str:
        data = dataclasses.asdict(self)
        for row in data["lags"]:
            row["excess"] = row["information"] - row["shuffled"]
        return json.dumps({**data, "aligned": self.aligned, "far": self.far, **extra}, indent=1)


def token_information(
    semantic: TokenShards,
    acoustic: TokenShards,
    *,
    level: int = 0,
    max_lag: int = 8,
    max_files: int | None = None,
    seed: int = 0,
) -> TokenInformation:
    """`TokenInformation` of level `level` at lags -max_lag..max_lag over the files both shard
    sets hold (joined on the utterance key; the first `max_files`)."""
    if not 0 <= level < acoustic.levels:
        raise InputError(f"level {level} is not one of the {acoustic.levels} acoustic levels")
    if max_lag < 0:
        raise InputError(f"max_lag must be >= 0, got {max_lag}")
    r = frames_per_token(float(acoustic.meta["frame_rate"]), float(semantic.meta["frame_rate"]))
    pairs = join_utterances(semantic, acoustic)[:max_files]
    lags = range(-max_lag, max_lag + 1)
    xs: dict[int, list[np.ndarray]] = {k: [] for k in lags}
    ys: dict[int, list[np.ndarray]] = {k: [] for k in lags}
    for a, s in pairs:
        tokens = semantic.tokens(s)[0].astype(np.int64)
        codes = acoustic.tokens(a)[level].astype(np.int64)
        t = np.arange(min(len(tokens), -(-len(codes) // r)))
        for k in lags:
            frame = r * (t + k)
            ok = (frame >= 0) & (frame < len(codes))
            xs[k].append(tokens[t[ok]])
            ys[k].append(codes[frame[ok]])
    rng = np.random.default_rng(seed)
    rows = []
    for k in lags:
        x, y = np.concatenate(xs[k]), np.concatenate(ys[k])
        if x.size == 0:
            raise InputError(f"no token has a frame {k} tokens away: the files are too short")
        shuffled = plugin_information(x, rng.permutation(y))
        rows.append(LagInformation(k, plugin_information(x, y), shuffled, int(x.size)))
    return TokenInformation(level=level, files=len(pairs), lags=rows)


def format_information(report: TokenInformation) -> str:
    """One row per lag, then the two summaries."""
    lines = [
        f"semantic token t vs acoustic level {report.level} at token t + lag, {report.files} files",
        "  lag   I (nats)  shuffled  excess   pairs",
    ]
    for row in report.lags:
        lines.append(
            f"  {row.lag:+4d}  {row.information:8.3f}  {row.shuffled:8.3f}  {row.excess:6.3f}"
            f"  {row.pairs:7d}"
        )
    lines.append(f"  aligned (lag 0): {report.aligned:.3f} nats; far lags: {report.far:.3f} nats")
    return "\n".join(lines)
