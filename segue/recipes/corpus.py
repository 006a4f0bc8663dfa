"""The recipe's corpus step: the corpus OUT/corpus/manifest.jsonl every later step reads, built
here (TTS speech, real speech from Debian packages, both mixed, or piano) or made from the
user's own folder or manifest (`corpus.data`, `segue recipe --data`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from segue.data.index import group_function
from segue.data.manifest import MANIFEST_NAME, read_manifest
from segue.data.splits import check_fractions
from segue.errors import InputError
from segue.recipes.runner import Context, RecipeError


@dataclass
class CorpusConfig:
    """What the corpus step builds in OUT/corpus.

    data: your own audio instead (`segue recipe NAME --data PATH`): a folder, indexed as
    `segue data index` does (every file decoded, unreadable ones skipped and listed; `group`
    says which speaker or piece a file belongs to: a `segue.data.index.GROUP_PRESETS` name
    such as parent, grandparent, librispeech, or a regex with (?P<group>...)), or a manifest
    taken as it is. Held-out groups are drawn as `segue data split` does (`valid`, `test`);
    a manifest that has splits keeps them. The other fields then do not apply.
    kind: "speech" (TTS voices), "piano", "real" (recorded voices, `make-real-speech`), or
    "speech+real": both, in OUT/corpus/speech and OUT/corpus/real, mixed into
    OUT/corpus/manifest.jsonl so that training crops come from the real voices with
    probability `real_weight` (`segue.data.mix`), whatever their share of the hours.
    hours: of TTS speech or piano; real_hours: of real speech (None: all of it, ~5.8 h).
    "own": nothing is built: `data` is required (recipes made for the user's speech, such as
    librilight; evaluated as speech).
    """

    kind: Literal["speech", "piano", "real", "speech+real", "own"] = "speech"
    hours: float = 4.0
    seed: int = 0
    real_hours: float | None = None
    real_weight: float = 0.5
    data: str = ""
    group: str = "parent"
    valid: float = 0.05
    test: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 <= self.real_weight <= 1.0:
            raise InputError(f"corpus.real_weight must be in [0, 1], got {self.real_weight}")
        check_fractions(self.valid, self.test)
        if self.data:
            group_function(self.group)  # a bad pattern fails here, before any step runs

    def check_source(self) -> None:
        """InputError when there is nothing to make the corpus from (kind "own" without data):
        checked before any step runs, so no marker records the missing data."""
        if self.kind == "own" and not self.data:
            raise RecipeError(
                "this recipe trains on your own audio: pass --data PATH (a folder or a manifest)"
            )


def corpus(ctx: Context) -> dict[str, Any]:
    """Synthesise (or fetch) the corpus, mixing parts when asked (resumable: files are reused),
    or index the user's own audio (`corpus.data`)."""
    cfg, root = ctx.config.corpus, ctx.dir("corpus")
    cfg.check_source()
    if cfg.data:
        return _own_corpus(cfg, root, ctx.workers)
    if cfg.kind == "speech+real":
        from segue.data.mix import Part, mix_manifests

        numbers = {
            "speech": _summary(_build_part(cfg, "speech", root / "speech", ctx.workers)),
            "real": _summary(_build_part(cfg, "real", root / "real", ctx.workers)),
        }
        mix_manifests(
            [
                Part("speech", root / "speech" / MANIFEST_NAME, 1.0 - cfg.real_weight),
                Part("real", root / "real" / MANIFEST_NAME, cfg.real_weight),
            ],
            root / MANIFEST_NAME,
        )
        numbers["weights"] = {"speech": 1.0 - cfg.real_weight, "real": cfg.real_weight}
        return numbers
    return _summary(_build_part(cfg, cfg.kind, root, ctx.workers))


def _own_corpus(cfg: CorpusConfig, root: Path, workers: int | None) -> dict[str, Any]:
    """OUT/corpus/manifest.jsonl from the user's folder or manifest (see CorpusConfig)."""
    from segue.data.index import index_directory
    from segue.data.manifest import splits_path_for, write_manifest
    from segue.data.mix import parts_path_for, read_part_weights, write_part_weights
    from segue.data.splits import split_manifest

    data, out = Path(cfg.data).expanduser().resolve(), root / MANIFEST_NAME
    root.mkdir(parents=True, exist_ok=True)
    numbers: dict[str, Any] = {"data": str(data)}
    if data.is_dir():
        summary = index_directory(data, out, group=cfg.group, workers=workers)
        numbers["skipped"] = len(summary.skipped)
        if summary.skipped:
            print(summary.report(limit=10))
        if not summary.indexed:
            raise RecipeError(f"{data}: no readable audio file ({len(summary.skipped)} skipped)")
    elif data.is_file():
        given = read_manifest(data)  # checks every line
        if not given.entries:
            raise RecipeError(f"{data}: the manifest lists no files")
        moved = [
            replace(entry, path=os.path.relpath(given.resolve(entry).resolve(), root))
            for entry in given.entries
        ]  # paths relative to OUT/corpus, splits (its own or its split file's) kept
        write_manifest(out, moved)
        splits_path_for(out).unlink(missing_ok=True)
        weights = read_part_weights(data)  # a mixture's weights go with it (k-means sampling)
        if weights is not None:
            write_part_weights(out, weights)
        else:
            parts_path_for(out).unlink(missing_ok=True)
    else:
        raise RecipeError(f"corpus.data: {data} is neither a folder of audio nor a manifest")
    manifest = read_manifest(out)
    if all(entry.split is None for entry in manifest.entries):
        split_manifest(out, valid=cfg.valid, test=cfg.test, seed=cfg.seed)
        manifest = read_manifest(out)
    counts = {s: sum(e.split == s for e in manifest.entries) for s in ("train", "valid", "test")}
    if not counts["train"]:
        raise RecipeError(f"{out}: no file is in the train split")
    numbers.update(
        files=len(manifest.entries),
        hours=round(manifest.seconds / 3600, 4),
        groups=len(manifest.groups),
        splits=counts,
        transcripts=sum("text" in e.extra for e in manifest.entries),
    )
    return numbers


def _build_part(cfg: CorpusConfig, kind: str, out: Path, workers: int | None) -> Any:
    """Build one corpus (`kind`: speech, piano or real) into `out`; its BuildSummary."""
    if kind == "real":
        from segue.data.real_speech import make_real_speech_corpus

        summary = make_real_speech_corpus(out, hours=cfg.real_hours, workers=workers)
        if summary.package_errors:
            raise RecipeError(
                "real-speech packages could not be fetched:\n"
                + "\n".join(summary.package_errors.values())
            )
        return summary.build
    if kind == "speech":
        from segue.data.speech import make_speech_corpus as make
    else:
        from segue.data.piano import make_piano_corpus as make
    return make(out, hours=cfg.hours, seed=cfg.seed, workers=workers)


def _summary(summary: Any) -> dict[str, Any]:
    return {
        "files": summary.files,
        "hours": round(summary.seconds / 3600, 4),
        "groups": summary.groups,
        "failed": summary.failed,
    }
