"""SoundStorm decoding: MaskGIT-style confidence-based parallel decoding, level by level.

    codes = generate(model, semantic [B, Ts], prompt_codes [B, Q, Tp], n_frames=T)  # [B, Q, T]

Frames [0, Tp) are the prompt and never change. Level 0 is decoded over S_0 iterations, then
level 1 over S_1, and so on (coarse -> fine). In iteration s of S (1-based) of a level over
n = T - Tp frames, the model predicts every frame still masked, a token is sampled for each
(Gumbel-max at the level's temperature; argmax at 0), and the most confident of them are kept
so that floor(n * cos(pi/2 * s / S)) frames stay masked (none after the last iteration).
Confidence is the sampled token's log-probability plus `noise * (1 - s / S)` Gumbel noise.
Kept tokens are never changed again. Every item of the batch has the same Tp and T.

`given` [B, G, T] fixes the first G levels on every frame (a file's own coarse codes, say):
decoding starts at level G. Resynthesis keeping G levels tells what the levels >= G lose.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from segue.errors import InputError
from segue.soundstorm.masking import mask_ratio, pick_lowest
from segue.soundstorm.model import SoundStorm

StepHook = Callable[[int, int, torch.Tensor], None]  # (level, iteration, codes [B, Q, T])


def _gumbel(shape: torch.Size, generator: torch.Generator | None, device) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=device).clamp(1e-10, 1 - 1e-7)
    return -torch.log(-torch.log(u))


def _per_level(value: float | Sequence | None, default: list, n_levels: int, name: str) -> list:
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return [value] * n_levels
    if len(value) != n_levels:
        raise InputError(f"{name}: {len(value)} values for {n_levels} levels")
    return list(value)


@torch.no_grad()
def generate(
    model: SoundStorm,
    semantic: torch.Tensor,
    prompt_codes: torch.Tensor | None = None,
    n_frames: int | None = None,
    steps_per_level: int | Sequence[int] | None = None,
    temperature: float | Sequence[float] | None = None,
    noise: float | None = None,
    generator: torch.Generator | None = None,
    on_step: StepHook | None = None,
    given: torch.Tensor | None = None,
) -> torch.Tensor:
    """Acoustic codes [B, Q, T] for semantic [B, Ts] continuing prompt_codes [B, Q, Tp].

    n_frames (T, prompt included) defaults to Ts * ratio. steps_per_level / temperature: one
    value for every level or one per level (default: the model config's). `on_step` is called
    after every iteration with (level, iteration, a copy of the codes, MASK = K where undecided).
    given [B, G, T] (0 < G < Q): the first G levels of every frame, kept as they are.
    """
    config = model.config
    q_levels, mask_id, device = config.n_levels, config.mask_id, semantic.device
    batch = semantic.shape[0]
    length = n_frames if n_frames is not None else semantic.shape[1] * config.ratio
    steps = _per_level(steps_per_level, config.steps_per_level(), q_levels, "steps_per_level")
    temps = _per_level(temperature, config.temperatures(), q_levels, "temperature")
    noise = config.noise if noise is None else noise

    codes = torch.full((batch, q_levels, length), mask_id, dtype=torch.long, device=device)
    n_prompt = 0
    if prompt_codes is not None:
        n_prompt = prompt_codes.shape[2]
        if prompt_codes.shape[:2] != (batch, q_levels) or n_prompt > length:
            raise InputError(
                f"prompt_codes {tuple(prompt_codes.shape)} do not fit [B={batch}, Q={q_levels}, "
                f"Tp <= {length}]"
            )
        codes[:, :, :n_prompt] = prompt_codes
    first = 0
    if given is not None:
        first = given.shape[1] if given.ndim == 3 else 0
        if given.shape != (batch, first, length) or not 0 < first < q_levels:
            raise InputError(
                f"given {tuple(given.shape)} does not fit [B={batch}, 0 < G < {q_levels}, "
                f"T={length}]"
            )
        codes[:, :first] = given
    n_new = length - n_prompt
    if n_new == 0:
        return codes

    was_training = model.training
    model.eval()
    for level in range(first, q_levels):
        n_steps = steps[level]
        for s in range(1, n_steps + 1):
            masked = codes[:, level] == mask_id  # [B, T]
            logits = model(codes, semantic, levels=level).float()  # [B, T, K]
            logp = logits.log_softmax(-1)
            if temps[level] > 0:
                noisy = logp / temps[level] + _gumbel(logp.shape, generator, device)
                sampled = noisy.argmax(-1)
            else:
                sampled = logp.argmax(-1)
            confidence = logp.gather(-1, sampled[..., None])[..., 0]  # [B, T]
            annealed = noise * (1 - s / n_steps)
            if annealed > 0:
                confidence = confidence + annealed * _gumbel(confidence.shape, generator, device)
            remain = math.floor(n_new * float(mask_ratio(s / n_steps))) if s < n_steps else 0
            count = (masked.sum(1) - remain).clamp(min=0)  # to decide in this iteration
            decide = pick_lowest(-confidence, masked, count)  # the most confident masked frames
            codes[:, level] = torch.where(decide, sampled, codes[:, level])
            if on_step is not None:
                on_step(level, s, codes.clone())
    model.train(was_training)
    return codes


def generate_windowed(
    model: SoundStorm,
    semantic: torch.Tensor,
    codes: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
    given: torch.Tensor | None = None,
) -> torch.Tensor:
    """Semantic [B, Ts] (+ known codes [B, Q, r * Tp]) -> codes [B, Q, r * Ts], at any length.

    Up to `max_frames` frames: one `generate`. Longer: windows of W = max_frames // r tokens,
    each prompted with the last W // 2 tokens' codes known so far (the given prompt's for the
    first) and seeing only its own semantic tokens; each window adds >= W / 2 tokens.
    given [B, G, r * Ts]: the first G levels of every frame, kept (`generate`).
    """
    r, total = model.config.ratio, semantic.shape[1]
    width = model.config.max_frames // r
    if width < 2:
        raise InputError(
            f"SoundStorm's max_frames={model.config.max_frames} holds under 2 semantic tokens"
        )
    done = 0 if codes is None else codes.shape[2] // r
    decoded = codes[:, :, : r * done] if codes is not None else None
    while done < total:
        start = 0 if total <= width else max(0, done - width // 2)
        end = min(total, start + width)
        prompt = None if decoded is None or done == start else decoded[:, :, r * start :]
        out = generate(
            model,
            semantic[:, start:end],
            prompt,
            n_frames=r * (end - start),
            generator=generator,
            given=None if given is None else given[:, :, r * start : r * end],
        )
        new = out[:, :, r * (done - start) :]
        decoded = new if decoded is None else torch.cat([decoded, new], dim=2)
        done = end
    return decoded
