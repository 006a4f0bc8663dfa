#!/usr/bin/env bash
# One short GPU lease (~3 min): the speed issue's GPU row. Each stage's sampling tokens/s at
# batch 1 and 64 (random `tiny` weights), the acoustic stage AR vs SoundStorm, and a whole 10 s
# continuation with the shipped bundle on both paths (process wall time, start-up included).
#
# Run through the `device` tool from the repo root; nothing needs to be carried (no audio file
# library is used). Dry run on the CPU: DEVICE=cpu OUT=/tmp/speed BATCHES="1 4" SECONDS_=2
# PYTHON=.venv/bin/python bash scripts/gpu/speed.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}
DEVICE=${DEVICE:-cuda}
BATCHES=${BATCHES:-1 64}
SECONDS_=${SECONDS_:-10}
PYTHON=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# shellcheck disable=SC2086  # BATCHES is a list
"$PYTHON" bench/lm_speed.py --device "$DEVICE" --batches $BATCHES --seconds "$SECONDS_" \
  | tee "$OUT/lm_speed.txt"
"$PYTHON" bench/lm_speed.py --device "$DEVICE" --batches $BATCHES --seconds "$SECONDS_" \
  --preset audiolm | tee "$OUT/lm_speed_audiolm.txt"
"$PYTHON" bench/soundstorm_vs_ar.py --device "$DEVICE" --seconds "$SECONDS_" --repeats 3 \
  --steps-first 16 8 | tee "$OUT/soundstorm_vs_ar.txt"
# A whole 10 s continuation as a fresh process (start-up included), each stage timed. The prompt
# is read with the standard library's `wave`: the GPU image has no soundfile, and its wheels
# would push the working tree over the device tool's 64 MiB (segue runs on tensors without it).
for path in ar soundstorm; do
  for run in 1 2; do  # the first pays CUDA's start-up and kernel caches
    "$PYTHON" - "$DEVICE" "$path" "$SECONDS_" <<'PY' | tee -a "$OUT/continue.txt" || exit 1
import sys, time
start = time.perf_counter()
import torch
device, path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
import wave
import numpy as np
from segue import PACKAGED_BUNDLE
from segue.pipeline import AudioLM
imported = time.perf_counter()
with wave.open("segue/assets/prompt-speech.wav") as f:
    prompt = np.frombuffer(f.readframes(f.getnframes()), np.int16).astype(np.float32) / 32768
model = AudioLM.from_pretrained(PACKAGED_BUNDLE, device=device)
loaded = time.perf_counter()
out = model.continue_(prompt, seconds, seed=0, progress=False, acoustic=path)
if device.startswith("cuda"):
    torch.cuda.synchronize()
done = time.perf_counter()
print(f"continue {seconds:g} s, {path}, {device}: imports {imported - start:.2f} s, load "
      f"{loaded - imported:.2f} s, generate {done - loaded:.2f} s, all {done - start:.2f} s "
      f"(+ interpreter start); output {tuple(out.shape)}")
PY
  done
done
