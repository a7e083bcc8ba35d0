"""``edgensd device-sim`` and the playback behind it: a host (the :class:`SerialReader`) on the pty and on the
socket receives exactly the file's data; with faults its gap fills are exactly the truth's lost packets;
the command line in a subprocess (first stdout line, truth file, SIGTERM); bad input names the flag."""

from __future__ import annotations

import json
import math
import signal
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from edgensd.firmware_bridge import protocol as P
from edgensd.firmware_bridge.playback import PlaybackConfig, load_source, open_playback, parse_link, truth_report
from edgensd.firmware_bridge.reader import Block, ReaderConfig, SerialReader
from edgensd.firmware_bridge.simulator import DeviceSimulator, SimulatorConfig, SimulatorLink

from edgensd.cli.main import main
from edgensd.data.participant import Participant, save_participant

RAW, HG = P.PacketType.RAW, P.PacketType.HIGH_GAMMA


def make_participant(path, n_ch: int = 4, seconds: float = 2.0, raw_fs: float = 1000.0, raw: bool = True,
                     seed: int = 0):
    """A short participant file: random frames, a random raw signal (µV), silent audio, one trial."""
    rng = np.random.default_rng(seed)
    n_frames = int(seconds * 125)
    p = Participant(
        ecog=rng.normal(0, 1, (n_frames, n_ch)).astype(np.float32),
        audio=np.zeros(n_frames * 128, np.float32),
        start=np.array([0]), end=np.array([n_frames]), labels=["x"],
        raw_signal=rng.normal(0, 300, (int(seconds * raw_fs), n_ch)) if raw else None,
        raw_fs=raw_fs if raw else None,
        attrs={"layout": "strip"},
    )
    save_participant(p, path)
    return p


@pytest.fixture(scope="module")
def pfile(tmp_path_factory):
    path = tmp_path_factory.mktemp("devsim") / "p.h5"
    return path, make_participant(path)


def collect_until_done(reader: SerialReader, link, timeout: float = 20.0) -> list[Block]:
    """Blocks until the link has played to the end and the reader has taken every byte it sent."""
    blocks: list[Block] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        b = reader.get(timeout=0.02)
        if b is not None:
            blocks.append(b)
        elif link.done.is_set() and reader.counters.bytes >= link.bytes_sent:
            break
    return blocks + reader.drain()


def indices(blocks: list[Block], kind, rate: float, filled: bool) -> list[np.ndarray]:
    """Device sample indices of each block of ``kind`` (fills or data), from its device times."""
    return [np.rint(b.device_time_us * rate / 1e6).astype(np.int64) for b in blocks
            if b.kind == kind and b.filled == filled]


def merged(ranges: list[np.ndarray]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for r in ranges:
        lo, hi = int(r[0]), int(r[-1]) + 1
        assert np.array_equal(r, np.arange(lo, hi))
        if out and out[-1][1] == lo:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def play(cfg: PlaybackConfig, **reader_kw):
    source = load_source(cfg)
    link = open_playback(cfg, source).start()
    try:
        with SerialReader(ReaderConfig(url=link.url, gap_policy="zeros", **reader_kw)) as r:
            blocks = collect_until_done(r, link)
            counters = r.counters
    finally:
        link.stop()
    assert link.finished
    return source, link, blocks, counters


# ---- the device's finite play ---------------------------------------------------------------------------------


def test_finite_play_records_every_sample_range():
    cfg = SimulatorConfig(n_channels=3, raw_samples_per_packet=8, send_hg=False, drop_rate=0.1, seed=2)
    raw = np.random.default_rng(1).normal(0, 100, (1003, 3))  # 125 full packets and one of 3 samples
    sim = DeviceSimulator(cfg, raw=raw, repeat=False)
    packets = P.StreamParser().feed(sim.stream_bytes(100.0))
    data = sim.truth.data
    assert [(d.start, d.stop) for d in data] == [(8 * k, min(8 * k + 8, 1003)) for k in range(126)]
    assert {d.seq for d in data if d.fate == "dropped"} == set(sim.truth.dropped) - {
        s for s in sim.truth.dropped if sim.truth.types[s] != RAW}
    got = {p.seq: p for p in packets if p.ptype == RAW}
    for d in data:
        assert (d.seq in got) == (d.fate == "sent")
        if d.fate == "sent":
            assert got[d.seq].timestamp_us == round(d.start * 1000)
            np.testing.assert_allclose(got[d.seq].body.values(), raw[d.start: d.stop], atol=0.195 / 2 + 1e-9)
    assert packets[-1].ptype in (RAW, P.PacketType.HEARTBEAT)  # nothing after the source ends


@pytest.mark.parametrize("link", ["pty", "socket://127.0.0.1:0"])
def test_host_receives_exactly_the_files_frames(pfile, link):
    path, p = pfile
    cfg = PlaybackConfig(data=str(path), link=link, mode="frames", pace="fast", fmt="float32", linger_s=5)
    source, lk, blocks, c = play(cfg)
    got = np.concatenate(indices(blocks, HG, 125.0, filled=False))
    np.testing.assert_array_equal(got, np.arange(p.ecog.shape[0]))
    values = np.concatenate([b.values for b in blocks if b.kind == HG])
    np.testing.assert_array_equal(values, p.ecog.astype(np.float64))  # float32 frames arrive bit-exact
    assert c.lost == 0 and c.crc_failures == 0 and lk.device.truth.lost_offline == []
    assert all(d["fate"] == "sent" for d in truth_report(cfg, source, lk)["data_packets"])


@pytest.mark.parametrize(("link", "fmt"), [("pty", "int16"), ("socket://127.0.0.1:0", "int24")])
def test_host_receives_the_raw_signal_quantized(pfile, link, fmt):
    path, p = pfile
    cfg = PlaybackConfig(data=str(path), link=link, mode="raw", pace="fast", fmt=fmt, linger_s=5)
    _, _, blocks, c = play(cfg)
    got = np.concatenate(indices(blocks, RAW, 1000.0, filled=False))
    np.testing.assert_array_equal(got, np.arange(p.raw_signal.shape[0]))
    values = np.concatenate([b.values for b in blocks if b.kind == RAW])
    scale = float(np.float32(0.195))
    # independent reference: each value is the nearest multiple of the scale (no clipping at ±300 µV)
    assert np.abs(p.raw_signal).max() < 32767 * scale
    np.testing.assert_allclose(values, p.raw_signal, atol=scale / 2 * (1 + 1e-6), rtol=0)
    np.testing.assert_allclose(values / scale, np.rint(values / scale), atol=1e-6)
    assert c.lost == 0


@pytest.mark.parametrize(("link", "mode"), [("pty", "raw"), ("socket://127.0.0.1:0", "frames")])
def test_reader_gaps_equal_the_truth(pfile, link, mode):
    path, p = pfile
    cfg = PlaybackConfig(data=str(path), link=link, mode=mode, pace="fast", corrupt=0.04, drop=0.04, seed=7,
                         linger_s=5)
    source, lk, blocks, c = play(cfg, max_fill_s=30.0)
    kind, rate = (RAW, 1000.0) if mode == "raw" else (HG, 125.0)
    report = truth_report(cfg, source, lk)
    data_idx = indices(blocks, kind, rate, filled=False)
    first, last = int(data_idx[0][0]), int(data_idx[-1][-1]) + 1
    # the host can see the holes between its first and last received packet, and exactly those
    want = [(a, b) for a, b in report["gaps"] if a >= first and b <= last]
    assert len(want) >= 3
    assert merged(indices(blocks, kind, rate, filled=True)) == want
    fates = report["data_packet_fates"]
    assert fates["corrupted"] > 0 and fates["dropped"] > 0 and fates["lost_offline"] == 0
    assert c.crc_failures + c.header_crc_failures <= len(lk.device.truth.corrupted)
    received = np.concatenate(data_idx)
    src = p.raw_signal if mode == "raw" else p.ecog
    np.testing.assert_allclose(np.concatenate([b.values for b in blocks if b.kind == kind and not b.filled]),
                               src[received], atol=float(np.float32(cfg.raw_scale_uv if mode == "raw"
                                                                     else cfg.hg_scale)) / 2 * (1 + 1e-6))


def test_duration_and_packet_size(pfile):
    path, p = pfile
    cfg = PlaybackConfig(data=str(path), link="pty", mode="raw", pace="fast", duration_s=0.5, packet_samples=3,
                         linger_s=5)
    source, lk, blocks, _ = play(cfg)
    got = np.concatenate(indices(blocks, RAW, 1000.0, filled=False))
    np.testing.assert_array_equal(got, np.arange(500))
    assert [len(b.values) for b in blocks][-1] == 500 % 3 and source.samples_per_packet == 3


def test_packets_due_before_a_host_connects_are_lost_offline(pfile):
    path, _ = pfile
    cfg = PlaybackConfig(data=str(path), link="socket://127.0.0.1:0", mode="frames", pace="realtime",
                         duration_s=1.0)
    source = load_source(cfg)
    link = open_playback(cfg, source)
    link.wait_for_host = False  # the clock runs from start(): a host 0.3 s late misses at least 37 frames
    link.start()
    time.sleep(0.3)
    try:
        with SerialReader(ReaderConfig(url=link.url)) as r:
            blocks = collect_until_done(r, link)
            c = r.counters
    finally:
        link.stop()
    report = truth_report(cfg, source, link)
    lost = [d for d in report["data_packets"] if d["fate"] == "lost_offline"]
    assert len(lost) >= 35 and lost[0]["start"] == 0
    sent = [d for d in report["data_packets"] if d["fate"] == "sent"]
    assert sent[0]["start"] == lost[-1]["stop"] and sent[-1]["stop"] == 125
    # the device answers the host's REQUEST_INFO after the packet it had already framed: a host ignores
    # data before the handshake
    assert c.data_before_info <= 1
    got = np.concatenate(indices(blocks, HG, 125.0, filled=False))
    np.testing.assert_array_equal(got, np.arange(sent[c.data_before_info]["start"], 125))


# ---- the command line -----------------------------------------------------------------------------------------


def _start(args: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "edgensd", "device-sim", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().rstrip("\n")


def test_command_prints_the_port_plays_once_and_writes_the_truth(pfile, tmp_path):
    path, p = pfile
    truth = tmp_path / "t" / "truth.json"
    proc, url = _start(["--data", str(path), "--link", "pty", "--mode", "frames", "--pace", "fast",
                        "--drop", "0.05", "--seed", "3", "--truth", str(truth), "-q"])
    with proc:
        assert url.startswith("/dev/pts/")
        blocks: list[Block] = []
        with SerialReader(ReaderConfig(url=url, gap_policy="zeros")) as r:
            end = time.monotonic() + 20
            while time.monotonic() < end and (proc.poll() is None or r.get(timeout=0) is not None):
                b = r.get(timeout=0.02)
                if b is not None:
                    blocks.append(b)
            blocks += r.drain()
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == ""  # the URL is the only line on stdout
    t = json.loads(truth.read_text())
    assert t["complete"] and t["interrupted"] is None and t["samples_played"] == p.ecog.shape[0]
    assert t["data_packet_fates"]["dropped"] == len([d for d in t["data_packets"] if d["fate"] == "dropped"]) > 0
    data_idx = indices(blocks, HG, 125.0, filled=False)
    first, last = int(data_idx[0][0]), int(data_idx[-1][-1]) + 1
    assert merged(indices(blocks, HG, 125.0, filled=True)) == [
        (a, b) for a, b in t["gaps"] if a >= first and b <= last]


def test_command_stops_on_sigterm_and_still_writes_the_truth(pfile, tmp_path):
    path, _ = pfile
    truth = tmp_path / "truth.json"
    proc, url = _start(["--data", str(path), "--link", "socket://127.0.0.1:0", "--mode", "raw",
                        "--truth", str(truth), "-q"])
    with proc:
        assert url.startswith("socket://127.0.0.1:")
        with SerialReader(ReaderConfig(url=url)) as r:
            end = time.monotonic() + 10
            while time.monotonic() < end and r.counters.packets < 30:
                time.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 128 + signal.SIGTERM
            blocks = r.drain()
    t = json.loads(truth.read_text())
    assert t["interrupted"] == "SIGTERM" and not t["complete"]
    assert 0 < t["samples_played"] < t["samples_in_source"]
    sent = {(d["start"], d["stop"]) for d in t["data_packets"] if d["fate"] == "sent"}
    got = {(int(i[0]), int(i[-1]) + 1) for i in indices(blocks, RAW, 1000.0, filled=False)}
    assert got and got <= sent


def _logged(records) -> str:
    text = " ".join(" ".join(r.getMessage().split()) for r in records if r.levelname == "ERROR")
    records.clear()
    return text


def test_bad_input_names_the_flag(pfile, tmp_path, edgensd_log, capsys):
    path, _ = pfile
    base = ["device-sim", "--data", str(path)]
    assert main(["device-sim", "--data", str(tmp_path / "none.h5")]) == 2
    assert "--data: no such file" in _logged(edgensd_log)
    frames_only = tmp_path / "frames_only.h5"
    make_participant(frames_only, raw=False)
    assert main(["device-sim", "--data", str(frames_only), "--mode", "raw"]) == 2
    assert f"--mode raw needs a raw signal, but {frames_only} holds none" in _logged(edgensd_log)
    assert main([*base, "--link", "tcp://localhost:80"]) == 2
    assert "--link must be 'pty' or 'socket://HOST:PORT'" in _logged(edgensd_log)
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main([*base, "--link", f"socket://127.0.0.1:{port}"]) == 2
    assert f"--link: port {port} on 127.0.0.1 is in use" in _logged(edgensd_log)
    wide = tmp_path / "wide.h5"
    make_participant(wide, n_ch=64, seconds=0.2)
    assert main(["device-sim", "--data", str(wide), "--format", "float32", "--packet-samples", "65"]) == 2
    assert "--packet-samples: 64 channels x 65 samples x 4 bytes exceeds" in _logged(edgensd_log)
    slow = tmp_path / "slow.h5"
    make_participant(slow)
    with h5py.File(slow, "r+") as f:
        f.attrs["frame_rate_hz"] = 100.0
    assert main(["device-sim", "--data", str(slow)]) == 2
    assert "--mode frames: " in (err := _logged(edgensd_log)) and "100 Hz" in err
    for flag, value in (("--corrupt", "1.5"), ("--drop", "-0.1"), ("--duration", "0"), ("--mode", "audio"),
                        ("--format", "int8")):
        with pytest.raises(SystemExit):
            main([*base, flag, value])
        assert f"argument {flag}" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--link must be"):
        parse_link("socket://127.0.0.1:70000")


def test_socket_fast_pace_survives_a_slow_host():
    """A full socket buffer makes the device wait, not drop the connection (256 channels, 12 MB of frames)."""
    cfg = SimulatorConfig(n_channels=256, hg_format="float32", send_raw=False, hg_frames_per_packet=16)
    hg = np.random.default_rng(0).normal(0, 1, (12000, 256)).astype(np.float32)
    link = SimulatorLink(DeviceSimulator(cfg, hg=hg, repeat=False), "socket", speed=math.inf,
                         wait_for_host=True, linger_s=5, settle_s=0.05).start()
    try:
        host, port = link.url.removeprefix("socket://").split(":")
        with socket.create_connection((host, int(port))) as conn:
            time.sleep(1.0)  # the host reads nothing for a while: the kernel buffers fill up
            received = bytearray()
            while chunk := conn.recv(1 << 20):
                received += chunk
    finally:
        link.stop()
    assert link.finished and link.connections == 1 and len(received) == link.bytes_sent
    frames = [p.body.values() for p in P.StreamParser().feed(bytes(received)) if p.ptype == HG]
    np.testing.assert_array_equal(np.concatenate(frames), hg)
