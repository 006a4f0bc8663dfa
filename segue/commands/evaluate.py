"""`segue eval ...`: evaluations of a whole AudioLM bundle.

    segue eval e2e MANIFEST [--model DIR] [--split test] [--prompts 8] [--prompt-seconds 3]
                   [--seconds 4] [--resynth 8] [--seed 0] [-o/--out DIR] [--json PATH]
                   [--acoustic ar|soundstorm] [--similarity speaker|chroma]
                   [--train-voices MANIFEST] [--train-voice-files 4] [--no-lexicality]
                   [--no-voice-stages] [--resynth-keep-levels G [G ...]]
    segue eval compare [LABEL=]DIR [[LABEL=]DIR ...] -o/--out DIR
    segue eval tokens SEMANTIC_SHARDS ACOUSTIC_SHARDS [--split valid] [--level 0] [--lags 8]
    segue eval probes ROOT [--lexical] [--syntax] [--build [--build-only]] [--model DIR]
                   [--max-pairs N] [--eos] [-o/--out REPORT.json] [--submission DIR]

`probes` scores the sWUGGY / sBLIMP-style probes of ROOT (the ZeroSpeech 2021 layout: segue's
own, made there with --build, or the official dataset's dev sets); see docs/probes.md.
Without --model, the bundle shipped in the package (`segue/assets/speech-tiny`) is used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from segue.commands import (
    CommandError,
    add_device,
    add_input,
    add_model,
    add_out,
    add_threads,
    check_output,
    non_negative_int,
    pick_device,
    positive_int,
)


def _e2e(args: argparse.Namespace) -> None:
    from segue.commands.generate import _model, sampling_from_args
    from segue.data.manifest import read_manifest
    from segue.eval.e2e import E2ESettings, evaluate_e2e, format_e2e_report

    settings = E2ESettings(
        n_prompts=args.prompts,
        prompt_seconds=args.prompt_seconds,
        continuation_seconds=args.seconds,
        n_resynth=args.resynth,
        seed=args.seed,
        n_reference_pairs=args.reference_pairs,
        max_resynth_seconds=args.max_resynth_seconds,
        acoustic=args.acoustic,
        train_manifest=args.train_voices,
        train_voice_files=args.train_voice_files,
        lexicality=not args.no_lexicality,
        voice_stages=not args.no_voice_stages,
        keep_levels=tuple(args.resynth_keep_levels),
    )
    manifest = read_manifest(args.manifest)  # whole: its train split holds the training voices
    if args.train_voices:
        read_manifest(args.train_voices, split="train")  # a bad path fails before the model loads
    model = _model(args)
    model.sampling = sampling_from_args(args, model)  # the bundle's, with the flags given
    try:
        report = evaluate_e2e(
            model,
            manifest,
            settings,
            split=args.split,
            out_dir=args.out,
            progress=not args.quiet,
            speaker=_similarity(args.similarity),
        )
    except ImportError as error:
        raise CommandError(str(error)) from error
    print(format_e2e_report(report))
    if args.out:
        print(f"-> {Path(args.out) / 'index.html'} (listening page), report.json")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(report.to_json())
        print(f"-> {args.json}")


def _compare(args: argparse.Namespace) -> None:
    from segue.eval.e2e_page import comparison_page

    runs: dict[str, str] = {}
    for item in args.runs:
        label, sep, folder = item.partition("=")
        if not sep:
            label, folder = Path(item).name or item, item
        if label in runs:
            raise CommandError(f"two runs named {label!r}: name them LABEL=DIR")
        runs[label] = folder
    page = comparison_page(runs, args.out)
    print(f"-> {page}")


def _probes(args: argparse.Namespace) -> None:
    from segue.commands.generate import DEFAULT_MODEL
    from segue.eval.probes import build_lexical, build_syntactic, evaluate_probes
    from segue.eval.probes.score import ProbeScorer

    tasks = [t for t, on in (("lexical", args.lexical), ("syntactic", args.syntax)) if on]
    tasks = tasks or ["lexical", "syntactic"]
    out = check_output(args.out, (".json",), what="--out") if args.out else None
    if args.build_only and not args.build:
        raise CommandError("--build-only needs --build")
    if args.build and args.split != "dev":
        raise CommandError(f"--build makes dev sets; --split {args.split} cannot be built")
    progress = not args.quiet
    for task in tasks if args.build else ():
        if task == "lexical":
            built = build_lexical(
                args.root, n_pairs=args.lexical_pairs, seed=args.seed, progress=progress
            )
        else:
            built = build_syntactic(
                args.root, n_pairs=args.syntax_pairs, seed=args.seed, progress=progress
            )
        how = "cached" if built.cached else f"built in {built.seconds:.0f} s"
        print(
            f"{built.folder}: {built.pairs} pairs, {built.items} files, {built.voices} voices "
            f"({how})"
        )
    if args.build_only:
        return
    model = Path(args.model) if args.model else DEFAULT_MODEL
    scorer = ProbeScorer.from_bundle(model, device=pick_device(args.device), eos=args.eos)
    report = evaluate_probes(
        scorer,
        args.root,
        tasks,
        split=args.split,
        max_pairs=args.max_pairs,
        bootstrap=args.bootstrap,
        seed=args.seed,
        progress=progress,
        submission=args.submission,
    )
    print(report.format())
    if out is not None:
        report.write(out)
        print(f"-> {out}")
    if args.submission:
        print(f"-> {args.submission}/<task>/{args.split}.txt (ZeroSpeech submission files)")


def _similarity(name: str):
    """The continuation's similarity encoder: Resemblyzer (speech) or pitch classes (music)."""
    if name == "chroma":
        from segue.eval.chroma import ChromaEncoder

        return ChromaEncoder()
    return None  # evaluate_e2e's default, the speaker encoder


def _tokens(args: argparse.Namespace) -> None:
    from segue.commands.lm import _shard_kinds
    from segue.data.shards import TokenShards
    from segue.eval.tokens import format_information, token_information

    if args.json:
        check_output(args.json, (".json",), what="--json")
    kinds = _shard_kinds(args.shards, pair=True)  # SHARDS is required: never empty here
    try:
        semantic = TokenShards(kinds["semantic"], args.split or None)
        acoustic = TokenShards(kinds["acoustic"], args.split or None)
    except ValueError as error:
        raise CommandError(f"split {args.split!r}: {error}") from error
    report = token_information(
        semantic, acoustic, level=args.level, max_lag=args.lags, max_files=args.max_files
    )
    print(format_information(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            report.to_json(semantic=kinds["semantic"], acoustic=kinds["acoustic"])
        )
        print(f"-> {args.json}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `segue eval` and its subcommands."""
    from segue.commands.generate import BUNDLE_HELP, add_sampling

    evaluate = sub.add_parser("eval", help="evaluate a whole AudioLM bundle, or its tokens")
    eval_sub = evaluate.add_subparsers(dest="eval_command", required=True, metavar="COMMAND")

    p = eval_sub.add_parser(
        "e2e",
        help="speaker similarity of continuations and WER/CER of resyntheses on held-out voices "
        "(Resemblyzer, Whisper tiny.en), with a listening page",
    )
    add_input(
        p, "manifest", old_flag="--manifest", help="manifest with splits (and `text` for WER)"
    )
    add_model(p, BUNDLE_HELP, required=False, old_flag=None)
    p.add_argument("--split", default="test")
    p.add_argument("--prompts", type=int, default=8, help="continuations (one voice each first)")
    p.add_argument("--prompt-seconds", type=float, default=3.0)
    p.add_argument("--seconds", type=float, default=4.0, help="length of each continuation")
    p.add_argument("--resynth", type=int, default=8, help="files to resynthesize and transcribe")
    p.add_argument("--max-resynth-seconds", type=float, default=20.0, help="skip longer files")
    p.add_argument(
        "--resynth-keep-levels",
        type=positive_int,
        nargs="+",
        default=[],
        metavar="G",
        help="also resynthesize each file keeping its own codes of levels < G (soundstorm: any "
        "G; ar: the coarse levels' number), to tell which level's generation loses the words",
    )
    p.add_argument("--reference-pairs", type=int, default=32, help="real pairs per reference")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--train-voices",
        default=None,
        metavar="MANIFEST",
        help="the model's training corpus: each continuation is compared with the centroid of "
        "every voice of its train split (default: MANIFEST's own train split)",
    )
    p.add_argument(
        "--train-voice-files",
        type=non_negative_int,
        default=4,
        help="files per training voice in its centroid (0: no training-voice comparison)",
    )
    p.add_argument(
        "--no-lexicality",
        action="store_true",
        help="do not transcribe continuations for the dictionary-word share",
    )
    p.add_argument(
        "--no-voice-stages",
        action="store_true",
        help="do not score each prompt's real continuation through the codec and through the "
        "acoustic path on its own semantic tokens (where the voice is lost; one more acoustic "
        "generation per prompt)",
    )
    p.add_argument(
        "--acoustic",
        choices=("ar", "soundstorm"),
        default="ar",
        help="acoustic tokens by the coarse + fine LMs (ar) or the bundle's SoundStorm",
    )
    p.add_argument(
        "--similarity",
        choices=("speaker", "chroma"),
        default="speaker",
        help="continuation vs prompt: speaker embedding (speech) or pitch classes (music)",
    )
    add_out(p, "folder: WAVs, spectrograms, index.html, report.json", required=False, metavar="DIR")
    p.add_argument("--json", default=None, help="also write the full report here")
    add_device(p)
    add_threads(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_sampling(p)  # the LMs' (SoundStorm samples as its config says)
    p.set_defaults(func=_e2e)

    p = eval_sub.add_parser(
        "tokens",
        help="what each semantic token tells about an acoustic level's codes at its time and "
        "around it (mutual information by lag, from token shards)",
    )
    add_input(
        p,
        "shards",
        nargs="+",
        help="a semantic and an acoustic token shard folder (told apart by their meta.json)",
    )
    p.add_argument("--split", default="valid", help="'' for every file")
    p.add_argument("--level", type=non_negative_int, default=0, help="the acoustic level")
    p.add_argument("--lags", type=non_negative_int, default=8, help="lags -N..N, in tokens")
    p.add_argument("--max-files", type=positive_int, default=None)
    p.add_argument("--json", default=None, help="also write the report here")
    p.set_defaults(func=_tokens)

    p = eval_sub.add_parser(
        "compare",
        help="one listening page with several `eval e2e -o` folders side by side (held-out "
        "sets, acoustic paths, bundles)",
    )
    p.add_argument(
        "runs",
        nargs="+",
        metavar="[LABEL=]DIR",
        help="folders written by `segue eval e2e -o DIR` (label: the folder's name)",
    )
    add_out(p, "folder for index.html (audio stays where each run wrote it)", metavar="DIR")
    p.set_defaults(func=_compare)

    p = eval_sub.add_parser(
        "probes",
        help="linguistic probes of the semantic LM as in the AudioLM paper: spoken word vs "
        "non-word (sWUGGY-style) and grammatical vs ungrammatical sentence (sBLIMP-style)",
    )
    add_input(
        p,
        "root",
        help="probe sets in the ZeroSpeech 2021 layout (ROOT/lexical/dev, ROOT/syntactic/dev): "
        "segue's own (made there with --build) or the official dataset's root",
    )
    p.add_argument("--lexical", action="store_true", help="the word / non-word set only")
    p.add_argument("--syntax", action="store_true", help="the sentence set only")
    p.add_argument(
        "--build",
        action="store_true",
        help="first make segue's sets in ROOT (espeak-ng, held-out voices; reused when already "
        "made with the same settings)",
    )
    p.add_argument("--build-only", action="store_true", help="with --build: make, do not score")
    p.add_argument("--lexical-pairs", type=positive_int, default=2000, help="with --build")
    p.add_argument("--syntax-pairs", type=positive_int, default=1050, help="with --build")
    p.add_argument("--split", default="dev", help="the sets' folder under ROOT/<task>/")
    p.add_argument(
        "--max-pairs", type=positive_int, default=None, help="score a seeded subset of N ids"
    )
    p.add_argument("--eos", action="store_true", help="also score the end of each file")
    p.add_argument(
        "--bootstrap", type=non_negative_int, default=1000, help="resamples for the 95 %% interval"
    )
    p.add_argument("--seed", type=int, default=0, help="the sets' pairs and voices, the subset")
    add_model(p, BUNDLE_HELP, required=False, old_flag=None)
    add_out(p, "write the report here (.json)", required=False, metavar="REPORT")
    p.add_argument(
        "--submission",
        default=None,
        help="also write ZeroSpeech submission files under this folder",
    )
    add_device(p)
    add_threads(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_probes)
