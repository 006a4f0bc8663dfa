"""Where the time of one `segue continue` process goes: imports, loading, each stage, writing.

    .venv/bin/python bench/startup.py [--seconds 10] [--threads 1] [--acoustic ar] [--repeats 3]
        [--model BUNDLE] [--baseline BUNDLE] [--baseline-code CHECKOUT]

Runs, each as a fresh process, `repeats` times (the median is printed): `import torch` alone
(the floor every command pays), `segue continue --help` (parsing a command), the whole
`segue continue` on the bundled prompt, and a script doing the same in-process with a clock
around each part. The table gives each part's seconds and its share of the whole process.
--model picks the bundle (default: the shipped one); --baseline times another bundle's whole
process in the same repeats, interleaved, and prints the ratio (e.g. a new bundle against the
shipped one before it replaces it); --baseline-code times the same command run by another
checkout of segue (e.g. `git worktree add /tmp/base COMMIT`: its code and its shipped bundle),
interleaved the same way: a speed change measured against the code before it, in one job.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = ROOT / "segue" / "assets" / "prompt-speech.wav"
BUNDLE = ROOT / "segue" / "assets" / "speech-tiny"  # what `segue continue` uses by default

# Runs in a fresh process: times each part of a continuation, printing them as JSON.
INSIDE = """
import json, sys, time
start = time.perf_counter()
marks = {{}}
import torch
torch.set_num_threads({threads})
marks["import torch"] = time.perf_counter()
import segue.pipeline as pipeline
from segue import audio as audio_io
marks["import segue"] = time.perf_counter()
stages, last = {{}}, [None, None]
class Timed(pipeline._Stages):
    def __call__(self, name):
        now = time.perf_counter()
        if last[0] is not None:
            stages[last[0]] = now - last[1]
        last[:] = [name, now]
        super().__call__(name)
    def __exit__(self, *exc):
        stages[last[0]] = time.perf_counter() - last[1]
        super().__exit__(*exc)
pipeline._Stages = Timed
model = pipeline.AudioLM.from_pretrained({model!r})
marks["load the bundle"] = time.perf_counter()
prompt = audio_io.load({prompt!r}, model.sample_rate)
out = model.continue_(prompt, {seconds}, seed=0, progress=True, acoustic={acoustic!r})
marks["generate"] = time.perf_counter()
audio_io.save({out!r}, out[0].numpy(), model.sample_rate)
marks["write"] = time.perf_counter()
parts, previous = {{}}, start
for name, t in marks.items():
    parts[name] = t - previous
    previous = t
print(json.dumps({{"parts": parts, "stages": stages}}))
"""


def timed(command: list[str], cwd: str | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=cwd)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--acoustic", default="ar", choices=["ar", "soundstorm"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=str(BUNDLE), help="bundle (default: the shipped one)")
    parser.add_argument("--baseline", help="another bundle, timed in the same repeats")
    parser.add_argument("--baseline-code", type=Path,
                        help="another checkout of segue, its whole process timed in the same "
                             "repeats (`python -m segue.cli` run from there imports its code)")
    args = parser.parse_args()
    if args.baseline_code and not (args.baseline_code / "segue" / "cli.py").is_file():
        parser.error(f"--baseline-code {args.baseline_code} is not a checkout of segue")
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "c.wav")
        cli = [python, "-m", "segue.cli"]
        whole = [*cli, "continue", str(PROMPT), "--seconds", str(args.seconds), "--out", out,
                 "--threads", str(args.threads), "--quiet", "--seed", "0",
                 "--acoustic", args.acoustic]
        inside = INSIDE.format(threads=args.threads, prompt=str(PROMPT), seconds=args.seconds,
                               acoustic=args.acoustic, out=out, model=args.model)
        runs: dict[str, list[float]] = {"import torch": [], "parse (continue --help)": [],
                                        "whole process": []}
        baseline: list[float] = []
        old_code: list[float] = []
        splits = []
        for _ in range(args.repeats):
            runs["import torch"].append(timed([python, "-c", "import torch"]))
            runs["parse (continue --help)"].append(timed([*cli, "continue", "--help"]))
            runs["whole process"].append(timed([*whole, "--model", args.model]))
            if args.baseline:
                baseline.append(timed([*whole, "--model", args.baseline]))
            if args.baseline_code:  # its own shipped bundle, unless --model names one
                model = [] if args.model == str(BUNDLE) else ["--model", args.model]
                old_code.append(timed([*whole, *model], cwd=args.baseline_code))
            done = subprocess.run([python, "-c", inside], check=True, capture_output=True,
                                  text=True)
            splits.append(json.loads(done.stdout.strip().splitlines()[-1]))
    total = statistics.median(runs["whole process"])
    print(f"segue continue {args.seconds:g} s, {args.acoustic}, {args.threads} thread(s), "
          f"median of {args.repeats} fresh processes each; bundle {args.model}")
    print(f"{'part':34s} {'seconds':>8s} {'share':>7s}")

    def row(name: str, seconds: float) -> None:
        print(f"{name:34s} {seconds:8.2f} {seconds / total:7.1%}")

    for name, values in runs.items():
        row(name, statistics.median(values))
    print("in-process split:")
    for name in splits[0]["parts"]:
        row(f"  {name}", statistics.median(s["parts"][name] for s in splits))
    for name in splits[0]["stages"]:
        row(f"    stage {name}", statistics.median(s["stages"][name] for s in splits))
    if baseline:
        base = statistics.median(baseline)
        print(f"baseline {args.baseline}: whole process {base:.2f} s; "
              f"this bundle takes {total / base:.2f}x its time")
    if old_code:
        base = statistics.median(old_code)
        print(f"baseline code {args.baseline_code}: whole process {base:.2f} s; "
              f"this code takes {total / base:.2f}x its time ({base / total:.2f}x faster)")


if __name__ == "__main__":
    main()
