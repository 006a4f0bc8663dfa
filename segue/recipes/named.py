"""The named recipes of `segue recipe NAME`; times on this project's 2-core CPU, at one torch
thread estimated from the per-step speeds in docs/, except piano-tiny's, measured end to end:

    smoke        3 min of speech, 3-4 steps per model, K=16, 2 semantic iterations: ~40 s,
                 ~70 s with the end-to-end evaluation (Whisper + Resemblyzer load). Checks the
                 pipeline; the bundle it makes babbles.
    speech-tiny  4 h of TTS speech (~5 min) mixed with the real voices (~3 min to fetch), tiny
                 codec 11,000 steps (~2.3 h at ~1.3 steps/s) then its decoder on frozen codes
                 13,000 (~1.4 h at ~2.5 steps/s), Whisper tiny.en tokens (no training: the
                 k-means fit), tokenizing (~30 min), tiny LMs (3000 / 6000 / 3000 steps:
                 ~0.5 + 3-5 + 0.8-2.5 h; the coarse LM runs at 0.35-0.6 steps/s beside another
                 job), SoundStorm (12,000 steps, ~1-2 h): about 10-14 h, resumable. The next
                 speech bundle's plan (docs/results.md says where its run stands).
    piano-tiny   the tiny presets on 4 h of piano, with our own semantic model (iteration 1,
                 8000 steps; K=1024 on layer 4), tiny LMs (3000 / 1500 / 1000 steps) and
                 SoundStorm (6000 steps); no transcripts: the e2e evaluation only continues.
                 Run here at 2 threads, measured: corpus 47 min, codec 1.4 h, semantic
                 model 57 min, tokenizing 7 min, LMs 25 + 61 + 33 min, SoundStorm 33 min,
                 evaluation 1 min: about 5.8 h (docs/results.md; the codec time is from its
                 logs over two sessions, mostly at 1 thread).
    speech-gpu   40 h of speech, `audiolm` codec and LMs, `base` semantic model (2 iterations),
                 at the presets' step counts: days on one GPU. A starting point, not yet run.
    finetune     the shipped speech bundle trained further on your own audio (`--data`; another
                 bundle with `--init-from`): its codec and semantic tokenizer as they are, its
                 LMs and SoundStorm 300-1500 more steps each (the coarse and fine LMs' steps
                 take ~2 s on one thread here); see docs/recipes.md for a measured run.
    librilight   speech-gpu's models on your own audio (`--data`, e.g. Libri-Light's 60k h),
                 sized in `librilight()`'s docstring. Not yet run.
"""

from __future__ import annotations

from segue import PACKAGED_BUNDLE
from segue.codec.train import run_config_for_preset as codec_preset
from segue.config import apply_overrides
from segue.lm.train import run_config_for
from segue.recipes.audiolm import STEPS
from segue.recipes.config import (
    STAGES,
    AudioLMRecipeConfig,
    EvaluateConfig,
    KMeansConfig,
    SemanticStepConfig,
    decoder_phase,
    iteration2_config,
    start_from,
)
from segue.recipes.corpus import CorpusConfig
from segue.recipes.runner import Recipe
from segue.semantic.train import run_config_for_preset as semantic_preset
from segue.soundstorm.config import soundstorm_preset
from segue.soundstorm.train import SoundStormRunConfig

#: Few-step runs: no workers, no bars, no event files, no mid-run checkpoints.
_QUICK = [
    "optim.warmup_steps=1",
    "train.batch_size=2",
    "train.num_workers=0",
    "train.checkpoint_every=1000",
    "train.log_every=1000",
    "train.progress=false",
    "train.tensorboard=false",
]


def smoke() -> AudioLMRecipeConfig:
    """Seconds-scale: 3 minutes of speech, a handful of steps per model, K=16. A pipeline check."""
    config = AudioLMRecipeConfig(corpus=CorpusConfig("speech", hours=0.05))
    config.codec = apply_overrides(
        config.codec,
        [*_QUICK, "optim.max_steps=4", "data.valid_files=2", "data.valid_crop_seconds=1.0"],
    )
    semantic = [
        *_QUICK,
        "optim.max_steps=3",
        "data.crop_seconds=2.0",
        "data.valid_crop_seconds=2.0",
        "data.valid_files=2",
        "targets.k=16",
        "targets.fit_files=8",
        "targets.fit_frames=4000",
        "targets.niter=10",
    ]
    config.semantic = SemanticStepConfig(
        iterations=2,
        it1=apply_overrides(config.semantic.it1, semantic),
        it2=apply_overrides(config.semantic.it2, semantic),
        tokenizer=KMeansConfig(k=16, max_files=8, max_frames=4000, niter=10),
    )
    for stage in STAGES:
        name = f"lm_{stage}"
        lm = apply_overrides(getattr(config, name), [*_QUICK, "optim.max_steps=3"])
        lm.data.valid_items = 4
        setattr(config, name, lm)
    config.soundstorm = apply_overrides(config.soundstorm, [*_QUICK, "optim.max_steps=3"])
    config.soundstorm.data.valid_items = 4
    config.evaluate = EvaluateConfig(
        codec_files=2, codec_seconds=2.0, lm_items=4, batch_size=2, e2e_prompts=2, e2e_resynth=2
    )
    return config


def _tiny() -> AudioLMRecipeConfig:
    """The `tiny` presets with fewer LM steps: what piano-tiny runs as it is."""
    config = AudioLMRecipeConfig(corpus=CorpusConfig("speech", hours=4.0))
    config.lm_semantic.optim.max_steps = 3000
    config.lm_coarse.optim.max_steps = 1500
    config.lm_fine.optim.max_steps = 1000
    # SoundStorm is cheap here (~3 steps/s at 2 threads) and still learning at 2,000 steps:
    # on piano-tiny, valid loss 5.87 at 6,000 steps against 6.04 at 2,000 (docs/results.md).
    config.soundstorm.optim.max_steps = 6000
    config.evaluate = EvaluateConfig(codec_files=20, lm_items=128, probes_pairs=300)
    return config


def speech_tiny() -> AudioLMRecipeConfig:
    """Speech on a 2-core CPU, each part as measured best here (the next speech bundle's plan):
    4 h of TTS voices mixed half and half with the real voices; the tiny codec 11,000 steps,
    then its decoder 13,000 more on frozen codes (docs/codec.md); Whisper tiny.en's encoder,
    K = 250, a 35 dB silence gate (picked on held-out voices, docs/semantic.md); tiny LMs."""
    config = _tiny()
    config.corpus = CorpusConfig("speech+real", hours=4.0, real_weight=0.5)
    config.codec.optim.max_steps = 11_000
    config.codec.model.loss.discriminator_warmup_steps = 11_000  # reconstruction terms only
    config.codec_decoder.optim.max_steps = 13_000
    config.codec_decoder.model.loss.discriminator_warmup_steps = 13_000
    config.semantic = SemanticStepConfig(
        backbone="whisper", tokenizer=KMeansConfig(k=250, max_files=1000, silence_db=35.0)
    )
    config.lm_coarse.optim.max_steps = 6000
    config.lm_fine.optim.max_steps = 3000
    config.soundstorm.optim.max_steps = 12_000
    return config


def piano_tiny() -> AudioLMRecipeConfig:
    """The tiny presets on 4 h of piano rendered from real scores (the semantic model is ours:
    Whisper's encoder was made for speech)."""
    config = _tiny()
    config.corpus = CorpusConfig("piano", hours=4.0)
    config.evaluate.e2e_resynth = 0  # WER needs transcripts
    return config


def finetune() -> AudioLMRecipeConfig:
    """The shipped `speech-tiny` bundle fine-tuned on your audio (`--data`, required): its codec
    and semantic tokenizer kept (the tokens mean what they meant), its three LMs and SoundStorm
    trained further from their weights at a third of the from-scratch learning rate, a short
    warm-up, and float16 weights in the bundle (as shipped). `--init-from BUNDLE` starts from
    another bundle instead (`start_from`)."""
    config = _tiny()
    config.corpus = CorpusConfig(kind="own")
    steps = {"lm_semantic": 1000, "lm_coarse": 600, "lm_fine": 300, "soundstorm": 1500}
    for name, max_steps in steps.items():
        run = getattr(config, name)
        run.optim.max_steps, run.optim.warmup_steps = max_steps, 100
        run.optim.lr /= 3
    config.bundle.half = True
    return start_from(config, PACKAGED_BUNDLE)


def speech_gpu() -> AudioLMRecipeConfig:
    """The paper-sized presets (`audiolm` codec and LMs, `base` semantic, 2 iterations) on 40 h
    of speech, for one GPU. Days of training at the presets' step counts."""
    config = AudioLMRecipeConfig(
        corpus=CorpusConfig("speech", hours=40.0),
        codec=codec_preset("audiolm", ""),
        codec_decoder=decoder_phase(codec_preset("audiolm", "")),
        semantic=SemanticStepConfig(
            iterations=2, it1=semantic_preset("base"), it2=iteration2_config("base")
        ),
        lm_semantic=run_config_for("semantic", "audiolm"),
        lm_coarse=run_config_for("coarse", "audiolm"),
        lm_fine=run_config_for("fine", "audiolm"),
        soundstorm=SoundStormRunConfig(model=soundstorm_preset("base")),
    )
    config.evaluate.probes_pairs = 1000  # the whole sentence set, half the word set
    return config


def librilight() -> AudioLMRecipeConfig:
    """`speech-gpu`'s paper-sized models on your own speech: `--data DIR` (required; no corpus is
    built), speakers as groups (`--group grandparent`: Libri-Light's speaker/book/file.flac),
    every model at its preset's `optim.max_steps`, which is the plan of docs/scaling.md's 60k h
    row (the step rule: at 60k h the presets, not the 16-epoch cap, set the steps).

    Planned, for Libri-Light's 60k h (docs/scaling.md, `bench/scaling.py`: FLOPs counted,
    GPU time projected at 35 % of an H100's 989 TFLOP/s, 0.9 / 0.8 data-parallel efficiency on
    8 / 64 GPUs; not measured, nothing here has run on a GPU). Batch is per process; the LM
    windows are 30 s / 10 s / 6 s of audio, SoundStorm's 4 s (200 frames); ep: epochs of 60k h:

    model           steps  batch/process   seen in all steps     GPU-h 1/8/64    GiB/GPU
    codec         400,000  16 x 1 s        1,778 h (0.03 ep)     1.3/1.5/1.7       11.94
    semantic.it1  100,000  16 x 10 s       4,444 h (0.07 ep)     0.2/0.2/0.3        3.80
    semantic.it2  100,000  16 x 10 s       4,444 h (0.07 ep)     0.2/0.3/0.3        3.81
    lm_semantic   200,000  32 x 751 tok    4.8e9 tok (0.89 ep)   3.9/4.4/4.9       22.29
    lm_coarse     200,000  32 x 2,251 tok  1.4e10 tok (0.30 ep)  14.7/16.3/18.3    64.54
    lm_fine       200,000  32 x 3,601 tok  2.3e10 tok (0.18 ep)  28.0/31.1/35.0   108.16
    soundstorm      5,000  8 x 4 s         44 h (0.00 ep)        0.0/0.0/0.0        3.97

    All seven, one after another: 48.4 GPU-hours on 1 GPU (48.4 h wall), 53.7 on 8 (6.7 h),
    60.4 on 64 (0.94 h); not counted: indexing the corpus, the k-means fits, tokenizing 60k h,
    validation, checkpoints. Memory is the float32 estimate; lm_fine's is over 80 GB: CUDA's
    default bf16 autocast about halves the activations, else halve `train.batch_size` with
    `optim.grad_accum=2`, or `train.distributed=fsdp`. The 8 and 64 GPU columns train
    max_steps / N steps (the same epochs): the defaults here are the 1-GPU steps, so on N
    processes pass `--set STEP.optim.max_steps=...` (each step sees N times the data).
    """
    config = speech_gpu()
    config.corpus = CorpusConfig(kind="own", group="grandparent")
    return config


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe("smoke", "about a minute: 3 min of speech, 3-4 steps per model", smoke, STEPS),
        Recipe(
            "speech-tiny",
            "10-14 h of a 2-core CPU: 4 h of TTS + real speech, tiny models",
            speech_tiny,
            STEPS,
        ),
        Recipe("piano-tiny", "a few CPU hours: 4 h of piano, tiny models", piano_tiny, STEPS),
        Recipe(
            "finetune",
            "CPU hours: the shipped bundle trained further on your own audio (--data)",
            finetune,
            STEPS,
        ),
        Recipe("speech-gpu", "one GPU, days: 40 h of speech, paper-sized", speech_gpu, STEPS),
        Recipe(
            "librilight",
            "GPUs: your own speech (--data, e.g. Libri-Light), paper-sized",
            librilight,
            STEPS,
        ),
    )
}
