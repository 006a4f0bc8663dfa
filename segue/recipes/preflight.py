"""`segue recipe NAME --out DIR --dry-run`: check what a run needs before any compute is spent.

    report = preflight(recipe, config, "runs/x", workers=4)
    print(report.format())          # the plan, the data, the models, the machine
    sys.exit(0 if report.ok else 2)

Nothing is written into DIR (a missing DIR is not created): the plan comes from the runner's own
`step_states`/`refusal`, a folder of audio is scanned with `segue.data.index`'s header-only probe
(files the corpus manifest already knows are not opened), a manifest's files are opened with
`segue.data.manifest.check_files`, and every model is built on the `meta` device (no memory;
`segue.recipes.sizing`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from segue.data.manifest import MANIFEST_NAME, ManifestError, check_files, read_manifest
from segue.data.splits import assign_splits
from segue.errors import SegueError
from segue.recipes.config import AudioLMRecipeConfig, codec_kept, decoder_phase_run
from segue.recipes.corpus import CorpusConfig
from segue.recipes.runner import (
    DONE_NAME,
    Recipe,
    RecipeError,
    lock_holder,
    refusal,
    step_states,
)
from segue.recipes.sizing import (
    OPTIMIZER_BYTES_PER_PARAM,
    ModelSize,
    model_sizes,
    run_config,
)
from segue.train import RunConfig

#: Rough disk needs (see `_disk_need`): 16 kHz mono FLAC, ~0.55 of 16-bit PCM's 115 MB/h.
FLAC_BYTES_PER_HOUR = 64e6
_SHOWN_BAD = 5


@dataclass
class Section:
    """One titled block of the report."""

    title: str
    lines: list[str] = field(default_factory=list)


@dataclass
class Preflight:
    """What a dry run found: the report's sections and the problems that would stop the run."""

    recipe: str
    out: Path
    sections: list[Section] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str) -> None:
        """Add a problem, as one line (see `one_line`)."""
        self.problems.append(one_line(text))

    def format(self) -> str:
        """The report as text: each section, then the problems (or "ready")."""
        parts = [f"dry run: recipe {self.recipe} -> {self.out} (nothing written)"]
        for section in self.sections:
            parts.append(f"\n{section.title}")
            parts += [f"  {line}" for line in section.lines]
        if self.problems:
            parts.append(f"\n{len(self.problems)} problem(s):")
            parts += [f"  problem: {p}" for p in self.problems]
        else:
            parts.append("\nready: no problem found")
        return "\n".join(parts)


def one_line(text: str) -> str:
    """A multi-line message as one line: `a:` + `b` -> `a: b`, `b` + `c` -> `b; c`."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    joined = lines[0] if lines else ""
    for line in lines[1:]:
        joined += (" " if joined.endswith(":") else "; ") + line
    return joined


def preflight(
    recipe: Recipe,
    config: AudioLMRecipeConfig,
    out: str | os.PathLike,
    *,
    until: str | None = None,
    force: Iterable[str] = (),
    workers: int | None = None,
    progress: bool = True,
) -> Preflight:
    """Check `recipe` with `config` into `out` without running or writing anything."""
    report = Preflight(recipe.name, Path(out))
    hours = _check_plan(report, recipe, config, Path(out), until, force)
    if hours is None:  # the corpus step would run: check what it reads or builds
        hours = _check_data(report, config.corpus, Path(out), workers, progress)
    else:
        report.sections.append(
            Section("data", [f"corpus step done: {hours:.3f} h in {Path(out) / 'corpus'}"])
        )
    sizes = _check_models(report, config, Path(out))
    _check_machine(report, config, Path(out), hours, sizes)
    return report


# ----------------------------------------------------------------------------------- plan


def _check_plan(
    report: Preflight,
    recipe: Recipe,
    config: AudioLMRecipeConfig,
    out: Path,
    until: str | None,
    force: Iterable[str],
) -> float | None:
    """The runner's plan, one line per step; the corpus hours of a done corpus step, if any."""
    section = Section("plan")
    report.sections.append(section)
    try:
        states, wiped = step_states(recipe, config, out, until=until, force=force)
    except RecipeError as error:
        report.problem(str(error))
        return None
    width, total = max(len(s.step) for s in states), len(recipe.steps)
    words = {"done": "done (skipped)", "started": "would resume", "new": "would run"}
    for i, state in enumerate(states, 1):
        what = words.get(state.state, f"REFUSED: {state.why}")
        if state.step in wiped:
            what = "would be wiped (--force) and run"
        holder = lock_holder(out / state.step)
        if holder is not None:
            what = f"running in another process (pid {holder}): a run would stop there"
        tag = f"[{i}/{total}]"
        what += _starting_point(config, state.step)
        section.lines.append(f"{tag:>{2 * len(str(total)) + 3}} {state.step:<{width}}  {what}")
    message = refusal(recipe, config, out, states)
    if message:
        report.problem(message)
    done = next((s for s in states if s.step == "corpus" and s.state == "done"), None)
    if done is not None and "corpus" not in wiped:
        numbers = json.loads((out / "corpus" / DONE_NAME).read_text()).get("numbers", {})
        return _hours_of(numbers)
    return None


def _starting_point(config: AudioLMRecipeConfig, step: str) -> str:
    """What a step starts from when it does not start from nothing (`start_from`)."""
    if step == "codec" and codec_kept(config.codec):
        return f": the codec of {config.codec.train.init_from}, kept as it is"
    if step == "codec_decoder":
        if decoder_phase_run(config) is None:
            return ": off (codec_decoder.optim.max_steps=0)"
        return ", from the codec step's codec (encoder and quantizer frozen)"
    if step == "semantic" and config.semantic.tokenizer_from:
        return f": the tokenizer of {config.semantic.tokenizer_from}, kept as it is"
    run = getattr(config, step, None)  # a training step's run config (the others: not one)
    source = run.train.init_from if isinstance(run, RunConfig) else None
    return f", from {source}" if source else ""


def _hours_of(numbers: dict[str, Any]) -> float | None:
    """The corpus hours a corpus step's DONE numbers hold (parts of a mix summed)."""
    if "hours" in numbers:
        return float(numbers["hours"])
    parts = [v["hours"] for v in numbers.values() if isinstance(v, dict) and "hours" in v]
    return float(sum(parts)) if parts else None


# ----------------------------------------------------------------------------------- data


def _check_data(
    report: Preflight, cfg: CorpusConfig, out: Path, workers: int | None, progress: bool
) -> float | None:
    """The corpus: the user's folder or manifest, or what the corpus step would synthesise.
    Returns the corpus hours when known."""
    section = Section("data")
    report.sections.append(section)
    if not cfg.data and cfg.kind == "own":
        report.problem("corpus: this recipe trains on your own audio: pass --data PATH")
        return None
    if not cfg.data:
        return _check_builtin(report, section, cfg)
    data = Path(cfg.data).expanduser()
    if data.is_dir():
        return _check_folder(report, section, cfg, data.resolve(), out, workers, progress)
    if data.is_file():
        return _check_manifest(report, section, cfg, data.resolve(), workers)
    report.problem(f"--data {data}: no such folder or manifest")
    return None


def _check_builtin(report: Preflight, section: Section, cfg: CorpusConfig) -> float:
    """What the corpus step synthesises or fetches, and whether its tools are installed."""
    real = cfg.real_hours if cfg.real_hours is not None else 5.8
    kinds = {
        "speech": (f"{cfg.hours:g} h of TTS speech (espeak-ng, flite, festival)", cfg.hours),
        "piano": (f"{cfg.hours:g} h of piano rendered by fluidsynth", cfg.hours),
        "real": (f"{real:g} h of recorded voices from Debian packages (apt-get)", real),
        "speech+real": (
            f"{cfg.hours:g} h of TTS speech + {real:g} h of recorded voices, mixed "
            f"(real voices drawn with probability {cfg.real_weight:g})",
            cfg.hours + real,
        ),
    }
    text, hours = kinds[cfg.kind]
    section.lines.append(f"corpus: built-in {cfg.kind}: {text} (seed {cfg.seed})")
    missing = _missing_tools(cfg.kind)
    for why in missing:
        report.problem(f"corpus ({cfg.kind}): {why}")
    section.lines.append("tools: " + ("MISSING (see the problems)" if missing else "installed"))
    return hours


def _missing_tools(kind: str) -> list[str]:
    """Why the corpus step could not build `kind` here ([] when its tools are installed)."""
    from segue.data import piano, real_speech, speech

    checks = {
        "speech": [speech.check_engines],
        "piano": [piano.check_tools],
        "real": [real_speech.check_fetch_tools],
    }
    checks["speech+real"] = checks["speech"] + checks["real"]
    missing = []
    for check in checks[kind]:
        try:
            check()
        except RuntimeError as error:
            missing.append(str(error))
    return missing


def _check_folder(
    report: Preflight,
    section: Section,
    cfg: CorpusConfig,
    root: Path,
    out: Path,
    workers: int | None,
    progress: bool,
) -> float:
    """A quick scan of a folder of audio (headers and last frames only, new files only)."""
    from segue.data import index

    manifest = (out / "corpus" / MANIFEST_NAME).absolute()
    candidates, ignored = index._candidates(root, manifest, all_files=False)
    known, _ = index._previous_scan(manifest, index.skipped_path_for(manifest))
    group_of = index.group_function(cfg.group)
    seconds, groups, to_probe, bad = 0.0, set(), [], []
    for path in candidates:
        entry = known.get(str(path))
        try:
            unchanged = entry is not None and index._unchanged(entry.extra, path.stat())
        except OSError as error:
            bad.append((path, f"cannot stat ({error.strerror})"))
            continue
        if unchanged:
            seconds += entry.duration
            groups.add(group_of(path.relative_to(root).as_posix()))
        else:
            to_probe.append(path)
    reused = len(candidates) - len(to_probe) - len(bad)
    with _quiet_bar(progress):
        results = index._probe_all(to_probe, False, workers or _cores())
    for path, (meta, why) in zip(to_probe, results):
        if meta is None:
            bad.append((path, why))
        else:
            seconds += meta["duration"]
            groups.add(group_of(path.relative_to(root).as_posix()))
    section.lines += [
        f"folder {root}: {len(candidates)} files with an audio extension "
        f"({reused} already in {manifest}, {len(to_probe)} scanned, headers only)",
        f"readable: {len(candidates) - len(bad)} files, {seconds / 3600:.3f} h, "
        f"{len(groups)} groups (--group {cfg.group})",
    ]
    if ignored:
        section.lines.append(f"ignored: {len(ignored)} file(s) without an audio extension")
    _list_bad(section, [(str(p.relative_to(root)), why) for p, why in bad])
    if len(candidates) == len(bad):
        report.problem(f"--data {root}: no readable audio file ({len(bad)} unreadable)")
    else:
        _check_split(section, cfg, sorted(groups))
    return seconds / 3600


def _list_bad(section: Section, bad: list[tuple[str, str]]) -> None:
    """`unreadable: N (skipped by the corpus step)` and the first few of them."""
    if not bad:
        return
    section.lines.append(f"unreadable: {len(bad)} file(s), skipped by the corpus step:")
    section.lines += [f"  {path}: {why}" for path, why in bad[:_SHOWN_BAD]]
    if len(bad) > _SHOWN_BAD:
        section.lines.append(f"  ... and {len(bad) - _SHOWN_BAD} more")


def _check_split(section: Section, cfg: CorpusConfig, groups: list[str]) -> None:
    """The groups `segue data split` would put in each split (corpus.valid/test/seed)."""
    splits = assign_splits(groups, valid=cfg.valid, test=cfg.test, seed=cfg.seed)
    _split_line(section, {name: len(members) for name, members in splits.items()})


def _split_line(section: Section, counts: dict[str, int], unit: str = "groups") -> None:
    section.lines.append(
        "split: "
        + ", ".join(f"{counts.get(s, 0)} {unit} in {s}" for s in ("train", "valid", "test"))
    )
    if not counts.get("test"):
        section.lines.append(
            "note: no test split (fewer than 3 groups?): evaluation falls back to valid, then train"
        )


def _check_manifest(
    report: Preflight, section: Section, cfg: CorpusConfig, path: Path, workers: int | None
) -> float | None:
    """A manifest taken as it is: its entries, hours, groups, splits, and files that open."""
    try:
        manifest = read_manifest(path)
    except ManifestError as error:
        report.problem(str(error))
        return None
    if not manifest.entries:
        report.problem(f"--data {path}: the manifest lists no files")
        return 0.0
    section.lines.append(
        f"manifest {path}: {len(manifest)} entries, {manifest.seconds / 3600:.3f} h, "
        f"{len(manifest.groups)} groups"
    )
    if all(e.split is None for e in manifest.entries):
        section.lines.append("no splits in the manifest: the corpus step draws them by group")
        _check_split(section, cfg, manifest.groups)
    else:
        splits = ("train", "valid", "test")
        counts = {s: sum(e.split == s for e in manifest.entries) for s in splits}
        _split_line(section, counts, unit="files")
        if not counts["train"]:
            report.problem(f"--data {path}: no file is in the train split")
    _, bad = check_files(manifest, skip_missing=True, workers=workers or _cores())
    if bad:
        section.lines.append(f"unusable: {len(bad)} file(s):")
        section.lines += [f"  {line}" for line in bad[:_SHOWN_BAD]]
        report.problem(
            f"--data {path}: {len(bad)} listed file(s) missing or unreadable (first: {bad[0]})"
        )
    else:
        section.lines.append("files: every listed file opens (headers checked)")
    return manifest.seconds / 3600


class _quiet_bar:
    """Turn tqdm's bars off for a block (tests, --quiet)."""

    def __init__(self, progress: bool):
        self.progress = progress

    def __enter__(self) -> None:
        self.saved = os.environ.get("TQDM_DISABLE")
        if not self.progress:
            os.environ["TQDM_DISABLE"] = "1"

    def __exit__(self, *exc: object) -> None:
        if self.saved is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = self.saved


def _cores() -> int:
    from segue.runtime import available_cores

    return available_cores()


# ----------------------------------------------------------------------------------- models


def _check_models(
    report: Preflight, config: AudioLMRecipeConfig, out: Path
) -> list[ModelSize]:
    """Parameters, data per step, steps and memory of each trained model."""
    section = Section("models (built on the meta device: nothing allocated)")
    report.sections.append(section)
    try:
        sizes = model_sizes(config, out)
    except SegueError as error:  # a bad config, or OUT/tokenize's shards unreadable
        report.problem(f"config: {error}")
        return []
    width = max(len(s.name) for s in sizes)
    for s in sizes:
        state = f"{_gib(OPTIMIZER_BYTES_PER_PARAM * s.params)} weights+grads+AdamW"
        memory = f"{state}, activations not estimated" if s.memory is None else (
            f"~{_gib(s.memory)} per device ({state} + {_gib(s.activations or 0)} activations)"
        )
        accum = run_config(config, s.name).optim.grad_accum
        micro = f" x {accum} micro-batches" if accum > 1 else ""
        section.lines.append(
            f"{s.name:<{width}}  {s.params / 1e6:8.2f} M params  {s.steps} steps of "
            f"{s.per_step}{micro} per process"
        )
        section.lines.append(f"{'':<{width}}  memory: {memory}")
    whisper = _check_whisper(report, config)
    if whisper:
        section.lines.append(f"{'semantic':<{width}}  {whisper}")
    rules: dict[str, list[str]] = {}  # how activations were obtained -> the models
    for s in sizes:
        rules.setdefault(s.rule, []).append(s.name)
    section.lines.append(
        "memory = 16 B/param (float32 weights, grads, AdamW moments) + activations:"
    )
    section.lines += [f"  {', '.join(names)}: {rule}" for rule, names in rules.items()]
    section.lines.append(
        "  (counted in float32: an upper bound where bf16 autocast runs, on CUDA or a CPU "
        "with native bf16)"
    )
    return sizes


def _check_whisper(report: Preflight, config: AudioLMRecipeConfig) -> str | None:
    """The Whisper encoder the semantic step fits k-means on (`semantic.backbone=whisper`):
    nothing trains, but its model must be here (a package or `semantic.whisper`). A line for
    the models section, or None (another backbone, or a problem reported)."""
    cfg = config.semantic
    if cfg.backbone != "whisper" or cfg.tokenizer_from:
        return None
    from segue.semantic.whisper import PACKAGED, WhisperBackendError, ct2_model_folder

    try:  # the source the semantic step gives the extractor
        path = ct2_model_folder(cfg.whisper or PACKAGED)
    except WhisperBackendError as error:
        report.problem(f"semantic: {error}")
        return None
    if not path.exists():
        report.problem(f"semantic.whisper: {path}: no such Whisper model folder")
        return None
    return f"Whisper's encoder from {path}: nothing trained, k-means K={cfg.tokenizer.k} fitted"


def _gib(size: float) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**28 else f"{size / 2**20:.1f} MiB"


# ----------------------------------------------------------------------------------- machine

_LAUNCHER = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
             "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")  # fmt: skip


def _check_machine(
    report: Preflight,
    config: AudioLMRecipeConfig,
    out: Path,
    hours: float | None,
    sizes: list[ModelSize],
) -> None:
    """The launcher's variables, CUDA devices, cores, and free disk against a rough need."""
    from segue.runtime import available_cores

    section = Section("machine")
    report.sections.append(section)
    launcher = {k: os.environ[k] for k in _LAUNCHER if k in os.environ}
    section.lines.append(
        "launcher: " + (" ".join(f"{k}={v}" for k, v in launcher.items()) or "none (one process)")
    )
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        section.lines.append(f"CUDA: {len(names)} device(s): {', '.join(names)}")
        total = torch.cuda.get_device_properties(0).total_memory
        for s in sizes:
            if s.memory is not None and s.memory > total:
                section.lines.append(
                    f"note: {s.name}'s estimate ~{_gib(s.memory)} exceeds device 0's "
                    f"{_gib(total)}: lower its train.batch_size (optim.grad_accum keeps the "
                    "batch) or its window"
                )
    else:
        section.lines.append("CUDA: not available (training runs on the CPU)")
    section.lines.append(f"CPU cores available to this process: {available_cores()}")
    need, rule = _disk_need(config, hours, sizes)
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    free = shutil.disk_usage(existing).free
    section.lines.append(f"disk: {_gib(free)} free at {existing}; need ~{_gib(need)} ({rule})")
    if free < need:
        report.problem(
            f"disk: {_gib(free)} free at {existing}, the run needs ~{_gib(need)}"
        )


def _disk_need(
    config: AudioLMRecipeConfig, hours: float | None, sizes: list[ModelSize]
) -> tuple[int, str]:
    """Rough bytes a whole run writes: the corpus (FLAC, or nothing for the user's own folder),
    the token shards, and the checkpoints (keep_last + 1 of weights + AdamW per trained model)."""
    hours = hours or 0.0
    corpus = 0 if config.corpus.data else FLAC_BYTES_PER_HOUR * hours
    codec = config.codec.model
    tokens_per_hour = 3600 * (codec.frame_rate * codec.n_codebooks + 50) * 4  # int32 tokens
    checkpoints = sum(
        12 * s.params * (run_config(config, s.name).train.keep_last + 1) for s in sizes
    )
    rule = (
        f"{hours:.2f} h: corpus {FLAC_BYTES_PER_HOUR / 1e6:.0f} MB/h of FLAC"
        + (" (none: your own folder is read in place)" if config.corpus.data else "")
        + ", shards 4 B/token, checkpoints 12 B/param x (keep_last + 1)"
    )
    return int(corpus + tokens_per_hour * hours + checkpoints), rule
