"""Training the semantic model through the shared engine (HuBERT's recipe, at 25 Hz).

Iteration 1: targets are k-means clusters (K=100) of MFCC + deltas pooled to 25 Hz.
Iteration 2: targets are k-means clusters (K=500) of layer L of the frozen iteration-1 model,
computed on the fly from the same crops (nothing is pre-extracted).
Either way the targets are a `SemanticTokenizer` fitted once, before the first step, on a
seeded sample of the train split, and saved in the run (`targets.path`, default RUN/targets); a
resumed run loads it. The loss is the cross-entropy of the cosine head on masked frames (plus
`model.unmasked_weight` times the one on unmasked frames); padding frames never count.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from segue.config import unset_old_placeholders
from segue.data.augment import AugmentConfig
from segue.data.crops import CropDataset, FixedCrops, valid_crops
from segue.data.manifest import read_manifest
from segue.data.pairs import SentencePairs, WithPairs
from segue.errors import InputError
from segue.semantic.config import SemanticConfig, preset
from segue.semantic.extractors import MFCCExtractor, ModelExtractor
from segue.semantic.fit import fit_tokenizer
from segue.semantic.invariance import (
    InvarianceConfig,
    align_pairs,
    alignment_loss,
    speed_perturb,
    warp_frames,
)
from segue.semantic.masking import frame_mask, span_mask
from segue.semantic.model import SemanticModel
from segue.semantic.tokenizer import TOKENIZER_NAME, SemanticTokenizer
from segue.train import OptimConfig, Phase, RunConfig, TrainConfig, TrainTask
from segue.train.distributed import barrier, init_distributed

IGNORE = -100  # target id of frames that do not count (padding)


@dataclass
class SemanticDataConfig:
    manifest: str = ""
    crop_seconds: float = 4.0
    min_seconds: float = 0.5  # shorter files are not used for training
    valid_crop_seconds: float = 4.0
    valid_files: int = 32  # fixed validation crops from the valid split
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # off by default
    skip_missing: bool = False  # drop unusable files (listed) instead of refusing to start


@dataclass
class TargetsConfig:
    """Where the training targets come from (see the module docstring).

    teacher: "" for iteration 1 (MFCC k-means); for iteration 2 the iteration-1 run folder (its
    layer `layer` is clustered, None: the teacher's `tokenizer_layer`) or a ready tokenizer folder
    (used as it is: its K must equal `k`).

    Placeholders: None is "not set", "" an unset path (docs/training.md); old configs' layer -1
    reads as None.
    """

    path: str = ""  # the targets' tokenizer folder; fitted at setup when it does not exist
    teacher: str = ""
    layer: int | None = None
    k: int = 100
    mfcc_cmn: bool = True  # iteration 1: per-utterance cepstral mean normalisation of the MFCCs
    fit_files: int = 400
    fit_frames: int = 100_000
    niter: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        unset_old_placeholders(self, -1, "layer")
        if self.layer is not None and self.layer < 0:
            raise InputError(f"targets.layer must be >= 0 (None: the teacher's), got {self.layer}")


@dataclass
class SemanticRunConfig(RunConfig):
    model: SemanticConfig = field(default_factory=lambda: preset("tiny"))
    data: SemanticDataConfig = field(default_factory=SemanticDataConfig)
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    invariance: InvarianceConfig = field(default_factory=InvarianceConfig)
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            lr=5e-4,
            betas=(0.9, 0.98),
            eps=1e-6,
            weight_decay=0.01,
            warmup_steps=500,
            max_steps=8000,
            min_lr_ratio=0.05,
            grad_clip=1.0,
        )
    )
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            batch_size=8,
            num_workers=1,
            checkpoint_every=500,
            log_every=25,
            valid_every=500,
            keep_last=3,
        )
    )

    def __post_init__(self) -> None:
        # The head has one output per target cluster: model.n_classes follows targets.k.
        if self.model.n_classes != self.targets.k:
            self.model = dataclasses.replace(self.model, n_classes=self.targets.k)


def run_config_for_preset(
    name: str, manifest: str = "", iteration: int = 1, teacher: str = ""
) -> SemanticRunConfig:
    """Defaults for a model preset (`tiny`: CPU, `base`: GPUs) and HuBERT iteration (1 or 2)."""
    if iteration not in (1, 2):
        raise InputError(f"iteration must be 1 or 2, got {iteration}")
    if iteration == 2 and not teacher:
        raise InputError("iteration 2 needs a teacher (the iteration-1 run folder)")
    config = SemanticRunConfig(
        model=preset(name),
        data=SemanticDataConfig(manifest=manifest),
        targets=TargetsConfig(
            teacher=teacher if iteration == 2 else "", k=100 if iteration == 1 else 500
        ),
    )
    if name == "base":  # HuBERT Base-like GPU settings
        config.optim = OptimConfig(
            lr=5e-4,
            betas=(0.9, 0.98),
            eps=1e-6,
            weight_decay=0.01,
            warmup_steps=8000,
            max_steps=100_000,
            min_lr_ratio=0.05,
            grad_clip=1.0,
        )
        config.train.batch_size = 16
        config.train.num_workers = 4
        config.train.checkpoint_every = 5000
        config.train.valid_every = 5000
        config.data.crop_seconds = 10.0
        config.data.valid_crop_seconds = 10.0
        config.targets.fit_files = 2000
        config.targets.fit_frames = 500_000
    return config


def build_targets(
    config: SemanticRunConfig, device: torch.device | None = None, progress: bool = True
) -> SemanticTokenizer:
    """Fit (or, for a tokenizer-folder teacher, load) the tokenizer that makes the targets;
    the teacher's features are computed on `device`."""
    from segue.semantic.tokenizer import find_tokenizer

    targets, model_cfg = config.targets, config.model
    teacher = Path(targets.teacher) if targets.teacher else None
    if teacher is not None and (teacher / TOKENIZER_NAME).is_file():
        return SemanticTokenizer.load(find_tokenizer(teacher))
    if teacher is None:
        extractor = MFCCExtractor(
            model_cfg.sample_rate, model_cfg.mel_hop, pool=4, cmn=targets.mfcc_cmn
        )
        source = "mfcc+cmn" if targets.mfcc_cmn else "mfcc"
    else:
        model = load_model_from_run(teacher)
        layer = model.config.tokenizer_layer if targets.layer is None else targets.layer
        extractor = ModelExtractor(model, layer).to(device or torch.device("cpu"))
        source = f"{teacher} layer {layer}"
    train = read_manifest(config.data.manifest, split="train")
    return fit_tokenizer(
        extractor,
        train,
        targets.k,
        seed=targets.seed,
        niter=targets.niter,
        max_files=targets.fit_files,
        max_frames=targets.fit_frames,
        source=source,
        progress=progress,
    )


class SemanticTask(TrainTask):
    """Masked prediction of k-means targets; one optimizer over the model."""

    def __init__(self, config: SemanticRunConfig):
        self.config = config
        if not config.data.manifest:
            raise InputError("semantic training needs data.manifest (the MANIFEST argument)")
        if not config.targets.path:
            raise InputError("semantic training needs targets.path (the command sets RUN/targets)")

    def setup(self, device: torch.device) -> None:
        self.model = SemanticModel(self.config.model)
        path = Path(self.config.targets.path)
        info, _ = init_distributed()
        if info.is_main and not (path / TOKENIZER_NAME).is_file():
            teacher = self.config.targets.teacher
            if teacher and (Path(teacher) / TOKENIZER_NAME).is_file():
                what = f"the training targets: the tokenizer {teacher}, copied"
            else:
                what = f"fitting the training targets (k-means of {teacher or 'MFCC features'})"
            print(f"{what} -> {path}", file=sys.stderr)
            build_targets(self.config, device, progress=self.config.train.progress).save(path)
        barrier()
        self.targets = SemanticTokenizer.load(path).to(device)
        if self.targets.vocab_size != self.config.targets.k:
            raise InputError(
                f"{path} has {self.targets.vocab_size} clusters but targets.k="
                f"{self.config.targets.k}; delete it to refit or set targets.k"
            )
        if abs(self.targets.frame_rate - self.model.frame_rate) > 1e-6:
            raise InputError(
                f"targets at {self.targets.frame_rate:g} Hz "
                f"for a model at {self.model.frame_rate:g} Hz"
            )

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def train_dataset(self) -> CropDataset | WithPairs:
        data, invariance = self.config.data, self.config.invariance
        crops = CropDataset(
            data.manifest,
            data.crop_seconds,
            self.config.model.sample_rate,
            split="train",
            seed=self.config.train.seed,
            min_seconds=data.min_seconds,
            augment=data.augment,
            verify_files=True,
            skip_missing=data.skip_missing,
        )
        if not invariance.aligns:
            return crops
        pairs = SentencePairs(
            data.manifest,
            invariance.pair_seconds,
            self.config.model.sample_rate,
            split="train",
            seed=self.config.train.seed,
        )
        return WithPairs(crops, pairs)

    def valid_dataset(self) -> FixedCrops | None:
        data = self.config.data
        return valid_crops(
            data.manifest,
            data.valid_crop_seconds,
            self.config.model.sample_rate,
            data.valid_files,
            skip_missing=data.skip_missing,
        )

    def batch_targets(self, audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Target ids [B, F] aligned with the model's frames; IGNORE on padding."""
        frames = -(-audio.shape[-1] // self.model.hop_length)
        tokens, target_lengths = self.targets.tokenize_with_lengths(audio, lengths)
        tokens = F.pad(tokens[:, :frames], (0, max(0, frames - tokens.shape[1])), value=IGNORE)
        valid_lengths = torch.minimum(target_lengths, self.model.frame_lengths(lengths))
        return tokens.masked_fill(~frame_mask(valid_lengths, frames), IGNORE)

    def losses(
        self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, metrics) of logits [B, F, K] against targets [B, F] with span mask [B, F]."""
        valid = targets != IGNORE
        per_frame = F.cross_entropy(
            logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="none"
        ).view_as(targets)
        correct = (logits.argmax(dim=-1) == targets).float()
        masked, unmasked = mask & valid, ~mask & valid

        def mean(values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
            return (values * where).sum() / where.sum().clamp_min(1)

        loss_masked, loss_unmasked = mean(per_frame, masked), mean(per_frame, unmasked)
        loss = loss_masked + self.config.model.unmasked_weight * loss_unmasked
        metrics = {
            "loss_masked": loss_masked.detach(),
            "loss_unmasked": loss_unmasked.detach(),
            "acc_masked": mean(correct, masked),
            "acc_unmasked": mean(correct, unmasked),
            "mask_fraction": masked.sum() / valid.sum().clamp_min(1),
        }
        return loss, metrics

    def perturb(
        self, audio: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Speed-perturb a share of the crops (`invariance.perturb`); their targets, computed
        on the clean crops, follow onto the perturbed frames."""
        invariance = self.config.invariance
        low, high = invariance.perturb_range
        rows = audio.shape[0]
        chosen = torch.rand(rows) < invariance.perturb
        factors = torch.exp(torch.empty(rows).uniform_(math.log(low), math.log(high)))
        factors = torch.where(chosen, factors, torch.ones(rows))
        audio, lengths = speed_perturb(audio, lengths, factors)
        frame_lengths = self.model.frame_lengths(lengths)
        factors = factors.to(targets.device)
        return audio, lengths, warp_frames(targets, factors, frame_lengths, IGNORE)

    @torch.no_grad()
    def align(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[list, torch.Tensor]:
        """DTW paths between rows 2p and 2p+1 of audio [2P, T] on the teacher's (normalised)
        features, and the valid frames [2P] the paths index."""
        with torch.autocast(audio.device.type, enabled=False):
            features, teacher_lengths = self.targets.extractor(audio, lengths)
            features = self.targets.codebook.normalize(features)
        student = self.model.frame_lengths(lengths)
        frames = torch.minimum(teacher_lengths.to(lengths.device), student)
        paths = align_pairs(features[0::2], features[1::2], frames[0::2], frames[1::2])
        return paths, frames

    def _step(
        self,
        model: nn.Module,
        batch: dict,
        generator: torch.Generator | None = None,
        training: bool = False,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        audio, lengths = batch["audio"], batch["length"]
        targets = self.batch_targets(audio, lengths)
        invariance, cfg = self.config.invariance, self.config.model
        if training and invariance.perturb > 0:
            audio, lengths, targets = self.perturb(audio, lengths, targets)
        rows, frames = targets.shape
        mask = span_mask(
            self.model.frame_lengths(lengths),
            frames,
            cfg.mask_prob,
            cfg.mask_span,
            min_spans=cfg.min_masks,
            generator=generator,
        )
        if not (training and invariance.aligns):
            return self.losses(model(audio, lengths, mask), targets, mask)
        # One pass over the masked crops and the (unmasked) pairs, so DDP sees one forward.
        pair_audio = batch["pair_audio"].flatten(0, 1)  # [2P, T']: rows 2p, 2p+1 one sentence
        pair_lengths = batch["pair_length"].flatten(0, 1)
        paths, pair_frames = self.align(pair_audio, pair_lengths)
        width = max(audio.shape[-1], pair_audio.shape[-1])
        inputs = torch.cat([F.pad(audio, (0, width - audio.shape[-1])),
                            F.pad(pair_audio, (0, width - pair_audio.shape[-1]))])
        full_mask = torch.zeros(
            inputs.shape[0], -(-width // self.model.hop_length), dtype=torch.bool,
            device=mask.device,
        )
        full_mask[:rows, :frames] = mask
        layer = cfg.tokenizer_layer if invariance.layer is None else invariance.layer
        logits, states = model(
            inputs, torch.cat([lengths, pair_lengths]), full_mask, return_layer=layer
        )
        loss, metrics = self.losses(logits[:rows, :frames], targets, mask)
        pair_states = states[rows:]
        align, align_metrics = alignment_loss(
            pair_states[0::2],
            pair_states[1::2],
            pair_frames[0::2],
            pair_frames[1::2],
            paths,
            invariance.temperature,
        )
        return loss + invariance.weight * align, {**metrics, **align_metrics}

    def train_step(self, models: Mapping[str, nn.Module], batch: dict, step: int) -> Phase:
        loss, metrics = self._step(models["model"], batch, training=True)
        return Phase("main", loss, metrics)

    @torch.no_grad()
    def valid_step(self, models: Mapping[str, nn.Module], batch: dict) -> dict[str, float]:
        generator = torch.Generator().manual_seed(1234)  # the same masks at every validation
        loss, metrics = self._step(models["model"], batch, generator)
        return {"loss": float(loss), **{k: float(v) for k, v in metrics.items()}}


def load_model_from_run(run_dir: str | Path, prefer_ema: bool = True) -> SemanticModel:
    """The model of a training run's newest valid checkpoint, or of the one checkpoint `run_dir`
    names (`RUN/checkpoints/step_N`); EMA weights when there are some."""
    from segue.config import from_dict
    from segue.pretrained import is_run_location
    from segue.train.checkpoint import load_run_weights

    run_dir = Path(run_dir)
    if not is_run_location(run_dir):
        raise FileNotFoundError(f"{run_dir}: not a semantic training run (no checkpoints/)")
    config, weights = load_run_weights(run_dir, "model", prefer_ema=prefer_ema, what="semantic")
    model = SemanticModel(from_dict(SemanticRunConfig, config).model)
    model.load_state_dict(weights)
    return model.eval()
