"""After the codec sweep: export each run's codec (fp16, small to ship back) and evaluate it.

Sweep runs are compared at the newest checkpoint step they all reached (so a slower variant is
not judged on fewer steps); bundle runs at their newest checkpoint. Evaluation runs on CPU over
the first 24 valid files (held-out voices): mel distance, SI-SNR, STOI (PESQ when installed).
Usage: python export_eval.py RUNS_DIR EXPORT_DIR MANIFEST
"""

import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from segue.codec.model import Codec
from segue.codec.train import CodecRunConfig
from segue.config import from_dict
from segue.data.manifest import read_manifest
from segue.eval.codec_eval import evaluate_codec, format_report
from segue.train.checkpoint import list_checkpoints, load_checkpoint


def step_of(path: Path) -> int:
    return int(path.name.split("_")[-1])


def export_and_eval(job: tuple[str, str, str, str]) -> str:
    checkpoint_dir, out_dir, manifest_path, name = job
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(checkpoint_dir)
    codec = Codec(from_dict(CodecRunConfig, checkpoint.config).model)
    codec.load_state_dict(checkpoint.weights["codec"])
    codec.eval()
    report = evaluate_codec(
        codec,
        read_manifest(manifest_path, split="valid"),
        max_files=int(os.environ.get("EVAL_FILES", 24)),
    )
    step = step_of(Path(checkpoint_dir))
    codec.half().save_pretrained(out_dir)
    data = {**report.to_dict(), "step": step}
    (Path(out_dir) / "eval.json").write_text(json.dumps(data, indent=1))
    return f"== {name} @ step {step}\n{format_report(report)}"


def main() -> None:
    runs, export, manifest = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    found = {
        run.name: list_checkpoints(run / "checkpoints")
        for run in sorted(runs.iterdir())
        if run.is_dir()
    }
    found = {name: cps for name, cps in found.items() if cps}
    sweep = {n: c for n, c in found.items() if not n.startswith("bundle")}
    regular = [[cp for cp in cps if step_of(cp) % 250 == 0] for cps in sweep.values()]
    common = min((max(step_of(cp) for cp in cps) for cps in regular if cps), default=None)
    print("sweep runs compared at step", common)
    jobs = []
    for name, cps in found.items():
        if name in sweep and common is not None:
            cps = [cp for cp in cps if step_of(cp) == common] or cps
        jobs.append((str(cps[-1]), str(export / name), manifest, name))
    with ProcessPoolExecutor(len(jobs)) as pool:
        for text in pool.map(export_and_eval, jobs):
            print(text, flush=True)
    # Only the best bundle codec's weights travel back (the transfer is size-limited).
    bundles = sorted(
        (json.loads((export / n / "eval.json").read_text())["metrics"]["mel_distance"], n)
        for n in found
        if n.startswith("bundle")
    )
    for _, name in bundles[1:]:
        (export / name / "model.safetensors").unlink()
    if bundles:
        print("bundle codec kept:", bundles[0][1])


if __name__ == "__main__":
    main()
