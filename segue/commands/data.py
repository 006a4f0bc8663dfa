"""`segue data ...`: corpora, manifests and splits."""

from __future__ import annotations

import argparse


def _data_index(args: argparse.Namespace) -> None:
    from segue.data.index import index_directory
    from segue.data.splits import split_manifest

    summary = index_directory(
        args.directory,
        args.out,
        group=args.group,
        workers=args.workers,
        verify=not args.quick,
        all_files=args.all_files,
    )
    print(summary.report())
    if summary.indexed and not args.no_split:
        path, splits = split_manifest(args.out, valid=args.valid, test=args.test, seed=args.seed)
        counts = ", ".join(f"{k}={len(v)}" for k, v in splits.items())
        print(f"splits by group ({counts}) -> {path}")


def _data_split(args: argparse.Namespace) -> None:
    from segue.data.splits import split_manifest

    path, splits = split_manifest(args.manifest, valid=args.valid, test=args.test, seed=args.seed)
    print(f"{path}: " + ", ".join(f"{k}={len(v)} groups" for k, v in splits.items()))


def _data_stats(args: argparse.Namespace) -> None:
    from segue.data.manifest import describe, read_manifest

    print(describe(read_manifest(args.manifest)))


def _data_make_speech(args: argparse.Namespace) -> None:
    from segue.data.manifest import describe, read_manifest
    from segue.data.speech import make_speech_corpus

    summary = make_speech_corpus(args.out, hours=args.hours, seed=args.seed, workers=args.workers)
    print(summary)
    print(describe(read_manifest(summary.out_dir / "manifest.jsonl")))


def _data_make_piano(args: argparse.Namespace) -> None:
    from segue.data.manifest import describe, read_manifest
    from segue.data.piano import make_piano_corpus

    summary = make_piano_corpus(args.out, hours=args.hours, seed=args.seed, workers=args.workers)
    print(summary)
    print(describe(read_manifest(summary.out_dir / "manifest.jsonl")))


def _add_split_fractions(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--valid", type=float, default=0.05, help="share of groups held out for validation"
    )
    parser.add_argument(
        "--test", type=float, default=0.05, help="share of groups held out for test"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the group hash")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `segue data` and its subcommands."""
    data = sub.add_parser("data", help="corpora, manifests and splits")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    p = data_sub.add_parser("index", help="scan a folder of audio into a manifest (JSON lines)")
    p.add_argument("directory", help="folder to scan recursively")
    p.add_argument("--out", required=True, help="manifest to write, e.g. corpus/manifest.jsonl")
    p.add_argument(
        "--group",
        default="parent",
        help="how to name each file's group (speaker/piece): parent | top | librispeech "
        "| file | a regex with (?P<group>...) over the relative path (default: parent)",
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="only read headers and file ends (faster; misses NaN inside a file)",
    )
    p.add_argument("--all-files", action="store_true", help="try files without an audio extension")
    p.add_argument("--no-split", action="store_true", help="do not write the split file")
    _add_split_fractions(p)
    p.set_defaults(func=_data_index)

    p = data_sub.add_parser("split", help="(re)write the train/valid/test split file of a manifest")
    p.add_argument("manifest")
    _add_split_fractions(p)
    p.set_defaults(func=_data_split)

    p = data_sub.add_parser("stats", help="files, hours and groups per split")
    p.add_argument("manifest")
    p.set_defaults(func=_data_stats)

    for name, func, what in (
        ("make-speech", _data_make_speech, "multi-speaker TTS speech"),
        ("make-piano", _data_make_piano, "piano rendered from real scores"),
    ):
        p = data_sub.add_parser(name, help=f"build a corpus of {what} (resumable)")
        p.add_argument("--hours", type=float, default=1.0, help="hours of audio (default: 1)")
        p.add_argument("--out", required=True, help="corpus folder")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
        p.set_defaults(func=func)
