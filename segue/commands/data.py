"""`segue data ...`: corpora, manifests and splits."""

from __future__ import annotations

import argparse

from segue.commands import add_input, add_out


def _data_index(args: argparse.Namespace) -> None:
    from segue.data.index import group_function, index_directory
    from segue.data.splits import check_fractions, split_manifest

    if not args.no_split:
        check_fractions(args.valid, args.test)  # before the scan, not after it
    group_function(args.group)  # a bad pattern, before the scan too
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
    from segue.data.manifest import BREAKDOWN_FIELDS, describe, describe_by, read_manifest

    manifest = read_manifest(args.manifest)
    print(describe(manifest))
    for field in args.by or BREAKDOWN_FIELDS:
        table = describe_by(manifest, field)
        if table:
            print(f"\nby {field}:\n{table}")


def _data_make_speech(args: argparse.Namespace) -> None:
    from segue.data.manifest import describe, read_manifest
    from segue.data.speech import make_speech_corpus

    summary = make_speech_corpus(args.out, hours=args.hours, seed=args.seed, workers=args.workers,
                                 train_parallel=args.parallel_train)
    print(summary)
    print(describe(read_manifest(summary.out_dir / "manifest.jsonl")))


def _data_make_piano(args: argparse.Namespace) -> None:
    from segue.data.manifest import describe, read_manifest
    from segue.data.piano import make_piano_corpus

    summary = make_piano_corpus(args.out, hours=args.hours, seed=args.seed, workers=args.workers)
    print(summary)
    print(describe(read_manifest(summary.out_dir / "manifest.jsonl")))


def _data_make_real_speech(args: argparse.Namespace) -> None:
    from segue.data.manifest import describe, read_manifest
    from segue.data.real_speech import make_real_speech_corpus

    summary = make_real_speech_corpus(
        args.out, hours=args.hours, workers=args.workers, cache=args.cache
    )
    print(summary)
    print(describe(read_manifest(summary.build.out_dir / "manifest.jsonl")))
    if summary.package_errors:
        raise SystemExit(1)


def _data_make_letters(args: argparse.Namespace) -> None:
    from segue.data.letters import make_letters_corpus
    from segue.data.manifest import describe, read_manifest

    summary = make_letters_corpus(
        args.out, tts_voices_count=args.tts_voices, workers=args.workers, cache=args.cache
    )
    print(summary)
    print(describe(read_manifest(summary.out_dir / "manifest.jsonl")))


def _data_mix(args: argparse.Namespace) -> None:
    from segue.data.manifest import describe, describe_by, read_manifest
    from segue.data.mix import mix_manifests, parse_part, parts_path_for

    parts = [parse_part(text) for text in args.parts]
    out = mix_manifests(parts, args.out)
    manifest = read_manifest(out)
    print(f"{out}: {len(manifest)} files; weights -> {parts_path_for(out)}")
    print(describe(manifest))
    print(describe_by(manifest, "part"))


def _add_split_fractions(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--valid", type=float, default=0.05, help="share of groups held out for validation"
    )
    parser.add_argument(
        "--test", type=float, default=0.05, help="share of groups held out for test"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the group hash")


def _add_package_options(parser: argparse.ArgumentParser) -> None:
    """--workers and --cache of the builders that fetch Debian packages."""
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument(
        "--cache",
        default=None,
        help="where the packages are fetched and unpacked (default: ~/.cache/segue/debian)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add `segue data` and its subcommands."""
    data = sub.add_parser("data", help="corpora, manifests and splits")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    p = data_sub.add_parser("index", help="scan a folder of audio into a manifest (JSON lines)")
    add_input(p, "directory", help="folder to scan recursively")
    add_out(p, "manifest to write, e.g. corpus/manifest.jsonl")
    p.add_argument(
        "--group",
        default="parent",
        help="how to name each file's group (speaker/piece): parent | grandparent | top "
        "| librispeech | file | a regex with (?P<group>...) over the relative path "
        "(default: parent)",
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
    add_input(p, "manifest", help="manifest (JSON lines)")
    _add_split_fractions(p)
    p.set_defaults(func=_data_split)

    p = data_sub.add_parser(
        "stats", help="files, hours and groups per split, part, source, language and group"
    )
    add_input(p, "manifest", help="manifest (JSON lines)")
    p.add_argument(
        "--by",
        action="append",
        metavar="FIELD",
        help="tabulate by this row field (repeatable; default: part, source, language, group "
        "where the rows have them)",
    )
    p.set_defaults(func=_data_stats)

    p = data_sub.add_parser(
        "mix",
        help="one manifest over several corpora, training crops drawn by part weight",
        description="Write a manifest mixing corpora: rows keep their splits and gain `part`; "
        "the weights go to NAME.parts.json, which training crops follow (a part's share of "
        "crops is its weight, not its share of hours).",
    )
    add_input(
        p,
        "parts",
        nargs="+",
        metavar="[NAME=]MANIFEST[:WEIGHT]",
        help="a part (name: the manifest's folder; weight: 1), e.g. "
        "speech=corpora/speech/manifest.jsonl:0.5 real=corpora/real/manifest.jsonl:0.5",
    )
    add_out(p, "mixed manifest to write")
    p.set_defaults(func=_data_mix)

    for name, func, what in (
        ("make-speech", _data_make_speech, "multi-speaker TTS speech"),
        ("make-piano", _data_make_piano, "piano rendered from real scores"),
    ):
        p = data_sub.add_parser(name, help=f"build a corpus of {what} (resumable)")
        p.add_argument("--hours", type=float, default=1.0, help="hours of audio (default: 1)")
        add_out(p, "corpus folder")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
        if name == "make-speech":
            p.add_argument(
                "--parallel-train",
                type=int,
                default=1,
                metavar="N",
                help="train voices speak in groups of N, one sentence per group (parallel "
                "data for the semantic model's alignment loss; default 1: one voice each)",
            )
        p.set_defaults(func=func)

    p = data_sub.add_parser(
        "make-real-speech",
        help="build a corpus of recorded human speech from Debian packages (resumable)",
    )
    add_out(p, "corpus folder")
    p.add_argument(
        "--hours", type=float, default=None, help="hours of audio (default: all, about 5.8 h)"
    )
    _add_package_options(p)
    p.set_defaults(func=_data_make_real_speech)

    p = data_sub.add_parser(
        "make-letters",
        help="build a selection set for semantic tokenizers: a real English voice's letters "
        "and numbers beside TTS voices saying them (resumable)",
    )
    add_out(p, "corpus folder")
    p.add_argument(
        "--tts-voices", type=int, default=3, help="held-out TTS voices beside it (default: 3)"
    )
    _add_package_options(p)
    p.set_defaults(func=_data_make_letters)
