"""Simulated cohorts: the shipped spec, spec checks, a tiny build that resumes per participant, the CLI."""

from __future__ import annotations

import json
import logging

import h5py
import pytest

from edgensd.cli.main import main
from edgensd.data.participant import load_participant
from edgensd.neural.cohort import build_cohort, default_spec_path, load_spec
from edgensd.neural.simulate import SimulationConfig, config_path_for, load_ground_truth

TINY = {
    "name": "tiny",
    "defaults": {"trial_gap_s": 1.0},
    "participants": [
        {"id": "a1", "voice": "en", "layout": "ld8x8", "hemisphere": "left", "nonlinearity": "linear", "seed": 1},
        {"id": "b2", "voice": "it", "layout": "strip", "hemisphere": "right", "nonlinearity": "strong", "seed": 2,
         "line_freq": 50.0},
    ],
}


def test_shipped_spec_spans_speakers_grids_hemispheres_and_presets():
    spec = load_spec(None)
    assert default_spec_path().is_file() and spec.name == "default"
    from edgensd.data.speech import VOICES

    ps = spec.participants
    cfgs = [p.config("x.h5") for p in ps]
    assert len(ps) >= 6 and len({p.voice for p in ps}) >= 3
    assert {VOICES[p.voice].sex for p in ps} == {"female", "male"}
    assert {c.layout for c in cfgs} == {"ld8x8", "hb128"} and {c.hemisphere for c in cfgs} == {"left", "right"}
    levels = {c.nonlinearity for c in cfgs}
    assert levels == {"linear", "mild", "strong"}
    for level in levels:  # every preset on both grid kinds
        assert {c.layout for c in cfgs if c.nonlinearity == level} == {"ld8x8", "hb128"}
    for voice in {p.voice for p in ps}:  # every speaker on both grid kinds
        assert {c.layout for p, c in zip(ps, cfgs, strict=True) if p.voice == voice} == {"ld8x8", "hb128"}
    assert len({c.seed for c in cfgs}) == len(cfgs)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda s: s["participants"].append(dict(s["participants"][0])), "participant id 'a1' appears twice"),
        (lambda s: s["participants"][0].update(voice="de"), r"a1: 'voice' must be one of \['en', 'es', 'fr'"),
        (lambda s: s["participants"][1].update(layout="grid"), r"b2: layout must be one of \['ld8x8'"),
        (lambda s: s["participants"][1].update(onset_fraction=2.0), r"b2: onset_fraction must be a number in \[0, 1\]"),
        (lambda s: s["participants"][0].update(speech="x.h5"), "a1: unknown field 'speech'"),
        (lambda s: s["participants"][0].update(id="../x"), "'id' must be a file-name-safe string"),
        (lambda s: s["defaults"].update(colour="red"), "defaults: unknown field 'colour'"),
        (lambda s: s.update(participants=[]), "'participants' must be a non-empty list"),
        (lambda s: s.update(extra=1), r"unknown keys \['extra'\]"),
    ],
)
def test_spec_errors_name_the_participant_and_field(change, pattern):
    spec = json.loads(json.dumps(TINY))
    change(spec)
    with pytest.raises(ValueError, match=pattern):
        load_spec(spec)


def test_tiny_cohort_builds_and_resumes_per_participant(tmp_path, edgensd_log):
    out = tmp_path / "cohort"
    res = build_cohort(out, TINY, max_trials=3, verbose="info")
    assert res.built == ["a1", "b2"] and res.skipped == []
    lines = [r.getMessage() for r in edgensd_log if r.getMessage().startswith("participant ")]
    assert len(lines) == 2 and "a1 (1/2: en ld8x8 left, linear, seed 1)" in lines[0]
    manifest = json.loads((out / "cohort.json").read_text())
    recs = {r["id"]: r for r in manifest["participants"]}
    assert manifest["name"] == "tiny" and manifest["max_trials"] == 3 and list(recs) == ["a1", "b2"]
    a, b = recs["a1"], recs["b2"]
    assert (a["voice"], a["speaker_sex"], a["layout"], a["density"], a["hemisphere"]) == (
        "en", "female", "ld8x8", "low", "left")
    assert (b["voice"], b["speaker"], b["speaker_sex"], b["layout"], b["hemisphere"]) == (
        "it", "Carlo Flora", "male", "strip", "right")
    assert b["knobs"]["articulatory_weight"] > 0 and a["knobs"]["articulatory_weight"] == 0
    assert a["n_trials"] == 3 and a["n_electrodes"] == 64 and a["size_bytes"] > 0 and a["seconds"] > 0
    # where the layout and hemisphere live in a participant file
    for rec in (a, b):
        path = out / rec["file"]
        cfg = SimulationConfig.load(out / rec["config_file"])
        assert (cfg.layout, cfg.hemisphere, cfg.max_trials) == (rec["layout"], rec["hemisphere"], 3)
        p = load_participant(path)
        assert p.hemisphere == rec["hemisphere"] and p.n_trials == 3
        assert (p.attrs["voice"], p.attrs["speaker_sex"]) == (rec["voice"], rec["speaker_sex"])  # from the speech
        with h5py.File(path, "r") as f:
            assert f.attrs["layout"] == rec["layout"]
            assert json.loads(f.attrs["simulation_config"])["hemisphere"] == rec["hemisphere"]
        report = json.loads((out / rec["report_file"]).read_text())
        assert report["simulator_knobs"]["nonlinearity"] == rec["nonlinearity"]
    assert "sim_articulatory_weight" in load_ground_truth(out / "b2.h5").knob_truth
    speech = load_participant(out / "speech" / "it_first3" / "speech.h5", require_neural=False)
    assert speech.attrs["voice"] == "it" and speech.n_trials == 3

    # a second run builds nothing and leaves the files alone
    mtimes = {f.name: f.stat().st_mtime_ns for f in out.glob("*.h5")}
    edgensd_log.clear()
    res = build_cohort(out, TINY, max_trials=3, verbose="info")
    assert res.built == [] and res.skipped == ["a1", "b2"]
    assert {f.name: f.stat().st_mtime_ns for f in out.glob("*.h5")} == mtimes
    assert sum(r.getMessage().startswith("participant ") for r in edgensd_log) == 2
    # a participant killed between its file and its config JSON is simulated again, alone
    config_path_for(out / "b2.h5").unlink()
    res = build_cohort(out, TINY, max_trials=3, verbose="warning")
    assert res.built == ["b2"] and res.skipped == ["a1"]
    assert (out / "a1.h5").stat().st_mtime_ns == mtimes["a1.h5"]
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files
    # a finished participant with another configuration is never overwritten silently
    other = json.loads(json.dumps(TINY))
    other["participants"][0]["seed"] = 5
    with pytest.raises(ValueError, match="a1: .*a1.h5 was simulated with another configuration"):
        build_cohort(out, other, max_trials=3, verbose="warning")
    assert (out / "a1.h5").stat().st_mtime_ns == mtimes["a1.h5"]
    with pytest.raises(ValueError, match=r"only: unknown participant ids \['zz'\]"):
        build_cohort(out, TINY, max_trials=3, only=["zz"])


def test_cli_simulate_cohort(tmp_path, edgensd_log):
    spec = tmp_path / "spec.json"
    one = dict(TINY, participants=[TINY["participants"][1]])
    spec.write_text(json.dumps(one))
    out = tmp_path / "c"
    assert main(["simulate-cohort", "--out", str(out), "--spec", str(spec), "--max-trials", "2"]) == 0
    assert (out / "b2.h5").is_file() and (out / "cohort.json").is_file()
    assert main(["simulate-cohort", "--out", str(out), "--spec", str(spec), "--only", "zz", "-q"]) == 2
    errors = [r.getMessage() for r in edgensd_log if r.levelno == logging.ERROR]
    assert any("--only: unknown participant ids ['zz']" in m for m in errors)
    assert main(["simulate-cohort", "--out", str(out), "--spec", str(tmp_path / "nope.json"), "-q"]) == 2
    assert any("--spec: no such file" in r.getMessage() for r in edgensd_log)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["simulate-cohort", "--out", str(out), "--spec", str(bad), "-q"]) == 2
    assert any("not valid JSON" in r.getMessage() for r in edgensd_log)
