"""Training SoundStorm through the shared engine, on the coarse LM's token shards.

    config = SoundStormRunConfig(data=SoundStormDataConfig(semantic_shards="shards/sem",
                                                           acoustic_shards="shards/codec"))
    Trainer(SoundStormTask(config), config, "runs/soundstorm").fit()

The semantic (25 Hz) and acoustic ([Q, T] at 50 Hz) shards join on the utterance key and align
as in `segue.lm.data`: Ts = min(semantic frames, ceil(acoustic frames / r)) tokens and
Ta = min(acoustic frames, r * Ts) frames. An item is a random crop of `window_seconds` (the
whole utterance when shorter, padded). Each step masks the batch (`masking.mask_codes`) and the
loss is cross-entropy on the masked frames of each item's level q.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from segue.data.shards import TokenShards
from segue.errors import InputError
from segue.lm.config import frames_per_token
from segue.lm.data import (
    MISMATCH_SHIFT,
    FirstItems,
    WithMismatched,
    check_shift,
    conditioning_tokens,
    join_utterances,
    window_start,
)
from segue.soundstorm.config import SoundStormConfig, soundstorm_preset
from segue.soundstorm.load import load_soundstorm, read_soundstorm_config
from segue.soundstorm.masking import checked_level_weights, mask_codes, mask_codes_seeded
from segue.soundstorm.model import SoundStorm
from segue.train import OptimConfig, Phase, RunConfig, TrainConfig, TrainTask
from segue.train.task import MAIN, fine_tune_config


@dataclass
class SoundStormDataConfig:
    semantic_shards: str = ""
    acoustic_shards: str = ""
    train_split: str = "train"
    valid_split: str = "valid"
    valid_items: int | None = 256  # validation crops (the first utterances of the split)
    window_seconds: float = 4.0  # crop length (the paper: 30 s)
    #: validation also scores each crop (same masks) given another utterance's semantic tokens
    #: and logs `semantic_gain`, the loss the right ones save (twice the validation time)
    valid_semantic_gain: bool = True


@dataclass
class SoundStormRunConfig(RunConfig):
    model: SoundStormConfig = field(default_factory=lambda: soundstorm_preset("tiny"))
    data: SoundStormDataConfig = field(default_factory=SoundStormDataConfig)
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            lr=1e-3, warmup_steps=200, max_steps=5000, min_lr_ratio=0.1, grad_clip=1.0
        )
    )
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            batch_size=8,
            num_workers=1,
            checkpoint_every=500,
            valid_every=500,
            log_every=25,
            precision="bf16-native",  # bf16 on GPUs, and on CPUs that have it natively
        )
    )
    #: fine-tuning (`train.init_from`) on another semantic tokenizer's tokens than the saved
    #: model's: their embeddings start fresh, every other weight comes from the saved model
    new_semantic_tokens: bool = False
    #: training: how often each level is the one predicted, relative weights, one per level
    #: (None: uniform, the paper's); e.g. more on level 0, where resynthesis loses most words.
    #: Validation keeps the uniform draw, so runs with other weights compare.
    level_weights: list[float] | None = None


def _meta(path: str, kind: str) -> dict:
    if not path:
        raise InputError(f"SoundStorm needs {kind} token shards (data.{kind}_shards)")
    meta = TokenShards(path).meta
    if meta.get("kind") != kind:
        raise InputError(f"{path}: {meta.get('kind')!r} shards, expected {kind!r}")
    return meta


def fill_from_shards(config: SoundStormRunConfig) -> int:
    """Fill the model's token spaces from the shards' meta.json; the crop in semantic tokens."""
    model, data = config.model, config.data
    semantic = _meta(data.semantic_shards, "semantic")
    acoustic = _meta(data.acoustic_shards, "acoustic")
    found = {
        "semantic_vocab": int(semantic["vocab_size"]),
        "codebook_size": int(acoustic["vocab_size"]),
        "n_levels": int(acoustic["levels"]),
    }
    for name, value in found.items():
        current = getattr(model, name)
        if current and current != value:
            raise InputError(f"model.{name}={current} but the shards say {value}")
        setattr(model, name, value)
    model.ratio = frames_per_token(float(acoustic["frame_rate"]), float(semantic["frame_rate"]))
    window = max(1, round(data.window_seconds * float(semantic["frame_rate"])))
    if window * model.ratio > model.max_frames:
        raise InputError(
            f"window of {window * model.ratio} frames is past model.max_frames={model.max_frames}"
        )
    return window


def adopt_initial(config: SoundStormRunConfig) -> None:
    """Fine-tuning (`train.init_from`): the saved model's shape and sampling settings set in
    `config` (in place; the run keeps its dropout), from its config alone: its weights are read
    by `SoundStormTask.load_initial`, only when the run does not resume from its own."""
    if not config.train.init_from:
        return
    config.model = fine_tune_config(read_soundstorm_config(config.train.init_from), config.model)
    if config.new_semantic_tokens:
        config.model.semantic_vocab = None  # the shards'


class SoundStormDataset(Dataset):
    """Random crops of `window` semantic tokens and their r * window acoustic frames.

    Item: semantic [window] (PAD = S past the end), codes [Q, r * window] (0 past the end),
    length (valid frames), index (the item's, for its validation mask). Crops depend only on
    (seed, epoch, index). `semantic_shift` > 0: another utterance's semantic tokens over the
    same crops (`segue.lm.data.conditioning_tokens`;
    `segue soundstorm eval --mismatched-semantic`).
    """

    def __init__(
        self,
        semantic: TokenShards,
        acoustic: TokenShards,
        config: SoundStormConfig,
        window: int,
        seed: int = 0,
        *,
        semantic_shift: int = 0,
    ):
        self.semantic_shift = check_shift(semantic_shift)
        if acoustic.levels < config.n_levels:
            raise InputError(f"{acoustic.root}: {acoustic.levels} levels, need {config.n_levels}")
        self.semantic, self.acoustic, self.config = semantic, acoustic, config
        self.window, self.seed, self.epoch = window, seed, 0
        self.pairs = join_utterances(semantic, acoustic)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        a, _ = self.pairs[index]
        r, w = self.config.ratio, self.window
        semantic = conditioning_tokens(self.semantic, self.pairs, index, self.semantic_shift).long()
        acoustic = torch.from_numpy(self.acoustic.tokens(a)[: self.config.n_levels]).long()
        ts = min(semantic.shape[0], math.ceil(acoustic.shape[1] / r))
        ta = min(acoustic.shape[1], r * ts)
        rng = np.random.default_rng((self.seed, self.epoch, index))
        start = window_start(ts, w, rng, edge_probability=0.0)
        end = min(start + w, ts)
        frames = acoustic[:, r * start : min(r * end, ta)]
        out_semantic = torch.full((w,), self.config.pad_id, dtype=torch.long)
        out_semantic[: end - start] = semantic[start:end]
        codes = torch.zeros(self.config.n_levels, r * w, dtype=torch.long)
        codes[:, : frames.shape[1]] = frames
        return {
            "semantic": out_semantic,
            "codes": codes,
            "length": torch.tensor(frames.shape[1]),
            "index": torch.tensor(index),
        }


def masked_loss(
    model: nn.Module,
    batch: dict,
    mask_id: int,
    generator: torch.Generator | None = None,
    level_weights: torch.Tensor | None = None,
    seeds: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mask the batch, predict each item's level q; (loss, correct count, target count).
    seeds [B]: each item's mask from its own seed (`mask_codes_seeded`; validation)."""
    if seeds is not None:
        masked = mask_codes_seeded(batch["codes"], mask_id, batch["length"], seeds)
    else:
        masked = mask_codes(batch["codes"], mask_id, batch["length"], generator, level_weights)
    logits = model(masked.inputs, batch["semantic"], batch["length"], levels=masked.level)
    target = batch["codes"].gather(1, masked.level[:, None, None].expand(-1, 1, logits.shape[1]))
    target = target[:, 0].masked_fill(~masked.loss_mask, -100)  # [B, T]
    loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=-100)
    correct = ((logits.argmax(-1) == target) & masked.loss_mask).sum()
    return loss, correct, masked.loss_mask.sum()


def build_dataset(
    config: SoundStormRunConfig,
    window: int,
    split: str | None,
    seed: int = 0,
    *,
    semantic_shift: int = 0,
) -> SoundStormDataset:
    """The crops of a split of the run's shards (`window` semantic tokens, `fill_from_shards`)."""
    semantic = TokenShards(config.data.semantic_shards, split)
    acoustic = TokenShards(config.data.acoustic_shards, split)
    return SoundStormDataset(
        semantic, acoustic, config.model, window, seed, semantic_shift=semantic_shift
    )


class SoundStormTask(TrainTask):
    """One SoundStorm model, one optimizer; masked-token loss on level q."""

    def __init__(self, config: SoundStormRunConfig):
        self.config = config
        adopt_initial(config)
        self.window = fill_from_shards(config)
        self.level_weights = None  # checked now, not at the first step
        if config.level_weights is not None:
            self.level_weights = checked_level_weights(config.level_weights, config.model.n_levels)

    def setup(self, device: torch.device) -> None:
        self.model = SoundStorm(self.config.model)

    def load_initial(self, source: str) -> None:
        """The saved model's weights (its EMA ones for a run folder); its shape was adopted
        when the task was made."""
        state = load_soundstorm(source).state_dict()
        if self.config.new_semantic_tokens:  # fresh semantic code rows, the saved PAD row
            rows = self.model.semantic.weight.detach().clone()
            rows[-1] = state["semantic.weight"][-1]
            state["semantic.weight"] = rows
        self.model.load_state_dict(state)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def _dataset(self, split: str | None, seed: int, shift: int = 0) -> SoundStormDataset:
        return build_dataset(self.config, self.window, split, seed, semantic_shift=shift)

    def train_dataset(self) -> Dataset:
        return self._dataset(self.config.data.train_split or None, self.config.train.seed)

    def valid_dataset(self) -> Dataset | None:
        split = self.config.data.valid_split
        if not split:
            return None
        try:
            dataset = self._dataset(split, seed=1234)
        except ValueError:
            return None  # no utterance in that split
        if self.config.data.valid_semantic_gain:
            shifted = self._dataset(split, seed=1234, shift=MISMATCH_SHIFT)
            dataset = WithMismatched(dataset, shifted)
        return FirstItems(dataset, self.config.data.valid_items)

    def train_step(self, models: Mapping[str, nn.Module], batch: dict, step: int) -> Phase:
        mask_id = self.config.model.mask_id
        loss, correct, count = masked_loss(
            models["model"], batch, mask_id, level_weights=self.level_weights
        )
        return Phase(MAIN, loss, {"accuracy": correct / count.clamp(min=1)})

    def _valid_loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, ...]:
        """`masked_loss` with each crop's mask by its index (`mask_codes_seeded`: level index
        mod Q, the rest seeded by the index): the same at every validation and under any batch
        size or number of processes (until 2026-12-08 one seed per batch gave every batch the
        same draws: the loss rested on `batch_size` draws of the level)."""
        return masked_loss(model, batch, self.config.model.mask_id, seeds=batch["index"])

    @torch.no_grad()
    def valid_step(self, models: Mapping[str, nn.Module], batch: dict) -> dict[str, float]:
        """loss / accuracy on the masked frames; semantic_gain (`data.valid_semantic_gain`):
        the loss of the same crops and masks given another utterance's semantic tokens, minus
        the loss."""
        loss, correct, count = self._valid_loss(models["model"], batch)
        metrics = {"loss": float(loss), "accuracy": float(correct) / max(1, int(count))}
        if "mismatched" in batch:
            mismatched, _, _ = self._valid_loss(models["model"], batch["mismatched"])
            metrics["semantic_gain"] = float(mismatched) - float(loss)
        return metrics
