"""SessionRecorder: round trip through the participant loader, gap slots, raw mode, a recording of a device-sim
play with faults (slots equal the truth), and a writer killed mid-run leaving a loadable file."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
from edgensd.firmware_bridge import protocol as P
from edgensd.firmware_bridge.playback import PlaybackConfig, load_source, open_playback, truth_report
from edgensd.firmware_bridge.reader import Block, ReaderConfig, SerialReader
from edgensd.firmware_bridge.record import SessionRecorder

from edgensd.data.participant import Participant, load_participant, save_participant

HG, RAW = P.PacketType.HIGH_GAMMA, P.PacketType.RAW


def frames(start: int, n: int, n_ch: int = 3) -> np.ndarray:
    return (np.arange(start, start + n)[:, None] * 0.25 + np.arange(n_ch)[None, :]).astype(np.float32)


def test_round_trip_with_gap_slots(tmp_path):
    path = tmp_path / "rec.h5"
    with SessionRecorder(path, 3, layout="strip") as rec:
        rec.add_frames(0, frames(0, 100))
        rec.add_frames(100, np.full((10, 3), np.nan), valid=False)  # a filled gap (policy nan): stored as zeros
        rec.add_frames(110, frames(110, 90))
        rec.add_frames(210, frames(210, 40))  # frames 200..209 never arrived
        valid_mask = np.ones(40, bool)
        valid_mask[5] = False
        rec.add_frames(250, frames(250, 40), valid=valid_mask)
        assert rec.n_frames == 290
    p = load_participant(path, load_extras=True)
    want_valid = np.ones(290, bool)
    want_valid[100:110] = want_valid[200:210] = want_valid[255] = False
    want = np.where(want_valid[:, None], frames(0, 290), 0.0)
    np.testing.assert_array_equal(p.ecog, want)
    np.testing.assert_array_equal(p.extras["valid"], want_valid)
    assert p.audio.shape == (290 * 128,) and not p.audio.any()
    assert (p.start.tolist(), p.end.tolist(), p.labels) == ([0], [290], ["session"])
    assert p.attrs["audio_recorded"] is False and p.attrs["layout"] == "strip" and p.raw_signal is None
    with h5py.File(path) as f:
        assert f["wave_re_alldataset"].id.get_storage_size() == 0  # the silence takes no disk space


def test_raw_mode_axes_agree_and_blocks_land_in_their_slots(tmp_path):
    path = tmp_path / "raw.h5"
    rng = np.random.default_rng(0)
    raw = rng.normal(0, 50, (3000, 3)).astype(np.float32)
    with SessionRecorder(path, 3, raw_fs=1000.0, origin_us=5_000_000) as rec:
        for k in range(0, 3000, 8):
            if 800 <= k < 880:
                continue  # ten packets lost, never reported
            t = 5_000_000 + (k + np.arange(8)) * 1000
            filled = 1600 <= k < 1640  # five packets the reader filled
            rec.add_block(Block(RAW, k, np.zeros((8, 3)) if filled else raw[k: k + 8].astype(np.float64), t,
                                np.zeros(8), filled=filled))
        rec.add_frames(0, frames(0, 10))
    p = load_participant(path, load_extras=True)
    want_valid = np.ones(3000, bool)
    want_valid[800:880] = want_valid[1600:1640] = False
    np.testing.assert_array_equal(p.extras["raw_valid"], want_valid)
    np.testing.assert_array_equal(p.raw_signal, np.where(want_valid[:, None], raw, 0))
    assert p.raw_fs == 1000.0 and p.ecog.shape == (375, 3)  # the frame axis covers the raw samples
    np.testing.assert_array_equal(p.extras["valid"], np.arange(375) < 10)


def test_recording_a_device_sim_play_with_faults(tmp_path):
    n_frames = 500
    rng = np.random.default_rng(3)
    src = Participant(ecog=rng.normal(0, 1, (n_frames, 4)).astype(np.float32),
                      audio=np.zeros(n_frames * 128, np.float32), start=[0], end=[n_frames], labels=["x"])
    save_participant(src, tmp_path / "p.h5")
    cfg = PlaybackConfig(data=str(tmp_path / "p.h5"), link="pty", mode="frames", pace="fast", fmt="float32",
                         drop=0.05, corrupt=0.05, seed=5, linger_s=5)
    source = load_source(cfg)
    link = open_playback(cfg, source).start()
    try:
        with SerialReader(ReaderConfig(url=link.url, gap_policy="zeros")) as r, \
                SessionRecorder(tmp_path / "rec.h5", 4, flush_interval_s=0.05) as rec:
            end = time.monotonic() + 20
            while time.monotonic() < end:
                b = r.get(timeout=0.02)
                if b is not None:
                    rec.add_block(b)
                elif link.done.is_set() and r.counters.bytes >= link.bytes_sent:
                    break
    finally:
        link.stop()
    truth = truth_report(cfg, source, link)
    p = load_participant(tmp_path / "rec.h5", load_extras=True)
    valid = p.extras["valid"]
    want = np.zeros(n_frames, bool)
    for d in truth["data_packets"]:
        want[d["start"]: d["stop"]] = d["fate"] == "sent"
    want[:np.argmax(valid)] = False  # data before the host's handshake is ignored
    n = p.ecog.shape[0]  # trailing lost packets leave no slot
    assert n_frames - 5 <= n <= n_frames and not want[n:].any()
    np.testing.assert_array_equal(valid, want[:n])
    np.testing.assert_array_equal(p.ecog[valid], src.ecog[:n][valid])
    assert not p.ecog[~valid].any() and (~valid).sum() >= 20


_WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from edgensd.firmware_bridge.record import SessionRecorder
    rec = SessionRecorder(sys.argv[1], 8, flush_interval_s=0.05)
    i, last = 0, -1
    while True:
        rec.add_frames(i, (np.arange(8)[None, :] + 0.5 * np.arange(i, i + 5)[:, None]).astype(np.float32))
        i += 5
        if rec.flushed_frames != last:
            last = rec.flushed_frames
            print(last, flush=True)
        time.sleep(0.002)
""")


def test_killed_writer_leaves_a_loadable_file_with_everything_flushed(tmp_path):
    path = tmp_path / "killed.h5"
    with subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True) as proc:
        flushed = 0
        while flushed < 400:
            flushed = int(proc.stdout.readline())
        time.sleep(0.013)  # somewhere between two flushes, or in one
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    p = load_participant(path, load_extras=True)
    n = p.ecog.shape[0]
    assert n >= flushed
    want = (np.arange(8)[None, :] + 0.5 * np.arange(n)[:, None]).astype(np.float32)
    np.testing.assert_array_equal(p.ecog, want)
    assert p.extras["valid"].all() and p.end.tolist() == [n]


def test_recorder_refuses_bad_input(tmp_path):
    with pytest.raises(ValueError, match="frame_rate_hz must be 125"):
        SessionRecorder(tmp_path / "a.h5", 4, frame_rate_hz=100.0)
    with pytest.raises(ValueError, match="raw_fs must be a rate > 0"):
        SessionRecorder(tmp_path / "a.h5", 4, raw_fs=0.0)
    with pytest.raises(ValueError, match="n_channels must be an integer >= 1"):
        SessionRecorder(tmp_path / "a.h5", 0)
    with SessionRecorder(tmp_path / "a.h5", 4) as rec:
        with pytest.raises(ValueError, match=r"values must have shape \(n, n_channels=4\)"):
            rec.add_frames(0, np.zeros((2, 3)))
        with pytest.raises(ValueError, match="has no raw signal"):
            rec.add_raw(0, np.zeros((2, 4)))
        with pytest.raises(ValueError, match="start must be a slot index >= 0"):
            rec.add_frames(-1, np.zeros((2, 4)))
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        SessionRecorder(tmp_path / "a.h5", 4)
    SessionRecorder(tmp_path / "a.h5", 4, overwrite=True).close()
