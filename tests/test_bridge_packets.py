"""Tests of ``edgensd.firmware_bridge.protocol``: the byte layout of PROTOCOL.md (checked against an
independent bit-by-bit reference encoder written here), round trips, refusal of bad input, the stream
parser (resync, CRC rejection, counters, split-independence, bounded buffer) and the sequence tracker."""

from __future__ import annotations

import dataclasses
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edgensd.firmware_bridge import protocol as P
from edgensd.firmware_bridge.protocol import (
    Command,
    Control,
    DeviceInfo,
    Heartbeat,
    PacketType,
    ProtocolError,
    SampleFormat,
    SeqEvent,
    SequenceTracker,
    StreamParser,
)

SPEC = Path(__file__).resolve().parent.parent / "firmware_bridge" / "PROTOCOL.md"
FORMATS = [SampleFormat.INT16, SampleFormat.INT24, SampleFormat.FLOAT32]


# ---- an independent reference: bitwise CRCs and byte-by-byte packing, straight from PROTOCOL.md ----------


def ref_crc16(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def ref_crc32(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def le(value: int, n: int) -> bytes:
    return bytes((value >> (8 * i)) & 0xFF for i in range(n))


def ref_packet(ptype: int, seq: int, ts: int, n_ch: int, fmt: int, n_s: int, scale: float, payload: bytes) -> bytes:
    head = bytes([0xEB, 0x90, 1, ptype]) + le(seq, 2) + le(ts, 4) + le(n_ch, 2) + bytes([fmt, n_s])
    head += le(len(payload), 2) + struct.pack("<f", scale)
    head += le(ref_crc16(head), 2)
    return head + payload + le(ref_crc32(head + payload), 4)


def ref_samples_payload(codes: np.ndarray, fmt: SampleFormat) -> bytes:
    out = bytearray()
    for v in codes.reshape(-1):  # sample-major: row by row
        if fmt == SampleFormat.FLOAT32:
            out += struct.pack("<f", float(v))
        else:
            n = 2 if fmt == SampleFormat.INT16 else 3
            out += le(int(v) & ((1 << (8 * n)) - 1), n)
    return bytes(out)


def random_codes(rng: np.random.Generator, fmt: SampleFormat, n_s: int, n_ch: int) -> np.ndarray:
    if fmt == SampleFormat.FLOAT32:
        return (rng.standard_normal((n_s, n_ch)) * 50).astype(np.float32)
    lo, hi = P.INT_RANGE[fmt]
    c = rng.integers(lo, hi + 1, size=(n_s, n_ch))
    c.flat[0] = lo
    c.flat[-1] = hi
    return c


def info(**kw) -> DeviceInfo:
    fields = dict(device_id=0xC0FFEE, firmware_version=3, n_channels=64, raw_rate_hz=1000.0, frame_rate_hz=125.0,
                  raw_format=SampleFormat.INT16, hg_format=SampleFormat.INT16, raw_samples_per_packet=8,
                  hg_frames_per_packet=1, raw_scale=0.195, hg_scale=1 / 256, layout="ld8x8")
    fields.update(kw)
    return DeviceInfo(**fields)


def mixed_stream(rng: np.random.Generator, n: int) -> list[bytes]:
    """n packets of every type, consecutive sequence numbers."""
    out = []
    for i in range(n):
        seq, ts = i % 65536, 8000 * i
        k = i % 7
        if k == 0:
            out.append(P.encode_device_info(seq, ts, info()))
        elif k == 1:
            out.append(P.encode_heartbeat(seq, ts, Heartbeat(i, 0, 3)))
        elif k == 2:
            out.append(P.encode_control(seq, ts, Control(Command.SET_STREAMS, 3)))
        else:
            fmt = FORMATS[i % 3]
            ptype = PacketType.RAW if k < 5 else PacketType.HIGH_GAMMA
            codes = random_codes(rng, fmt, int(rng.integers(1, 9)), int(rng.integers(1, 20)))
            out.append(P.encode_samples(ptype, seq, ts, codes, fmt, 0.25 if fmt != SampleFormat.FLOAT32 else 1.0))
    return out


# ---- layout ----------------------------------------------------------------------------------------------


def test_crc_check_values_and_reference():
    assert P.crc16_ccitt_false(b"123456789") == 0x29B1 == ref_crc16(b"123456789")
    assert P.crc32_iso_hdlc(b"123456789") == 0xCBF43926 == ref_crc32(b"123456789")
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 300):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert P.crc16_ccitt_false(data) == ref_crc16(data)
        assert P.crc32_iso_hdlc(data) == ref_crc32(data)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("n_ch", [1, 3, 64, 257])
def test_samples_bytes_equal_reference(fmt, n_ch):
    rng = np.random.default_rng(n_ch)
    n_s = 1 if n_ch == 257 else 8
    codes = random_codes(rng, fmt, n_s, n_ch)
    seq, ts, scale = int(rng.integers(0, 65536)), int(rng.integers(0, 2**32)), 0.195
    got = P.encode_raw(seq, ts, codes, fmt, scale)
    want = ref_packet(1, seq, ts, n_ch, int(fmt), n_s, scale, ref_samples_payload(codes, fmt))
    assert got == want
    assert len(got) == 26 + n_s * n_ch * P.SAMPLE_BYTES[fmt]
    pkt = P.decode(got)
    assert pkt.ptype == PacketType.RAW and pkt.seq == seq and pkt.timestamp_us == ts and pkt.n_channels == n_ch
    np.testing.assert_array_equal(pkt.body.codes, codes)  # exact: integer codes / float32 bits
    np.testing.assert_allclose(pkt.body.values(), codes * np.float64(np.float32(scale)), rtol=1e-12)
    assert P.encode(pkt) == got


def test_int24_sign_and_byte_order():
    b = P.encode_high_gamma(0, 0, np.array([[-1, 1, -(1 << 23), (1 << 23) - 1, 0x123456]]), SampleFormat.INT24, 1.0)
    assert b[22:37] == bytes.fromhex("ffffff 010000 000080 ffff7f 563412")
    np.testing.assert_array_equal(P.decode(b).body.codes, [[-1, 1, -(1 << 23), (1 << 23) - 1, 0x123456]])


def test_other_packets_bytes_equal_reference():
    i = info(layout="hb128", n_channels=128)
    payload = (le(0xC0FFEE, 4) + le(3, 2) + le(128, 2) + struct.pack("<ff", 1000.0, 125.0) + bytes([1, 1, 8, 1])
               + struct.pack("<ff", 0.195, 1 / 256) + b"hb128".ljust(16, b"\0"))
    assert P.encode_device_info(9, 77, i) == ref_packet(3, 9, 77, 0, 0, 0, 0.0, payload)
    hb_payload = le(5, 4) + le(6, 4) + le(7, 2)
    assert P.encode_heartbeat(1, 2, Heartbeat(5, 6, 7)) == ref_packet(4, 1, 2, 0, 0, 0, 0.0, hb_payload)
    ctrl_payload = bytes([2, 0]) + le(9, 4)
    assert P.encode_control(3, 4, Control(Command.STOP, 9)) == ref_packet(5, 3, 4, 0, 0, 0, 0.0, ctrl_payload)
    for b in (P.encode_device_info(9, 77, i), P.encode_heartbeat(1, 2, Heartbeat(5, 6, 7)),
              P.encode_control(3, 4, Control(Command.STOP, 9))):
        assert P.encode(P.decode(b)) == b
    got = P.decode(P.encode_device_info(9, 77, i)).body
    f32 = {k: float(np.float32(getattr(i, k))) for k in ("raw_rate_hz", "frame_rate_hz", "raw_scale", "hg_scale")}
    assert got == dataclasses.replace(i, **f32)  # floats travel as float32


def test_spec_example_and_constants():
    text = SPEC.read_text()
    m = re.search(r"\[32767, -32768, 1\]\]` \(38 bytes\):\s*```\s*([0-9a-f ]+)\s*```", text)
    assert m, "PROTOCOL.md example block not found"
    want = bytes.fromhex(m.group(1))
    assert P.encode_raw(7, 123456, np.array([[100, -100, 0], [32767, -32768, 1]]), SampleFormat.INT16, 0.195) == want
    assert "`0xEB 0x90`" in text and P.SYNC == b"\xeb\x90"
    assert "`0x29B1`" in text and "`0xCBF43926`" in text
    assert f"0…{P.MAX_PAYLOAD}" in text
    # the budget rows follow from the formula bytes/s = 125 x (26 + C x N x bytes)
    rows = re.findall(r"^\| (\d+) \| (\d) kHz \| (int16|int24|float32) \| [^|]*?([\d ]+) \| ([\d ]+) \|$", text, re.M)
    assert len(rows) == 9
    for c, khz, fmt, pkt, bps in rows:
        n = 8 * int(khz)
        size = 26 + int(c) * n * {"int16": 2, "int24": 3, "float32": 4}[fmt]
        assert int(pkt.replace(" ", "")) == size and int(bps.replace(" ", "")) == 125 * size, (c, khz, fmt)


# ---- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("call", "match"), [
    (lambda: P.encode_raw(0, 0, np.array([[40000]]), SampleFormat.INT16, 1.0), "INT16 codes must be in"),
    (lambda: P.encode_raw(0, 0, np.array([[1 << 23]]), SampleFormat.INT24, 1.0), "INT24 codes must be in"),
    (lambda: P.encode_raw(0, 0, np.array([[0.5]]), SampleFormat.INT16, 1.0), "integer codes"),
    (lambda: P.encode_raw(0, 0, np.array([[np.nan, 1.0]]), SampleFormat.FLOAT32, 1.0), "channel 0 is nan"),
    (lambda: P.encode_raw(0, 0, np.array([[1e39]]), SampleFormat.FLOAT32, 1.0), "must be finite"),
    (lambda: P.encode_raw(0, 0, np.zeros(3, int), SampleFormat.INT16, 1.0), "shape"),
    (lambda: P.encode_raw(0, 0, np.zeros((256, 1), int), SampleFormat.INT16, 1.0), "n_samples must be <= 255"),
    (lambda: P.encode_raw(0, 0, np.zeros((1, 8193), int), SampleFormat.INT16, 1.0), "exceeds MAX_PAYLOAD"),
    (lambda: P.encode_raw(0, 0, np.zeros((1, 1), int), SampleFormat.INT16, 0.0), "scale must be > 0"),
    (lambda: P.encode_raw(0, 0, np.zeros((1, 1), int), SampleFormat.INT16, float("nan")), "scale must be a finite"),
    (lambda: P.encode_raw(0, 0, np.zeros((1, 1), int), 9, 1.0), "fmt must be one of"),
    (lambda: P.encode_raw(65536, 0, np.zeros((1, 1), int), SampleFormat.INT16, 1.0), "seq must be in 0..65535"),
    (lambda: P.encode_raw(0, -1, np.zeros((1, 1), int), SampleFormat.INT16, 1.0), "timestamp_us must be in"),
    (lambda: P.encode_samples(PacketType.CONTROL, 0, 0, np.zeros((1, 1), int), SampleFormat.INT16, 1.0), "RAW or HIGH"),
    (lambda: P.encode_device_info(0, 0, info(n_channels=0)), "n_channels must be >= 1"),
    (lambda: P.encode_device_info(0, 0, info(layout="x" * 17)), "layout must be printable ASCII"),
    (lambda: P.encode_device_info(0, 0, info(raw_rate_hz=float("inf"))), "raw_rate_hz must be a finite"),
    (lambda: P.encode_device_info(0, 0, info(hg_format=SampleFormat.NONE)), "hg_format must be INT16"),
    (lambda: P.encode_heartbeat(0, 0, Heartbeat(-1, 0, 0)), "packets_sent must be in"),
    (lambda: P.encode_control(0, 0, Control(9)), "command must be one of"),
])
def test_encoder_refuses_bad_input(call, match):
    with pytest.raises(ProtocolError, match=match):
        call()


def _reheader(packet: bytes, **fields) -> bytes:
    """The packet with header fields replaced and both CRCs recomputed (a well-formed lie)."""
    names = ["sync", "version", "ptype", "seq", "ts", "n_ch", "fmt", "n_s", "plen", "scale"]
    vals = dict(zip(names, struct.unpack_from("<2sBBHIHBBHf", packet), strict=True))
    vals.update(fields)
    head = struct.pack("<2sBBHIHBBHf", *(vals[n] for n in names))
    head += le(ref_crc16(head), 2)
    body = head + packet[22:-4]
    return body + le(ref_crc32(body), 4)


GOOD = P.encode_raw(1, 2, np.arange(6).reshape(2, 3), SampleFormat.INT16, 1.0)


@pytest.mark.parametrize(("packet", "match"), [
    (GOOD[:21], "header needs 22 bytes"),
    (b"\x00" + GOOD[1:], "sync word"),
    (GOOD[:5] + bytes([GOOD[5] ^ 1]) + GOOD[6:], "header crc"),
    (GOOD[:-1] + bytes([GOOD[-1] ^ 0x80]), "packet crc"),
    (GOOD[:-1], "packet has 37 bytes"),
    (_reheader(GOOD, version=2), "unsupported protocol version 2"),
    (_reheader(GOOD, ptype=9), "unknown packet type 9"),
    (_reheader(GOOD, fmt=7), "unknown sample format 7"),
    (_reheader(GOOD, n_ch=4), "payload_len 12 != n_channels 4"),
    (_reheader(GOOD, scale=-1.0), "scale must be finite and > 0"),
    (_reheader(GOOD, n_s=0), "n_samples >= 1"),
    (_reheader(P.encode_heartbeat(0, 0, Heartbeat(1, 2, 3)), n_ch=1), "must have n_channels, format"),
    (_reheader(P.encode_raw(0, 0, np.array([[1.0, 2.0]]), SampleFormat.FLOAT32, 1.0)[:22]
               + struct.pack("<ff", 1, np.nan) + b"\0" * 4), "non-finite"),
])
def test_decode_refuses_damaged_or_impossible_packets(packet, match):
    with pytest.raises(ProtocolError, match=match):
        P.decode(packet)


# ---- the stream parser -----------------------------------------------------------------------------------


def _parse(chunks, **kw) -> tuple[list[bytes], StreamParser]:
    parser = StreamParser(**kw)
    got = []
    for c in chunks:
        got += [P.encode(p) for p in parser.feed(c)]
    return got, parser


def test_parser_any_split_same_packets_and_counters():
    rng = np.random.default_rng(1)
    packets = mixed_stream(rng, 40)
    stream = b"".join(b"\x00\xeb\x13" * (i % 3) + p for i, p in enumerate(packets)) + b"\xeb"
    whole, p0 = _parse([stream])
    assert whole == packets
    c = p0.counters
    assert c.packets_ok == 40 and c.bytes == len(stream) and c.bytes_discarded == 3 * sum(i % 3 for i in range(40))
    assert c.resyncs == sum(1 for i in range(40) if i % 3) and p0.buffered == 1  # the trailing 0xEB waits
    cuts = np.sort(rng.choice(len(stream), 60, replace=False))
    for chunks in ([stream[i: i + 1] for i in range(len(stream))], np.split(np.frombuffer(stream, np.uint8), cuts)):
        got, p1 = _parse([bytes(c) for c in chunks])
        assert got == packets and p1.counters == p0.counters


def test_parser_never_trusts_the_length_of_a_false_header():
    """A header with a valid CRC that claims 16384 bytes, followed by good packets: none of them is lost; they
    are delivered once the claimed length has arrived and the packet CRC has failed (PROTOCOL.md)."""
    packets = mixed_stream(np.random.default_rng(2), 400)
    liar = _reheader(P.encode_raw(0, 0, np.zeros((1, 8192), int), SampleFormat.INT16, 1.0))[:22]
    assert len(b"".join(packets)) > P.MAX_PACKET
    parser = StreamParser()
    got = parser.feed(liar + packets[0])
    assert got == [] and parser.buffered == 22 + len(packets[0])  # waiting for the claimed length
    got = [P.encode(p) for p in got + parser.feed(b"".join(packets[1:]))]
    assert got == packets
    assert parser.counters.crc_failures == 1 and parser.counters.bytes_discarded == 22
    # an impossible header (length inconsistent with C x N) is rejected before any payload is awaited
    got, parser = _parse([_reheader(GOOD, n_ch=500)[:22] + packets[0]])
    assert got == packets[:1] and parser.counters.bad_headers == 1


@pytest.mark.parametrize("where", ["sync", "header", "payload", "crc", "truncate", "insert"])
def test_parser_drops_exactly_the_damaged_packet(where):
    packets = mixed_stream(np.random.default_rng(3), 9)
    k = 4
    bad = bytearray(packets[k])
    if where == "sync":
        bad[1] ^= 0xFF
    elif where == "header":
        bad[14] ^= 0x01
    elif where == "payload":
        bad[25] ^= 0x10
    elif where == "crc":
        bad[-1] ^= 0x01
    elif where == "truncate":
        bad = bad[: len(bad) // 2]
    else:
        bad[30:30] = b"\x55"
    got, parser = _parse([b"".join(packets[:k]) + bytes(bad) + b"".join(packets[k + 1:])])
    assert got == packets[:k] + packets[k + 1:]
    c = parser.counters
    assert c.packets_ok == 8 and c.resyncs == 1 and c.bytes_discarded == len(bad)
    assert c.header_crc_failures + c.crc_failures + c.bad_headers >= (where != "sync")


def test_parser_rejects_crc_valid_invalid_payloads_whole():
    nan_pkt = _reheader(P.encode_raw(0, 0, np.array([[1.0, 2.0]]), SampleFormat.FLOAT32, 1.0)[:22]
                        + struct.pack("<ff", 1, np.nan) + b"\0" * 4)
    bad_info = _reheader(P.encode_device_info(0, 0, info())[:-4].replace(b"ld8x8", b"ld\x01x8") + b"\0" * 4)
    bad_cmd = _reheader(P.encode_control(0, 0, Control(Command.START))[:22] + bytes([77, 0, 0, 0, 0, 0]) + b"\0" * 4)
    good = mixed_stream(np.random.default_rng(4), 3)
    got, parser = _parse([good[0] + nan_pkt + good[1] + bad_info + bad_cmd + good[2]])
    assert got == good
    c = parser.counters
    assert c.rejected_payloads == 3 and c.bytes_discarded == len(nan_pkt) + len(bad_info) + len(bad_cmd)
    assert c.crc_failures == c.header_crc_failures == 0


def test_parser_buffer_is_bounded_and_max_payload_respected():
    rng = np.random.default_rng(5)
    parser = StreamParser(max_payload=64)
    big = P.encode_raw(0, 0, np.zeros((8, 8), int), SampleFormat.INT16, 1.0)  # 128-byte payload > 64
    small = P.encode_raw(1, 0, np.zeros((2, 8), int), SampleFormat.INT16, 1.0)
    peak = 0
    got = []
    for _ in range(50):
        got += parser.feed(rng.integers(0, 256, 997, dtype=np.uint8).tobytes() + b"\xeb\x90" * 40 + big + small)
        peak = max(peak, parser.buffered)
    assert peak <= parser.max_packet == 22 + 64 + 4
    assert sum(p.seq == 1 for p in got) == 50 and not any(p.seq == 0 and p.n_channels == 8 for p in got)
    with pytest.raises(ValueError, match="max_payload must be in 0..16384"):
        StreamParser(max_payload=20000)


def test_parser_random_garbage_accepts_nothing_and_is_linear():
    rng = np.random.default_rng(6)
    parser = StreamParser()
    data = rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    assert parser.feed(data) == []
    assert parser.counters.bytes_discarded + parser.buffered == len(data)


# ---- sequence tracker ------------------------------------------------------------------------------------


def test_sequence_tracker_wraps_and_classifies():
    t = SequenceTracker()
    events = [t.update(s) for s in (65534, 65535, 0, 1)]
    assert events == [(SeqEvent.FIRST, 0)] + [(SeqEvent.IN_ORDER, 0)] * 3
    assert t.update(4) == (SeqEvent.GAP, 2)  # 2, 3 lost
    assert t.update(3) == (SeqEvent.LATE, 0)  # 3 arrives late
    assert t.update(3) == (SeqEvent.DUPLICATE, 0)
    assert t.update(4) == (SeqEvent.DUPLICATE, 0)
    assert t.update(65535) == (SeqEvent.DUPLICATE, 0)  # across the wrap
    assert t.update(5) == (SeqEvent.IN_ORDER, 0)
    assert t.update(40000) == (SeqEvent.RESTART, 0)  # 34995 ahead: more than max_gap
    assert t.update(40001) == (SeqEvent.IN_ORDER, 0)
    c = t.counters
    assert (c.received, c.gaps, c.lost, c.duplicates, c.reordered, c.restarts) == (12, 1, 1, 3, 1, 1)


def test_sequence_tracker_against_a_reference_on_random_losses():
    """Random drops over several wraps: lost equals the number of dropped packets, no false events."""
    rng = np.random.default_rng(7)
    sent = np.arange(200_000) % 65536
    keep = rng.random(sent.size) > 0.01
    keep[0] = True
    t = SequenceTracker()
    for s in sent[keep]:
        t.update(int(s))
    last = np.flatnonzero(keep)[-1]
    assert t.counters.lost == int((~keep[:last]).sum())
    assert t.counters.duplicates == t.counters.restarts == t.counters.reordered == 0
    runs = np.flatnonzero(np.diff(np.r_[0, (~keep[:last]).astype(int)]) == 1)
    assert t.counters.gaps == runs.size


def test_sequence_tracker_window_and_bad_arguments():
    t = SequenceTracker(window=4)
    for s in range(10):
        t.update(s)
    assert t.update(7) == (SeqEvent.DUPLICATE, 0)
    assert t.update(2) == (SeqEvent.RESTART, 0)  # 7 behind, beyond the window of 4
    with pytest.raises(ValueError, match="seq must be in 0..65535"):
        t.update(65536)
    with pytest.raises(ValueError, match="window \\+ max_gap < modulus"):
        SequenceTracker(window=40000, max_gap=40000)


def test_bridge_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import edgensd.firmware_bridge.reader, edgensd.firmware_bridge.simulator\n"
            "import edgensd.firmware_bridge.protocol as p; print(p.VERSION)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr
