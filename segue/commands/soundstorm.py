"""`segue soundstorm train|export`: SoundStorm, the parallel acoustic stage (segue.soundstorm).

    segue soundstorm train SEM ACOU --preset tiny --out RUN [--set K=V] [--max-steps N]
    segue soundstorm export --model RUN --out DIR

Then `segue bundle ... --soundstorm RUN` adds it to an AudioLM bundle (`--acoustic soundstorm`).
"""

from __future__ import annotations

import argparse

from segue.commands import MODEL_HELP, CommandError, add_input, add_model, add_out, add_training


def _train(args: argparse.Namespace) -> None:
    from segue.commands.lm import _shard_kinds
    from segue.soundstorm.config import soundstorm_preset
    from segue.soundstorm.train import SoundStormRunConfig, SoundStormTask
    from segue.train import config_from_args, run_training

    default = SoundStormRunConfig(model=soundstorm_preset(args.preset))
    config = config_from_args(SoundStormRunConfig, args, default=default)
    kinds = _shard_kinds(args.shards or [])
    if args.shards and len(kinds) != 2:
        raise CommandError("SHARDS: give a semantic and an acoustic shard folder")
    for kind, path in kinds.items():
        setattr(config.data, f"{kind}_shards", path)
    run_training(SoundStormTask(config), config, args)


def _export(args: argparse.Namespace) -> None:
    from segue.soundstorm.load import load_soundstorm

    model = load_soundstorm(args.model)
    path = model.save_pretrained(args.out)
    c = model.config
    print(
        f"{path}: config.json + model.safetensors ({model.num_params() / 1e6:.2f} M params, "
        f"{c.n_levels} levels x {c.codebook_size} codes, {c.semantic_vocab} semantic tokens)"
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add `segue soundstorm` and its subcommands."""
    from segue.soundstorm.config import PRESETS

    storm = sub.add_parser("soundstorm", help="SoundStorm: parallel acoustic decoding")
    storm_sub = storm.add_subparsers(dest="soundstorm_command", required=True, metavar="COMMAND")

    p = storm_sub.add_parser("train", help="train on semantic + acoustic shards (resumable)")
    add_input(
        p,
        "shards",
        nargs="+",
        required=False,
        old_flag="--shards",
        help="the semantic and the acoustic token shard folders (told apart by their meta.json; "
        "on --resume, the run's own)",
    )
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    add_training(p, fine_tune=True)
    p.set_defaults(func=_train)

    p = storm_sub.add_parser("export", help="run folder -> config.json + model.safetensors")
    add_model(p, f"the SoundStorm: {MODEL_HELP}")
    add_out(p, "folder to write")
    p.set_defaults(func=_export)
