#!/usr/bin/env bash
# The main job (README): set up if needed, then continue the bundled 3-second prompt (a voice held
# out of training) with the bundled model, writing the WAV and its spectrogram PNG.
#   bash scripts/demo.sh [OUT_DIR] [SECONDS]     (defaults: outputs/demo, 6)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
out=${1:-outputs/demo}
seconds=${2:-6}
mkdir -p "$out"
.venv/bin/segue continue segue/assets/prompt-speech.wav --seconds "$seconds" --seed 0 \
  --out "$out/continuation.wav" --plot
echo "demo: prompt segue/assets/prompt-speech.wav -> $out/continuation.wav, $out/continuation.png"
