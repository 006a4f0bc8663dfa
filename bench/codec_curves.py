"""Validation curves of codec runs side by side: PESQ-WB, STOI, SI-SNR and mel distance per step.

The codec trainer logs `valid/*` every `train.valid_every` steps (the same fixed crops for every
run of one manifest); this prints them as one markdown table per metric (a row per step, a
column per run) and, with --png, draws them.

    .venv/bin/python bench/codec_curves.py runs/codec17/conv runs/codec17/istft --png curves.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

METRICS = ("pesq_wb", "stoi", "si_snr", "mel_distance")


def read_curves(run: Path) -> dict[str, dict[int, float]]:
    """{metric: {step: value}} of a run's `valid/` scalars (the last value logged per step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = run / "tensorboard"
    if not folder.is_dir():
        raise SystemExit(f"{run}: no tensorboard/ folder (not a training run?)")
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    curves: dict[str, dict[int, float]] = {}
    for tag in events.Tags()["scalars"]:
        if tag.startswith("valid/"):
            curves[tag[len("valid/"):]] = {e.step: e.value for e in events.Scalars(tag)}
    return curves


def markdown(runs: dict[str, dict[str, dict[int, float]]], metric: str) -> str:
    steps = sorted({s for curves in runs.values() for s in curves.get(metric, {})})
    lines = [f"| step | {' | '.join(runs)} |", "| --- |" + " --- |" * len(runs)]
    for step in steps:
        cells = []
        for curves in runs.values():
            value = curves.get(metric, {}).get(step)
            cells.append("" if value is None else f"{value:.3f}")
        lines.append(f"| {step} | {' | '.join(cells)} |")
    return "\n".join(lines)


def draw(runs: dict[str, dict[str, dict[int, float]]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 7))
    FigureCanvasAgg(figure)
    for index, metric in enumerate(METRICS):
        axes = figure.add_subplot(2, 2, index + 1)
        for name, curves in runs.items():
            points = sorted(curves.get(metric, {}).items())
            if points:
                axes.plot(*zip(*points), marker=".", label=name)
        axes.set_title(metric)
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="codec run folders")
    parser.add_argument("--png", type=Path, help="also draw the curves there")
    args = parser.parse_args()
    runs = {run.name: read_curves(run) for run in args.runs}
    for metric in METRICS:
        print(f"\n{metric}\n\n{markdown(runs, metric)}")
    if args.png:
        draw(runs, args.png)
        print(f"\n-> {args.png}")


if __name__ == "__main__":
    main()
