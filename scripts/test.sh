#!/usr/bin/env bash
# Install everything (bash scripts/install.sh all), then run the whole test suite. This is what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh
bash scripts/install.sh all
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec "$PY" -m pytest -q "$@"
