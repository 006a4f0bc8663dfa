"""`segue lm ...`: train, evaluate, sample and export the three AudioLM language models."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

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
    load_array,
    pick_device,
)


def _shard_kinds(paths: list[str], *, pair: bool = False) -> dict[str, str]:
    """{"semantic": dir, "acoustic": dir} from shard folders, told apart by their meta.json.
    pair: folders given must be one of each (none at all is left to the caller)."""
    from segue.data.shards import ShardError, TokenShards

    kinds: dict[str, str] = {}
    for path in paths:
        try:
            kind = TokenShards(path).meta.get("kind")
        except ShardError as error:
            raise CommandError(str(error)) from error
        if kind not in ("semantic", "acoustic"):
            raise CommandError(f"{path}: shards of kind {kind!r}, not semantic or acoustic")
        if kind in kinds:
            raise CommandError(f"two {kind} shard folders: {kinds[kind]} and {path}")
        kinds[kind] = str(path)
    if pair and paths and len(kinds) != 2:
        raise CommandError("SHARDS: give a semantic and an acoustic shard folder")
    return kinds


def _train(args: argparse.Namespace) -> None:
    from segue.lm.train import LMRunConfig, LMTask, run_config_for
    from segue.train import config_from_args, run_training

    config = config_from_args(LMRunConfig, args, default=run_config_for(args.stage, args.preset))
    if config.stage.stage != args.stage:
        raise CommandError(
            f"--stage {args.stage}, but the run's config is a {config.stage.stage} LM"
        )
    for kind, path in _shard_kinds(args.shards or []).items():
        setattr(config.data, f"{kind}_shards", path)
    run_training(LMTask(config), config, args)


def _saved_run_config(location: str, config_class: type):
    """The run config (a `config_class`) of a training run folder or one of its checkpoints
    (`segue.pretrained.is_run_location`, what the loaders go by); None for an exported model."""
    from segue.config import load_config
    from segue.pretrained import is_run_location

    saved = Path(location) / "config.json"
    if is_run_location(location) and saved.is_file():
        return load_config(config_class, saved)
    return None


def _eval(args: argparse.Namespace) -> None:
    from segue.lm.evaluate import ConditioningReport, evaluate_lm, format_report
    from segue.lm.stages import load_lm
    from segue.lm.train import LMDataConfig, LMRunConfig, build_dataset, fill_from_shards

    lm = load_lm(args.model, device=pick_device(args.device))
    saved = _saved_run_config(args.model, LMRunConfig)
    data = saved.data if saved is not None else LMDataConfig()
    for kind, path in _shard_kinds(args.shards or []).items():
        setattr(data, f"{kind}_shards", path)
    config = LMRunConfig(stage=lm.stage, data=data)
    fill_from_shards(config)  # checks that the shards' token spaces are the model's
    if args.mismatched_semantic and lm.stage.stage != "coarse":
        raise CommandError(f"--mismatched-semantic is for a coarse LM, not a {lm.stage.stage} LM")
    try:
        dataset = build_dataset(config, lm.layout, args.split, seed=1234)
        shifted = None
        if args.mismatched_semantic:
            shift = args.mismatched_semantic
            shifted = build_dataset(config, lm.layout, args.split, seed=1234, semantic_shift=shift)
    except ValueError as error:
        raise CommandError(f"split {args.split!r}: {error}") from error
    batches = None if args.max_items is None else -(-args.max_items // args.batch_size)
    report = evaluate_lm(lm, dataset, batch_size=args.batch_size, max_batches=batches)
    print(format_report(lm.stage.stage, report))
    extra = {}
    if shifted is not None:
        mismatched = evaluate_lm(lm, shifted, batch_size=args.batch_size, max_batches=batches)
        conditioning = ConditioningReport(report, mismatched)
        print(
            f"  level loss with another utterance's semantic tokens  {mismatched.level_loss:.4f}"
            f"\n  what the right semantic tokens save  {conditioning.gain:.4f} nats/token"
        )
        extra = conditioning.to_dict()
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(report.to_json(stage=lm.stage.stage, **extra))
        print(f"-> {args.json}")


def _load_tokens(path: str, ndim: int, batch: int) -> np.ndarray:
    """Tokens of ndim dims (or one less: a single sequence, repeated `batch` times), from an
    .npy, .pt or .safetensors file."""
    array = load_array(path)
    if array.ndim == ndim - 1:
        array = np.repeat(array[None], batch, axis=0)
    if array.ndim != ndim:
        raise CommandError(f"{path}: expected {ndim - 1} or {ndim} dims, got {array.shape}")
    return array.astype(np.int64)


def _timed(name: str, tokens: int, start: float) -> float:
    seconds = time.perf_counter() - start
    print(f"{name:9s} {tokens:7d} tokens in {seconds:6.2f} s ({tokens / seconds:7.0f} tok/s)")
    return seconds


def _sample(args: argparse.Namespace) -> None:
    import torch

    from segue.lm.stages import coarse_generate, fine_generate, load_lm, semantic_continue

    if not (args.semantic_lm or args.coarse_lm or args.fine_lm):
        raise CommandError("give at least one of --semantic-lm, --coarse-lm, --fine-lm")
    device = pick_device(args.device)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    batch, out, total = args.batch_size, {}, 0.0
    semantic = coarse = None
    if args.semantic:
        semantic = torch.from_numpy(_load_tokens(args.semantic, 2, batch)).to(device)
    if args.coarse:
        coarse = torch.from_numpy(_load_tokens(args.coarse, 3, batch)).to(device)
    if args.semantic_lm:
        lm = load_lm(args.semantic_lm, device=device)
        if args.coarse_lm and lm.stage.dedup:
            raise CommandError("a semantic LM trained on deduped tokens cannot feed the coarse LM")
        prompt = semantic if semantic is not None else torch.zeros(batch, 0, dtype=torch.long)
        prompt = prompt.to(device)
        n = max(0, round(args.seconds * lm.stage.semantic_rate) - prompt.shape[1])
        start = time.perf_counter()
        gen = semantic_continue(lm, prompt, n, eos=args.eos, generator=generator)
        total += _timed("semantic", int(gen.lengths.sum()), start)
        semantic = torch.cat([prompt, gen.tokens[:, : int(gen.lengths.min())]], dim=1)
        out["semantic"] = semantic
    if args.coarse_lm:
        if semantic is None:
            raise CommandError("--coarse-lm needs semantic tokens: --semantic-lm or --semantic")
        lm = load_lm(args.coarse_lm, device=device)
        start = time.perf_counter()
        coarse = coarse_generate(lm, semantic, generator=generator)
        total += _timed("coarse", coarse.numel(), start)
        out["coarse"] = coarse
    if args.fine_lm:
        if coarse is None:
            raise CommandError("--fine-lm needs coarse codes: --coarse-lm or --coarse")
        lm = load_lm(args.fine_lm, device=device)
        start = time.perf_counter()
        codes = fine_generate(lm, coarse, generator=generator)
        total += _timed("fine", codes.numel() - coarse.numel(), start)
        out["codes"] = codes
    print(f"total     {total:.2f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **{k: v.cpu().numpy() for k, v in out.items()})
    print(f"-> {args.out}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in out.items()))


def _export(args: argparse.Namespace) -> None:
    from segue.lm.stages import load_lm

    path = load_lm(args.model).save_pretrained(args.out)
    print(f"{path}: config.json + model.safetensors + stage.json")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `segue lm` and its subcommands."""
    from segue.lm.config import MODEL_PRESETS, STAGES

    lm = sub.add_parser("lm", help="the semantic, coarse and fine language models")
    lm_sub = lm.add_subparsers(dest="lm_command", required=True, metavar="COMMAND")
    shards_help = (
        "token shard folder(s): semantic for --stage semantic, acoustic for fine, both for "
        "coarse (told apart by their meta.json)"
    )
    model_help = f"the LM: {MODEL_HELP}"

    p = lm_sub.add_parser("train", help="train one stage on token shards (resumable)")
    add_input(
        p,
        "shards",
        nargs="+",
        required=False,
        old_flag="--shards",
        help=f"{shards_help}; on --resume, the run's own",
    )
    p.add_argument("--stage", required=True, choices=STAGES)
    p.add_argument("--preset", default="tiny", choices=sorted(MODEL_PRESETS))
    add_training(p, fine_tune=True)
    p.set_defaults(func=_train)

    p = lm_sub.add_parser("eval", help="loss, perplexity, accuracy on a split, vs unigram")
    add_input(
        p,
        "shards",
        nargs="+",
        required=False,
        old_flag="--shards",
        help="token shard folder(s) (default: a run folder's own shards)",
    )
    add_model(p, model_help)
    p.add_argument("--split", default="valid")
    p.add_argument("--max-items", type=int, default=None, help="windows to evaluate (default all)")
    p.add_argument("--batch-size", type=int, default=8)
    add_mismatched_semantic(p, "window (coarse LM)")
    p.add_argument("--json", help="also write the report here")
    add_device(p)
    add_threads(p)
    p.set_defaults(func=_eval)

    p = lm_sub.add_parser(
        "sample", help="generate tokens with one or more stages (semantic -> coarse -> fine)"
    )
    p.add_argument("--semantic-lm", help=model_help)
    p.add_argument("--coarse-lm", help=model_help)
    p.add_argument("--fine-lm", help=model_help)
    p.add_argument("--semantic", help="semantic tokens .npy [T] or [B, T]: prompt or condition")
    p.add_argument("--coarse", help="coarse codes .npy [Q', T] or [B, Q', T] for --fine-lm alone")
    p.add_argument("--seconds", type=float, default=10.0, help="semantic length to reach")
    p.add_argument(
        "--eos",
        action="store_true",
        help="let semantic sequences end before --seconds (the batch is cut to the shortest)",
    )
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    add_out(p, ".npz with semantic, coarse, codes")
    add_device(p)
    add_threads(p)
    p.set_defaults(func=_sample)

    p = lm_sub.add_parser(
        "export", help="run folder -> config.json + model.safetensors + stage.json"
    )
    add_model(p, model_help)
    add_out(p, "folder to write")
    p.set_defaults(func=_export)
