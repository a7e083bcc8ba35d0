# Sourced by install.sh, test.sh and demo.sh: the interpreter they use.
# PYTHON (an interpreter path) overrides; otherwise the project venv $EDGENSD_VENV (default ./.venv).
EDGENSD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EDGENSD_VENV=${EDGENSD_VENV:-$EDGENSD_ROOT/.venv}
if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
else
  PY=$EDGENSD_VENV/bin/python
fi
