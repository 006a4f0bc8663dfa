"""The acoustic stage's wall time: AR coarse + fine LMs vs one SoundStorm decode, random weights.

    .venv/bin/python bench/soundstorm_vs_ar.py [--seconds 10] [--threads 1] [--repeats 3]
        [--steps-first 16 8 4] [--device cpu|cuda]

Both get the same semantic tokens (25 Hz, 512 clusters) and produce every acoustic code of
`--seconds` of audio (8 levels x 1024 codes at 50 Hz, 3 coarse) at batch 1: the `tiny` coarse
and fine LM presets through `coarse_generate` + `fine_generate` (their own windows), vs the
`tiny` SoundStorm (`--steps-first` iterations for level 0, 16 by default, 1 for each finer
level: 23 forward passes). Several `--steps-first` values are timed in the same run, each
against the one AR time. Prints the best of `--repeats` runs of each and their ratio.
`--device cuda` times both on a GPU (each run ends with a CUDA synchronize).
"""

from __future__ import annotations

import argparse

import torch
from lm_speed import build, clock  # bench/lm_speed.py: the same random tiny stage LMs

from segue.lm.stages import coarse_generate, fine_generate
from segue.soundstorm import SoundStorm, soundstorm_preset
from segue.soundstorm import generate as soundstorm_generate


def best_of(repeats: int, run, device: torch.device) -> float:
    """The shortest of `repeats` wall times of run() (seconds)."""
    times = []
    for _ in range(repeats):
        start = clock(device)
        run()
        times.append(clock(device) - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps-first", type=int, nargs="+", default=[16])
    parser.add_argument("--semantic-vocab", type=int, default=512)
    parser.add_argument("--acoustic-vocab", type=int, default=1024)
    parser.add_argument("--n-coarse", type=int, default=3)
    parser.add_argument("--levels", type=int, default=8)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    coarse_lm, fine_lm = build("tiny", "coarse", args), build("tiny", "fine", args)
    n_semantic = round(args.seconds * coarse_lm.stage.semantic_rate)
    ratio = coarse_lm.layout.ratio
    storm = SoundStorm(
        soundstorm_preset(
            "tiny",
            n_levels=args.levels,
            codebook_size=args.acoustic_vocab,
            semantic_vocab=args.semantic_vocab,
            ratio=ratio,
            max_frames=max(500, ratio * n_semantic),
            steps_rest=1,
        )
    ).eval().to(device)
    coarse_lm.model.to(device)
    fine_lm.model.to(device)
    for name, model in (("coarse LM", coarse_lm.model), ("fine LM", fine_lm.model)):
        print(f"{name:10s} {model.num_params() / 1e6:5.2f} M params")
    print(f"SoundStorm {storm.num_params() / 1e6:5.2f} M params")
    semantic = torch.randint(0, args.semantic_vocab, (1, n_semantic), generator=torch.Generator())
    semantic = semantic.to(device)
    gen = torch.Generator(device=device).manual_seed(0)

    def ar() -> torch.Tensor:
        return fine_generate(
            fine_lm, coarse_generate(coarse_lm, semantic, generator=gen), generator=gen
        )

    def parallel(steps: int) -> torch.Tensor:
        levels = [steps] + [1] * (args.levels - 1)
        return soundstorm_generate(storm, semantic, steps_per_level=levels, generator=gen)

    with torch.inference_mode():
        assert ar().shape == parallel(1).shape == (1, args.levels, ratio * n_semantic)
        ar_time = best_of(args.repeats, ar, device)
        storm_times = {n: best_of(args.repeats, lambda n=n: parallel(n), device)
                       for n in args.steps_first}
    print(
        f"threads {torch.get_num_threads()}, {args.seconds:g} s of audio ({n_semantic} semantic "
        f"tokens, {args.levels} x {ratio * n_semantic} codes), best of {args.repeats}"
    )
    print(f"AR coarse + fine  {ar_time:7.2f} s")
    for steps, seconds in storm_times.items():
        passes = f"({steps} + {args.levels - 1} passes)"
        print(f"SoundStorm {passes:>18s} {seconds:7.2f} s  ratio AR / SoundStorm "
              f"{ar_time / seconds:.1f}x")


if __name__ == "__main__":
    main()
