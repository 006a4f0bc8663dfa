#!/usr/bin/env bash
# The test command (README and .ci/run): set up if needed, lint, then the default test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` for the long tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
.venv/bin/ruff check segue tests bench scripts
exec .venv/bin/pytest "$@"
