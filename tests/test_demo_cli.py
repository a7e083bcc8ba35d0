"""The shipped demo bundle and the command line."""

import json
import subprocess
import sys

from edgensd.cli.main import build_parser
from edgensd.demo import demo_dir, run_demo


def test_demo_bundle_resynthesizes_well(tmp_path):
    res = run_demo(tmp_path)
    assert len(res["utterances"]) == 4
    # the shipped model was trained 30 min on the other prompts; these are held-out prompts
    assert res["pcc_mean"] > 0.9 and res["pcc_mean"] > res["cepstral_envelope_pcc_mean"]
    assert res["stoi_render_mean"] > 0.8
    saved = json.loads((tmp_path / "demo.json").read_text())
    assert saved["pcc_mean"] == res["pcc_mean"]
    assert len(list(tmp_path.glob("*_resynth.wav"))) == 4
    assert (demo_dir() / "ATTRIBUTION.txt").read_text().count("CC-BY-SA-3.0") == 1


def test_cli_lists_every_command():
    text = build_parser().format_help()
    for word in ("demo", "data", "train", "eval", "prepare", "simulate", "encode", "occlusion", "compare", "export"):
        assert word in text


def test_cli_reports_bad_input_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "edgensd.cli.main", "eval", "speech", "--model", str(tmp_path / "none"),
         "--data", str(tmp_path / "none.h5"), "--json", str(tmp_path / "o.json")],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert "--model: no such model folder" in proc.stderr and "Traceback" not in proc.stderr
