#!/usr/bin/env bash
# Install what is needed, then run the demo on the model and utterances that ship with the package.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec edgensd demo "$@"
