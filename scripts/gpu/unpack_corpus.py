"""Decode a corpus packed by `pack_corpus.py` (Opus) back to 16-bit WAV, on a GPU machine.

    python3 scripts/gpu/unpack_corpus.py .device/speech /tmp/speech

Crop reads then seek cheaply. The manifest is rewritten beside the WAVs with the decoded
durations; files already decoded are kept.
"""

import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import soundfile as sf


def convert(job: tuple[str, str, dict]) -> dict:
    source, target, row = job
    stem = os.path.splitext(row["path"])[0]
    wav = os.path.join(target, stem + ".wav")
    if not os.path.exists(wav):
        os.makedirs(os.path.dirname(wav), exist_ok=True)
        audio, rate = sf.read(os.path.join(source, stem + ".ogg"), dtype="float32")
        sf.write(wav + ".tmp.wav", audio, rate, subtype="PCM_16")
        os.replace(wav + ".tmp.wav", wav)
    info = sf.info(wav)
    return dict(row, path=stem + ".wav", duration=info.frames / info.samplerate)


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    with open(os.path.join(source, "manifest.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        rows = list(pool.map(convert, [(source, target, r) for r in rows], chunksize=8))
    with open(os.path.join(target, "manifest.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    print(len(rows), "files,", round(sum(r["duration"] for r in rows) / 3600, 2), "h ->", target)


if __name__ == "__main__":
    main()
