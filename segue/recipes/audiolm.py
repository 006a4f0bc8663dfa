"""The AudioLM recipe: from nothing to a model bundle, in eleven resumable steps.

    corpus       speech (TTS and/or real voices) or piano       OUT/corpus/manifest.jsonl
    semantic     HuBERT iteration 1 (+ 2), then k-means        OUT/semantic/{it1,it2,tokenizer}
    codec        the SoundStream-style codec                   OUT/codec/ (its run folder)
    codec_decoder  its decoder trained on, codes frozen (optional) OUT/codec_decoder/ (run folder)
    tokenize     semantic + acoustic shards of the whole corpus OUT/tokenize/{semantic,acoustic}
    lm_semantic  lm_coarse  lm_fine: the three stage LMs       OUT/lm_*/ (run folders)
    soundstorm   the parallel acoustic model (optional path)   OUT/soundstorm/ (its run folder)
    evaluate     codec and LM numbers (+ end-to-end if any)    OUT/evaluate/report.json
    bundle       the AudioLM bundle                            OUT/bundle/

The semantic step comes before the codec so that a codec with semantic targets
(`--set codec.semantic.weight=10`: its first RVQ level learns to predict the semantic tokens,
`segue.codec.train.SemanticTargetConfig`) can read the corpus' tokens (OUT/codec/semantic_targets);
the codec needs the semantic step only then.

The config (`config.py`) has one field per step: training steps hold the model's whole run
config (so `--set codec.optim.max_steps=500` or `--set lm_fine.model.n_layer=2` work), with the
paths (manifest, shards, teacher) left empty: the recipe fills them in from OUT.

The named recipes that fill this config (smoke, speech-tiny, piano-tiny, speech-gpu,
librilight) are in `named.py`; the corpus step and its config in `corpus.py`.

One process runs the steps one after another; under torchrun (N processes on M nodes, OUT on a
file system every node sees) every process runs the recipe: the trainings (codec, semantic
iterations, the three LMs, SoundStorm) train with DDP (or `train.distributed=fsdp`) through the
engine, each process with the step's `train.batch_size`; tokenizing splits the files by rank;
the corpus step, the k-means fit, evaluate and bundle run on rank 0 while the others wait;
rank 0 alone writes the markers (`runner.py`). docs/recipes.md has torchrun and SLURM launches.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import torch

from segue.codec.train import CodecTask, load_trained_codec
from segue.config import write_atomic
from segue.data.manifest import MANIFEST_NAME, read_manifest
from segue.data.mix import read_part_weights
from segue.lm.train import LMRunConfig, LMTask
from segue.recipes.config import STAGES, EvaluateConfig, codec_kept, decoder_phase_run
from segue.recipes.corpus import corpus
from segue.recipes.runner import Context, RecipeError, Step
from segue.semantic.train import SemanticTask
from segue.soundstorm.train import SoundStormTask
from segue.train import train_to_end
from segue.train.distributed import all_reduce, broadcast_object, resolve_device

# ----------------------------------------------------------------------------------- helpers


def _device(ctx: Context) -> torch.device:
    """This process's GPU (cuda:LOCAL_RANK under torchrun) when there is one, else the CPU."""
    return resolve_device("auto", ctx.dist)


def _manifest(ctx: Context) -> Path:
    return ctx.dir("corpus") / MANIFEST_NAME


def _final_codec(ctx: Context) -> Path:
    """The codec the bundle decodes with: the codec_decoder step's run when that step trains,
    else the codec step's. Both give every sound the same codes (the tokens are the codec's)."""
    return ctx.dir("codec_decoder" if decoder_phase_run(ctx.config) else "codec")


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in values.items() if math.isfinite(float(v))}


def _train(task: Any, config: Any, run_dir: Path) -> dict[str, Any]:
    """Train (or resume) into `run_dir` (on every rank under torchrun: DDP or FSDP, as the
    config's `train.distributed` says); the final step and last scalars."""
    resume = broadcast_object((run_dir / "checkpoints").is_dir())  # rank 0 decides for all
    result = train_to_end(task, config, run_dir, resume=resume)
    keep = {k: v for k, v in result.train.items() if not k.startswith(("lr", "grad_norm"))}
    return {"steps": result.step, "train": _rounded(keep), "valid": _rounded(result.valid)}


def _lm_config(ctx: Context, stage: str) -> LMRunConfig:
    """The stage's run config with the shard folders of OUT/tokenize filled in."""
    config = copy.deepcopy(getattr(ctx.config, f"lm_{stage}"))
    if config.stage.stage != stage:
        raise RecipeError(f"lm_{stage}.stage.stage is {config.stage.stage!r}, not {stage!r}")
    shards = ctx.dir("tokenize")
    if stage in ("semantic", "coarse"):
        config.data.semantic_shards = str(shards / "semantic")
    if stage in ("coarse", "fine"):
        config.data.acoustic_shards = str(shards / "acoustic")
    return config


def _split_with_files(manifest: Path, wanted: str) -> str:
    """`wanted`, or the first of valid/train that has files (tiny corpora may lack a test split)."""
    for split in dict.fromkeys((wanted, "valid", "train")):
        if read_manifest(manifest, split=split).entries:
            return split
    raise RecipeError(f"{manifest}: no files to evaluate on")


# ----------------------------------------------------------------------------------- steps


def codec(ctx: Context) -> dict[str, Any]:
    """Train the codec; OUT/codec is its run folder. With `codec.train.init_from` and
    `codec.optim.max_steps=0`, that codec as it is: OUT/codec is its exported copy."""
    config = copy.deepcopy(ctx.config.codec)
    config.data.manifest = str(_manifest(ctx))
    if codec_kept(config):
        source = str(config.train.init_from)

        def export() -> dict[str, Any]:
            load_trained_codec(source).save_pretrained(ctx.dir("codec"))
            return {"steps": 0, "from": source}

        return ctx.main_only(export) or {}
    if config.semantic.weight > 0:  # its targets: the semantic tokens of the whole corpus
        targets = ctx.dir("codec") / "semantic_targets"
        _semantic_shards(ctx, targets)
        config.semantic.shards = str(targets)
    return _train(CodecTask(config), config, ctx.dir("codec"))


def _codec_needs(config: Any) -> tuple[str, ...]:
    """The codec step reads the semantic step's tokenizer when it learns semantic targets."""
    learns = config.codec.semantic.weight > 0 and not codec_kept(config.codec)
    return ("semantic",) if learns else ()


def codec_decoder(ctx: Context) -> dict[str, Any]:
    """The codec's decoder trained on from the codec step's weights, its encoder and quantizer
    frozen (the tokens keep their meaning); OUT/codec_decoder is its run folder. Off (nothing
    trained, the codec step's codec is the bundle's) at `codec_decoder.optim.max_steps=0`.
    Why a second phase: on the TTS + real mix the tiny codec's validation PESQ stayed flat from
    step 8,000 of the joint run; its decoder alone, on frozen codes, rose 1.80 -> 1.92 in
    13,000 steps (docs/codec.md, "Freezing the codes")."""
    config = decoder_phase_run(ctx.config, ctx.dir("codec"))
    if config is None:
        return {"steps": 0, "off": "codec_decoder.optim.max_steps=0"}
    config.data.manifest = str(_manifest(ctx))
    return _train(CodecTask(config), config, ctx.dir("codec_decoder"))


def semantic(ctx: Context) -> dict[str, Any]:
    """HuBERT iteration 1 (MFCC targets), optionally 2 (on every rank), then the k-means
    tokenizer (fitted on rank 0)."""
    cfg, root, manifest = ctx.config.semantic, ctx.dir("semantic"), str(_manifest(ctx))
    if cfg.tokenizer_from:
        return ctx.main_only(lambda: _copy_tokenizer(cfg.tokenizer_from, root / "tokenizer")) or {}
    numbers: dict[str, Any] = {"backbone": cfg.backbone}
    teacher = ""
    for i in range(1, cfg.iterations + 1 if cfg.backbone == "segue" else 1):
        run = root / f"it{i}"
        config = copy.deepcopy(getattr(cfg, f"it{i}"))
        config.data.manifest = manifest
        config.targets.path = str(run / "targets")
        config.targets.teacher = teacher
        numbers[f"it{i}"] = _train(SemanticTask(config), config, run)
        teacher = str(run)
    tokenizer = ctx.main_only(lambda: _fit_tokenizer(ctx, teacher))
    if tokenizer is None:  # not rank 0: rank 0 reports
        return {}
    info = tokenizer.info or {}
    numbers["tokenizer"] = {
        "k": tokenizer.vocab_size,
        "frames": info.get("frames"),
        "mse": round(float(info.get("mse", math.nan)), 4),
    }
    return numbers


def _copy_tokenizer(source: str, out: Path) -> dict[str, Any]:
    """`semantic.tokenizer_from`: a fitted tokenizer, read (and so checked) and saved as
    OUT/semantic/tokenizer."""
    from segue.semantic.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(source)
    tokenizer.save(out)
    return {"from": str(source), "tokenizer": {"k": tokenizer.vocab_size}}


def _fit_tokenizer(ctx: Context, teacher: str) -> Any:
    """The k-means tokenizer in OUT/semantic/tokenizer (loaded if a run already fitted it)."""
    from segue.semantic.extractors import ModelExtractor
    from segue.semantic.fit import fit_tokenizer
    from segue.semantic.tokenizer import TOKENIZER_NAME, load_tokenizer
    from segue.semantic.train import load_model_from_run

    cfg, manifest = ctx.config.semantic, str(_manifest(ctx))
    out, km = ctx.dir("semantic") / "tokenizer", cfg.tokenizer
    if (out / TOKENIZER_NAME).is_file():  # written last: a complete tokenizer
        tokenizer = load_tokenizer(out)
    else:
        if cfg.backbone == "whisper":
            from segue.semantic.whisper import PACKAGED, WhisperExtractor

            source = cfg.whisper or PACKAGED
            hf = source != PACKAGED and not (Path(source) / "model.bin").is_file()
            layer = -1 if km.layer is None else km.layer  # WhisperExtractor's -1: the last
            extractor = WhisperExtractor("hf" if hf else "ct2", source, layer)
            teacher = f"whisper:{source}"
        else:
            model = load_model_from_run(teacher)
            layer = model.config.tokenizer_layer if km.layer is None else km.layer
            extractor = ModelExtractor(model, layer)
        tokenizer = fit_tokenizer(
            extractor.to(_device(ctx)),
            read_manifest(manifest, split="train"),
            km.k,
            seed=km.seed,
            niter=km.niter,
            max_files=km.max_files,
            max_frames=km.max_frames,
            source=teacher,
            part_weights=read_part_weights(manifest),
        )
        tokenizer.with_silence_gate(km.silence_db)
        tokenizer.save(out)
    return tokenizer


def tokenize(ctx: Context) -> dict[str, Any]:
    """Semantic and acoustic token shards of the whole manifest (resumable); under torchrun
    each rank tokenizes every world-th file into its own shards, then rank 0 merges the index."""
    from segue.codec.load import load_codec
    from segue.data.shards import TokenShards, merge_index, tokenize_manifest

    device, out = _device(ctx), ctx.dir("tokenize")
    manifest = read_manifest(_manifest(ctx))
    codec = load_codec(ctx.dir("codec")).to(device)

    def acoustic_tokens(audio):
        return codec.encode(torch.from_numpy(audio)[None].to(device))[0].cpu().numpy()  # [Q, F]

    ranks = {"rank": ctx.dist.rank, "world_size": ctx.dist.world_size}
    targets = _codec_targets(ctx)
    if targets is None:
        failed = _semantic_shards(ctx, out / "semantic", merge=False)
    else:  # the codec step tokenized the corpus with this tokenizer already
        ctx.main_only(lambda: _copy_shards(targets, out / "semantic"))
        failed = 0  # its unreadable files are the acoustic pass's too, counted there
    with torch.inference_mode():
        counts = tokenize_manifest(
            manifest,
            out / "acoustic",
            acoustic_tokens,
            kind="acoustic",
            levels=codec.n_codebooks,
            vocab_size=codec.codebook_size,
            frame_rate=codec.frame_rate,
            sample_rate=codec.sample_rate,
            **ranks,
            extra_meta={"n_coarse": codec.n_coarse, "tokenizer": str(ctx.dir("codec").resolve())},
            desc="acoustic tokens",
        )
    failed = torch.tensor([failed + counts["failed"]])
    all_reduce(failed)  # every rank's unreadable files

    def merged() -> dict[str, Any]:
        numbers: dict[str, Any] = {"failed": int(failed.item())}
        for kind in ("semantic", "acoustic"):
            if ctx.dist.is_distributed:
                merge_index(out / kind)
            shards = TokenShards(out / kind)
            numbers[kind] = {"utterances": len(shards), "frames": shards.total_frames()}
        return numbers

    return ctx.main_only(merged) or {}


def _codec_targets(ctx: Context) -> Path | None:
    """OUT/codec/semantic_targets when the codec step wrote them complete: the corpus' semantic
    shards by OUT/semantic/tokenizer (the codec step depends on the semantic step then, so a new
    tokenizer means a new codec run and new targets). None otherwise."""
    from segue.data.shards import INDEX_NAME

    config = ctx.config.codec
    targets = ctx.dir("codec") / "semantic_targets"
    if config.semantic.weight > 0 and not codec_kept(config) and (targets / INDEX_NAME).is_file():
        return targets
    return None


def _copy_shards(source: Path, out: Path) -> None:
    """A complete shard folder copied to `out` (through a temporary folder: `out` is complete
    or absent)."""
    import shutil

    from segue.data.shards import INDEX_NAME

    if (out / INDEX_NAME).is_file():
        return
    partial = out.with_name(out.name + ".partial")
    for stale in (partial, out):
        if stale.exists():
            shutil.rmtree(stale)
    shutil.copytree(source, partial)
    partial.rename(out)


def _semantic_shards(ctx: Context, out: Path, *, merge: bool = True) -> int:
    """Semantic token shards of the whole corpus in `out` with OUT/semantic/tokenizer (resumable;
    under torchrun each rank takes every world-th file and, with `merge`, rank 0 merges the
    index while the others wait); the number of files this rank could not read."""
    from segue.data.shards import merge_index
    from segue.semantic.tokenizer import load_tokenizer

    source = ctx.dir("semantic") / "tokenizer"
    tokenizer = load_tokenizer(source).to(_device(ctx))
    counts = tokenizer.tokenize_manifest(
        read_manifest(_manifest(ctx)),
        out,
        source=source,
        rank=ctx.dist.rank,
        world_size=ctx.dist.world_size,
    )
    if merge and ctx.dist.is_distributed:
        ctx.main_only(lambda: merge_index(out))
    return counts["failed"]


def _lm_step(stage: str) -> Step:
    def run(ctx: Context) -> dict[str, Any]:
        config = _lm_config(ctx, stage)
        return _train(LMTask(config), config, ctx.dir(f"lm_{stage}"))

    run.__doc__ = f"Train the {stage} LM; OUT/lm_{stage} is its run folder."
    return Step(f"lm_{stage}", run, ("tokenize",), f"the {stage} LM", every_rank=True)


def soundstorm(ctx: Context) -> dict[str, Any]:
    """Train SoundStorm on the same shards as the coarse LM; OUT/soundstorm is its run folder."""
    config = copy.deepcopy(ctx.config.soundstorm)
    shards = ctx.dir("tokenize")
    config.data.semantic_shards = str(shards / "semantic")
    config.data.acoustic_shards = str(shards / "acoustic")
    return _train(SoundStormTask(config), config, ctx.dir("soundstorm"))


def _assemble(ctx: Context, device: torch.device | str = "cpu") -> Any:
    """The AudioLM of the recipe's parts (SoundStorm included)."""
    from segue.pipeline import AudioLM

    d = ctx.dir
    return AudioLM.from_parts(
        _final_codec(ctx),
        d("semantic") / "tokenizer",
        d("lm_semantic"),
        d("lm_coarse"),
        d("lm_fine"),
        soundstorm=d("soundstorm"),
        info={"recipe": ctx.recipe},
        device=device,
    )


def _evaluate_lm(ctx: Context, stage: str, split: str, cfg: EvaluateConfig) -> dict[str, float]:
    from segue.lm.evaluate import evaluate_lm
    from segue.lm.stages import load_lm
    from segue.lm.train import build_dataset, fill_from_shards

    lm = load_lm(ctx.dir(f"lm_{stage}"), device=_device(ctx))
    config = LMRunConfig(stage=lm.stage, data=_lm_config(ctx, stage).data)
    fill_from_shards(config)
    dataset = build_dataset(config, lm.layout, split, seed=1234)
    batches = None if cfg.lm_items is None else -(-cfg.lm_items // cfg.batch_size)
    report = evaluate_lm(lm, dataset, batch_size=cfg.batch_size, max_batches=batches)
    return _rounded(report.to_dict())


#: Where the evaluate step writes each acoustic path's end-to-end run.
_E2E_FOLDERS = {"ar": "e2e", "soundstorm": "e2e-soundstorm"}


def _evaluate_e2e(ctx: Context, split: str, cfg: EvaluateConfig) -> dict[str, Any]:
    """Continuations and resyntheses by the assembled model (`segue.eval.e2e`), once per acoustic
    path ("ar", then "soundstorm"; same prompts and seeds): {path: E2EReport}, or {"not_run":
    why}. A failure is reported, not raised: the codec and LM numbers and the bundle matter more.
    """
    if not cfg.e2e:
        return {"not_run": "evaluate.e2e is false"}
    try:
        from segue.acoustic import PATHS
        from segue.eval import e2e
    except ImportError as error:
        return {"not_run": f"no end-to-end evaluation here ({error})"}
    try:
        model = _assemble(ctx, _device(ctx))
        if ctx.config.corpus.kind == "piano":  # pitch classes: Resemblyzer is a speech model
            from segue.eval.chroma import ChromaEncoder

            speaker = ChromaEncoder()
        else:
            speaker = e2e.SpeakerEncoder()
        transcriber = e2e.Transcriber(threads=torch.get_num_threads())
        folders = {path: ctx.dir("evaluate") / _E2E_FOLDERS[path] for path in _E2E_FOLDERS}
        settings = {
            path: e2e.E2ESettings(
                n_prompts=cfg.e2e_prompts, n_resynth=cfg.e2e_resynth, seed=cfg.seed, acoustic=path
            )
            for path in folders
        }
        voices = e2e.training_voices(_manifest(ctx), settings["ar"], speaker)  # once, for both
        reports = {
            path: e2e.evaluate_e2e(
                model,
                _manifest(ctx),
                settings=settings[path],
                split=split,
                out_dir=folder,
                speaker=speaker,
                transcriber=transcriber,
                voices=voices,
            )
            for path, folder in folders.items()
        }
        # both paths side by side, the same prompts in one row (OUT/evaluate/e2e-page)
        labels = {PATHS[path].label: folder for path, folder in folders.items()}
        e2e.comparison_page(labels, ctx.dir("evaluate") / "e2e-page")
        return reports
    except Exception as error:  # an optional evaluation must not stop the recipe
        print(f"warning: end-to-end evaluation failed: {type(error).__name__}: {error}")
        return {"not_run": f"failed: {type(error).__name__}: {error}"}


def _evaluate_probes(ctx: Context, cfg: EvaluateConfig) -> dict[str, Any] | None:
    """The semantic LM on `probes_pairs` spoken word / non-word and grammatical / ungrammatical
    pairs (`segue.eval.probes`), made in OUT/evaluate/probes; None when off or not speech."""
    if cfg.probes_pairs < 1 or ctx.config.corpus.kind == "piano":
        return None
    from segue.eval.probes import build_lexical, build_syntactic, evaluate_probes
    from segue.eval.probes.score import ProbeScorer

    root = ctx.dir("evaluate") / "probes"
    build_lexical(root, n_pairs=cfg.probes_pairs, seed=cfg.seed, progress=False)
    build_syntactic(root, n_pairs=cfg.probes_pairs, seed=cfg.seed, progress=False)
    scorer = ProbeScorer.from_model(_assemble(ctx, _device(ctx)), name=str(ctx.dir("bundle")))
    report = evaluate_probes(scorer, root, seed=cfg.seed, progress=False)
    return json.loads(report.to_json())


def _e2e_numbers(reports: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers of each path's e2e report: speaker similarity, verification, WERs."""
    if "not_run" in reports:
        return {"e2e": reports["not_run"]}
    numbers: dict[str, Any] = {}
    for path, report in reports.items():
        cont, res = report.continuation, report.resynthesis
        if cont is not None:
            numbers[f"e2e_{path}_speaker_similarity"] = cont.similarity.mean
            numbers[f"e2e_{path}_verification"] = cont.verification
        for system, wer in (res.wer if res is not None else {}).items():
            if path == "ar" or system == "semantic":  # original and codec: the same for both
                numbers[f"e2e_{path}_wer_{system}"] = wer
    return {k: v for k, v in numbers.items() if v is not None}


def _e2e_json(reports: dict[str, Any]) -> dict[str, Any]:
    """`_evaluate_e2e`'s result as report.json's "e2e": {path: that path's report.json}."""
    if "not_run" in reports:
        return dict(reports)
    return {path: json.loads(report.to_json()) for path, report in reports.items()}


def evaluate(ctx: Context) -> dict[str, Any]:
    """Codec reconstruction and LM losses on the eval split -> OUT/evaluate/report.json."""
    from segue.codec.load import load_codec
    from segue.eval.codec_eval import evaluate_codec

    cfg = ctx.config.evaluate
    split = _split_with_files(_manifest(ctx), cfg.split)
    codec_report = evaluate_codec(
        load_codec(_final_codec(ctx)),
        read_manifest(_manifest(ctx), split=split),
        max_files=cfg.codec_files,
        max_seconds=cfg.codec_seconds,
    )
    lm = {stage: _evaluate_lm(ctx, stage, split, cfg) for stage in STAGES}
    e2e_reports = _evaluate_e2e(ctx, split, cfg)
    report = {
        "split": split,
        "codec": codec_report.to_dict(rows=False),
        "lm": lm,
        "e2e": _e2e_json(e2e_reports),
        "probes": _evaluate_probes(ctx, cfg),
    }
    write_atomic(
        ctx.dir("evaluate") / "report.json", (json.dumps(report, indent=1) + "\n").encode()
    )
    numbers: dict[str, Any] = {"split": split}
    numbers.update({f"codec_{k}": v for k, v in codec_report.metrics.items() if v is not None})
    for stage, lm in report["lm"].items():
        numbers[f"lm_{stage}_loss"] = lm["loss"]
        numbers[f"lm_{stage}_level_loss"] = lm["level_loss"]  # comparable across softmaxes
        numbers[f"lm_{stage}_unigram_entropy"] = lm["unigram_entropy"]
    numbers.update(_e2e_numbers(e2e_reports))
    for result in (report["probes"] or {}).get("results", []):
        numbers[f"probes_{result['task']}_accuracy"] = result["summed"]["accuracy"]
    return _round_numbers(numbers)


def _round_numbers(numbers: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in numbers.items()}


def bundle(ctx: Context) -> dict[str, Any]:
    """Assemble the AudioLM bundle in OUT/bundle (loads with AudioLM.from_pretrained)."""
    model = _assemble(ctx)
    path = model.save_pretrained(ctx.dir("bundle"), half=ctx.config.bundle.half)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return {
        "sample_rate": model.sample_rate,
        "levels": model.n_levels,
        "coarse": model.n_coarse,
        "codebook_size": model.codec.codebook_size,
        "semantic_vocab": model.tokenizer.vocab_size,
        "max_prompt_seconds": round(model.max_prompt_seconds, 2),
        "megabytes": round(size / 2**20, 2),
    }


_MODELS = ("lm_semantic", "lm_coarse", "lm_fine", "soundstorm")
STEPS: tuple[Step, ...] = (
    Step("corpus", corpus, (), "synthesise the corpus"),
    Step("semantic", semantic, ("corpus",), "semantic model + k-means tokenizer", every_rank=True),
    Step("codec", codec, ("corpus",), "train the codec", every_rank=True, needs_when=_codec_needs),
    Step(
        "codec_decoder",
        codec_decoder,
        ("corpus", "codec"),
        "the codec's decoder on frozen codes",
        every_rank=True,
    ),
    Step("tokenize", tokenize, ("corpus", "codec", "semantic"), "token shards", every_rank=True),
    _lm_step("semantic"),
    _lm_step("coarse"),
    _lm_step("fine"),
    Step("soundstorm", soundstorm, ("tokenize",), "SoundStorm", every_rank=True),
    Step(
        "evaluate",
        evaluate,
        ("corpus", "codec", "codec_decoder", "semantic", "tokenize", *_MODELS),
        "codec + LM numbers",
    ),
    Step("bundle", bundle, ("codec", "codec_decoder", "semantic", *_MODELS), "the AudioLM bundle"),
)
