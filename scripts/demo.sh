#!/usr/bin/env bash
# Install what the demo needs (bash scripts/install.sh demo), then run `edgensd demo` on the model and audio
# that ship with the package. Arguments go to `edgensd demo` (e.g. --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh
bash scripts/install.sh demo
exec "$PY" -m edgensd demo "$@"
