"""`edgensd prepare`: real BIDS recording + audio + events → participant file, and its bad-input errors."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import soundfile as sf

from edgensd.cli.main import main
from edgensd.data.participant import load_participant
from edgensd.neural.highgamma import HighGammaConfig, HighGammaStats
from edgensd.neural.io import example_bids_path
from edgensd.neural.prepare import prepare_participant, read_events

N_RAW = 19001  # samples at 1 kHz in the py_neuromodulation recording (19.001 s)
EVENTS = [
    (1.0, 0.8, "apple"),
    (3.0, 0.6, "river"),
    (5.5, 1.0, "stone"),
    (8.0, 0.7, "apple"),
    (12.0, 0.5, "moon"),
]


def _bids_copy(tmp_path):
    dst = tmp_path / "ieeg"
    shutil.copytree(example_bids_path().parent, dst)
    return dst / example_bids_path().name


def _audio(path, seconds=N_RAW / 1000.0):
    n = int(round(seconds * 16000))
    t = np.arange(n) / 16000
    sf.write(path, (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, subtype="FLOAT")
    return path


def _events(path, rows=EVENTS):
    lines = ["onset\tduration\ttrial_type"] + [f"{o}\t{d}\t{w}" for o, d, w in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _set_eeg(vhdr, ch, a, b, value):
    """Overwrite samples a..b-1 of channel ch in the BrainVision float32 multiplexed data (10 channels)."""
    eeg = vhdr.with_suffix(".eeg")
    arr = np.fromfile(eeg, dtype="<f4").reshape(-1, 10)
    arr[a:b, ch] = value
    arr.tofile(eeg)


def test_prepare_cli_real_recording(tmp_path):
    audio = _audio(tmp_path / "speech.wav")
    events = _events(tmp_path / "events.tsv")
    out = tmp_path / "p.h5"
    rc = main(
        [
            "prepare",
            "--raw",
            str(example_bids_path()),
            "--audio",
            str(audio),
            "--events",
            str(events),
            "--out",
            str(out),
            "--line-freq",
            "60",
            "--n-test",
            "1",
            "-q",
        ]
    )
    assert rc == 0
    p = load_participant(out, load_extras=True)
    assert p.ecog.shape == (2376, 9)  # ecog + dbs channels; the misc force channel is left out
    assert p.audio.shape[0] == 2376 * 128
    assert p.start.tolist() == [125, 375, 688, 1000, 1500]
    assert p.end.tolist() == [225, 450, 812, 1088, 1562]
    assert p.labels == ["apple", "river", "stone", "apple", "moon"]
    assert p.test_trials.tolist() == [4]
    assert p.raw_fs == 1000.0 and p.raw_signal.shape == (19001, 9)
    assert p.electrode_positions.shape == (9, 3)
    assert list(p.extras["channel_names"])[3] == "ECOG_RIGHT_0"
    cfg = HighGammaConfig.from_dict(json.loads(p.attrs["highgamma_config"]))
    assert cfg.pipeline == "offline" and cfg.line_freq == 60.0
    stats = HighGammaStats.from_dict(json.loads(p.attrs["highgamma_stats"]))
    # statistics from the 4 training trials only: those frames have mean 0 / SD 1
    train = np.concatenate([np.arange(s, e) for s, e in zip(p.start[:4], p.end[:4], strict=True)])
    assert stats.n_frames == train.size
    assert np.allclose(p.ecog[train].mean(0), 0, atol=1e-4) and np.allclose(
        p.ecog[train].std(0), 1, atol=1e-3
    )


def test_prepare_streaming_pipeline_recorded(tmp_path):
    audio = _audio(tmp_path / "speech.wav")
    events = _events(tmp_path / "events.tsv")
    part, res = prepare_participant(example_bids_path(), audio, events, pipeline="streaming", n_test=1)
    assert json.loads(part.attrs["highgamma_config"])["pipeline"] == "streaming"
    assert res.stats.config.pipeline == "streaming"
    assert json.loads(part.attrs["highgamma_config"])["line_freq"] == 60.0  # from the ieeg.json sidecar


def test_mismatched_audio_length(tmp_path):
    audio = _audio(tmp_path / "short.wav", seconds=18.0)
    events = _events(tmp_path / "events.tsv")
    with pytest.raises(ValueError, match=r"lasts 18\.000 s but the neural recording .* lasts 19\.001 s"):
        prepare_participant(example_bids_path(), audio, events)
    # within the stated tolerance it is accepted and both are cut to the shared frames
    ok = _audio(tmp_path / "ok.wav", seconds=18.98)
    part, _ = prepare_participant(example_bids_path(), ok, events, n_test=1)
    assert part.ecog.shape[0] == -(-int(round(18.98 * 16000)) // 128) == part.audio.shape[0] // 128


def test_event_outside_recording(tmp_path, caplog):
    audio = _audio(tmp_path / "speech.wav")
    events = _events(tmp_path / "events.tsv", EVENTS + [(18.7, 0.5, "late")])
    with pytest.raises(ValueError, match=r"line 7 \('late', onset 18\.700 s, duration 0\.500 s.*outside"):
        prepare_participant(example_bids_path(), audio, events)
    neg = _events(tmp_path / "neg.tsv", [(-0.2, 0.5, "early")])
    with pytest.raises(ValueError, match=r"line 2 \('early'"):
        prepare_participant(example_bids_path(), audio, neg)
    # through the CLI: exit status 2 and the message in the log
    from edgensd.log import logger

    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.ERROR, logger="edgensd"):
            rc = main(
                [
                    "prepare",
                    "--raw",
                    str(example_bids_path()),
                    "--audio",
                    str(audio),
                    "--events",
                    str(events),
                    "--out",
                    str(tmp_path / "x.h5"),
                    "-q",
                ]
            )
    finally:
        logger.removeHandler(caplog.handler)
    assert rc == 2 and "line 7" in caplog.text and not (tmp_path / "x.h5").exists()


def test_events_file_errors(tmp_path):
    (tmp_path / "e.tsv").write_text("onset\tword\n1.0\tx\n")
    with pytest.raises(ValueError, match=r"lacks the column 'duration'; it has \['onset', 'word'\]"):
        read_events(tmp_path / "e.tsv")
    (tmp_path / "e.tsv").write_text("onset\tduration\tvalue\n1.0\tn/a\tx\n")
    with pytest.raises(ValueError, match=r"line 2: column 'duration' must be a number of seconds, got 'n/a'"):
        read_events(tmp_path / "e.tsv")
    (tmp_path / "e.tsv").write_text("onset\tduration\tvalue\n1.0\t0.5\tcat\n")
    assert read_events(tmp_path / "e.tsv").labels == ["cat"]  # 'value' used when there is no trial_type


def test_nan_run_named_then_interpolated(tmp_path):
    vhdr = _bids_copy(tmp_path)
    _set_eeg(vhdr, 4, 5000, 5040, np.nan)
    audio = _audio(tmp_path / "speech.wav")
    events = _events(tmp_path / "events.tsv")
    with pytest.raises(ValueError, match=r"channel 'ECOG_RIGHT_1' samples 5000-5039 \(5\.000-5\.039 s\)"):
        prepare_participant(vhdr, audio, events)
    part, _ = prepare_participant(vhdr, audio, events, interpolate_nans_s=0.05, n_test=1)
    assert np.isfinite(part.raw_signal).all()


def test_flat_channel_excluded_and_logged(tmp_path, caplog):
    vhdr = _bids_copy(tmp_path)
    _set_eeg(vhdr, 6, 0, N_RAW, 123.0)  # ECOG_RIGHT_3 flat
    audio = _audio(tmp_path / "speech.wav")
    events = _events(tmp_path / "events.tsv")
    from edgensd.log import logger

    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="edgensd"):
            part, res = prepare_participant(vhdr, audio, events, n_test=1)
    finally:
        logger.removeHandler(caplog.handler)
    assert "bad channel 'ECOG_RIGHT_3': flat" in caplog.text
    assert part.extras["bad_channels"].tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 0]
    assert np.all(part.ecog[:, 6] == 0)
    # excluded from the CAR: the other ECoG channels' features equal those computed without it
    ref, _ = prepare_participant(
        example_bids_path(),
        audio,
        events,
        n_test=1,
        picks=[
            "LFP_RIGHT_0",
            "LFP_RIGHT_1",
            "LFP_RIGHT_2",
            "ECOG_RIGHT_0",
            "ECOG_RIGHT_1",
            "ECOG_RIGHT_2",
            "ECOG_RIGHT_4",
            "ECOG_RIGHT_5",
        ],
    )
    assert np.allclose(part.ecog[:, [3, 4, 5, 7, 8]], ref.ecog[:, 3:], atol=1e-4)


def test_missing_files(tmp_path):
    audio = _audio(tmp_path / "speech.wav")
    events = _events(tmp_path / "events.tsv")
    with pytest.raises(FileNotFoundError, match="raw file not found"):
        prepare_participant(tmp_path / "none.vhdr", audio, events)
    with pytest.raises(FileNotFoundError, match="audio file not found"):
        prepare_participant(example_bids_path(), tmp_path / "none.wav", events)
    with pytest.raises(FileNotFoundError, match="events file not found"):
        prepare_participant(example_bids_path(), audio, tmp_path / "none.tsv")
    assert (
        main(
            [
                "prepare",
                "--raw",
                str(tmp_path / "none.vhdr"),
                "--audio",
                str(audio),
                "--events",
                str(events),
                "--out",
                str(tmp_path / "o.h5"),
                "-q",
            ]
        )
        == 2
    )
