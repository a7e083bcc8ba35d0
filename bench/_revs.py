"""Run a module as it was at another git revision, for side-by-side benchmarks (``--baseline-rev``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def source_at(rev: str, relpath: str) -> str:
    """Write ``relpath`` as of git revision ``rev`` to a temporary ``.py`` file; return its path (caller deletes)."""
    src = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{relpath}"], capture_output=True, text=True,
                         check=True).stdout
    fd, path = tempfile.mkstemp(prefix=f"{Path(relpath).stem}_{rev}_", suffix=".py")
    with os.fdopen(fd, "w") as f:
        f.write(src)
    return path


def import_file(path: str, name: str) -> ModuleType:
    """Import the Python file ``path`` as module ``name`` (registered in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is created
    spec.loader.exec_module(mod)
    return mod
