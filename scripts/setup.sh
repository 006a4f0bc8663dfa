#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine (what the README's two commands run first):
#   1. Debian packages: TTS engines, FluidSynth + soundfonts, texts, a C compiler for the fused
#      decoding step (segue/lm/fused.py), ffmpeg for the G.722 files of the real-speech corpus
#      (segue/data/real_speech.py), headless Chromium and its WebDriver for the browser tests of
#      `segue serve` (tests/serve/test_browser.py) (only those missing);
#   2. a venv in .venv with the CPU build of torch installed FIRST and alone (a plain `torch`
#      requirement with no torch installed would pull a multi-GB CUDA build);
#   3. segue itself, editable, with its extras (all: serve and browser included) at the exact
#      versions of requirements/constraints.txt.
# Re-running it is fast: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TORCH_VERSION=2.13.0
RESEMBLYZER_VERSION=0.1.4
APT_PACKAGES=(
  espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
  fluidsynth fluid-soundfont-gm timgm6mb-soundfont fluidr3mono-gm-soundfont
  bible-kjv bible-kjv-text fortunes wamerican libsndfile1 gcc libc6-dev ffmpeg chromium
  chromium-driver
)

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  echo "setup: installing torch==$TORCH_VERSION (CPU)"
  .venv/bin/pip install -q --disable-pip-version-check "torch==$TORCH_VERSION"
fi
stamp=.venv/.segue-install-stamp
wanted=$( (cat pyproject.toml requirements/constraints.txt; echo "$RESEMBLYZER_VERSION") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "setup: installing segue and its pinned dependencies"
  .venv/bin/pip install -q --disable-pip-version-check -e ".[all]" -c requirements/constraints.txt
  # Speaker similarity (segue eval e2e): resemblyzer's own `webrtcvad` requirement fails to build
  # here; webrtcvad-wheels (in the eval extra) provides the module, so install it without deps.
  .venv/bin/pip install -q --disable-pip-version-check --no-deps "resemblyzer==$RESEMBLYZER_VERSION"
  echo "$wanted" > "$stamp"
fi
