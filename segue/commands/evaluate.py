"""`segue eval ...`: evaluations of a whole AudioLM bundle.

    segue eval e2e --manifest M [--model DIR] [--split test] [--prompts 8] [--prompt-seconds 3]
                   [--seconds 4] [--resynth 8] [--seed 0] [--out DIR] [--json PATH]
                   [--acoustic ar|soundstorm] [--similarity speaker|chroma]

Without --model, the bundle shipped in the package (`segue/assets/speech-tiny`) is used.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from segue.commands import CommandError, device_arg, positive_int


def _e2e(args: argparse.Namespace) -> None:
    from segue.commands.generate import _model
    from segue.data.manifest import read_manifest
    from segue.eval.e2e import evaluate_e2e, format_e2e_report

    manifest = read_manifest(args.manifest, split=args.split)
    model = _model(args)
    try:
        report = evaluate_e2e(
            model,
            manifest,
            split=None,  # already the split's entries
            n_prompts=args.prompts,
            prompt_seconds=args.prompt_seconds,
            continuation_seconds=args.seconds,
            n_resynth=args.resynth,
            seed=args.seed,
            out_dir=args.out,
            progress=not args.quiet,
            n_reference_pairs=args.reference_pairs,
            max_resynth_seconds=args.max_resynth_seconds,
            acoustic=args.acoustic,
            speaker=_similarity(args.similarity),
        )
    except ImportError as error:
        raise CommandError(str(error)) from error
    report["split"] = args.split
    print(format_e2e_report(report))
    if args.out:
        print(f"-> {Path(args.out) / 'index.html'} (listening page), report.json")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        print(f"-> {args.json}")


def _similarity(name: str):
    """The continuation's similarity encoder: Resemblyzer (speech) or pitch classes (music)."""
    if name == "chroma":
        from segue.eval.chroma import ChromaEncoder

        return ChromaEncoder()
    return None  # evaluate_e2e's default, the speaker encoder


def register(sub: argparse._SubParsersAction) -> None:
    """Add `segue eval` and its subcommands."""
    from segue.commands.generate import DEFAULT_MODEL

    evaluate = sub.add_parser("eval", help="evaluate a whole AudioLM bundle")
    eval_sub = evaluate.add_subparsers(dest="eval_command", required=True, metavar="COMMAND")

    p = eval_sub.add_parser(
        "e2e",
        help="speaker similarity of continuations and WER/CER of resyntheses on held-out voices "
        "(Resemblyzer, Whisper tiny.en), with a listening page",
    )
    p.add_argument(
        "--model", default=None, help=f"AudioLM bundle folder (default: {DEFAULT_MODEL})"
    )
    p.add_argument("--manifest", required=True, help="manifest with splits (and `text` for WER)")
    p.add_argument("--split", default="test")
    p.add_argument("--prompts", type=int, default=8, help="continuations (one voice each first)")
    p.add_argument("--prompt-seconds", type=float, default=3.0)
    p.add_argument("--seconds", type=float, default=4.0, help="length of each continuation")
    p.add_argument("--resynth", type=int, default=8, help="files to resynthesize and transcribe")
    p.add_argument("--max-resynth-seconds", type=float, default=20.0, help="skip longer files")
    p.add_argument("--reference-pairs", type=int, default=32, help="real pairs per reference")
    p.add_argument("--seed", type=int, default=0)
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
    p.add_argument("--out", default=None, help="folder: WAVs, spectrograms, index.html, report")
    p.add_argument("--json", default=None, help="also write the full report here")
    p.add_argument(
        "--device", type=device_arg, default="cpu", help="cpu, cuda, cuda:1, ... (the AudioLM's)"
    )
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_e2e)
