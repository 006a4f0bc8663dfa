"""`segue semantic ...`: train the HuBERT-style model, fit k-means tokenizers (ours, MFCC or a
Hugging Face encoder), tokenize files and manifests, evaluate voice invariance."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from segue.commands import (
    CommandError,
    add_device,
    add_input,
    add_model,
    add_out,
    add_threads,
    add_training,
    check_array_output,
    finish_shards,
    non_negative_int,
    pick_device,
    positive_float,
    save_array,
    torchrun_ranks,
)

#: `eval --silence-db` left out: each tokenizer keeps the gate it was saved with.
AS_SAVED = object()


def _gate_level(text: str) -> float | None:
    """argparse type of `eval --silence-db`: decibels > 0, or `off` (None: no gate)."""
    return None if text.strip().lower() == "off" else positive_float(text)


def _train(args: argparse.Namespace) -> None:
    from segue.semantic.train import SemanticRunConfig, SemanticTask, run_config_for_preset
    from segue.train import config_from_args, run_training

    resuming = args.resume and (Path(args.out) / "config.json").is_file()
    if args.teacher and not Path(args.teacher).exists():
        raise CommandError(f"{args.teacher}: teacher not found (an iteration-1 run folder)")
    if args.iteration == 2 and not args.teacher and not resuming:
        raise CommandError("--iteration 2 needs --teacher RUN (the iteration-1 run folder)")
    if not args.manifest and not resuming:
        raise CommandError("give the training MANIFEST (or --resume a run that has one)")
    default = (
        None  # the run's own config.json is the base
        if resuming
        else run_config_for_preset(
            args.preset, args.manifest or "", args.iteration, args.teacher or ""
        )
    )
    extra = [f"targets.k={args.k}"] if args.k else []
    if args.layer is not None:
        extra.append(f"targets.layer={args.layer}")
    args.overrides = extra + list(args.overrides or [])
    config = config_from_args(SemanticRunConfig, args, default=default)
    if args.manifest:
        config.data.manifest = args.manifest
    if args.teacher:
        config.targets.teacher = args.teacher
    if not config.targets.path:
        config.targets.path = str(Path(args.out) / "targets")
    run_training(SemanticTask(config), config, args)


def _extractor(location: str, layer: int | None, pool: int):
    """Features to cluster: `mfcc`, `whisper[:FOLDER]`, `hf:<hub id or folder>`, a run, a model
    or tokenizer folder."""
    from segue.pretrained import WEIGHTS_NAME, is_run_location
    from segue.semantic.extractors import MFCCExtractor, ModelExtractor
    from segue.semantic.model import SemanticModel
    from segue.semantic.tokenizer import TOKENIZER_NAME, SemanticTokenizer
    from segue.semantic.train import load_model_from_run

    if location == "mfcc":
        return MFCCExtractor()
    if location == "whisper" or location.startswith("whisper:"):
        from segue.semantic.whisper import PACKAGED, WhisperExtractor

        folder = location.partition(":")[2] or PACKAGED
        hf = folder != PACKAGED and not (Path(folder) / "model.bin").is_file()
        return WhisperExtractor("hf" if hf else "ct2", folder, -1 if layer is None else layer, pool)
    if location.startswith("hf:"):
        from segue.semantic.hf import HFExtractor

        if layer is None:
            raise CommandError("--layer is required for a Hugging Face model (e.g. 7 for w2v-BERT)")
        return HFExtractor.from_pretrained(location[3:], layer, pool)
    path = Path(location)
    if is_run_location(path):
        model = load_model_from_run(path)
    elif (path / WEIGHTS_NAME).is_file():
        model = SemanticModel.from_pretrained(path)
    elif (path / TOKENIZER_NAME).is_file():
        extractor = SemanticTokenizer.load(path).extractor
        if not isinstance(extractor, ModelExtractor):
            raise CommandError(f"{path}: refitting is only for segue-model tokenizers")
        model = extractor.model
    else:
        raise CommandError(
            f"{path}: not a semantic run folder (checkpoints/) or checkpoint, an exported model "
            f"({WEIGHTS_NAME}), a tokenizer folder, `mfcc` or hf:<model>"
        )
    return ModelExtractor(model, model.config.tokenizer_layer if layer is None else layer)


def _fit_kmeans(args: argparse.Namespace) -> None:
    from segue.data.manifest import read_manifest
    from segue.data.mix import read_part_weights
    from segue.semantic.fit import fit_tokenizer

    if args.out is None:
        if not (Path(args.model) / "checkpoints").is_dir():
            raise CommandError("--out is required unless --model is a training run")
        args.out = str(Path(args.model) / "tokenizer")
    extractor = _extractor(args.model, args.layer, args.pool).to(pick_device(args.device))
    manifest = read_manifest(args.manifest, split=args.split)
    tokenizer = fit_tokenizer(
        extractor,
        manifest,
        args.k,
        part_weights=read_part_weights(args.manifest),
        seed=args.seed,
        niter=args.niter,
        max_files=args.max_files,
        max_frames=args.max_frames,
        source=args.model,
    )
    tokenizer.with_silence_gate(args.silence_db)
    path = tokenizer.save(args.out)
    info = tokenizer.info
    print(
        f"{path}: K={tokenizer.vocab_size} k-means of {tokenizer.kind} features "
        f"({info['frames']} frames of {info['files']} files, mse {info['mse']:.3f}), "
        f"{tokenizer.frame_rate:g} Hz"
        + (
            f", silence gate {args.silence_db:g} dB -> token {tokenizer.silence.token}"
            if tokenizer.silence
            else ""
        )
    )


def _load_tokenizer(location: str, device):
    from segue.semantic.tokenizer import load_tokenizer

    return load_tokenizer(location).to(device)


def _is_manifest(path: str) -> bool:
    """A manifest (JSON lines: .jsonl, or text starting with `{`) rather than an audio file."""
    if Path(path).suffix.lower() == ".jsonl":
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(64).lstrip().startswith(b"{")
    except OSError:
        return False  # the audio reader says what is wrong with it


def _tokenize(args: argparse.Namespace) -> None:
    if _is_manifest(args.input):
        if args.out is None:
            raise CommandError(f"{args.input}: a manifest needs --out (the shard folder)")
        return _tokenize_manifest(args)
    import torch

    from segue import audio as audio_io

    output = check_array_output(
        args.out or str(Path(args.input).with_suffix(".semantic.npy")), args.input
    )
    tokenizer = _load_tokenizer(args.model, pick_device(args.device))
    audio = audio_io.load(args.input, tokenizer.sample_rate)
    start = time.perf_counter()
    tokens = tokenizer.tokenize(torch.from_numpy(audio))[0].cpu().numpy()
    elapsed = time.perf_counter() - start
    save_array(output, tokens.astype(np.int16 if tokenizer.vocab_size <= 32768 else np.int32))
    print(
        f"{output}: {tokens.shape[0]} tokens at {tokenizer.frame_rate:g} Hz "
        f"({audio.shape[0] / tokenizer.sample_rate:.2f} s of audio in {elapsed:.3f} s)"
    )


def _tokenize_manifest(args: argparse.Namespace) -> None:
    from segue.data.manifest import read_manifest
    from segue.semantic.tokenizer import find_tokenizer

    with torchrun_ranks() as info:
        tokenizer = _load_tokenizer(args.model, pick_device(args.device))  # auto: this rank's GPU
        manifest = read_manifest(args.input, split=args.split)

        counts = tokenizer.tokenize_manifest(
            manifest,
            args.out,
            source=find_tokenizer(args.model),
            rank=info.rank,
            world_size=info.world_size,
        )
        finish_shards(args.out, counts, info)


def _label(location: str) -> tuple[str, str]:
    """`NAME=PATH` -> (NAME, PATH); a plain path is named after its folder (RUN/tokenizer: RUN)."""
    if "=" in location and not Path(location).exists():
        name, path = location.split("=", 1)
        return name, path
    path = Path(location)
    return (path.parent.name if path.name == "tokenizer" else path.name) or location, location


def _eval(args: argparse.Namespace) -> None:
    from segue.data.manifest import read_manifest
    from segue.semantic.eval import CodecLevelTokenizer, evaluate, format_table
    from segue.semantic.extractors import MFCCExtractor
    from segue.semantic.fit import fit_tokenizer

    device = pick_device(args.device)
    tokenizers = {}
    for location in args.model or []:
        name, path = _label(location)
        tokenizers[name] = _load_tokenizer(path, device)
    manifest = read_manifest(args.manifest, split=args.split)
    if args.mfcc:
        tokenizers["mfcc"] = _load_tokenizer(args.mfcc, device)
    elif args.mfcc_k != 0:
        k = args.mfcc_k or (next(iter(tokenizers.values())).vocab_size if tokenizers else 1024)
        train = read_manifest(args.manifest, split="train")
        for cmn in (False, True):  # plain MFCCs (the usual baseline) and with per-utterance CMN
            name = f"mfcc{'-cmn' if cmn else ''}-k{k}"
            print(f"fitting the {name} baseline on the train split")
            tokenizers[name] = fit_tokenizer(
                MFCCExtractor(cmn=cmn),
                train,
                k,
                seed=args.seed,
                max_files=args.fit_files,
                source=name,
            ).to(device)
    if args.silence_db is not AS_SAVED:  # one gate (or none) for every tokenizer, baselines too
        for tokenizer in tokenizers.values():
            tokenizer.with_silence_gate(args.silence_db)
    if args.codec:
        from segue.codec.load import load_codec

        tokenizers["codec-L1"] = CodecLevelTokenizer(load_codec(args.codec).to(device), level=0)
    if not tokenizers:
        raise CommandError("nothing to evaluate: give --model, or keep the MFCC baseline")
    report = evaluate(
        tokenizers,
        manifest,
        max_sentences=args.max_sentences,
        seed=args.seed,
        b_per_pair=args.b_per_pair,
    )
    report.update(split=args.split, manifest=str(args.manifest))
    print(format_table(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        print(f"-> {args.json}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `segue semantic` and its subcommands."""
    from segue.semantic.config import PRESETS

    semantic = sub.add_parser(
        "semantic", help="semantic tokens: k-means on our HuBERT-style model or Whisper's encoder"
    )
    semantic_sub = semantic.add_subparsers(
        dest="semantic_command", required=True, metavar="COMMAND"
    )
    tokenizer_help = "tokenizer folder (from fit-kmeans), or a run folder holding tokenizer/"
    manifest_help = "manifest (JSON lines, with a split file)"

    p = semantic_sub.add_parser("train", help="train the semantic model (resumable)")
    add_input(
        p,
        "manifest",
        required=False,
        old_flag="--manifest",
        help="training manifest (with splits; on --resume, the run's own)",
    )
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    p.add_argument(
        "--iteration",
        type=int,
        default=1,
        choices=(1, 2),
        help="1: MFCC k-means targets; 2: k-means of the --teacher's layer",
    )
    p.add_argument("--teacher", help="iteration 2: the iteration-1 run folder (or a tokenizer)")
    p.add_argument("--k", type=int, default=None, help="target clusters (default 100 / 500)")
    p.add_argument("--layer", type=int, default=None, help="teacher layer (default: its preset's)")
    add_training(p)
    p.set_defaults(func=_train)

    p = semantic_sub.add_parser(
        "fit-kmeans", help="k-means on a layer's features -> a tokenizer folder"
    )
    add_input(p, "manifest", old_flag="--manifest", help=manifest_help)
    add_model(
        p,
        "the features to cluster: a semantic run folder, an exported model, `mfcc`, `whisper` "
        "(Whisper tiny.en's encoder, offline), whisper:<CTranslate2 or transformers Whisper "
        "folder>, or hf:<hub id or folder>",
    )
    p.add_argument("--split", default="train")
    p.add_argument(
        "--layer",
        type=int,
        default=None,
        help="layer to cluster (default: the model's tokenizer_layer)",
    )
    p.add_argument("--k", type=int, default=1024, help="clusters (AudioLM: 1024)")
    p.add_argument(
        "--pool", type=int, default=2, help="hf and whisper models: frames averaged (50 -> 25 Hz)"
    )
    add_out(p, "tokenizer folder (default: MODEL/tokenizer for a run folder)", required=False)
    p.add_argument(
        "--silence-db",
        type=positive_float,
        default=None,
        help="silence gate: frames this many dB below the loudest get the silence token "
        "(default: none; see docs/semantic.md)",
    )
    p.add_argument("--max-files", type=int, default=500)
    p.add_argument("--max-frames", type=int, default=200_000)
    p.add_argument("--niter", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    add_device(p)
    add_threads(p)
    p.set_defaults(func=_fit_kmeans)

    p = semantic_sub.add_parser(
        "tokenize",
        help="an audio file -> tokens (.npy), or a manifest -> token shards "
        "(resumable; splits the work across torchrun ranks)",
    )
    add_input(
        p,
        "input",
        old_flag="--manifest",
        help="an audio file, or a manifest (.jsonl) to tokenize into shards",
    )
    add_model(p, tokenizer_help)
    add_out(
        p,
        "an audio file's tokens: .npy, .pt or .safetensors (default: INPUT.semantic.npy); "
        "a manifest's shard folder (required)",
        required=False,
        old=("--output",),
    )
    p.add_argument("--split", default=None, help="a manifest: only this split (default: all)")
    add_device(p)
    add_threads(p)
    p.set_defaults(func=_tokenize)

    p = semantic_sub.add_parser(
        "eval", help="cross-voice token consistency vs MFCC k-means (and the codec)"
    )
    add_input(p, "manifest", old_flag="--manifest", help=manifest_help)
    add_model(
        p,
        f"{tokenizer_help}; NAME=PATH to label it; repeatable",
        required=False,
        repeat=True,
    )
    p.add_argument(
        "--split",
        default="test",
        help="the utterances compared (default: test, held-out voices; `all`: every split, "
        "e.g. for contents that only voices of different splits share)",
    )
    p.add_argument("--max-sentences", type=int, default=None)
    p.add_argument(
        "--b-per-pair",
        type=non_negative_int,
        default=1,
        help="ABX: Bs drawn per cross-voice pair (default 1; 0: every other sentence of X's "
        "voice, the steadier number on few pairs)",
    )
    p.add_argument(
        "--mfcc-k",
        type=int,
        default=None,
        help="K of the MFCC k-means baseline (default: the first tokenizer's; 0: none)",
    )
    p.add_argument("--mfcc", help="a fitted MFCC tokenizer folder to use as the baseline")
    p.add_argument(
        "--silence-db",
        type=_gate_level,
        default=AS_SAVED,
        help="give every tokenizer (baselines too) this silence gate, or `off` for none "
        "(default: each as saved)",
    )
    p.add_argument("--fit-files", type=int, default=400, help="train files for the MFCC baseline")
    p.add_argument("--codec", help="add the codec's first RVQ level (folder, run, hf:...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the report here")
    add_device(p)
    add_threads(p)
    p.set_defaults(func=_eval)
