"""The built wheel carries everything: the mapped ``edgensd.export`` and ``edgensd.firmware_bridge``
packages, their subcommands, the compiled synthesizer and the shipped assets; and it imports on its own,
not through the editable install of the checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:  # a copy of the tracked tree, so the build writes nothing into the checkout
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "--disable-pip-version-check", "-w", str(tmp / "dist"), str(src)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    (whl,) = (tmp / "dist").glob("edgensd-*.whl")
    return whl


def test_wheel_holds_the_mapped_packages_and_assets(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("edgensd/export/__init__.py", "edgensd/export/stepgraph.py", "edgensd/export/commands/__init__.py",
              "edgensd/firmware_bridge/__init__.py", "edgensd/firmware_bridge/commands/__init__.py",
              "edgensd/runtime/backend.py", "edgensd/assets/demo/speech_model/model.pt", "edgensd/__main__.py",
              "edgensd/assets/demo/live/session.h5", "edgensd/assets/demo/live/bundle/manifest.json",
              "edgensd/assets/demo/live/bundle/decoder_int8.onnx", "edgensd/firmware_bridge/c/edbridge.c",
              "edgensd/firmware_bridge/c/edbridge.h", "edgensd/firmware_bridge/PROTOCOL.md",
              "edgensd/assets/cohort/default.json"):
        assert f in names, f
    assert any(n.startswith("edgensd/_csynth") and n.endswith(".so") for n in names)
    assert not any(n.startswith(("export/", "firmware_bridge/", "tests/")) for n in names)


def test_installed_wheel_imports_without_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                          "--target", str(target), str(wheel)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    code = (
        "import edgensd, edgensd.export, edgensd.firmware_bridge, edgensd.export.stepgraph, edgensd.csynth\n"
        "from edgensd.cli.main import build_parser\n"
        f"assert edgensd.__file__.startswith({str(target)!r}), edgensd.__file__\n"
        f"assert edgensd.export.__file__.startswith({str(target)!r}), edgensd.export.__file__\n"
        "help = build_parser().format_help()\n"
        "assert 'export' in help and 'demo' in help\n"
        "print('ok')\n"
    )
    env_path = str(target)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr
