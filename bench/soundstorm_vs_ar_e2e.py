"""End-to-end quality of the two acoustic paths of one bundle, AR (coarse + fine LMs) vs
SoundStorm, in one run: same prompts, same files, same seeds, same encoders.

    .venv/bin/python bench/soundstorm_vs_ar_e2e.py --manifest corpora/speech/manifest.jsonl \
        [--model segue/assets/speech-tiny] [--prompts 8] [--resynth 6] [--seed 0] [--out DIR]

Prints speaker similarity of continuations to their prompts, verification, and WER/CER of
resynthesis from ground-truth semantic tokens for each path, with SoundStorm's relative to AR's
(issue 8 asks for within 10 %), and the wall time of each evaluation. With --out, each path's
listening page and report go to DIR/ar and DIR/soundstorm.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from segue.eval.asr import Transcriber
from segue.eval.e2e import E2EReport, E2ESettings, evaluate_e2e, training_voices
from segue.eval.speaker import SpeakerEncoder
from segue.pipeline import AudioLM

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "segue" / "assets" / "speech-tiny"
PATHS = ("ar", "soundstorm")


def headline(report: E2EReport) -> dict[str, float | None]:
    cont, res = report.continuation, report.resynthesis
    return {
        "speaker similarity": cont.similarity.mean if cont else None,
        "verification": cont.verification if cont else None,
        "WER, resynthesis": res.wer.get("semantic") if res else None,
        "CER, resynthesis": res.cer.get("semantic") if res else None,
        "seconds": report.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--split", default="test")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--resynth", type=int, default=6)
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = AudioLM.from_pretrained(args.model)
    if model.soundstorm is None:
        raise SystemExit(f"{args.model}: this bundle has no SoundStorm part")
    speaker, transcriber = SpeakerEncoder(), Transcriber(threads=args.threads)
    rows, voices = {}, None
    for path in PATHS:
        settings = E2ESettings(
            n_prompts=args.prompts,
            prompt_seconds=args.prompt_seconds,
            continuation_seconds=args.seconds,
            n_resynth=args.resynth,
            seed=args.seed,
            acoustic=path,
        )
        if voices is None:  # the training voices' centroids, made once for both paths
            voices = training_voices(args.manifest, settings, speaker, progress=False)
        report = evaluate_e2e(
            model,
            args.manifest,
            settings,
            split=args.split,
            out_dir=None if args.out is None else args.out / path,
            progress=False,
            speaker=speaker,
            transcriber=transcriber,
            voices=voices,
        )
        rows[path] = headline(report)
    print(f"{args.model}, split {args.split}, {args.prompts} prompts, {args.resynth} files, "
          f"seed {args.seed}")  # fmt: skip
    print(f"{'':22s} {'AR':>9s} {'SoundStorm':>11s} {'SoundStorm / AR':>16s}")
    for key in rows["ar"]:
        a, b = rows["ar"][key], rows["soundstorm"][key]
        ratio = f"{b / a:.3f}" if a and b is not None else "n/a"
        cells = [f"{v:.3f}" if v is not None else "n/a" for v in (a, b)]
        print(f"{key:22s} {cells[0]:>9s} {cells[1]:>11s} {ratio:>16s}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "comparison.json").write_text(json.dumps(rows, indent=1) + "\n")
        print(f"-> {args.out}/{{ar,soundstorm}}/index.html, comparison.json")


if __name__ == "__main__":
    main()
