"""Sampling: temperature / top-k / top-p, legal id ranges, batched generation with a KV cache.

`generate(model, prompt [B, T0], ranges)` prefills the prompt once, then each new token is one
cached step. `ranges[i] = (lo, hi)` is the legal id range of the i-th generated token (a level's
codes, or "codes or EOS"): only those rows of the output layer are computed, so an illegal id
cannot be sampled at all, and the head costs less. All sequences of a batch advance together;
one that samples `eos` is finished (its later tokens are `pad`), and generation stops when all
are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from segue.errors import InputError
from segue.lm.model import Transformer


def filter_logits(
    logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """logits [B, V] with everything outside the top-k, then outside the nucleus, set to -inf.

    The nucleus is the smallest set of most likely ids whose probability reaches top_p (after
    top-k, renormalised); the most likely id is always kept.
    """
    values, order = _candidates(logits, top_k, top_p)
    out = torch.full_like(logits, float("-inf"))
    return out.scatter(-1, order, values)


def _candidates(
    logits: torch.Tensor, top_k: int | None, top_p: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, ids) [B, k] of the surviving candidates, most likely first; others -inf."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        values, order = torch.topk(logits, top_k, dim=-1)
    else:
        values, order = torch.sort(logits, dim=-1, descending=True)
    if top_p is not None and top_p < 1.0:
        probs = F.softmax(values, dim=-1)
        before = probs.cumsum(-1) - probs  # mass of the more likely candidates
        values = values.masked_fill(before >= top_p, float("-inf"))
    return values, order


def sample(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One id per row of logits [B, V] -> [B] (temperature 0: argmax), from
    softmax(logits / temperature) restricted to the top-k, then to the top-p nucleus."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature if temperature != 1.0 else logits
    if top_k is None and top_p is None:
        return _draw(logits, generator)
    values, order = _candidates(logits, top_k, top_p)
    return order.gather(-1, _draw(values, generator)[:, None])[:, 0]


def _draw(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One index per row of logits [B, V], drawn from softmax(logits), by inverting the CDF.

    One uniform number per row (torch.multinomial draws V exponentials: several times slower
    at one token per step). u stays just below the total mass, so an id of probability 0
    (a -inf logit) is never returned.
    """
    cdf = F.softmax(logits, dim=-1, dtype=torch.float32).cumsum_(-1)
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device)
    u = u.mul_(cdf[:, -1:]).mul_(1.0 - 1e-6)
    return torch.searchsorted(cdf, u, right=True)[:, 0]


@dataclass
class Generation:
    """tokens [B, n' <= n]: generated ids (`pad` after a sequence's EOS, which is kept; n' < n
    when every sequence ended early); lengths [B]: tokens before EOS (n' if none); ended [B]:
    whether EOS was sampled."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    ended: torch.Tensor


@torch.inference_mode()
def generate(
    model: Transformer,
    prompt: torch.Tensor,
    ranges: Sequence[tuple[int, int]],
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos: int | None = None,
    pad: int = 0,
    generator: torch.Generator | None = None,
) -> Generation:
    """Sample len(ranges) tokens after prompt [B, T0 >= 1]; token i in [ranges[i][0], ranges[i][1]).

    Prompts of a batch have the same length. Returns early when every sequence has ended.
    """
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise InputError(f"prompt must be [B, T0 >= 1], got {tuple(prompt.shape)}")
    model.eval()
    batch, n = prompt.shape[0], len(ranges)
    device = model.head.weight.device
    prompt = prompt.to(device)
    tokens = torch.full((batch, n), pad, dtype=torch.long, device=device)
    if n == 0:
        zeros = torch.zeros(batch, dtype=torch.long, device=device)
        return Generation(tokens, zeros, zeros.bool())
    cache = model.new_cache(batch, prompt.shape[1] + n - 1)
    lo, hi = ranges[0]
    logits = model.extend(prompt, cache, lo, hi)
    ended = torch.zeros(batch, dtype=torch.bool, device=device)
    steps = n
    for i in range(n):
        token = sample(logits, temperature, top_k, top_p, generator) + lo
        tokens[:, i] = token
        if eos is not None and lo <= eos < hi:  # else EOS could not be sampled: no check, no sync
            ended |= token == eos
            if bool(ended.all()):
                steps = i + 1
                break
        if i + 1 < n:
            lo, hi = ranges[i + 1]
            logits = model.extend(token[:, None], cache, lo, hi)
    tokens = tokens[:, :steps] if steps < n else tokens
    if eos is None:
        lengths = torch.full((batch,), tokens.shape[1], dtype=torch.long, device=device)
        return Generation(tokens, lengths, ended)
    is_eos = tokens == eos
    ended = is_eos.any(-1)
    lengths = torch.where(ended, is_eos.long().argmax(-1), tokens.shape[1])
    after = torch.arange(tokens.shape[1], device=device)[None] > lengths[:, None]
    return Generation(tokens.masked_fill(after, pad), lengths, ended)
