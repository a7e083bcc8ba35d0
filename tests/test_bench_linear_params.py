"""bench/bench_linear_params.py: a linear decoder through the synthesizer, checked where its answer is known."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from export_setup import trained_edge
from script_loader import load_script

from edgensd.data.participant import load_participant, trial_split
from edgensd.decoding.evaluate import params_to_spec
from edgensd.decoding.targets import CONTEXT_FRAMES, build_segments, load_references
from edgensd.demo import demo_dir
from edgensd.metrics import pcc
from edgensd.speech.model import load_speech_model

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_linear_params.py"


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH)


def test_features_that_hold_the_parameters_are_decoded_exactly(bench, tmp_path_factory, tmp_path):
    # neural "features" = the reference parameters' own raw values: the lag-0 block maps them exactly, so the
    # score equals that of rendering the raw targets themselves (the reference parameters brought into the
    # voice range, which is all a decoder can output)
    from edgensd.params import raw_to_physical

    d = trained_edge(tmp_path_factory)
    sm_dir = demo_dir() / "speech_model"
    sm = load_speech_model(sm_dir)
    voice, synth = sm.config.voice, sm.synth.eval()
    p = load_participant(d / "p.h5")
    tr_idx, te_idx = trial_split(p)
    refs = load_references(p, sm, sm_dir, CONTEXT_FRAMES, tmp_path)
    seg = build_segments(p, refs, tr_idx, exclude=te_idx)
    raw = bench._logit_positions(seg.params, voice).astype(np.float32)
    got = bench.linear_params_pcc(dataclasses.replace(seg, neural=raw), dataclasses.replace(seg, neural=raw),
                                  synth, voice, 1e-9)
    want = [pcc(params_to_spec(synth, raw_to_physical(raw[seg.trial_rows(k)], voice)), seg.spec[seg.trial_rows(k)])
            for k in range(len(seg))]
    assert np.abs(np.array(got) - np.array(want)).max() < 1e-3
    assert min(want) > 0.8  # and that is close to the speech model's resynthesis


def test_cli_on_a_small_participant(bench, tmp_path_factory, tmp_path, monkeypatch, capsys):
    d = trained_edge(tmp_path_factory)
    out = tmp_path / "r.json"
    monkeypatch.setattr("sys.argv", ["bench_linear_params.py", "--data", str(d / "p.h5"), "--speech-model",
                                     str(demo_dir() / "speech_model"), "--json", str(out)])
    bench.main()
    res = json.loads(out.read_text())
    assert res["trials"] == 2 and set(res["validation_pcc"]) == {str(a) for a in bench.ALPHA_GRID}
    for k in ("linear_params_pcc", "ridge_spectrogram_pcc", "ceiling_pcc"):
        assert -1.0 < res[k] < 1.0
    assert "through the synthesizer" in capsys.readouterr().out
    monkeypatch.setattr("sys.argv", ["bench_linear_params.py", "--data", str(tmp_path / "none.h5"),
                                     "--speech-model", str(demo_dir() / "speech_model")])
    with pytest.raises(SystemExit, match="--data .*not found"):
        bench.main()
