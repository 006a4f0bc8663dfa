#!/usr/bin/env bash
# Creates .bench/audiolm-venv: audiolm-pytorch==2.4.0 (PyPI) on torch 2.13.0 (CPU), for
# bench/codec_vs_audiolm_pytorch.py. Idempotent: an existing, working venv is left as it is.
#
#   bash bench/setup_audiolm_pytorch.sh
#
# Workarounds (see the team's shared/README.md, beside this repository, "The anchor we must beat"):
#  1. torch is installed FIRST and alone, so audiolm-pytorch's dependencies resolve against it;
#  2. PyPI's torchaudio is a CUDA build for another torch and fails to import (libc10_cuda.so):
#     its compiled libraries are moved aside to torchaudio/lib/_disabled/, which leaves the
#     pure-Python parts that audiolm-pytorch uses importable;
#  3. fairseq does not import on Python 3.11: bench/_stubs/fairseq is put on sys.path by the
#     worker (not installed here).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.bench/audiolm-venv
PY=${PYTHON:-python3}
pip_install() {  # pip, without the noise about this machine's local index folders
    "$VENV/bin/pip" install --quiet "$@" 2> >(grep -v 'is ignored: it is neither' >&2)
}

if [[ ! -x $VENV/bin/python ]]; then
    echo "creating $VENV"
    mkdir -p .bench
    "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    echo "installing torch==2.13.0"
    pip_install torch==2.13.0
fi
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys
sys.exit(m.version('audiolm-pytorch') != '2.4.0')" 2>/dev/null; then
    echo "installing audiolm-pytorch==2.4.0"
    pip_install audiolm-pytorch==2.4.0
fi

LIB=$("$VENV/bin/python" - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("torchaudio")
print(pathlib.Path(spec.origin).parent / "lib" if spec else "")
PY
)
if [[ -n $LIB && -d $LIB ]] && compgen -G "$LIB/*.so" > /dev/null; then
    echo "moving $LIB/*.so aside (torchaudio workaround)"
    mkdir -p "$LIB/_disabled"
    mv "$LIB"/*.so "$LIB/_disabled/"
fi

PYTHONPATH=bench/_stubs "$VENV/bin/python" -c \
    "import audiolm_pytorch, torch; print('audiolm-pytorch ready, torch', torch.__version__)"
