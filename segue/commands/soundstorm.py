"""`segue soundstorm train|export`: SoundStorm, the parallel acoustic stage (segue.soundstorm).

    segue soundstorm train SEM ACOU --preset tiny --out RUN [--set K=V] [--max-steps N]
    segue soundstorm eval [SEM ACOU] --model RUN [--split valid] [--mismatched-semantic]
    segue soundstorm export --model RUN --out DIR

Then `segue bundle ... --soundstorm RUN` adds it to an AudioLM bundle (`--acoustic soundstorm`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from segue.commands import (
    MODEL_HELP,
    CommandError,
    add_device,
    add_input,
    add_mismatched_semantic,
    add_model,
    add_out,
    add_threads,
    add_training,
    pick_device,
)


def _train(args: argparse.Namespace) -> None:
    from segue.commands.lm import _shard_kinds
    from segue.soundstorm.config import soundstorm_preset
    from segue.soundstorm.train import SoundStormRunConfig, SoundStormTask
    from segue.train import config_from_args, run_training

    default = SoundStormRunConfig(model=soundstorm_preset(args.preset))
    config = config_from_args(SoundStormRunConfig, args, default=default)
    for kind, path in _shard_kinds(args.shards or [], pair=True).items():
        setattr(config.data, f"{kind}_shards", path)
    run_training(SoundStormTask(config), config, args)


def _eval(args: argparse.Namespace) -> None:
    from segue.commands.lm import _saved_run_config, _shard_kinds
    from segue.data.shards import TokenShards
    from segue.soundstorm.evaluate import evaluate_soundstorm, format_report
    from segue.soundstorm.load import load_soundstorm
    from segue.soundstorm.train import SoundStormRunConfig, build_dataset, fill_from_shards

    model = load_soundstorm(args.model, device=pick_device(args.device))
    saved = _saved_run_config(args.model, SoundStormRunConfig)
    is_run = saved is not None
    config = saved if is_run else SoundStormRunConfig()
    config.model = model.config
    kinds = _shard_kinds(args.shards or [], pair=True)
    if not kinds and not is_run:
        raise CommandError(f"{args.model} is an exported SoundStorm: give its SHARDS")
    for kind, path in kinds.items():
        setattr(config.data, f"{kind}_shards", path)
    if args.window_seconds is not None:
        config.data.window_seconds = args.window_seconds
    elif not is_run:  # the default crop, as long as the model takes
        rate = float(TokenShards(config.data.semantic_shards).meta["frame_rate"])
        longest = model.config.max_frames // model.config.ratio / rate
        config.data.window_seconds = min(config.data.window_seconds, longest)
    window = fill_from_shards(config)  # checks that the shards' token spaces are the model's
    batches = None if args.max_items is None else -(-args.max_items // args.batch_size)

    def score(shift: int):
        """The split's crops (another utterance's semantic tokens with shift > 0), scored."""
        try:
            dataset = build_dataset(config, window, args.split, seed=1234, semantic_shift=shift)
        except ValueError as error:
            raise CommandError(f"split {args.split!r}: {error}") from error
        return evaluate_soundstorm(model, dataset, batch_size=args.batch_size, max_batches=batches)

    report = score(0)
    print(format_report(report))
    extra = {}
    if args.mismatched_semantic:
        mismatched = score(args.mismatched_semantic)
        gains = [m - o for m, o in zip(mismatched.level_loss, report.level_loss)]
        extra = {
            "mismatched_loss": mismatched.loss,
            "semantic_gain": mismatched.loss - report.loss,
            "semantic_gain_by_level": gains,
        }
        by_level = "  ".join(f"{q}: {g:.3f}" for q, g in enumerate(gains) if g == g)
        print(
            f"  loss with another utterance's semantic tokens  {mismatched.loss:.4f}"
            f" (same masks)\n  what the right semantic tokens save  {extra['semantic_gain']:.4f} "
            f"nats/token\n  by level  {by_level}"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(report.to_json(**extra))
        print(f"-> {args.json}")


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

    p = storm_sub.add_parser("eval", help="masked-token loss on a split (seeded masks)")
    add_input(
        p,
        "shards",
        nargs="+",
        required=False,
        help="the semantic and the acoustic token shard folders (default: a run folder's own)",
    )
    add_model(p, f"the SoundStorm: {MODEL_HELP}")
    p.add_argument("--split", default="valid")
    p.add_argument("--max-items", type=int, default=None, help="crops to evaluate (default all)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--window-seconds",
        type=float,
        default=None,
        help="crop length (default: a run's own; 4 s, or what the model takes, otherwise)",
    )
    add_mismatched_semantic(p, "crop (the same masks)")
    p.add_argument("--json", help="also write the report here")
    add_device(p)
    add_threads(p)
    p.set_defaults(func=_eval)

    p = storm_sub.add_parser("export", help="run folder -> config.json + model.safetensors")
    add_model(p, f"the SoundStorm: {MODEL_HELP}")
    add_out(p, "folder to write")
    p.set_defaults(func=_export)
