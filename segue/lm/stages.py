"""The three stages as the pipeline calls them, and loading a trained stage.

    semantic = load_lm("runs/semantic")
    out = semantic_continue(semantic, prompt [B, T], n_tokens=250)   # out.tokens [B, 250]
    coarse = coarse_generate(load_lm("runs/coarse"), out.tokens)     # [B, Q', 2 * 250]
    codes = fine_generate(load_lm("runs/fine"), coarse)              # [B, Q, 500]

Each stage runs in windows of its `window_seconds` (see `StageConfig`): the semantic stage slides
its context, keeping the last `prompt_seconds`; the coarse stage slides 10 s windows (`audiolm`)
over the semantic tokens, the coarse frames already generated in the window being the prompt;
the fine stage makes non-overlapping windows of `window - prompt` seconds, each conditioned on
the previous `prompt` seconds. Every sequence of a batch is generated together; sampling
settings default to the stage's (`temperature`, `top_k`, `top_p`; pass top_k=0 / top_p=1.0 to
switch a default off).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from segue.config import from_dict, load_config, save_config
from segue.errors import InputError
from segue.lm.config import LMConfig, StageConfig, model_preset
from segue.lm.layout import CoarseLayout, FineLayout, Layout, SemanticLayout, layout_for
from segue.lm.layout import prompt_frames as _prompt_frames
from segue.lm.model import Transformer
from segue.lm.sampling import Generation, generate
from segue.pretrained import CONFIG_NAME, WEIGHTS_NAME, saved_model_folder

STAGE_NAME = "stage.json"


@dataclass
class StageLM:
    """A trained stage: the transformer, its stage config and layout."""

    model: Transformer
    stage: StageConfig
    layout: Layout

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """config.json + model.safetensors (the transformer) + stage.json."""
        path = self.model.save_pretrained(directory)
        save_config(self.stage, path / STAGE_NAME)
        return path

    def to(self, device: torch.device | str) -> StageLM:
        self.model.to(device)
        return self

    @classmethod
    def random(
        cls, stage: StageConfig, preset: str = "tiny", *, seed: int | None = None, **model
    ) -> StageLM:
        """A randomly initialised stage (benchmarks, tests): the transformer preset `preset`
        with `model` fields overridden, its vocabulary and length from the stage's layout."""
        layout = layout_for(stage)
        config = model_preset(
            preset, vocab_size=layout.vocab_size, max_seq_len=layout.max_length, **model
        )
        if seed is not None:
            torch.manual_seed(seed)
        return cls(Transformer(config).eval(), stage, layout)


def load_lm(
    location: str | os.PathLike, *, prefer_ema: bool = True, device: str | torch.device = "cpu"
) -> StageLM:
    """A stage from an exported folder (`StageLM.save_pretrained`) or a training run folder
    (newest valid checkpoint; EMA weights when there are some), in eval mode."""
    path, exported = _lm_folder(location)
    if exported:
        stage = load_config(StageConfig, path / STAGE_NAME)
        model = Transformer.from_pretrained(path)
    else:
        from segue.lm.train import LMRunConfig
        from segue.train.checkpoint import load_run_weights

        raw, weights = load_run_weights(path, "model", prefer_ema=prefer_ema, what="language-model")
        config = from_dict(LMRunConfig, raw)
        stage = config.stage
        model = Transformer(config.model)
        model.load_state_dict(weights)
    return StageLM(model.eval().to(device), stage, layout_for(stage))


def read_lm_config(location: str | os.PathLike) -> tuple[LMConfig, StageConfig]:
    """The model and stage configs of what `load_lm(location)` loads, without reading its
    weights (fine-tuning adopts them before it knows whether the weights are needed)."""
    path, exported = _lm_folder(location)
    if exported:
        stage = load_config(StageConfig, path / STAGE_NAME)
        return load_config(LMConfig, path / CONFIG_NAME), stage
    from segue.lm.train import LMRunConfig
    from segue.train.checkpoint import read_run_config

    config = from_dict(LMRunConfig, read_run_config(path, what="language-model"))
    return config.model, config.stage


def _lm_folder(location: str | os.PathLike) -> tuple[Path, bool]:
    """(the folder, whether it is an exported LM rather than an LM run folder)."""
    return saved_model_folder(location, (WEIGHTS_NAME, STAGE_NAME), "LM")


def _expect(lm: StageLM, kind: type) -> None:
    if not isinstance(lm.layout, kind):
        raise InputError(f"this is a {lm.stage.stage} LM, not a {kind.__name__[:-6].lower()} one")


def _settings(lm: StageLM, temperature, top_k, top_p, generator) -> dict:
    stage = lm.stage
    return {
        "temperature": stage.temperature if temperature is None else temperature,
        "top_k": stage.top_k if top_k is None else (top_k or None),
        "top_p": stage.top_p if top_p is None else top_p,
        "generator": generator,
    }


def _check_codes(name: str, codes: torch.Tensor, size: int) -> None:
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= size):
        raise InputError(f"{name}: ids outside [0, {size})")


def windows(
    done: int, total: int, cond: int, window: int, prompt: int, ratio: int = 1
) -> Iterator[tuple[int, int, int]]:
    """Windows that generate output frames [done, total) over `cond` conditioning frames.

    Yields (s0, a0, a1): the window covers conditioning frames [s0, s0 + window), output frames
    [ratio * s0, ...) of which [a0 = ratio * s0, done) are its prompt and [done, a1) are
    generated. Each window keeps at least `prompt` conditioning frames of what came before
    (fewer only at the start); the last one is aligned to the end of the conditioning, so every
    window but a short input's is full.
    """
    if prompt >= window:
        raise InputError(f"prompt ({prompt}) must be shorter than the window ({window})")
    while done < total:
        s0 = max(0, min(done // ratio - prompt, cond - window))
        end = min(ratio * (s0 + window), total)
        yield s0, ratio * s0, end
        done = end


@torch.inference_mode()
def semantic_continue(
    lm: StageLM,
    prompt: torch.Tensor | None,
    n_tokens: int,
    *,
    batch_size: int = 1,
    from_start: bool = True,
    eos: bool = True,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Generation:
    """Continue semantic prompt [B, T] (None: from nothing, `batch_size` sequences) by up to
    n_tokens. `from_start`: the prompt is the beginning of a file (BOS before it); `eos`:
    sequences may end (else exactly n_tokens are generated).

    Returns tokens [B, n'] (n' <= n_tokens; -1 after a sequence's end), lengths [B] (tokens
    before EOS) and ended [B] (EOS sampled). A dedup-trained LM continues deduped tokens.
    """
    _expect(lm, SemanticLayout)
    layout, model = lm.layout, lm.model
    device = model.head.weight.device
    if prompt is None:
        prompt = torch.zeros(batch_size, 0, dtype=torch.long)
    if prompt.ndim != 2:
        raise InputError(f"prompt must be [B, T], got {tuple(prompt.shape)}")
    _check_codes("prompt", prompt, layout.n_codes)
    history = prompt.long().to(device)
    batch, keep = history.shape[0], _prompt_frames(lm.stage)
    out = torch.full((batch, n_tokens), -1, dtype=torch.long, device=device)
    lengths = torch.full((batch,), n_tokens, dtype=torch.long, device=device)
    ended = torch.zeros(batch, dtype=torch.bool, device=device)
    done = 0
    while done < n_tokens:
        length = history.shape[1]
        if length >= layout.window:  # slide: the last `keep` tokens are the new prompt
            if keep < 1:
                raise InputError("prompt_seconds is 0: the semantic context cannot slide")
            context, bos = history[:, length - keep :], False
        else:
            context, bos = history, from_start
        if bos:
            context = torch.cat([torch.full((batch, 1), layout.bos, device=device), context], 1)
        if context.shape[1] == 0:
            raise InputError("semantic_continue needs a prompt unless from_start=True")
        k = min(n_tokens - done, layout.window - (context.shape[1] - bos))
        ranges = layout.target_ranges(k) if eos else [(0, layout.n_codes)] * k
        gen = generate(
            model,
            context,
            ranges,
            eos=layout.eos,
            pad=layout.pad,
            **_settings(lm, temperature, top_k, top_p, generator),
        )
        got = gen.tokens.shape[1]
        live = ~ended[:, None] & (torch.arange(got, device=device)[None] < gen.lengths[:, None])
        out[:, done : done + got] = gen.tokens.masked_fill(~live, -1)
        lengths = torch.where(gen.ended & ~ended, done + gen.lengths, lengths)
        ended |= gen.ended
        history = torch.cat([history, gen.tokens], dim=1)
        done += got
        if bool(ended.all()):
            break
    lengths = torch.where(ended, lengths, done)
    return Generation(out[:, :done], lengths, ended)


def _prompted(
    name: str, prompt: torch.Tensor | None, shape: tuple[int, int, int], size: int, device
) -> tuple[torch.Tensor, int]:
    """Output codes of `shape` [B, levels, frames] holding the prompt; frames already known."""
    out = torch.zeros(shape, dtype=torch.long, device=device)
    if prompt is None:
        return out, 0
    if prompt.ndim != 3 or prompt.shape[:2] != shape[:2] or prompt.shape[2] > shape[2]:
        raise InputError(
            f"{name} must be [{shape[0]}, {shape[1]}, <= {shape[2]}], got {tuple(prompt.shape)}"
        )
    _check_codes(name, prompt, size)
    out[:, :, : prompt.shape[2]] = prompt
    return out, prompt.shape[2]


def _fill(lm: StageLM, out: torch.Tensor, done: int, spans, condition, settings) -> None:
    """Generate out[:, :, done:] window by window; condition(s0) -> the window's prefix ids."""
    layout = lm.layout
    for s0, a0, a1 in spans:
        context = torch.cat([condition(s0), layout.flatten(out[:, :, a0:done])], dim=1)
        ranges = layout.target_ranges((a1 - done) * layout.n_target_levels)
        gen = generate(lm.model, context, ranges, pad=layout.pad, **settings)
        out[:, :, done:a1] = layout.unflatten(gen.tokens)
        done = a1


@torch.inference_mode()
def coarse_generate(
    lm: StageLM,
    semantic: torch.Tensor,
    prompt_coarse: torch.Tensor | None = None,
    n_frames: int | None = None,
    *,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Coarse codes [B, Q', n_frames] for semantic tokens [B, Ts] (default n_frames = r * Ts).

    prompt_coarse [B, Q', Tc]: the first Tc frames, already known (kept as they are).
    """
    _expect(lm, CoarseLayout)
    layout = lm.layout
    device = lm.model.head.weight.device
    if semantic.ndim != 2:
        raise InputError(f"semantic must be [B, Ts], got {tuple(semantic.shape)}")
    _check_codes("semantic", semantic, layout.semantic_vocab)
    batch, cond = semantic.shape
    ratio, window = layout.ratio, layout.window
    n_frames = ratio * cond if n_frames is None else n_frames
    if n_frames > ratio * cond:
        raise InputError(f"{cond} semantic tokens cover {ratio * cond} frames, not {n_frames}")
    shape = (batch, layout.n_target_levels, n_frames)
    out, done = _prompted("prompt_coarse", prompt_coarse, shape, layout.acoustic_vocab, device)
    semantic = semantic.long().to(device)
    spans = windows(done, n_frames, cond, window, _prompt_frames(lm.stage), ratio)
    settings = _settings(lm, temperature, top_k, top_p, generator)
    _fill(lm, out, done, spans, lambda s0: layout.prefix(semantic[:, s0 : s0 + window]), settings)
    return out


@torch.inference_mode()
def fine_generate(
    lm: StageLM,
    coarse: torch.Tensor,
    prompt_fine: torch.Tensor | None = None,
    *,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """All acoustic codes [B, Q, T] (coarse levels first) for coarse codes [B, Q', T].

    prompt_fine [B, Q - Q', Tp]: the first Tp frames' fine levels, already known.
    """
    _expect(lm, FineLayout)
    layout = lm.layout
    device = lm.model.head.weight.device
    if coarse.ndim != 3 or coarse.shape[1] != layout.n_coarse:
        raise InputError(f"coarse must be [B, {layout.n_coarse}, T], got {tuple(coarse.shape)}")
    _check_codes("coarse", coarse, layout.acoustic_vocab)
    batch, _, total = coarse.shape
    window = layout.window
    coarse = coarse.long().to(device)
    shape = (batch, layout.n_target_levels, total)
    out, done = _prompted("prompt_fine", prompt_fine, shape, layout.acoustic_vocab, device)
    spans = windows(done, total, total, window, _prompt_frames(lm.stage))
    settings = _settings(lm, temperature, top_k, top_p, generator)
    _fill(lm, out, done, spans, lambda s0: layout.prefix(coarse[:, :, s0 : s0 + window]), settings)
    return torch.cat([coarse, out], dim=1)
