"""Pack a corpus's train and valid splits as Opus for a GPU lease (whose upload is 64 MiB).

    .venv/bin/python scripts/gpu/pack_corpus.py corpora/speech .device/speech [--all]

(`--all`: the test split too, for an evaluation on the machine.)

4 h of 16 kHz speech becomes about 50 MB (Opus, compression level 0.9, ~28 kbit/s; waveform
correlation with the original 0.996). `codec_sweep.sh` decodes it back to WAV on the machine.
Resumable: files already packed are skipped.
"""

import json
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor

import soundfile as sf


def pack(job: tuple[str, str, str]) -> None:
    source, target, relative = job
    out = os.path.join(target, os.path.splitext(relative)[0] + ".ogg")
    if os.path.exists(out):
        return
    os.makedirs(os.path.dirname(out), exist_ok=True)
    audio, rate = sf.read(os.path.join(source, relative), dtype="float32")
    sf.write(out + ".tmp", audio, rate, format="OGG", subtype="OPUS", compression_level=0.9)
    os.replace(out + ".tmp", out)


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    splits = ("train", "valid", "test") if "--all" in sys.argv[3:] else ("train", "valid")
    with open(os.path.join(source, "manifest.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    keep = [r for r in rows if r.get("split") in splits]
    os.makedirs(target, exist_ok=True)
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(pack, [(source, target, r["path"]) for r in keep], chunksize=16))
    with open(os.path.join(target, "manifest.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in keep)
    splits_file = os.path.join(source, "manifest.splits.json")
    if os.path.exists(splits_file):
        shutil.copy(splits_file, target)
    print(f"{len(keep)} files -> {target}")


if __name__ == "__main__":
    main()
