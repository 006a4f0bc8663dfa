#!/usr/bin/env bash
# One GPU lease: codec recipe sweep at the CPU budget + a larger codec for the bundled model.
#
# Run through the `device` tool from the repo root, with `.device` (the speech corpus, train and
# valid splits, as Opus: scripts/gpu/pack_corpus.py corpora/speech .device/speech) and `.whl`
# (soundfile, cffi, pycparser, soxr wheels; see ../.library/device/README.md) carried. Every run stops on
# its own timeout with a checkpoint (SIGTERM), so a slow machine still returns comparable runs.
#   SWEEP_SECONDS  wall-clock cap of each sweep run      (default 360)
#   BUNDLE_SECONDS wall-clock cap of the bundle codec    (default 420)
set -uo pipefail
SWEEP_SECONDS=${SWEEP_SECONDS:-360}
BUNDLE_SECONDS=${BUNDLE_SECONDS:-420}
OUT=${OUT:-/tmp/out}
python3 -c "import soundfile, soxr" 2>/dev/null || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

# Opus -> WAV once, in parallel (crop reads then seek cheaply).
python3 scripts/gpu/unpack_corpus.py "${CORPUS:-.device/speech}" /tmp/speech || exit 1

M=/tmp/speech/manifest.jsonl
COMMON="train.precision=fp32 train.progress=false train.num_workers=2 train.tensorboard=false"
sets() { for o in "$@"; do printf -- '--set %s ' "$o"; done; }  # a=b c=d -> --set a=b --set c=d
sweep() {  # name, overrides...
  local name=$1; shift
  timeout -s TERM "$SWEEP_SECONDS" python3 -m segue.cli codec train $M --preset tiny \
    --out /tmp/runs/$name --max-steps 3000 \
    $(sets $COMMON train.keep_last=20 train.valid_every=500 "$@") > /tmp/runs/$name.log 2>&1 &
}
mkdir -p /tmp/runs
# The bundled codec: same token layout as tiny (8 x 1024 at 50 Hz, 3 coarse), wider, bigger batches.
bundle() {  # name, overrides...
  local name=$1; shift
  timeout -s TERM "$BUNDLE_SECONDS" python3 -m segue.cli codec train $M --preset tiny \
  --out /tmp/runs/$name --max-steps 200000 \
  $(sets $COMMON train.batch_size=${BUNDLE_BATCH:-32} data.crop_seconds=1.0 model.channels=32 model.latent_dim=128 \
  model.discriminator.period_channels=16 model.discriminator.stft_channels=16 \
  model.loss.discriminator_warmup_steps=2000 train.checkpoint_every=500 train.keep_last=2 \
  train.valid_every=2000 "$@") > /tmp/runs/$name.log 2>&1 &
}
if [ -n "${VARIANTS:-}" ]; then source "$VARIANTS"; else
# The first sweep (2026-11-26), when `tiny` meant factorized codes and no waveform term.
F="model.quantizer=factorized model.loss.waveform_weight=0"
E="model.quantizer=ema model.loss.residual_weight=0 model.loss.waveform_weight=0"
sweep base $F
sweep nodisc $F model.loss.discriminator_warmup_steps=100000000
sweep drop02 $F model.quantizer_dropout=0.2
sweep lr1e3 $F optim.lr=0.001
sweep c16 $F model.channels=16
sweep ema $E
sweep ema_nodisc $E model.loss.discriminator_warmup_steps=100000000
bundle bundle_fact $F
bundle bundle_ema $E
fi
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
wait
for f in /tmp/runs/*.log; do echo "== $f"; grep -E "^\[(valid|train [0-9]*000\])" "$f" | cut -c1-160 | tail -6; tail -1 "$f"; done
OMP_NUM_THREADS=1 python3 scripts/gpu/export_eval.py /tmp/runs /tmp/export $M 2>&1 | grep -v "codec eval"
cp /tmp/runs/*.log /tmp/export/
tar cf - -C /tmp export | split -b 15m - "$OUT/export.tar.part-"
ls -la "$OUT"
