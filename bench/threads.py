"""`segue continue` on a quiet and on a loaded machine: threads and OpenMP waiting.

    .venv/bin/python bench/threads.py [--seconds 10] [--repeats 3] [--acoustic ar]

Each variant runs the whole `segue continue` process (bundled model and prompt) `repeats` times
and reports the median wall time (after one untimed run that warms the file caches). "loaded"
runs it beside one busy process (a Python busy loop this script starts and stops), the load
the speed issue measured. Variants: 1 thread; 2 threads
with spinning OpenMP threads (OMP_WAIT_POLICY=ACTIVE, what libgomp's default amounts to for
back-to-back small ops); 2 threads with passive waiting; and the command's default (no
--threads, no OMP_WAIT_POLICY: what a user gets). Ratios are against 1 thread on the quiet
machine, measured in the same job. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {  # name: (--threads or None, OMP_WAIT_POLICY or None)
    "1 thread": (1, None),
    "2 threads, spinning": (2, "ACTIVE"),
    "2 threads, passive": (2, "PASSIVE"),
    "default": (None, None),
}


def run(command: list[str], policy: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--acoustic", default="ar", choices=["ar", "soundstorm"])
    args = parser.parse_args()
    rows: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        prompt = Path(__file__).resolve().parents[1] / "segue" / "assets" / "prompt-speech.wav"
        base = [sys.executable, "-m", "segue.cli", "continue", str(prompt),
                "--seconds", str(args.seconds),
                "--acoustic", args.acoustic, "--out", str(Path(tmp) / "c.wav")]
        run([*base, "--threads", "1"], None)  # untimed: file caches, the fused step's build
        for load in ("quiet", "loaded"):
            busy = None
            if load == "loaded":
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(1.0)
            try:
                for name, (threads, policy) in VARIANTS.items():
                    command = base + (["--threads", str(threads)] if threads else [])
                    times = [run(command, policy) for _ in range(args.repeats)]
                    rows[load, name] = statistics.median(times)
                    print(f"{load:6s} {name:22s} {rows[load, name]:6.2f} s", flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    reference = rows["quiet", "1 thread"]
    print(f"\n`segue continue --seconds {args.seconds:g} --acoustic {args.acoustic}`, "
          f"median of {args.repeats}; x = time / quiet 1-thread time ({reference:.2f} s)\n")
    print("| variant | quiet | x | one busy process beside | x |")
    print("| --- | --- | --- | --- | --- |")
    for name in VARIANTS:
        quiet, loaded = rows["quiet", name], rows["loaded", name]
        print(f"| {name} | {quiet:.2f} s | {quiet / reference:.2f} | {loaded:.2f} s | "
              f"{loaded / reference:.2f} |")


if __name__ == "__main__":
    main()
