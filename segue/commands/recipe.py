"""`segue recipe NAME --out DIR`: build an AudioLM bundle end to end, resumably (segue.recipes).

    segue recipe smoke --out runs/smoke                       # a pipeline check, seconds
    segue recipe speech-tiny --out runs/speech-tiny           # a few hours on a CPU
    segue recipe speech-tiny --out runs/speech-tiny --until codec
    segue recipe --out runs/speech-tiny --only lm_fine        # beside a run that trains lm_coarse
    segue recipe speech-tiny --out runs/st --set codec.optim.max_steps=500 --force codec
    segue recipe --out runs/speech-tiny                       # go on with DIR/recipe.json
    segue recipe speech-gpu --out runs/x --data ~/audio --dry-run   # check it all, run nothing
    segue recipe finetune --out runs/mine --data ~/my-voices  # the shipped bundle, on your audio
    torchrun --standalone --nproc_per_node=8 -m segue.cli recipe librilight --out RUN --data DIR

Under torchrun every process runs the recipe (segue/recipes/runner.py says who does what).

The recipes' steps: `segue/recipes/audiolm.py`; their settings: `segue/recipes/config.py`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from segue.commands import CommandError, add_out, add_threads, torchrun_ranks


def _recipe(args: argparse.Namespace):
    """(recipe, config): NAME's defaults, or DIR/recipe.json's when NAME is left out; + --set."""
    from segue.config import apply_overrides, from_dict
    from segue.recipes import RECIPE_NAME, RECIPES
    from segue.recipes.config import start_from

    saved = Path(args.out) / RECIPE_NAME
    if args.name is None:
        if not saved.is_file():
            raise CommandError(f"{saved}: not found; name a recipe ({', '.join(RECIPES)})")
        data = json.loads(saved.read_text())
        recipe = RECIPES.get(data.get("recipe"))
        if recipe is None:
            raise CommandError(f"{saved}: unknown recipe {data.get('recipe')!r}")
        config = from_dict(type(recipe.make_config()), data["config"], where=str(saved))
    else:
        recipe = RECIPES[args.name]
        config = recipe.make_config()
    if args.init_from is not None:
        start_from(config, args.init_from)
    overrides = list(args.overrides)
    if args.data is not None:  # shorthands of --set corpus.data=... / corpus.group=...
        overrides.append(f"corpus.data={Path(args.data).expanduser().resolve()}")
    if args.group is not None:
        overrides.append(f"corpus.group={args.group}")
    config = apply_overrides(config, overrides)
    config.corpus.check_source()  # e.g. librilight without --data: refused before anything
    return recipe, config


def _run(args: argparse.Namespace) -> None:
    """Run (or check) the recipe; under torchrun every process comes here and joins the group."""
    recipe, config = _recipe(args)
    with torchrun_ranks() as info:
        if args.dry_run:
            if info.is_main:
                _dry_run(args, recipe, config)
            return
        _run_recipe(args, recipe, config, info.is_main)


def _run_recipe(args: argparse.Namespace, recipe, config, main: bool) -> None:
    from segue.recipes import run_recipe

    if main:
        print(f"recipe {recipe.name} -> {args.out}", flush=True)
    run_recipe(
        recipe,
        config,
        args.out,
        until=args.until,
        force=args.force,
        only=args.only,
        workers=args.workers,
        log=lambda line: print(line, flush=True),
    )
    bundle = Path(args.out) / "bundle"
    if main and (bundle / "bundle.json").is_file():
        print(f"bundle: {bundle}  (segue continue PROMPT --seconds 5 --model {bundle} --out o.wav)")


def _dry_run(args: argparse.Namespace, recipe, config) -> None:
    """Print the preflight report; exit 0 when ready, 2 when a problem was found."""
    from segue.recipes.preflight import preflight

    report = preflight(
        recipe, config, args.out, until=args.until, force=args.force, workers=args.workers
    )
    print(report.format(), flush=True)
    if not report.ok:
        raise SystemExit(2)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `segue recipe`."""
    from segue.recipes import RECIPES

    recipes = "\n".join(f"  {name:<12} {recipe.help}" for name, recipe in RECIPES.items())
    steps = " -> ".join(next(iter(RECIPES.values())).step_names)
    p = sub.add_parser(
        "recipe",
        help="corpus -> codec -> semantic -> tokens -> LMs + SoundStorm -> eval -> bundle "
        "(resumable)",
        description="Run every step that makes an AudioLM bundle into DIR/<step>/, each marked\n"
        "by DIR/<step>/DONE.json: a re-run skips the done steps, resumes an interrupted one,\n"
        "and refuses a done step whose settings changed (unless --force STEP).",
        epilog=f"recipes:\n{recipes}\nsteps: {steps}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "name",
        nargs="?",
        choices=sorted(RECIPES),
        metavar="NAME",
        help="recipe (default: the one recorded in DIR/recipe.json, with its config)",
    )
    add_out(p, "output folder", metavar="DIR")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="STEP.KEY=VALUE",
        help="override a step's setting, e.g. codec.optim.max_steps=500 or corpus.hours=2 "
        "(repeatable)",
    )
    p.add_argument(
        "--data",
        metavar="PATH",
        help="train on your own audio: a folder (indexed; unreadable files skipped) or a "
        "manifest, instead of the recipe's corpus (= --set corpus.data=PATH; docs/recipes.md)",
    )
    p.add_argument(
        "--group",
        metavar="RULE",
        help="with --data: which speaker or piece a file belongs to: parent (default), "
        "grandparent (LibriSpeech's speaker/chapter/file), top, file, or a regex with "
        "(?P<group>...) (= --set corpus.group=RULE)",
    )
    p.add_argument(
        "--init-from",
        metavar="BUNDLE",
        help="fine-tune this model bundle: its codec and semantic tokenizer as they are, its "
        "LMs and SoundStorm trained further on the corpus (the `finetune` recipe starts from "
        "the shipped one)",
    )
    p.add_argument("--until", metavar="STEP", help="stop after this step")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="STEP",
        help="run just this step (repeatable), e.g. lm_fine in one process and soundstorm in "
        "another while a third trains lm_coarse: the steps it needs must be done",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check the plan, data, models (sizes, memory), machine and disk, print them and "
        "exit (0: ready, 2: problems); writes nothing",
    )
    p.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="STEP",
        help="redo this step (and the steps that depend on it) from scratch (repeatable)",
    )
    p.add_argument(
        "--workers", type=int, default=None, help="corpus building processes (default: all cores)"
    )
    add_threads(p)
    p.set_defaults(func=_run)
