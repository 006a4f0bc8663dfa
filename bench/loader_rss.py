"""Peak memory of the training data loaders as the corpus grows 10x: they stream, or they don't.

    OMP_NUM_THREADS=1 .venv/bin/python bench/loader_rss.py [--utterances 2000] [--files 100]
        [--scale 10] [--batches 200] [--workdir DIR] [--bound 2048]

Builds, in DIR (default: a temporary folder), a synthetic token-shard corpus (semantic: 25 Hz,
1 level, K=512; acoustic: 50 Hz, 8 levels of 1024, 3 coarse; `--utterances` of 10 s, i.e. about
5.6 h) and a synthetic audio corpus (`--files` FLACs of 8 s in 10-file speaker folders, and its
manifest), then the same `--scale` times larger. For each loader (the LM stages' and
SoundStorm's windows over the shards, the codec's crops over the manifest), at each size, a fresh
process builds the loader as the engine does (`segue.train.data.build_data`, tiny preset,
`train.num_workers=0`, so every byte is in that process) and draws `--batches` batches; it reports
its peak RSS (getrusage's ru_maxrss) and its RSS just before the loader was built (imports,
torch). Printed: both, at 1x and `--scale`x, the ratio of the peaks, and the peak's growth per
utterance (or file) added to the corpus. A loader that kept the corpus in memory would grow by
the data: 8,000 B per utterance of acoustic tokens (10 s x 50 Hz x 8 levels x 2 B), 256,000 B
per audio file (8 s of 16 kHz float32), i.e. +137 MiB of tokens or +220 MiB of audio at 10x.
One that streams grows by its index only: a few hundred bytes per utterance and shard folder.
Exits 1 when a loader grows by more than `--bound` bytes per added utterance or file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LOADERS = ("lm_semantic", "lm_coarse", "lm_fine", "soundstorm", "codec")
SECONDS = 10.0  # of each synthetic utterance (tokens)
FILE_SECONDS = 8.0  # of each synthetic audio file


def _rss_mib() -> float:
    """This process's resident set now (MiB), from /proc."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make_shards(root: Path, utterances: int, seed: int = 0) -> Path:
    """OUT/semantic and OUT/acoustic: `utterances` of SECONDS each, random tokens, splits
    90/5/5 by speaker (100 utterances each)."""
    from segue.data.shards import TokenShardWriter, merge_index

    rng = np.random.default_rng(seed)
    writers = {
        "semantic": TokenShardWriter(root / "semantic", kind="semantic", levels=1,
                                     vocab_size=512, frame_rate=25.0),
        "acoustic": TokenShardWriter(root / "acoustic", kind="acoustic", levels=8,
                                     vocab_size=1024, frame_rate=50.0,
                                     extra_meta={"n_coarse": 3}),
    }  # fmt: skip
    for i in range(utterances):
        speaker = i // 100
        split = ("valid", "test")[speaker % 2] if speaker % 20 == 19 else "train"
        info = {"group": f"spk{speaker}", "split": split, "duration": SECONDS}
        semantic = rng.integers(0, 512, (1, int(25 * SECONDS)))
        acoustic = rng.integers(0, 1024, (8, int(50 * SECONDS)))
        writers["semantic"].add(f"spk{speaker}/u{i:06d}.flac", semantic, info)
        writers["acoustic"].add(f"spk{speaker}/u{i:06d}.flac", acoustic, info)
    for kind, writer in writers.items():
        writer.flush()
        merge_index(root / kind)
    return root


def make_audio(root: Path, files: int, seed: int = 0) -> Path:
    """`files` FLACs of FILE_SECONDS (noisy tones) in speaker folders of 10, and their manifest
    (every 20th speaker held out, alternately valid and test)."""
    import soundfile as sf

    from segue.data.manifest import ManifestEntry, write_manifest

    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * FILE_SECONDS)) / 16000
    entries = []
    for i in range(files):
        speaker = i // 10
        split = ("valid", "test")[speaker % 2] if speaker % 20 == 19 else "train"
        audio = 0.3 * np.sin(2 * np.pi * (100 + i % 300) * t) + 0.01 * rng.standard_normal(t.size)
        path = f"spk{speaker}/f{i:06d}.flac"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / path, audio.astype(np.float32), 16000)
        entries.append(ManifestEntry(path, FILE_SECONDS, 16000, f"spk{speaker}", split))
    write_manifest(root / "manifest.jsonl", entries)
    return root / "manifest.jsonl"


def task_for(loader: str, corpus: Path):
    """The training task of `loader` on the corpus in `corpus` (tiny presets, no workers)."""
    from segue.config import apply_overrides

    quick = ["train.num_workers=0", "train.progress=false", "train.tensorboard=false"]
    if loader == "codec":
        from segue.codec.train import CodecTask, run_config_for_preset

        manifest = corpus / "audio" / "manifest.jsonl"
        config = apply_overrides(run_config_for_preset("tiny", str(manifest)), quick)
        return CodecTask(config), config
    if loader == "soundstorm":
        from segue.soundstorm.train import SoundStormRunConfig, SoundStormTask

        config = apply_overrides(SoundStormRunConfig(), quick)
        config.data.semantic_shards = str(corpus / "shards" / "semantic")
        config.data.acoustic_shards = str(corpus / "shards" / "acoustic")
        return SoundStormTask(config), config
    from segue.lm.train import LMTask, run_config_for

    stage = loader.removeprefix("lm_")
    config = apply_overrides(run_config_for(stage, "tiny"), quick)
    if stage in ("semantic", "coarse"):
        config.data.semantic_shards = str(corpus / "shards" / "semantic")
    if stage in ("coarse", "fine"):
        config.data.acoustic_shards = str(corpus / "shards" / "acoustic")
    return LMTask(config), config


def measure(loader: str, corpus: Path, batches: int) -> dict[str, float]:
    """In this process: build `loader`'s training batches as the engine does, draw `batches`."""
    import torch

    from segue.train.data import build_data
    from segue.train.distributed import DistInfo

    task, config = task_for(loader, corpus)
    before = _rss_mib()
    start = time.perf_counter()
    stream, _, _ = build_data(task, config.train, DistInfo(), torch.device("cpu"))
    items = len(stream.dataset)
    for _ in range(batches):
        stream.next()
    stream.close()
    return {
        "before_mib": before,
        "peak_mib": _peak_mib(),
        "items": items,
        "seconds": time.perf_counter() - start,
    }


def run_child(loader: str, corpus: Path, batches: int) -> dict[str, float]:
    """`measure` in a fresh process (its own peak RSS)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, __file__, "--child", loader, str(corpus), "--batches", str(batches)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{loader} on {corpus}: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def build(root: Path, utterances: int, files: int) -> Path:
    if not (root / "shards" / "acoustic" / "index.jsonl").is_file():
        make_shards(root / "shards", utterances)
    if not (root / "audio" / "manifest.jsonl").is_file():
        make_audio(root / "audio", files)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=2000, help="token corpus at 1x")
    parser.add_argument("--files", type=int, default=100, help="audio files at 1x")
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--workdir", type=Path, help="keep the corpora here (reused if there)")
    parser.add_argument(
        "--bound", type=float, default=2048, help="largest growth allowed, B per added item"
    )
    parser.add_argument("--only", nargs="+", choices=LOADERS, default=list(LOADERS))
    parser.add_argument("--child", nargs=2, metavar=("LOADER", "CORPUS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child[0], Path(args.child[1]), args.batches)))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        start = time.perf_counter()
        small = build(work / "1x", args.utterances, args.files)
        scale = args.scale
        large = build(work / f"{scale}x", args.utterances * scale, args.files * scale)
        print(f"corpora in {work} ({time.perf_counter() - start:.0f} s): {args.utterances} and "
              f"{args.utterances * args.scale} token utterances of {SECONDS:g} s, {args.files} "
              f"and {args.files * args.scale} audio files of {FILE_SECONDS:g} s")  # fmt: skip
        print(f"{'loader':<12} {'items 1x':>9} {'items':>9} {'before 1x':>10} {'peak 1x':>9} "
              f"{'before':>9} {'peak':>9} {'ratio':>6} {'B/added':>8}")  # fmt: skip
        worst = 0.0
        for loader in args.only:
            a, b = run_child(loader, small, args.batches), run_child(loader, large, args.batches)
            added = (args.files if loader == "codec" else args.utterances) * (scale - 1)
            growth = (b["peak_mib"] - a["peak_mib"]) * 2**20 / added
            worst = max(worst, growth)
            print(f"{loader:<12} {a['items']:>9} {b['items']:>9} {a['before_mib']:>10.1f} "
                  f"{a['peak_mib']:>9.1f} {b['before_mib']:>9.1f} {b['peak_mib']:>9.1f} "
                  f"{b['peak_mib'] / a['peak_mib']:>6.3f} {growth:>8.0f}")  # fmt: skip
        print(f"(MiB; items: the training set's; B/added: peak growth per utterance or file "
              f"added; {args.batches} batches per loader)")  # fmt: skip
        verdict = "streams" if worst <= args.bound else "HOLDS THE CORPUS"
        print(f"largest growth at {scale}x the corpus: {worst:.0f} B per added utterance or file "
              f"(bound {args.bound:g}): {verdict}")  # fmt: skip
        return 0 if worst <= args.bound else 1


if __name__ == "__main__":
    sys.exit(main())
