#!/usr/bin/env bash
# One GPU lease: HuBERT iteration 2 with and without each content-invariance ingredient, side by
# side on one GPU, then each run's tokenizer scored by `segue semantic eval` on TTS and real voices.
#
# Run through the `device` tool from the repo root with `.device` and `.whl` carried:
#   .device/speech-par, .device/real: `segue data make-speech --parallel-train 3` and
#       `segue data make-real-speech` corpora, packed with scripts/gpu/pack_corpus.py --all
#       (train, valid and test splits, Opus; keep the two under the 64 MiB upload, e.g. 2 h of
#       speech-par and the real corpus's `--hours 2`)
#   .whl: soundfile/cffi/pycparser/soxr wheels (see ../.library/device/README.md)
#   .device/teacher: a copy of segue/assets/speech-tiny/semantic (12 MB), since the working
#       tree must travel without segue/assets/speech-tiny (63 MB) to stay under 64 MiB
# The teacher is that tokenizer's model (the bundle's iteration 1, layer 4), re-clustered at
# K=500 on the mixture. Dry run on a CPU (2026-12-06, 80 files a part, 3 steps each): every
# stage ran through to the evaluation tables. Runs stop at STEPS or on their wall-clock cap (SIGTERM:
# they checkpoint); eval JSONs, logs and the tokenizers come back under $OUT.
#   TRAIN_SECONDS  wall-clock cap of every run   (default 360)
#   STEPS          max steps                      (default 8000)
#   PRESET         semantic preset                (default tiny; base for a long lease)
#   BATCH          crops per step                 (default 32)
#   EXTRA          more key=value overrides for every run (a CPU dry run: train.batch_size=2 ...)
set -uo pipefail
TRAIN_SECONDS=${TRAIN_SECONDS:-360}
STEPS=${STEPS:-8000}
PRESET=${PRESET:-tiny}
BATCH=${BATCH:-32}
OUT=${OUT:-/tmp/out}
RUNS=${RUNS:-/tmp/runs}
DATA=${DATA:-/tmp/data}
python3 -c "import soundfile, soxr" 2>/dev/null || python3 -m pip install -q --no-index --no-deps \
  --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
mkdir -p "$RUNS" "$OUT" "$DATA"
segue() { python3 -m segue.cli "$@"; }

for part in speech-par real; do
  python3 scripts/gpu/unpack_corpus.py ".device/$part" "$DATA/$part" || exit 1
  cp ".device/$part/manifest.splits.json" "$DATA/$part/" 2>/dev/null
done
M=$DATA/mix/manifest.jsonl
segue data mix speech="$DATA/speech-par/manifest.jsonl:0.5" real="$DATA/real/manifest.jsonl:0.5" \
  --out "$M" || exit 1
segue semantic fit-kmeans "$M" --model "${TEACHER:-.device/teacher}" --layer 4 --k 500 \
  --max-files 400 --out "$RUNS/targets" || exit 1

sets() { for o in "$@"; do printf -- '--set %s ' "$o"; done; }  # a=b c=d -> --set a=b --set c=d
COMMON="train.progress=false train.tensorboard=false train.batch_size=$BATCH train.num_workers=2
  train.checkpoint_every=500 train.valid_every=1000 optim.warmup_steps=500 ${EXTRA:-}"
run() {  # name, overrides...
  local name=$1; shift
  timeout -s TERM "$TRAIN_SECONDS" python3 -m segue.cli semantic train "$M" --iteration 2 \
    --teacher "$RUNS/targets" --k 500 --preset "$PRESET" --out "$RUNS/$name" \
    --max-steps "$STEPS" $(sets $COMMON "$@") > "$RUNS/$name.log" 2>&1 &
}
PAIRS="invariance.pairs=8 invariance.pair_seconds=6"
run plain
run perturb invariance.perturb=0.5
run pairs $PAIRS
run both invariance.perturb=0.5 $PAIRS
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
wait

# K=250 on each run's tokenizer layer, then one eval per held-out set (all runs side by side).
models=()
for name in plain perturb pairs both; do
  [ -d "$RUNS/$name/checkpoints" ] || continue
  segue semantic fit-kmeans "$M" --model "$RUNS/$name" --k 250 --max-files 1000 \
    --out "$OUT/tokenizers/$name-k250" && models+=(--model "$name=$OUT/tokenizers/$name-k250")
done
for part in speech-par real; do
  segue semantic eval "$DATA/$part/manifest.jsonl" "${models[@]}" --mfcc-k 250 \
    --split test --json "$OUT/eval-$part.json" | tee "$OUT/eval-$part.txt"
done
for f in "$RUNS"/*.log; do echo "== $f"; grep -E "^\[valid" "$f" | cut -c1-200 | tail -3; done
cp "$RUNS"/*.log "$OUT/"
ls -la "$OUT"
