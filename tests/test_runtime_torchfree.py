"""The runtime is torch-free: a whole ``edgensd decode`` runs in a Python where ``import torch`` fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from export_setup import edge_bundle

BLOCKER = textwrap.dedent('''
    import sys

    class _NoTorch:
        """Meta-path finder that refuses torch, as on a device without it."""

        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is blocked in this test (import of {name!r})")
            return None

    sys.meta_path.insert(0, _NoTorch())
''')


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return edge_bundle(tmp_path_factory)


def _run(tmp_path, code_or_args, module=False):
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", *code_or_args] if module else [sys.executable, "-c", code_or_args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_blocker_blocks_torch(tmp_path):
    r = _run(tmp_path, "import torch")
    assert r.returncode != 0 and "torch is blocked in this test" in r.stderr


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_decode_runs_without_torch(setup, tmp_path, precision):
    out = tmp_path / "dec"
    r = _run(tmp_path, ["edgensd.cli.main", "decode", "-q", "--bundle", str(setup / "bundle_cli"), "--data",
                        str(setup / "p.h5"), "--out", str(out), "--precision", precision, "--max-wavs", "1"],
             module=True)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "decode.json").read_text())
    assert res["precision"] == precision and res["n_trials"] >= 1
    assert any(p.suffix == ".wav" for p in out.iterdir()) and any(p.suffix == ".png" for p in out.iterdir())
    # the same figure as the decode with torch installed
    ref = tmp_path / "ref"
    from edgensd.runtime.decode import decode_file

    want = decode_file(setup / "bundle_cli", setup / "p.h5", ref, precision=precision, plots=False, max_wavs=0)
    assert [t["pcc"] for t in res["per_trial"]] == [t["pcc"] for t in want["per_trial"]]


def test_runtime_modules_import_without_torch(tmp_path):
    code = ("import sys, edgensd.runtime.bundle, edgensd.runtime.pipeline, edgensd.runtime.backend_onnx, "
            "edgensd.runtime.decode, edgensd.runtime.segments, edgensd.csynth; "
            "assert 'torch' not in sys.modules; print('ok')")
    r = _run(tmp_path, code)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_the_shipped_live_demo_runs_without_torch(tmp_path):
    """`edgensd demo` (device simulator → pty → reader → streaming features → int8 decoder → C synth) on the
    bundle and session that ship with the package, in a Python where torch cannot be imported."""
    out = tmp_path / "demo"
    r = _run(tmp_path, ["edgensd", "demo", "-q", "--pace", "fast", "--out", str(out)], module=True)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "demo.json").read_text())
    assert res["gap_frames"] == 0 and res["lost_packets"] == 0 and res["packets_bad_crc"] == 0
    assert res["frames_out"] > 0 and len(res["trials"]) >= 1 and res["pcc_mean"] is not None
    for f in ("decoded.wav", "original.wav", "spectrograms.png", "stream.json"):
        assert (out / f).is_file()


def test_check_runs_on_a_runtime_only_install(setup, tmp_path):
    """`edgensd check` where neither torch nor onnx (the export tools) can be imported: it checks every
    runtime of the bundle against the best float it has (ONNX fp32) and leaves the float-op list unknown."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER.replace('name == "torch" or name.startswith("torch.")',
                                                           'name.split(".")[0] in ("torch", "onnx")'))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    out = tmp_path / "check.json"
    r = subprocess.run([sys.executable, "-m", "edgensd", "check", "--bundle", str(setup / "bundle_cli"), "--data",
                        str(setup / "p.h5"), "--json", str(out), "--max-delta-pcc", "0.05"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode in (0, 1), r.stderr  # 1 only if int8 lost more than the bound, which the report names
    rep = json.loads(out.read_text())
    names = {e["runtime"] for e in rep["runtimes"]}
    assert {"onnx fp32", "onnx int8"} <= names and not any(n.startswith("torch") for n in names)
    assert all(e.get("float_ops") is None for e in rep["runtimes"])
    assert "ops left in float" in r.stderr or "not listed" in r.stderr
