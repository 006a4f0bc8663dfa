"""`segue continue | generate | resynth | bundle`: audio from a model bundle (segue.pipeline).

    segue continue prompt.wav --seconds 10 --out out.wav [--seed 0] [--plot]
    segue generate --seconds 5 --out out.wav
    segue resynth in.wav --out out.wav [--voice speaker.wav]
    segue bundle --codec C --semantic S --semantic-lm A --coarse-lm B --fine-lm F --out DIR
        [--soundstorm RUN]    (then `--acoustic soundstorm` on continue / generate / resynth)

Without --model, the bundle shipped in the package (`segue/assets/speech-tiny`) is used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from segue import PACKAGED_BUNDLE
from segue.commands import (
    CommandError,
    add_device,
    add_input,
    add_model,
    add_out,
    add_threads,
    check_output,
    pick_device,
)

DEFAULT_MODEL = PACKAGED_BUNDLE
STAGES = ("semantic", "coarse", "fine")
AUDIO_SUFFIXES = (".wav", ".flac")


def _model(args: argparse.Namespace):
    """The AudioLM bundle of --model (default: the packaged one), on --device."""
    from segue.pipeline import AudioLM

    path = Path(args.model) if args.model else DEFAULT_MODEL
    if not path.exists():
        where = "the packaged default model" if args.model is None else "--model"
        raise CommandError(
            f"{path}: no model bundle there ({where}). Pass --model DIR, or assemble one from "
            f"trained parts with `segue bundle --codec RUN --semantic RUN --semantic-lm RUN "
            f"--coarse-lm RUN --fine-lm RUN --out {path}`"
        )
    return AudioLM.from_pretrained(path, device=pick_device(args.device))


def add_sampling(p: argparse.ArgumentParser, stages: tuple[str, ...] = STAGES) -> None:
    """--temperature-STAGE, --top-k-STAGE and --top-p-STAGE for each of `stages`."""
    group = p.add_argument_group("sampling (default: the bundle's)")
    for stage in stages:
        group.add_argument(f"--temperature-{stage}", type=float, default=None, metavar="T")
        group.add_argument(f"--top-k-{stage}", type=int, default=None, metavar="K", help="0: off")
        group.add_argument(f"--top-p-{stage}", type=float, default=None, metavar="P")


def sampling_from_args(args: argparse.Namespace, model, stages: tuple[str, ...] = STAGES):
    """The bundle's sampling settings with the --temperature-*/--top-k-*/--top-p-* given."""
    from dataclasses import replace

    sampling = model.sampling
    for stage in stages:
        given = {
            name: getattr(args, f"{name}_{stage}")
            for name in ("temperature", "top_k", "top_p")
            if getattr(args, f"{name}_{stage}") is not None
        }
        if given:
            sampling = replace(sampling, **{stage: replace(getattr(sampling, stage), **given)})
    return sampling


def _check_out(path: str, *inputs: str | None) -> Path:
    """--out: an audio name, checked before any compute (`check_output`)."""
    return check_output(path, AUDIO_SUFFIXES, *inputs, what="--out")


def _read(path: str, model):
    """An audio file as a [1, T] tensor at the model's rate (AudioError when unusable)."""
    import torch

    from segue import audio as audio_io

    audio = audio_io.load(path, model.sample_rate)
    return torch.from_numpy(audio)[None]


def _write(args, model, audio, what: str, prompt_seconds: float | None = None) -> None:
    """Write audio [1, T] to --out (and the spectrogram beside it with --plot)."""
    from segue import audio as audio_io

    audio = audio[0].cpu()
    audio_io.save(args.out, audio, model.sample_rate)
    print(f"{args.out}: {audio.numel() / model.sample_rate:.2f} s ({what})")
    if args.plot:
        from segue.plot import plot_spectrogram

        png = Path(args.out).with_suffix(".png")
        plot_spectrogram(audio, model.sample_rate, png, prompt_seconds, title=Path(args.out).name)
        print(f"{png}: spectrogram")


def _continue(args: argparse.Namespace) -> None:
    _check_out(args.out, args.prompt)
    model = _model(args)
    prompt = _read(args.prompt, model)
    sampling = sampling_from_args(args, model, STAGES)
    audio = model.continue_(
        prompt,
        args.seconds,
        seed=args.seed,
        sampling=sampling,
        progress=not args.quiet,
        acoustic=args.acoustic,
    )
    seconds = prompt.shape[1] / model.sample_rate
    what = f"{seconds:.2f} s prompt + {args.seconds:g} s continuation"
    _write(args, model, audio, what, prompt_seconds=seconds)


def _generate(args: argparse.Namespace) -> None:
    _check_out(args.out)
    model = _model(args)
    sampling = sampling_from_args(args, model, STAGES)
    audio = model.generate(
        args.seconds,
        seed=args.seed,
        sampling=sampling,
        progress=not args.quiet,
        acoustic=args.acoustic,
    )
    _write(args, model, audio, "unconditional")


def _resynth(args: argparse.Namespace) -> None:
    _check_out(args.out, args.input, args.voice)
    model = _model(args)
    audio = _read(args.input, model)
    voice = None if args.voice is None else _read(args.voice, model)
    sampling = sampling_from_args(args, model, STAGES[1:])
    out = model.resynthesize(
        audio,
        voice,
        seed=args.seed,
        sampling=sampling,
        progress=not args.quiet,
        acoustic=args.acoustic,
    )
    _write(
        args, model, out, "resynthesized" + (f" in the voice of {args.voice}" if args.voice else "")
    )


def _bundle(args: argparse.Namespace) -> None:
    from segue.pipeline import AudioLM

    info = {}
    for item in args.info or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"--info {item!r}: expected KEY=VALUE")
        info[key] = value
    model = AudioLM.from_parts(
        args.codec,
        args.semantic,
        args.semantic_lm,
        args.coarse_lm,
        args.fine_lm,
        soundstorm=args.soundstorm,
        info=info,
    )
    path = model.save_pretrained(args.out, half=args.half)
    print(
        f"{path}: AudioLM bundle, {model.sample_rate} Hz, {model.n_levels} levels "
        f"({model.n_coarse} coarse) x {model.codec.codebook_size} codes, "
        f"{model.tokenizer.vocab_size} semantic tokens, prompts up to "
        f"{model.max_prompt_seconds:.2f} s" + (", with SoundStorm" if model.soundstorm else "")
    )


#: --model of the commands that use a whole AudioLM bundle.
BUNDLE_HELP = f"AudioLM bundle folder (from `segue bundle`; default: {DEFAULT_MODEL})"


def _add_common(p: argparse.ArgumentParser, stages: tuple[str, ...]) -> None:
    add_out(p, "output audio (.wav or .flac)")
    add_model(p, BUNDLE_HELP, required=False, old_flag=None)
    p.add_argument("--seed", type=int, default=None, help="same seed, same audio")
    p.add_argument("--plot", action="store_true", help="also write OUT.png: log-mel spectrogram")
    add_device(p)
    add_threads(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--acoustic",
        choices=("ar", "soundstorm"),
        default="ar",
        help="acoustic stage: the coarse + fine LMs (ar) or the bundle's SoundStorm",
    )
    add_sampling(p, stages)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `segue continue`, `segue generate`, `segue resynth` and `segue bundle`."""
    p = sub.add_parser("continue", help="continue an audio prompt (AudioLM speech continuation)")
    add_input(p, "prompt", help="prompt audio file (a few seconds)")
    p.add_argument("--seconds", type=float, required=True, help="length of the continuation")
    _add_common(p, STAGES)
    p.set_defaults(func=_continue)

    p = sub.add_parser("generate", help="generate audio from nothing")
    p.add_argument("--seconds", type=float, required=True)
    _add_common(p, STAGES)
    p.set_defaults(func=_generate)

    p = sub.add_parser(
        "resynth", help="resample the acoustics of a file's semantic content (optionally a voice)"
    )
    add_input(p, "input", help="audio file whose semantic content is kept")
    p.add_argument("--voice", default=None, help="audio of the voice to speak in (a few seconds)")
    _add_common(p, STAGES[1:])
    p.set_defaults(func=_resynth)

    p = sub.add_parser("bundle", help="assemble an AudioLM bundle folder from trained parts")
    location = "exported folder or training run folder"
    p.add_argument("--codec", required=True, help=location)
    p.add_argument("--semantic", required=True, help="semantic tokenizer folder or run folder")
    p.add_argument("--semantic-lm", required=True, help=location)
    p.add_argument("--coarse-lm", required=True, help=location)
    p.add_argument("--fine-lm", required=True, help=location)
    p.add_argument("--soundstorm", default=None, help=f"optional SoundStorm: {location}")
    p.add_argument("--info", nargs="*", metavar="KEY=VALUE", help="free-form notes in bundle.json")
    add_out(p, "bundle folder to write")
    p.add_argument("--half", action="store_true", help="store weights as float16 (half the size)")
    p.set_defaults(func=_bundle)
