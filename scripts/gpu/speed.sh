#!/usr/bin/env bash
# One short GPU lease (~3 min): the speed issue's GPU row. Each stage's sampling tokens/s at
# batch 1 and 64 (random `tiny` weights), the acoustic stage AR vs SoundStorm, and a whole 10 s
# continuation with the shipped bundle on both paths (process wall time, start-up included).
#
# Run through the `device` tool from the repo root, with `.whl` carried where the machine lacks
# soundfile/soxr (see scripts/gpu/codec_sweep.sh). Dry run on the CPU: DEVICE=cpu OUT=/tmp/speed
# BATCHES="1 4" SECONDS_=2 bash scripts/gpu/speed.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}
DEVICE=${DEVICE:-cuda}
BATCHES=${BATCHES:-1 64}
SECONDS_=${SECONDS_:-10}
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import soundfile, soxr" 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
mkdir -p "$OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# shellcheck disable=SC2086  # BATCHES is a list
"$PYTHON" bench/lm_speed.py --device "$DEVICE" --batches $BATCHES --seconds "$SECONDS_" \
  | tee "$OUT/lm_speed.txt"
"$PYTHON" bench/lm_speed.py --device "$DEVICE" --batches $BATCHES --seconds "$SECONDS_" \
  --preset audiolm | tee "$OUT/lm_speed_audiolm.txt"
"$PYTHON" bench/soundstorm_vs_ar.py --device "$DEVICE" --seconds "$SECONDS_" --repeats 3 \
  --steps-first 16 8 | tee "$OUT/soundstorm_vs_ar.txt"
for path in ar soundstorm; do
  for run in 1 2; do  # the first pays CUDA's start-up and kernel caches
    start=$(date +%s.%N)
    "$PYTHON" -m segue.cli continue segue/assets/prompt-speech.wav --seconds "$SECONDS_" \
      --out "$OUT/continue-$path.wav" --device "$DEVICE" --acoustic "$path" --seed 0 --quiet \
      || exit 1
    took=$("$PYTHON" -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.2f}')" "$start")
    echo "continue $SECONDS_ s, $path, run $run: $took s" | tee -a "$OUT/continue.txt"
  done
done
