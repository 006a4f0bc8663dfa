"""Training the codec through the shared engine: a generator and a discriminator optimizer.

Each step: the discriminator learns to tell real crops from reconstructions (LSGAN), then the
generator (encoder + RVQ + decoder) minimises the weighted sum of multi-scale mel L1, adversarial,
feature-matching, commitment and codebook losses. For the first
`loss.discriminator_warmup_steps` steps only the reconstruction terms train: the decoder learns
to make speech-like audio before a discriminator can push it around, which is what keeps small
codecs from diverging into noise.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from segue.codec.config import CodecConfig, preset
from segue.codec.discriminators import Discriminators
from segue.codec.losses import (
    complex_stft_loss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    multiscale_mel_loss,
)
from segue.codec.model import Codec
from segue.codec.quantizer import perplexity
from segue.config import from_dict, load_config
from segue.data.augment import AugmentConfig
from segue.data.crops import CropDataset, FixedCrops, valid_crops
from segue.data.shards import TokenShards
from segue.errors import InputError
from segue.eval.metrics import mel_distance, pesq_wb, si_snr, stoi
from segue.pretrained import CONFIG_NAME, WEIGHTS_NAME, saved_model_folder
from segue.train import OptimConfig, OptimizerSpec, Phase, RunConfig, TrainConfig, TrainTask
from segue.train.checkpoint import read_run_config
from segue.train.task import fine_tune_config

IGNORE = -100  # a frame without a semantic target (cross-entropy's ignore_index)


@dataclass
class CodecDataConfig:
    manifest: str = ""
    crop_seconds: float = 0.5
    valid_crop_seconds: float = 2.0
    valid_files: int = 32  # validation crops (fixed) from the valid split
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # off by default
    skip_missing: bool = False  # drop unusable files (listed) instead of refusing to start


@dataclass
class SemanticTargetConfig:
    """Training only: level 0 of the RVQ learns to predict the semantic tokens of its frames
    (a linear head on level 0's output, cross-entropy; the head is not part of the codec), so
    that the first level follows what is said and an acoustic LM can read it off the semantic
    tokens (SpeechTokenizer distils a teacher's features into its first level the same way;
    `segue eval tokens` measures the result). shards: semantic token shards of the training
    manifest (`segue semantic tokenize MANIFEST --model TOKENIZER -o DIR`), joined on the
    manifest path; weight: the term's weight (0: off; on the `tiny` codec 10 moved the codes,
    1 only taught the head to read them, docs/results.md)."""

    shards: str = ""
    weight: float = 0.0


#: The codec's parts a run may hold fixed (`CodecRunConfig.frozen`).
FREEZABLE = ("encoder", "quantizer")


@dataclass
class CodecRunConfig(RunConfig):
    """A codec training run. frozen: parts of `FREEZABLE` left as they are (weights and, for
    the quantizer, its EMA codebooks): fine-tuning the decoder alone of a codec whose codes
    LMs were trained on (`--set 'frozen=["encoder","quantizer"]'`) changes how codes sound,
    never which codes a sound gets, so those LMs still fit."""

    model: CodecConfig = field(default_factory=lambda: preset("tiny"))
    data: CodecDataConfig = field(default_factory=CodecDataConfig)
    discriminator_lr: float | None = None  # None: same as optim.lr
    frozen: tuple[str, ...] = ()
    semantic: SemanticTargetConfig = field(default_factory=SemanticTargetConfig)
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            lr=3e-4,
            betas=(0.8, 0.99),
            weight_decay=0.0,
            warmup_steps=100,
            max_steps=2400,  # about 25 min on one core of this 2-core CPU (the tiny preset)
            min_lr_ratio=0.1,
            grad_clip=100.0,
        )
    )
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            batch_size=8,
            num_workers=1,
            checkpoint_every=250,
            log_every=25,
            valid_every=500,
            keep_last=3,
        )
    )


def run_config_for_preset(name: str, manifest: str) -> CodecRunConfig:
    """Defaults for a named model preset (`tiny` for CPU, `audiolm` for GPUs)."""
    config = CodecRunConfig(model=preset(name), data=CodecDataConfig(manifest=manifest))
    if name == "audiolm":  # DAC-like GPU settings
        config.optim = OptimConfig(
            lr=1e-4,
            betas=(0.8, 0.99),
            weight_decay=0.0,
            warmup_steps=1000,
            max_steps=400_000,
            grad_clip=1000.0,
        )
        config.train.batch_size = 16
        config.train.checkpoint_every = 5000
        config.train.valid_every = 5000
        config.data.crop_seconds = 1.0
    return config


#: CodecConfig fields a fine-tuning run sets for itself (they change no codec weight)
RUN_CHOICES = ("loss", "discriminator", "quantizer_dropout", "dead_code_threshold")


def load_trained_codec(location: str | Path) -> Codec:
    """A segue codec from an exported folder or a run folder (`load_codec`), refusing the
    `hf:` codecs: they can be tokenized with, not trained further here."""
    from segue.codec.load import load_codec

    _refuse_hf(location)
    return load_codec(location)


def _refuse_hf(location: str | Path) -> None:
    """`hf:` codecs can be tokenized with, not trained further here."""
    if str(location).startswith("hf:"):
        raise InputError(f"{location}: not a segue codec; only those can be trained further")


def read_trained_codec_config(location: str | Path) -> CodecConfig:
    """The config of what `load_trained_codec(location)` loads, without reading its weights."""
    _refuse_hf(location)
    path, exported = saved_model_folder(location, (WEIGHTS_NAME, CONFIG_NAME), "codec")
    if exported:
        return load_config(CodecConfig, path / CONFIG_NAME)
    return from_dict(CodecRunConfig, read_run_config(path, what="codec")).model


def adopt_initial(config: CodecRunConfig) -> None:
    """Fine-tuning (`train.init_from`): the saved codec's shape set in `config` (in place; the
    run keeps its RUN_CHOICES: losses, discriminators), from its config alone: its weights are
    read by `CodecTask.load_initial`, only when the run does not resume from its own."""
    if not config.train.init_from:
        return
    saved = read_trained_codec_config(config.train.init_from)
    config.model = fine_tune_config(saved, config.model, RUN_CHOICES)


def semantic_targets(
    tokens: list[np.ndarray],
    starts: torch.Tensor,
    speeds: torch.Tensor,
    lengths: torch.Tensor,
    frames: int,
    hop: int,
    sample_rate: int,
    token_rate: float,
) -> torch.Tensor:
    """[B, frames] the semantic token under the middle of each codec frame of each crop, or
    IGNORE (-100) past a crop's audio or its file's tokens. tokens[b]: the file's tokens [Ts];
    starts [B] (seconds into the file), speeds [B] (source seconds per crop second), lengths [B]
    (real samples of the crop)."""
    out = torch.full((len(tokens), frames), IGNORE, dtype=torch.long)
    middle = (torch.arange(frames, dtype=torch.float64) + 0.5) * hop  # crop samples
    for b, file_tokens in enumerate(tokens):
        source = float(starts[b]) + middle / sample_rate * float(speeds[b])  # file seconds
        index = (source * token_rate).floor().long()
        ok = (middle < int(lengths[b])) & (index < len(file_tokens))
        out[b, ok] = torch.from_numpy(file_tokens.astype(np.int64))[index[ok]]
    return out


class CodecTask(TrainTask):
    """Generator (the codec) + discriminators, each with its own AdamW."""

    def __init__(self, config: CodecRunConfig):
        self.config = config
        if not config.data.manifest:
            raise InputError("codec training needs data.manifest (--manifest)")
        unknown = sorted(set(config.frozen) - set(FREEZABLE))
        if unknown:
            raise InputError(f"frozen: {unknown} are not parts that can be frozen {FREEZABLE}")
        if config.frozen and not config.train.init_from:
            raise InputError(
                f"frozen={list(config.frozen)} keeps randomly initialised parts: freeze parts of "
                "a trained codec (train.init_from / --init-from)"
            )
        self.semantic: TokenShards | None = None
        target = config.semantic
        if target.weight < 0:
            raise InputError(f"semantic.weight must be >= 0, got {target.weight}")
        if target.weight > 0:
            if not target.shards:
                raise InputError("semantic.weight > 0 needs semantic.shards (token shards)")
            self.semantic = TokenShards(target.shards)
            if self.semantic.meta.get("kind") != "semantic":
                raise InputError(f"{target.shards}: not semantic token shards")
            if "quantizer" in config.frozen:
                raise InputError("semantic targets train level 0: the quantizer cannot be frozen")
            self._shard_of = {e.key: i for i, e in enumerate(self.semantic.entries)}
        adopt_initial(config)

    def setup(self, device: torch.device) -> None:
        self.codec = Codec(self.config.model)
        self.discriminator = Discriminators(self.config.model.discriminator)
        for name in self.config.frozen:
            getattr(self.codec, name).requires_grad_(False)
        if self.semantic is not None:
            vocab = int(self.semantic.meta["vocab_size"])
            self.semantic_head = nn.Conv1d(self.config.model.latent_dim, vocab, 1)

    def _hold_frozen(self) -> None:
        """Frozen parts in eval mode: the quantizer then neither moves its EMA codebooks nor
        restarts dead codes (the engine puts every module back in train mode)."""
        for name in self.config.frozen:
            getattr(self.codec, name).eval()

    def load_initial(self, source: str) -> None:
        """The saved codec's weights (its EMA ones for a run folder); the discriminators start
        fresh. Its shape was adopted when the task was made."""
        self.codec.load_state_dict(load_trained_codec(source).state_dict())

    def modules(self) -> dict[str, nn.Module]:
        modules = {"codec": self.codec, "discriminator": self.discriminator}
        if self.semantic is not None:
            modules["semantic_head"] = self.semantic_head
        return modules

    def optimizers(self) -> dict[str, OptimizerSpec]:
        overrides = {}
        if self.config.discriminator_lr is not None:
            overrides["lr"] = self.config.discriminator_lr
        generator = ("codec", "semantic_head") if self.semantic is not None else ("codec",)
        return {
            "generator": OptimizerSpec(generator),
            "discriminator": OptimizerSpec(
                ("discriminator",),
                overrides,
                start_step=self.config.model.loss.discriminator_warmup_steps,
            ),
        }

    def train_dataset(self) -> CropDataset:
        crops = CropDataset(
            self.config.data.manifest,
            self.config.data.crop_seconds,
            self.config.model.sample_rate,
            split="train",
            seed=self.config.train.seed,
            min_seconds=0.1,
            augment=self.config.data.augment,
            verify_files=True,
            skip_missing=self.config.data.skip_missing,
        )
        if self.semantic is not None:
            paths = [entry.path for entry in crops.manifest.entries]
            missing = [path for path in paths if path not in self._shard_of]
            if missing:
                raise InputError(
                    f"{self.config.semantic.shards}: no semantic tokens for {len(missing)} of "
                    f"{len(paths)} training files (e.g. {missing[0]}): tokenize the manifest"
                )
            self._train_paths = paths
        return crops

    def _semantic_loss(
        self, models: Mapping[str, nn.Module], first: torch.Tensor, batch: dict
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cross-entropy, accuracy) of the head on level 0's output first [B, D, T] against the
        semantic tokens under the frames."""
        assert self.semantic is not None
        paths = [self._train_paths[int(i)] for i in batch["index"]]
        tokens = [self.semantic.tokens(self._shard_of[path])[0] for path in paths]
        model = self.config.model
        target = semantic_targets(
            tokens,
            batch["start"],
            batch["speed"],
            batch["length"],
            first.shape[-1],
            model.hop_length,
            model.sample_rate,
            float(self.semantic.meta["frame_rate"]),
        ).to(first.device)
        # scale-free: the head reads each frame's level-0 vector normalised (no weights)
        normed = torch.nn.functional.layer_norm(first.transpose(1, 2), (first.shape[1],))
        logits = models["semantic_head"](normed.transpose(1, 2))  # [B, K, T]
        loss = torch.nn.functional.cross_entropy(logits.float(), target, ignore_index=IGNORE)
        correct = ((logits.argmax(1) == target) & (target != IGNORE)).sum()
        return loss, correct / (target != IGNORE).sum().clamp(min=1)

    def valid_dataset(self) -> FixedCrops | None:
        data = self.config.data
        return valid_crops(
            data.manifest,
            data.valid_crop_seconds,
            self.config.model.sample_rate,
            data.valid_files,
            skip_missing=data.skip_missing,
        )

    def train_step(
        self, models: Mapping[str, nn.Module], batch: dict, step: int
    ) -> Iterator[Phase]:
        loss_cfg = self.config.model.loss
        self._hold_frozen()
        real = batch["audio"][:, None]  # [B, 1, T]
        out = models["codec"](real)
        fake = out.audio
        adversarial = self.optimizer_active("discriminator", step)
        if adversarial:
            d_loss = discriminator_loss(
                models["discriminator"](real), models["discriminator"](fake.detach())
            )
            yield Phase("discriminator", d_loss)
        mel = multiscale_mel_loss(
            fake, real, self.config.model.sample_rate, loss_cfg.mel_windows, loss_cfg.mel_bins
        )
        q = out.quantizer
        loss = (
            loss_cfg.mel_weight * mel
            + loss_cfg.commitment_weight * q.commitment_loss
            + loss_cfg.codebook_weight * q.codebook_loss
            + loss_cfg.residual_weight * q.residual_loss
        )
        if loss_cfg.waveform_weight:
            waveform = torch.nn.functional.l1_loss(fake, real)
            loss = loss + loss_cfg.waveform_weight * waveform
        metrics = {
            "mel": mel.detach(),
            "commitment": q.commitment_loss.detach(),
            "residual": q.residual_loss.detach(),
            "waveform_l1": torch.nn.functional.l1_loss(fake.detach(), real),
            "perplexity_l1": perplexity(q.usage[:1])[0],
            "codes_restarted": float(q.restarted),  # this step's; the log shows a mean per step
        }
        if self.semantic is not None:
            semantic, accuracy = self._semantic_loss(models, q.first, batch)
            loss = loss + self.config.semantic.weight * semantic
            metrics.update(semantic=semantic.detach(), semantic_accuracy=accuracy.detach())
        if loss_cfg.complex_stft_weight:
            spectral = complex_stft_loss(fake, real, loss_cfg.complex_stft_windows)
            loss = loss + loss_cfg.complex_stft_weight * spectral
            metrics["complex_stft"] = spectral.detach()
        if adversarial:
            with torch.no_grad():
                real_outputs = models["discriminator"](real)
            fake_outputs = models["discriminator"](fake)
            adv = generator_adversarial_loss(fake_outputs)
            fm = feature_matching_loss(real_outputs, fake_outputs)
            loss = loss + loss_cfg.adversarial_weight * adv + loss_cfg.feature_matching_weight * fm
            metrics.update(adversarial=adv.detach(), feature_matching=fm.detach())
        yield Phase("generator", loss, metrics)

    @torch.no_grad()
    def valid_step(self, models: Mapping[str, nn.Module], batch: dict) -> dict[str, float]:
        codec = models["codec"]
        codec = getattr(codec, "module", codec)
        real = batch["audio"]
        fake = codec(real[:, None]).audio[:, 0, : real.shape[-1]]
        rows = []
        for f, r, n in zip(fake, real, batch["length"]):
            if n > 0:
                f, r = f.float().cpu().numpy(), r.float().cpu().numpy()
                rows.append(
                    {
                        "mel_distance": mel_distance(f, r),
                        "si_snr": si_snr(f, r),
                        # the targets, as curves over steps (skipped if not installed)
                        "pesq_wb": pesq_wb(f, r),
                        "stoi": stoi(f, r),
                    }
                )
        return {
            key: sum(values) / len(values)
            for key in rows[0]
            if (values := [row[key] for row in rows if row[key] is not None])
        }

    @torch.no_grad()
    def log_media(self, models: Mapping[str, nn.Module], logger, step: int) -> None:
        valid = self.valid_dataset()
        if valid is None or len(valid) == 0:
            return
        codec = models["codec"]
        codec = getattr(codec, "module", codec)
        item = valid[0]
        device = next(codec.parameters()).device
        fake = codec(item["audio"][None, None].to(device)).audio[0, 0].float().cpu()
        rate = self.config.model.sample_rate
        logger.audio("valid/reconstruction", fake, rate, step)
        if step == 0 or not getattr(self, "_logged_reference", False):
            logger.audio("valid/original", item["audio"], rate, step)
            self._logged_reference = True


def load_codec_from_run(run_dir: str | Path, prefer_ema: bool = True) -> Codec:
    """The codec of a training run's newest valid checkpoint (EMA weights when there are some)."""
    from segue.train.checkpoint import load_run_weights

    config, weights = load_run_weights(run_dir, "codec", prefer_ema=prefer_ema, what="codec")
    codec = Codec(from_dict(CodecRunConfig, config).model)
    codec.load_state_dict(weights)
    return codec.eval()
