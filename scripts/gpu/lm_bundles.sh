#!/usr/bin/env bash
# One GPU lease: the stage LMs and SoundStorm of the bundled models, speech and piano, side by side.
#
# Run through the `device` tool from the repo root with `.device/shards` and `.whl` carried:
#   .device/shards/{speech-semantic,speech-acoustic,piano-semantic,piano-acoustic}: token shards
#   made here (`segue semantic tokenize`, `segue codec tokenize` with the bundle's tokenizers),
#   .whl: soundfile/cffi/pycparser/soxr wheels (see ../.library/device/README.md).
# The shards were made with the tokenizers of segue/assets/speech-tiny (codec and semantic), so
# the parts fit that bundle's codec and semantic tokenizer. Each run stops at its step count or on its
# wall-clock cap (SIGTERM: it checkpoints); then the checkpoint with the lowest validation loss
# is kept and the LM parts of both bundles come back under $OUT, float16 (the tokenizers stay
# home: the working tree must travel without segue/assets/speech-tiny, for the 64 MiB limit).
#   TRAIN_SECONDS  wall-clock cap of every run     (default 400)
#   STEPS          max steps, speech runs          (default 4000)
#   PIANO_STEPS    max steps, piano runs (1 h)      (default 2000)
#   ONLY           regex: train only the runs whose name matches (e.g. 'coarse|fine')
#   EXTRA          more key=value overrides for every run (e.g. a CPU dry run's valid_batches)
set -uo pipefail
TRAIN_SECONDS=${TRAIN_SECONDS:-400}
STEPS=${STEPS:-4000}
PIANO_STEPS=${PIANO_STEPS:-2000}
EVERY=${EVERY:-250}
OUT=${OUT:-/tmp/out}
RUNS=${RUNS:-/tmp/runs}
SHARDS=${SHARDS:-.device/shards}
python3 -c "import soundfile, soxr" 2>/dev/null || python3 -m pip install -q --no-index --no-deps \
  --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
mkdir -p "$RUNS" "$OUT"

COMMON="train.progress=false train.tensorboard=false train.num_workers=1 train.batch_size=${BATCH:-32}
 train.ema_decay=0.999 train.checkpoint_every=$EVERY train.valid_every=$EVERY train.keep_last=40
 optim.warmup_steps=200 ${EXTRA:-}"
sets() { for o in "$@"; do printf -- '--set %s ' "$o"; done; }  # a=b c=d -> --set a=b --set c=d
launch() {  # name, steps, command words (up to --out is added)...
  local name=$1 steps=$2; shift 2
  [[ $name =~ ${ONLY:-.} ]] || return 0
  timeout -s TERM "$TRAIN_SECONDS" python3 -m segue.cli "$@" --out "$RUNS/$name" \
    --max-steps "$steps" $(sets $COMMON) > "$RUNS/$name.log" 2>&1 &
}
S=$SHARDS
launch speech-semantic "$STEPS" lm train $S/speech-semantic --stage semantic --preset tiny
launch speech-coarse "$STEPS" lm train $S/speech-semantic $S/speech-acoustic --stage coarse --preset tiny
launch speech-fine "$STEPS" lm train $S/speech-acoustic --stage fine --preset tiny
launch speech-soundstorm "$STEPS" soundstorm train $S/speech-semantic $S/speech-acoustic --preset tiny
launch piano-semantic "$PIANO_STEPS" lm train $S/piano-semantic --stage semantic --preset tiny
launch piano-coarse "$PIANO_STEPS" lm train $S/piano-semantic $S/piano-acoustic --stage coarse --preset tiny
launch piano-fine "$PIANO_STEPS" lm train $S/piano-acoustic --stage fine --preset tiny
launch piano-soundstorm "$PIANO_STEPS" soundstorm train $S/piano-semantic $S/piano-acoustic --preset tiny
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
wait

# Keep each run's checkpoint with the lowest validation loss (drop the later ones).
python3 - "$RUNS" <<'PY'
import re, shutil, sys
from pathlib import Path
for log in sorted(Path(sys.argv[1]).glob("*.log")):
    run = log.with_suffix("")
    valid = [(float(loss), int(step)) for step, loss in
             re.findall(r"^\[valid (\d+)\].*?\bloss ([0-9.]+)", log.read_text(), re.M)]
    if not valid or not (run / "checkpoints").is_dir():
        print(f"{run.name}: no validation / checkpoint"); continue
    loss, step = min(valid)
    for ckpt in (run / "checkpoints").glob("step_*"):
        if int(ckpt.name.split("_")[1]) > step:
            shutil.rmtree(ckpt)
    (run / "checkpoints" / "latest").unlink(missing_ok=True)
    print(f"{run.name}: best valid loss {loss:.4f} at step {step} (last {valid[-1][1]}: {valid[-1][0]:.4f})")
PY

# The LM parts of both bundles, float16, in the bundle's folder names; the tokenizers are added
# where the bundle is assembled (`segue bundle --codec ... --semantic ... --semantic-lm DIR ...`).
mkdir -p /tmp/export && cp $RUNS/*.log /tmp/export/
python3 - "$RUNS" /tmp/export <<'PY'
import sys
from pathlib import Path
from segue.lm.stages import load_lm
from segue.bundle import store_half
from segue.soundstorm import load_soundstorm
runs, out = Path(sys.argv[1]), Path(sys.argv[2])
for corpus in ("speech", "piano"):
    for part, run, load in (("semantic_lm", "semantic", load_lm), ("coarse_lm", "coarse", load_lm),
                            ("fine_lm", "fine", load_lm), ("soundstorm", "soundstorm", load_soundstorm)):
        try:
            model = load(runs / f"{corpus}-{run}")
        except Exception as error:
            print(f"{corpus}-{run}: not exported ({type(error).__name__}: {error})"); continue
        model.save_pretrained(out / f"{corpus}-tiny" / part)
        store_half(out / f"{corpus}-tiny" / part)
PY
du -sh /tmp/export/*
tar cf - -C /tmp export | split -b 15m - "$OUT/export.tar.part-"
ls -la "$OUT"
