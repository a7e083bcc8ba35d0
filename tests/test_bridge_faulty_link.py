"""The protocol-agnostic faulty wire: the fault log rebuilds the damaged stream exactly and does not depend on
how the stream is split; through it the reader never accepts a damaged packet, delivers every packet the
wire left intact, and keeps going after each fault."""

from __future__ import annotations

import json
import math
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from edgensd.firmware_bridge import protocol as P
from edgensd.firmware_bridge.faulty_link import ByteMangler, FaultyLink, FaultyLinkConfig, apply_faults
from edgensd.firmware_bridge.reader import ReaderConfig, SerialReader
from edgensd.firmware_bridge.simulator import DeviceSimulator, SimulatorConfig, SimulatorLink

RAW = P.PacketType.RAW


def test_mangler_log_rebuilds_the_stream_and_ignores_read_sizes():
    cfg = FaultyLinkConfig(flip_rate=0.01, delete_rate=0.005, insert_rate=0.005, seed=4)
    data = np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    whole = ByteMangler(cfg, [4, 0])
    out = whole.process(data)
    pieces = ByteMangler(cfg, [4, 0])
    rng = np.random.default_rng(1)
    cuts = np.sort(rng.choice(len(data), 300, replace=False))
    out2 = b"".join(pieces.process(data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True))
    assert out2 == out and pieces.faults == whole.faults
    assert apply_faults(data, whole.faults) == out
    kinds = [f.kind for f in whole.faults]
    n = len(data)
    for kind, rate in (("delete", 0.005), ("insert", 0.005), ("flip", 0.01 * 0.995)):
        k = kinds.count(kind)
        assert abs(k - n * rate) < 5 * math.sqrt(n * rate), (kind, k)
    assert len(out) == n - kinds.count("delete") + kinds.count("insert")
    assert all(bin(f.value).count("1") == 1 for f in whole.faults if f.kind == "flip")
    assert ByteMangler(FaultyLinkConfig(), 0).process(data) == data


def test_config_errors():
    with pytest.raises(ValueError, match="flip_rate must be a probability"):
        FaultyLinkConfig(flip_rate=2.0)
    with pytest.raises(ValueError, match="listen must be 'pty' or 'socket://HOST:PORT'"):
        FaultyLinkConfig(listen="tcp://x:1")


def _packet_sizes(truth) -> dict[int, int]:
    """Bytes on the wire of each sequence number (no wrap in these short runs)."""
    n_samples = {d.seq: d.stop - d.start for d in truth.data}
    fixed = {P.PacketType.DEVICE_INFO: P.INFO_PAYLOAD_BYTES, P.PacketType.HEARTBEAT: P.HEARTBEAT_PAYLOAD_BYTES}
    return {s: P.OVERHEAD_BYTES + (n_samples[s] * 8 * 2 if t == RAW else fixed[t]) for s, t in truth.types.items()}


@pytest.mark.parametrize("listen", ["socket://127.0.0.1:0", "pty"])
def test_reader_through_the_faulty_link_accepts_only_intact_packets(listen):
    cfg = SimulatorConfig(n_channels=8, send_hg=False, seed=1)
    raw = np.random.default_rng(2).normal(0, 400, (4000, 8))
    link = SimulatorLink(DeviceSimulator(cfg, raw=raw, repeat=False), "socket", speed=math.inf,
                         wait_for_host=True, linger_s=5).start()
    proxy = FaultyLink(link.url, FaultyLinkConfig(flip_rate=3e-4, delete_rate=1e-4, insert_rate=1e-4, seed=9,
                                                  listen=listen)).start()
    try:
        with SerialReader(ReaderConfig(url=proxy.url, gap_policy="none")) as r:
            blocks = []
            end = time.monotonic() + 20
            while time.monotonic() < end:
                b = r.get(timeout=0.02)
                if b is not None:
                    blocks.append(b)
                elif link.done.is_set() and r.counters.bytes >= proxy.counters.bytes_out["down"]:
                    break
            c = r.counters
    finally:
        proxy.stop()
        link.stop()
    truth = link.device.truth
    # after the device closes, the proxy may reconnect upstream once more before the device's server is gone
    assert link.finished and proxy.counters.connections >= 1
    assert proxy.counters.bytes_in["down"] == link.bytes_sent
    # which packets did the wire damage? spans of the device's byte stream, in the order it sent them
    sizes = _packet_sizes(truth)
    starts = np.cumsum([0] + [sizes[s] for s in truth.sent])
    hit: set[int] = set()
    for f in proxy.faults:
        assert f.direction == "down" and f.connection == 1
        k = int(np.searchsorted(starts, f.offset, side="right")) - 1
        if f.kind == "insert" and f.offset == starts[k + 1] - 1:
            continue  # a byte inserted between two packets damages neither
        hit.add(truth.sent[k])
    assert len(hit) >= 10
    records = {d.seq: d for d in truth.data}
    intact = [s for s in truth.sent if s not in hit and s in records]
    got = [b.seq for b in blocks]
    # never a damaged packet; every intact one after the handshake (the stream goes on after each fault)
    assert not set(got) & hit
    assert got == intact[c.data_before_info:]
    scale = float(np.float32(cfg.raw_scale_uv))
    for b in blocks:
        d = records[b.seq]
        np.testing.assert_array_equal(b.values, np.rint(raw[d.start: d.stop] / scale) * scale)
        assert b.device_time_us[0] == d.start * 1000
    assert c.crc_failures + c.header_crc_failures + c.bad_headers >= 1


def test_upstream_that_is_not_there_is_retried():
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    proxy = FaultyLink(f"socket://127.0.0.1:{port}", FaultyLinkConfig()).start()
    try:
        host, p = proxy.url.removeprefix("socket://").split(":")
        with socket.create_connection((host, int(p))) as conn:
            conn.settimeout(2.0)
            assert conn.recv(10) == b""  # the proxy closes a host it cannot connect upstream
    finally:
        proxy.stop()
    assert proxy.counters.connections == 0


def test_faulty_link_command_between_device_sim_and_a_host(tmp_path, edgensd_log):
    from edgensd.cli.main import main
    from edgensd.data.participant import Participant, save_participant

    rng = np.random.default_rng(0)
    ecog = rng.normal(0, 1, (750, 16)).astype(np.float32)
    save_participant(Participant(ecog=ecog, audio=np.zeros(750 * 128, np.float32), start=[0], end=[750],
                                 labels=["x"]), tmp_path / "p.h5")
    dev = subprocess.Popen([sys.executable, "-m", "edgensd", "device-sim", "--data", str(tmp_path / "p.h5"),
                            "--link", "socket://127.0.0.1:0", "--pace", "fast", "--format", "float32", "-q"],
                           stdout=subprocess.PIPE, text=True)
    proxy = subprocess.Popen([sys.executable, "-m", "edgensd", "faulty-link", "--upstream",
                              dev.stdout.readline().strip(), "--listen", "pty", "--flip", "1e-4", "--delete",
                              "2e-5", "--seed", "1", "--log", str(tmp_path / "faults.json"), "-q"],
                             stdout=subprocess.PIPE, text=True)
    with dev, proxy:
        url = proxy.stdout.readline().strip()
        assert url.startswith("/dev/pts/")
        blocks = []
        with SerialReader(ReaderConfig(url=url, gap_policy="none")) as r:
            end = time.monotonic() + 20
            while time.monotonic() < end and (dev.poll() is None or r.get(timeout=0) is not None):
                b = r.get(timeout=0.02)
                if b is not None:
                    blocks.append(b)
            blocks += r.drain()
            c = r.counters
        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(timeout=10) == 0 and dev.wait(timeout=10) == 0
    log = json.loads((tmp_path / "faults.json").read_text())
    assert log["connections"] >= 1 and len(log["faults"]) >= 5
    assert {f["kind"] for f in log["faults"]} == {"flip", "delete"}
    for b in blocks:  # each frame delivered is the file's, in its slot
        i = int(round(b.device_time_us[0] * 125 / 1e6))
        np.testing.assert_array_equal(b.values, ecog[i: i + 1].astype(np.float64))
    assert 600 <= len(blocks) < 750 and c.crc_failures + c.header_crc_failures >= 1
    assert main(["faulty-link", "--upstream", "x", "--listen", "tcp://1"]) == 2
    err = " ".join(r.getMessage() for r in edgensd_log if r.levelname == "ERROR")
    assert "--listen: listen must be 'pty' or 'socket://HOST:PORT'" in err
