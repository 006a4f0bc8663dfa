"""What each model of an AudioLM recipe costs to train: parameters, data per step, steps, and
memory per device, from the models built on the `meta` device (nothing allocated).

    sizes = model_sizes(config, Path("runs/x"))   # [ModelSize], what `--dry-run` prints

Memory = 16 B per parameter (float32 weights, gradients, AdamW's two moments) + activations:
measured for the codec (the tensors autograd saves in one CPU forward of one crop, times the
batch), a stated rule for the transformers (`BLOCK_BYTES_PER_TOKEN_DIM`). The LMs' and
SoundStorm's vocabularies and lengths come from the token shards as in training
(`shard_folders`: OUT/tokenize's, or a temporary pair holding only their meta.json).
"""

from __future__ import annotations

import copy
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segue.codec.train import CodecRunConfig
from segue.codec.train import adopt_initial as adopt_codec
from segue.lm.train import LMRunConfig
from segue.recipes.config import AudioLMRecipeConfig, codec_kept, decoder_phase_run
from segue.recipes.runner import DONE_NAME
from segue.semantic.train import SemanticRunConfig
from segue.soundstorm.train import SoundStormRunConfig

#: Bytes per saved activation value per layer and token in a pre-norm transformer block, float32:
#: ~18 values of d_model (norm inputs, q/k/v, attention output, MLP input, 4x hidden before and
#: after its activation, residuals); SDPA keeps no T x T attention scores.
BLOCK_BYTES_PER_TOKEN_DIM = 18 * 4
OPTIMIZER_BYTES_PER_PARAM = 16  # float32 weights + gradients + AdamW's two moments


@dataclass
class ModelSize:
    """One trained model: parameters, what a training step sees, and a memory estimate."""

    name: str
    params: int
    per_step: str  # e.g. "16 x 4.0 s = 64 s of audio" or "8 x 251 = 2008 tokens"
    steps: int
    activations: int | None  # bytes, None: not estimated
    rule: str  # how `activations` was obtained

    @property
    def memory(self) -> int | None:
        """Bytes per device: parameters, gradients, AdamW (16 B/param) + activations."""
        if self.activations is None:
            return None
        return OPTIMIZER_BYTES_PER_PARAM * self.params + self.activations


def _count(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def _meta_build(make: Any) -> Any:
    """`make()` with every tensor on the meta device: shapes only, nothing allocated."""
    with torch.device("meta"):
        return make()


def _transformer_activations(
    batch: int, tokens: int, layers: int, dim: int, vocab: int
) -> tuple[int, str]:
    """Bytes saved for backward by `layers` pre-norm blocks and a `vocab` logit head."""
    blocks = BLOCK_BYTES_PER_TOKEN_DIM * batch * tokens * dim * layers
    logits = 8 * batch * tokens * vocab  # float32 logits and their float copy in the loss
    rule = f"rule: {BLOCK_BYTES_PER_TOKEN_DIM} B x tokens x d x layers + 8 B x tokens x vocab"
    return blocks + logits, rule


def codec_size(config: CodecRunConfig, name: str = "codec") -> ModelSize:
    """The codec + its discriminators (both trained, each with its own AdamW; frozen parts
    counted too: an upper bound); activations measured on the CPU for one crop (see
    `_codec_activations`), times the batch."""
    from segue.codec.discriminators import Discriminators
    from segue.codec.model import Codec

    model = config.model
    codec = _meta_build(lambda: Codec(model))
    disc = _meta_build(lambda: Discriminators(model.discriminator))
    b, crop = config.train.batch_size, config.data.crop_seconds
    one = _codec_activations(model, round(crop * model.sample_rate))
    return ModelSize(
        name,
        _count(codec, disc),
        f"{b} x {crop:g} s = {b * crop:g} s of audio",
        config.optim.max_steps,
        None if one is None else b * one,
        "measured: tensors saved for backward by codec + discriminators on one CPU crop, x batch"
        if one is not None else "not estimated (the codec is too large to measure on this CPU)",
    )


def _codec_activations(model: Any, samples: int, max_params: int = 100_000_000) -> int | None:
    """Bytes autograd saves in the generator's pass (codec, then the discriminators on its
    output) for one crop, measured on the CPU with real weights (None past `max_params`)."""
    from segue.codec.discriminators import Discriminators
    from segue.codec.model import Codec

    with torch.device("meta"):
        if _count(Codec(model), Discriminators(model.discriminator)) > max_params:
            return None
    saved: dict[tuple[int, int], int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        saved[key] = max(saved.get(key, 0), tensor.numel() * tensor.element_size())
        return tensor

    codec, disc = Codec(model), Discriminators(model.discriminator)
    torch.manual_seed(0)
    audio = 0.1 * torch.randn(1, 1, samples)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        disc(codec(audio).audio)
    return sum(saved.values())


def semantic_size(name: str, config: SemanticRunConfig) -> ModelSize:
    """A HuBERT-style iteration: its transformer over 25 Hz frames (the conv front end left out
    of the activation rule)."""
    from segue.semantic.model import SemanticModel

    model = config.model
    b, crop = config.train.batch_size, config.data.crop_seconds
    frames = round(crop * model.frame_rate)
    activations, rule = _transformer_activations(
        b, frames, model.n_layers, model.dim, model.n_classes
    )
    return ModelSize(
        name,
        _count(_meta_build(lambda: SemanticModel(model))),
        f"{b} x {crop:g} s = {b * crop:g} s of audio ({b * frames} frames)",
        config.optim.max_steps,
        activations,
        rule + " (conv front end not counted)",
    )


def lm_size(name: str, config: LMRunConfig) -> ModelSize:
    """A stage LM, its vocabulary and length filled in as training does (`fill_from_shards`)."""
    from segue.lm.model import Transformer

    model = config.model
    b, t = config.train.batch_size, model.max_seq_len
    activations, rule = _transformer_activations(
        b, t, model.n_layer, model.d_model, model.vocab_size
    )
    return ModelSize(
        name,
        _meta_build(lambda: Transformer(model)).num_params(),
        f"{b} x {t} = {b * t} tokens",
        config.optim.max_steps,
        activations,
        rule,
    )


def soundstorm_size(config: SoundStormRunConfig, window: int) -> ModelSize:
    """SoundStorm over `window` semantic tokens (ratio x window acoustic frames)."""
    from segue.soundstorm.model import SoundStorm

    model = config.model
    b, frames = config.train.batch_size, window * model.ratio
    activations, rule = _transformer_activations(
        b, frames, model.n_layer, model.d_model, model.codebook_size
    )
    return ModelSize(
        "soundstorm",
        _meta_build(lambda: SoundStorm(model)).num_params(),
        f"{b} x {frames} frames ({config.data.window_seconds:g} s)",
        config.optim.max_steps,
        activations,
        rule,
    )


def model_sizes(config: AudioLMRecipeConfig, out: Path) -> list[ModelSize]:
    """Every model the recipe trains, sized from its config (token spaces as `tokenize` makes
    them: read from OUT/tokenize when it is there, else from the codec and tokenizer configs)."""
    from segue.lm.train import adopt_initial as adopt_lm
    from segue.lm.train import fill_from_shards as fill_lm
    from segue.soundstorm.train import adopt_initial as adopt_soundstorm
    from segue.soundstorm.train import fill_from_shards as fill_soundstorm

    config = copy.deepcopy(config)
    adopt_codec(config.codec)  # fine-tuning: the sizes of the models started from
    sizes = [] if codec_kept(config.codec) else [codec_size(config.codec)]
    decoder = decoder_phase_run(config)
    if decoder is not None:
        sizes.append(codec_size(decoder, "codec_decoder"))
    semantic = config.semantic
    if semantic.backbone == "segue" and not semantic.tokenizer_from:
        sizes += [
            semantic_size(f"semantic.it{i}", getattr(semantic, f"it{i}"))
            for i in range(1, semantic.iterations + 1)
        ]
    with shard_folders(config, out) as (semantic_dir, acoustic_dir):
        for stage in ("semantic", "coarse", "fine"):
            lm = copy.deepcopy(getattr(config, f"lm_{stage}"))
            lm.data.semantic_shards, lm.data.acoustic_shards = semantic_dir, acoustic_dir
            adopt_lm(lm)
            fill_lm(lm)
            sizes.append(lm_size(f"lm_{stage}", lm))
        storm = copy.deepcopy(config.soundstorm)
        storm.data.semantic_shards, storm.data.acoustic_shards = semantic_dir, acoustic_dir
        adopt_soundstorm(storm)
        sizes.append(soundstorm_size(storm, fill_soundstorm(storm)))
    return sizes


class shard_folders:
    """(semantic, acoustic) shard folders to size the LMs from: OUT/tokenize's when it is done,
    else a temporary pair holding only the meta.json that `tokenize` would write."""

    def __init__(self, config: AudioLMRecipeConfig, out: Path):
        self.config, self.out = config, out
        self.temporary: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> tuple[str, str]:
        done = self.out / "tokenize"
        if (done / DONE_NAME).is_file():
            return str(done / "semantic"), str(done / "acoustic")
        self.temporary = tempfile.TemporaryDirectory(prefix="segue-sizing-")
        root = Path(self.temporary.name)
        for kind, meta in _token_meta(self.config).items():
            (root / kind).mkdir()
            (root / kind / "meta.json").write_text(json.dumps(meta))
            (root / kind / "index.jsonl").write_text("")
        return str(root / "semantic"), str(root / "acoustic")

    def __exit__(self, *exc: object) -> None:
        if self.temporary is not None:
            self.temporary.cleanup()


def _token_meta(config: AudioLMRecipeConfig) -> dict[str, dict[str, Any]]:
    """The meta.json of the shards `tokenize` would write, from the codec and tokenizer configs
    (a kept tokenizer's own numbers)."""
    codec = config.codec.model
    semantic = config.semantic
    if semantic.tokenizer_from:
        from segue.semantic.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(semantic.tokenizer_from)
        vocab, rate = tokenizer.vocab_size, tokenizer.frame_rate
    elif semantic.backbone == "whisper":
        from segue.semantic.whisper import HOP, SAMPLE_RATE

        vocab, rate = semantic.tokenizer.k, SAMPLE_RATE / (2 * HOP * 2)  # the default pool: 2
    else:
        vocab = semantic.tokenizer.k
        rate = getattr(semantic, f"it{semantic.iterations}").model.frame_rate
    return {
        "semantic": {"kind": "semantic", "levels": 1, "vocab_size": vocab,
                     "frame_rate": rate},
        "acoustic": {"kind": "acoustic", "levels": codec.n_codebooks,
                     "vocab_size": codec.codebook_size, "frame_rate": codec.frame_rate,
                     "n_coarse": codec.n_coarse},
    }  # fmt: skip


def run_config(config: AudioLMRecipeConfig, name: str) -> Any:
    """The run config of a sized model: `semantic.it1` -> config.semantic.it1."""
    for part in name.split("."):
        config = getattr(config, part)
    return config
