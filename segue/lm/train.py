"""Training a stage's LM through the shared engine, on pre-extracted token shards.

    config = run_config_for("coarse", "tiny", semantic_shards="shards/sem",
                            acoustic_shards="shards/codec")
    Trainer(LMTask(config), config, "runs/coarse").fit()

`LMTask` reads the shards' meta.json to fill the stage's token spaces (codebook sizes, levels,
frame rates) and the transformer's vocabulary and length, so a run's config.json alone rebuilds
the model (`segue.lm.stages.load_lm`). The loss is next-token cross-entropy on the stage's
targets only (never on the conditioning block or padding), normalised over the whole
vocabulary or, with `softmax="level"`, over each target's own range (`segue.lm.loss`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import Dataset

from segue.data.shards import TokenShards
from segue.errors import InputError
from segue.lm.config import LMConfig, StageConfig, model_preset, stage_preset
from segue.lm.data import (
    MISMATCH_SHIFT,
    CoarseDataset,
    FineDataset,
    FirstItems,
    SemanticDataset,
    WithMismatched,
)
from segue.lm.layout import Layout, layout_for, shared_ids
from segue.lm.loss import Softmax, TokenLoss, level_ranges, sliced_loss, token_loss
from segue.lm.model import Transformer
from segue.lm.stages import StageLM, load_lm, read_lm_config
from segue.train import OptimConfig, Phase, RunConfig, TrainConfig, TrainTask
from segue.train.task import MAIN, fine_tune_config


@dataclass
class LMDataConfig:
    semantic_shards: str = ""  # semantic and coarse stages
    acoustic_shards: str = ""  # coarse and fine stages
    train_split: str = "train"
    valid_split: str = "valid"
    valid_items: int | None = 256  # validation windows (the first utterances of the split)
    edge_probability: float = 0.2  # windows pinned to a file's start or end (BOS/EOS)
    #: coarse stage: validation also scores each window given another utterance's semantic
    #: tokens and logs `semantic_gain`, the level loss the right ones save (twice the
    #: validation time): a coarse LM that ignores its condition shows it from the first
    #: validation on, not after an end-to-end evaluation
    valid_semantic_gain: bool = True


@dataclass
class LMRunConfig(RunConfig):
    model: LMConfig = field(default_factory=lambda: model_preset("tiny"))
    stage: StageConfig = field(default_factory=lambda: stage_preset("tiny", "semantic"))
    data: LMDataConfig = field(default_factory=LMDataConfig)
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
        )
    )
    #: fine-tuning (`train.init_from`) on the tokens of another semantic tokenizer than the
    #: saved LM's: the semantic codes' embeddings and output rows start fresh, every other
    #: weight (blocks, acoustic and special tokens) comes from the saved LM
    new_semantic_tokens: bool = False
    #: "full": each target over the whole vocabulary; "level": over the ids sampling draws it
    #: from (its acoustic level; codes + EOS for the semantic stage), 1.7x faster fine-LM steps
    #: on a CPU, losses not comparable with "full" runs (segue.lm.loss).
    softmax: Softmax = "full"
    #: share of the input tokens after the condition (the coarse LM's acoustic frames, the fine
    #: LM's fine levels) replaced by PAD at each training step, targets unchanged: where its own
    #: past is hidden the model has to predict from its condition, so it learns to use it
    #: (`segue lm eval --mismatched-semantic` measures that). 0: off.
    input_dropout: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.input_dropout < 1.0:
            raise InputError(f"input_dropout must be in [0, 1), got {self.input_dropout}")


def run_config_for(
    stage: str, preset: str = "tiny", *, semantic_shards: str = "", acoustic_shards: str = ""
) -> LMRunConfig:
    """Defaults for a stage in a preset (`tiny` for a CPU, `audiolm` for GPUs)."""
    config = LMRunConfig(
        model=model_preset(preset),
        stage=stage_preset(preset, stage),
        data=LMDataConfig(semantic_shards=semantic_shards, acoustic_shards=acoustic_shards),
    )
    if preset == "tiny":  # bf16 autocast where the CPU has it natively: 1.3x over fp32
        config.train.precision = "bf16-native"
        if stage != "semantic":  # 1.3x (coarse) / 1.7x (fine) faster CPU steps, docs/training.md
            config.softmax = "level"
    if preset == "audiolm":
        config.optim = OptimConfig(lr=3e-4, warmup_steps=2000, max_steps=200_000)
        config.train.batch_size = 32
        config.train.checkpoint_every = 5000
        config.train.valid_every = 5000
    return config


_NEEDS = {"semantic": ("semantic",), "coarse": ("semantic", "acoustic"), "fine": ("acoustic",)}


def _check(stage: StageConfig, name: str, value, where: str) -> None:
    current = getattr(stage, name)
    if current and current != value:
        raise InputError(f"stage.{name}={current} but {where} says {value}")


def fill_from_shards(config: LMRunConfig) -> Layout:
    """Fill the stage's token spaces and the model's vocab/length from the shards; the layout."""
    stage, data = config.stage, config.data
    for kind in _NEEDS[stage.stage]:
        path = getattr(data, f"{kind}_shards")
        if not path:
            flags = " ".join(k.upper() for k in _NEEDS[stage.stage])
            raise InputError(
                f"the {stage.stage} stage needs {kind} token shards "
                f"(data.{kind}_shards; on the command line --shards {flags})"
            )
        meta = TokenShards(path).meta
        if meta.get("kind") != kind:
            raise InputError(f"{path}: {meta.get('kind')!r} shards, expected {kind!r}")
        if kind == "semantic":
            _check(stage, "semantic_vocab", int(meta["vocab_size"]), path)
            stage.semantic_vocab = int(meta["vocab_size"])
            stage.semantic_rate = float(meta["frame_rate"])
        else:
            _check(stage, "acoustic_vocab", int(meta["vocab_size"]), path)
            stage.acoustic_vocab = int(meta["vocab_size"])
            stage.acoustic_rate = float(meta["frame_rate"])
            levels = int(meta["levels"])
            stage.n_levels = stage.n_levels or levels
            stage.n_coarse = stage.n_coarse or int(meta.get("n_coarse", 0))
            if not 1 <= stage.n_coarse < stage.n_levels <= levels:
                raise InputError(
                    f"{path}: need 1 <= n_coarse ({stage.n_coarse}) < n_levels "
                    f"({stage.n_levels}) <= the shards' {levels} levels"
                )
    layout = layout_for(stage)
    for name, derived in (("vocab_size", layout.vocab_size), ("max_seq_len", layout.max_length)):
        given = getattr(config.model, name)
        if given not in (None, derived):  # derived from the stage's layout, not a free setting
            raise InputError(
                f"model.{name}={given} but the stage's token layout needs {derived}: leave it "
                "unset (null), it is computed"
            )
        setattr(config.model, name, derived)
    return layout


def adopt_initial(config: LMRunConfig) -> None:
    """Fine-tuning (`train.init_from`): the saved LM's shape and stage set in `config` (in
    place; the run keeps its dropout), from its configs alone: its weights are read by
    `LMTask.load_initial`, only when the run does not resume from checkpoints of its own."""
    source = config.train.init_from
    if not source:
        return
    model, stage = read_lm_config(source)
    if stage.stage != config.stage.stage:
        raise InputError(
            f"train.init_from={source} is a {stage.stage} LM, this run trains a "
            f"{config.stage.stage} one"
        )
    config.model = fine_tune_config(model, config.model)
    config.stage = copy.deepcopy(stage)
    if config.new_semantic_tokens:  # the shards' token space and length, not the saved ones
        config.stage.semantic_vocab = config.stage.semantic_rate = None
        config.model.vocab_size = config.model.max_seq_len = None


#: Transformer weights with one row per token id ([vocab, d])
TOKEN_ROWS = ("embed.weight", "head.weight")


def carried_over(fresh: dict, saved: StageLM, layout: Layout) -> dict[str, torch.Tensor]:
    """`saved`'s weights in `layout` (another semantic vocabulary): the rows of the ids both
    layouts share (`shared_ids`) copied into the `fresh` model's state, the rest saved as is."""
    new_ids, old_ids = shared_ids(saved.layout, layout, semantic=False)
    state = {}
    for name, value in saved.model.state_dict().items():
        if name in TOKEN_ROWS:
            rows = fresh[name].clone()
            rows[new_ids] = value[old_ids].to(rows.dtype)
            value = rows
        state[name] = value
    return state


def build_dataset(
    config: LMRunConfig, layout: Layout, split: str | None, seed: int, *, semantic_shift: int = 0
) -> SemanticDataset | CoarseDataset | FineDataset:
    """The stage's windows over the shards of one split (`semantic_shift`: coarse windows
    conditioned on another utterance's semantic tokens, `CoarseDataset`)."""
    stage, data = config.stage, config.data
    if semantic_shift and stage.stage != "coarse":
        raise InputError(f"only the coarse stage has semantic tokens to shift, not {stage.stage}")
    p = data.edge_probability
    if stage.stage == "semantic":
        shards = TokenShards(data.semantic_shards, split)
        return SemanticDataset(shards, layout, dedup=stage.dedup, seed=seed, edge_probability=p)
    acoustic = TokenShards(data.acoustic_shards, split)
    if stage.stage == "coarse":
        semantic = TokenShards(data.semantic_shards, split)
        return CoarseDataset(
            semantic, acoustic, layout, seed=seed, edge_probability=p, semantic_shift=semantic_shift
        )
    return FineDataset(acoustic, layout, seed=seed, edge_probability=p)


class LMTask(TrainTask):
    """One transformer, one optimizer; next-token loss on the stage's targets."""

    def __init__(self, config: LMRunConfig):
        self.config = config
        adopt_initial(config)
        self.layout = fill_from_shards(config)
        #: the ranges sampling draws from; `ranges`: what the training loss normalises over
        self.level_ranges = level_ranges(self.layout)
        self.ranges = self.level_ranges if config.softmax == "level" else None

    def setup(self, device: torch.device) -> None:
        self.model = Transformer(self.config.model)

    def load_initial(self, source: str) -> None:
        """The saved LM's weights (its EMA ones for a run folder); its shape was adopted when
        the task was made."""
        initial = load_lm(source)
        state = initial.model.state_dict()
        if self.config.new_semantic_tokens:
            state = carried_over(self.model.state_dict(), initial, self.layout)
        self.model.load_state_dict(state)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def train_dataset(self) -> Dataset:
        split = self.config.data.train_split or None
        return build_dataset(self.config, self.layout, split, self.config.train.seed)

    def valid_dataset(self) -> Dataset | None:
        split = self.config.data.valid_split
        if not split:
            return None
        try:
            dataset = build_dataset(self.config, self.layout, split, seed=1234)
        except ValueError:
            return None  # no utterance in that split
        if self.config.data.valid_semantic_gain and self.config.stage.stage == "coarse":
            shifted = build_dataset(
                self.config, self.layout, split, seed=1234, semantic_shift=MISMATCH_SHIFT
            )
            dataset = WithMismatched(dataset, shifted)
        return FirstItems(dataset, self.config.data.valid_items)

    def hide_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """[B, L] ids with `input_dropout` of the tokens after the condition set to PAD."""
        p, start = self.config.input_dropout, max(1, self.layout.prefix_length)
        if p == 0:
            return inputs
        hidden = torch.rand(inputs.shape, device=inputs.device) < p
        hidden[:, :start] = False  # the condition (and BOS/SEP) stays
        return inputs.masked_fill(hidden & (inputs != self.layout.pad), self.layout.pad)

    def train_step(self, models: Mapping[str, nn.Module], batch: dict, step: int) -> Phase:
        inputs = self.hide_inputs(batch["input"])
        out = models["model"](inputs, batch["target"], self.ranges)
        return Phase(MAIN, out.loss, {"accuracy": out.correct / out.count.clamp(min=1)})

    def _losses(self, model: nn.Module, batch: dict) -> tuple[TokenLoss, TokenLoss]:
        """(the training objective's loss, the level loss) of one batch."""
        target = batch["target"]
        if self.ranges is None:  # one forward: both losses from the full logits
            logits = model(batch["input"])
            return token_loss(logits, target), sliced_loss(logits, target, self.level_ranges)
        out = model(batch["input"], target, self.ranges)
        return out, out

    @torch.no_grad()
    def valid_step(self, models: Mapping[str, nn.Module], batch: dict) -> dict[str, float]:
        """loss / accuracy: the training objective's; level_loss: the cross-entropy of what
        sampling draws from (each target over its own range), comparable across softmaxes;
        semantic_gain (`data.valid_semantic_gain`): the level loss of the same windows given
        another utterance's semantic tokens, minus level_loss."""
        out, level = self._losses(models["model"], batch)
        metrics = {
            "loss": float(out.loss),
            "accuracy": float(out.correct) / max(1, int(out.count)),
            "level_loss": float(level.loss),
        }
        if "mismatched" in batch:
            _, mismatched = self._losses(models["model"], batch["mismatched"])
            metrics["semantic_gain"] = float(mismatched.loss) - float(level.loss)
        return metrics
