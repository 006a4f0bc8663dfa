#!/usr/bin/env bash
# The main job (README): set up if needed, then build a small multi-speaker speech corpus and print
# its statistics. (Replaced by "continue the bundled prompt" once the pipeline lands.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
out=${1:-runs/demo-speech}
.venv/bin/segue data make-speech --hours 0.05 --out "$out"
