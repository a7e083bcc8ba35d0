"""Shared, built-once test material for the export and runtime tests: a tiny participant simulated from real
speech and a briefly trained causal ``edge`` decoder (through the CLI), plus its bundle."""

from __future__ import annotations

import json
from pathlib import Path

EDGE_TINY = {"channels": 8, "dilations": [1, 2], "gru_hidden": 8}
_BUILT: dict[str, Path] = {}


def trained_edge(tmp_path_factory) -> Path:
    """Folder with ``speech.h5``, ``p.h5`` (64 electrodes, 8 trials, 2 held out) and ``edge/`` (trained model).

    Uses the speech model shipped with the package (``edgensd/assets/demo/speech_model``, Allison's voice);
    the real prompts come from the Debian package the install script installs.
    """
    if "edge" in _BUILT:
        return _BUILT["edge"]
    from edgensd.cli.main import main
    from edgensd.data.participant import save_participant
    from edgensd.data.speech import SpeechDataConfig, build_speech_participant
    from edgensd.demo import demo_dir
    from edgensd.neural.simulate import SimulationConfig, simulate, write_simulation

    d = tmp_path_factory.mktemp("export_setup")
    sp, _ = build_speech_participant(SpeechDataConfig(max_prompts=8, n_test=2))
    save_participant(sp, d / "speech.h5")
    res = simulate(SimulationConfig(speech=str(d / "speech.h5"), layout="ld8x8", seed=3, trial_gap_s=0.8),
                   verbose="warning")
    write_simulation(res, d / "p.h5")
    rc = main(["train", "decoder", "-q", "--data", str(d / "p.h5"), "--speech-model",
               str(demo_dir() / "speech_model"), "--arch", "edge", "--causal", "--out", str(d / "edge"),
               "--max-minutes", "0.03", "--batch-size", "4", "--decoder-config", json.dumps(EDGE_TINY)])
    assert rc == 0
    _BUILT["edge"] = d
    return d


def edge_bundle(tmp_path_factory) -> Path:
    """:func:`trained_edge`'s folder, with ``bundle_cli/`` exported from ``edge/`` through the CLI (fp32 + int8)."""
    from edgensd.cli.main import main

    d = trained_edge(tmp_path_factory)
    out = d / "bundle_cli"
    if not out.exists():
        assert main(["export", "bundle", "-q", "--model", str(d / "edge"), "--out", str(out)]) == 0
    return d
