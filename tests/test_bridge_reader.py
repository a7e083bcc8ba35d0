"""Tests of the device simulator and the host reader: the simulator's packets against its own truth lists,
the reader over ``loop://``, over a local ``socket://`` server (reconnect, stall watchdog, queue overflow)
and over a pty, gap filling per policy, timestamp unwrapping, and refusal of bad configuration."""

from __future__ import annotations

import time

import numpy as np
import pytest
from edgensd.firmware_bridge import protocol as P
from edgensd.firmware_bridge.reader import Block, ReaderConfig, SerialReader
from edgensd.firmware_bridge.simulator import DeviceSimulator, SimulatorConfig, SimulatorLink

RAW, HG = P.PacketType.RAW, P.PacketType.HIGH_GAMMA


def source(n: int, n_ch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 300, (n, n_ch))


def wait_for(cond, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


def collect(reader: SerialReader, until, timeout: float = 5.0) -> list[Block]:
    blocks: list[Block] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end and not until(blocks):
        b = reader.get(timeout=0.05)
        if b is not None:
            blocks.append(b)
    return blocks


def raw_stream(blocks: list[Block]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    raw = [b for b in blocks if b.kind == RAW]
    return (np.concatenate([b.values for b in raw]), np.concatenate([b.device_time_us for b in raw]),
            np.concatenate([np.full(len(b.values), b.filled) for b in raw]))


# ---- the simulator alone --------------------------------------------------------------------------------------


def test_simulator_packets_match_truth_and_source():
    cfg = SimulatorConfig(n_channels=8, seed=3, drop_rate=0.05, corrupt_rate=0.05, heartbeat_period_s=0.25)
    sim = DeviceSimulator(cfg, raw=source(4000, 8))
    stream = sim.stream_bytes(2.0)
    parser = P.StreamParser()
    packets = parser.feed(stream)
    truth = sim.truth
    assert truth.dropped and truth.corrupted
    assert [p.seq for p in packets] == [s for s in truth.sent if s not in truth.corrupted]
    assert {truth.types[p.seq] for p in packets} == {RAW, HG, P.PacketType.DEVICE_INFO, P.PacketType.HEARTBEAT}
    c = parser.counters
    assert c.header_crc_failures + c.crc_failures <= len(truth.corrupted) <= c.resyncs + 1
    # the raw samples are the source, quantized to the int16 scale (error <= half a count)
    raw = [p for p in packets if p.ptype == RAW]
    starts = [round(p.timestamp_us / 1000) for p in raw]  # 1 kHz: the sample index
    scale = float(np.float32(cfg.raw_scale_uv))
    for p, i in zip(raw, starts, strict=True):
        want = np.clip(sim.raw[i: i + 8], -32768 * scale, 32767 * scale)
        np.testing.assert_allclose(p.body.values(), want, atol=scale / 2 + 1e-9)
    t = P.SequenceTracker()
    for p in packets:
        t.update(p.seq)
    faults = sorted(truth.dropped + truth.corrupted)
    assert t.counters.lost == sum(1 for s in faults if s < packets[-1].seq)


def test_simulator_config_and_source_errors():
    with pytest.raises(ValueError, match="raw_format must be one of"):
        SimulatorConfig(raw_format="int12")
    with pytest.raises(ValueError, match="drop_rate must be in"):
        SimulatorConfig(drop_rate=1.5)
    with pytest.raises(ValueError, match="raw_samples_per_packet must be in 1..255"):
        SimulatorConfig(raw_samples_per_packet=0)
    with pytest.raises(ValueError, match="raw must have shape"):
        DeviceSimulator(SimulatorConfig(n_channels=4), raw=np.zeros((10, 5)))
    with pytest.raises(ValueError, match="hg holds NaN"):
        DeviceSimulator(SimulatorConfig(n_channels=2), hg=np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="transport must be one of"):
        SimulatorLink(DeviceSimulator(), transport="usb")


# ---- the reader's packet handling without a thread -----------------------------------------------------------


def _reader(**kw) -> SerialReader:
    return SerialReader(ReaderConfig(**kw))


def _info(n_ch: int = 2, seq: int = 0) -> P.Packet:
    return P.decode(P.encode_device_info(seq, 0, P.DeviceInfo(1, 1, n_ch, 1000.0, 125.0, P.SampleFormat.INT16,
                                                              P.SampleFormat.INT16, 4, 1, 0.5, 1.0, "strip")))


def _raw(seq: int, ts: int, codes) -> P.Packet:
    return P.decode(P.encode_raw(seq, ts, np.asarray(codes), P.SampleFormat.INT16, 0.5))


@pytest.mark.parametrize("policy", ["zeros", "hold", "nan", "none"])
def test_gap_fill_policies(policy):
    r = _reader(gap_policy=policy)
    a = [[1, 2], [3, 4], [5, 6], [7, 8]]
    # packet 2 (4 samples at t = 4..7 ms) is lost: seq jumps 1 -> 3 and time 0 -> 8000 µs
    r._handle([_info(), _raw(1, 0, a), _raw(3, 8000, a)], now=12.5)
    blocks = r.drain()
    assert r.counters.gaps == 1 and r.counters.lost == 1
    assert [b.filled for b in blocks] == ([False, True, False] if policy != "none" else [False, False])
    assert [b.after_gap for b in blocks] == ([False, True, True] if policy != "none" else [False, True])
    if policy == "none":
        assert r.counters.filled_samples == 0
        return
    fill = blocks[1]
    np.testing.assert_array_equal(fill.device_time_us, [4000, 5000, 6000, 7000])
    np.testing.assert_array_equal(fill.host_time_s, [12.5] * 4)
    want = {"zeros": np.zeros((4, 2)), "hold": np.tile([3.5, 4.0], (4, 1)), "nan": np.full((4, 2), np.nan)}[policy]
    np.testing.assert_array_equal(fill.values, want)
    np.testing.assert_array_equal(blocks[2].device_time_us, [8000, 9000, 10000, 11000])
    assert r.counters.filled_samples == 4


def test_timestamps_unwrap_and_bad_packets_are_counted():
    r = _reader(max_fill_s=0.05)
    a = np.ones((4, 2), int)
    ts0 = 2**32 - 6000
    r._handle([_raw(0, 0, a)], now=1.0)  # before any DEVICE_INFO: rates unknown
    r._handle([_info(seq=1), _raw(2, ts0, a), _raw(3, ts0 + 4000, a), _raw(4, (ts0 + 8000) % 2**32, a)], now=2.0)
    r._handle([_raw(5, 1_000_000, a)], now=3.0)  # a 1-second hole: longer than max_fill_s, not filled
    r._handle([_raw(6, 1_004_000, np.ones((4, 3), int)), _raw(6, 1_004_000, a)], now=4.0)  # 3 channels; duplicate
    blocks = r.drain()
    t = np.concatenate([b.device_time_us for b in blocks[:3]])
    np.testing.assert_array_equal(np.diff(t), np.full(11, 1000))
    assert t[-1] == 2**32 + 5000  # past the wrap
    assert blocks[3].after_gap and not blocks[3].filled and blocks[3].device_time_us[0] == 2**32 + 1_000_000
    c = r.counters
    assert (c.data_before_info, c.channel_mismatches, c.duplicates, c.restarts, c.filled_samples) == (1, 1, 1, 1, 0)


def test_reader_config_errors():
    with pytest.raises(ValueError, match="gap_policy must be one of"):
        ReaderConfig(gap_policy="interpolate")
    with pytest.raises(ValueError, match="stall_timeout_s must be > 0"):
        ReaderConfig(stall_timeout_s=0)
    with pytest.raises(ValueError, match="queue_size must be >= 1"):
        ReaderConfig(queue_size=0)
    assert ReaderConfig.from_dict(ReaderConfig(url="socket://x:1").to_dict()).url == "socket://x:1"


# ---- over real transports ------------------------------------------------------------------------------------


def test_reader_over_loop_url_against_truth():
    cfg = SimulatorConfig(n_channels=16, seed=5, drop_rate=0.03, corrupt_rate=0.03)
    sim = DeviceSimulator(cfg, raw=source(5000, 16, seed=1))
    stream = sim.stream_bytes(3.0)
    with SerialReader(ReaderConfig(url="loop://", gap_policy="zeros")) as r:
        assert r.wait_connected(5)
        for i in range(0, len(stream), 3000):
            r.write(stream[i: i + 3000])
        n_raw = 3000
        blocks = collect(r, lambda bl: sum(len(b.values) for b in bl if b.kind == RAW) >= n_raw - 8)
        assert wait_for(lambda: r.counters.bytes == len(stream) + P.OVERHEAD_BYTES + P.CONTROL_PAYLOAD_BYTES)  # + echo
        blocks += r.drain()
        counters = r.counters
    values, dev_t, filled = raw_stream(blocks)
    truth = sim.truth
    faulty = set(truth.dropped) | set(truth.corrupted)
    # every sample is there once, data or fill, in time order; fills cover exactly the faulty raw packets
    start = dev_t[0] // 1000
    np.testing.assert_array_equal(dev_t, (start + np.arange(len(dev_t))) * 1000)
    raw_seqs = [b.seq for b in blocks if b.kind == RAW]
    inner = [s for s in faulty if truth.types[s] == RAW and min(raw_seqs) < s < max(raw_seqs)]
    assert len(inner) >= 3 and filled.sum() == 8 * len(inner)
    scale = float(np.float32(cfg.raw_scale_uv))
    ok = ~filled
    np.testing.assert_allclose(values[ok], np.clip(sim.raw[(dev_t // 1000)[ok]], -32768 * scale, 32767 * scale),
                               atol=scale / 2 + 1e-9)
    np.testing.assert_array_equal(values[filled], 0.0)
    assert counters.lost == sum(1 for s in faulty if s < r.tracker.newest)
    assert counters.packets == len(truth.sent) - len(truth.corrupted)  # its own REQUEST_INFO echo not counted
    assert counters.crc_failures + counters.header_crc_failures <= len(truth.corrupted)


def test_reader_over_socket_reconnects_and_watchdog():
    sim = DeviceSimulator(SimulatorConfig(n_channels=32, seed=7))
    with SimulatorLink(sim, "socket", speed=2.0) as link:
        cfg = ReaderConfig(url=link.url, stall_timeout_s=0.25, reconnect_delay_s=0.05, max_fill_s=30.0)
        with SerialReader(cfg) as r:
            assert wait_for(lambda: r.device_info is not None and r.counters.packets > 50)
            assert r.device_info.n_channels == 32 and r.device_info.layout == "ld8x8"
            link.pause(0.6)  # the device stops sending: one stall
            assert wait_for(lambda: r.counters.stalls == 1)
            assert wait_for(lambda: not r.stalled)
            link.disconnect()  # the cable is pulled
            assert wait_for(lambda: r.counters.reconnects == 1 and link.connections == 2)
            before = r.counters.packets
            assert wait_for(lambda: r.counters.packets > before + 50)
            blocks = r.drain()
            c = r.counters
    assert c.disconnects >= 1 and c.stalls == 1 and c.crc_failures == 0
    # what the device could not send (paused, disconnected) are holes the reader saw: the tracker counts them,
    # plus the few packets that were in flight when the connection dropped
    first, newest = min(sim.truth.sent), r.tracker.newest
    offline = [s for s in sim.truth.lost_offline if first < s < newest]
    assert len(offline) > 50 and len(offline) <= c.lost <= len(offline) + 10
    _, dev_t, filled = raw_stream(blocks)
    assert filled.any() and np.all(np.diff(dev_t) == 1000)
    assert all(np.all(b.host_time_s > 0) for b in blocks)


def test_reader_reconnects_on_stall_when_asked():
    sim = DeviceSimulator(SimulatorConfig(n_channels=4, seed=8))
    with SimulatorLink(sim, "socket", speed=2.0) as link:
        cfg = ReaderConfig(url=link.url, stall_timeout_s=0.2, reconnect_on_stall=True, reconnect_delay_s=0.05)
        with SerialReader(cfg) as r:
            assert wait_for(lambda: r.counters.packets > 20)
            link.pause(0.5)
            assert wait_for(lambda: r.counters.stalls >= 1 and r.counters.reconnects >= 1)
            before = r.counters.packets
            assert wait_for(lambda: r.counters.packets > before + 20)  # data flows on the new connection
            assert link.connections >= 2 and r.counters.disconnects >= 1


def test_reader_queue_overflow_never_blocks_the_reader():
    sim = DeviceSimulator(SimulatorConfig(n_channels=4, seed=2))
    stream = sim.stream_bytes(2.0)
    with SerialReader(ReaderConfig(url="loop://", queue_size=5)) as r:
        assert r.wait_connected(5)
        r.write(stream)
        assert wait_for(lambda: r.counters.bytes >= len(stream))
        blocks = r.drain()
        c = r.counters
    n_data = sum(1 for s in sim.truth.sent if sim.truth.types[s] in (RAW, HG))
    assert len(blocks) == 5 and c.queue_overflows == n_data - 5
    assert blocks[-1].seq == max(s for s in sim.truth.sent if sim.truth.types[s] in (RAW, HG))


def test_reader_over_pty():
    sim = DeviceSimulator(SimulatorConfig(n_channels=8, seed=4, send_hg=False))
    with SimulatorLink(sim, "pty", speed=4.0) as link, SerialReader(ReaderConfig(url=link.url)) as r:
        blocks = collect(r, lambda bl: len(bl) >= 40)
        assert r.device_info is not None and r.device_info.n_channels == 8
    assert len(blocks) >= 40 and all(b.kind == RAW and b.values.shape == (8, 8) for b in blocks)
    # a block is available after the device's clock reached its first sample (pacing is real time / 4)
    for b in blocks:
        due = link.started_at + b.device_time_us[0] / 1e6 / 4.0
        assert b.host_time_s[0] >= due - 0.002


def test_reader_keeps_retrying_an_absent_port():
    with SerialReader(ReaderConfig(url="socket://127.0.0.1:1", reconnect_delay_s=0.02)) as r:
        assert not r.wait_connected(0.3)
        assert r.get(timeout=0.05) is None
    assert r.counters.reconnects == 0
