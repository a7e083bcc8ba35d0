"""Hypothesis fuzzing of the Python stream parser: random bytes and valid streams with random bit flips,
deletions, insertions (random bytes or copies of real headers) and truncation, fed in random chunks. Checked:
no exception, no hang (a per-example deadline), a bounded buffer, every accepted packet is byte-for-byte one
that was sent (in order), every packet no mutation touched is delivered, and the byte counters add up."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from edgensd.firmware_bridge import protocol as P
from edgensd.firmware_bridge.protocol import Command, Control, DeviceInfo, Heartbeat, SampleFormat, StreamParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=150, deadline=timedelta(seconds=2), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FORMATS = [SampleFormat.INT16, SampleFormat.INT24, SampleFormat.FLOAT32]


@st.composite
def packet_bytes(draw, seq: int) -> bytes:
    ts = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.integers(0, 5))
    if kind <= 2:
        fmt = FORMATS[draw(st.integers(0, 2))]
        n_ch, n_s = draw(st.integers(1, 40)), draw(st.integers(1, 6))
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        if fmt == SampleFormat.FLOAT32:
            codes = rng.standard_normal((n_s, n_ch)).astype(np.float32)
        else:
            lo, hi = P.INT_RANGE[fmt]
            codes = rng.integers(lo, hi + 1, (n_s, n_ch))
        return P.encode_samples(P.PacketType.RAW if kind < 2 else P.PacketType.HIGH_GAMMA, seq, ts, codes, fmt,
                                draw(st.floats(1e-6, 1e6)))
    if kind == 3:
        info = DeviceInfo(draw(st.integers(0, 2**32 - 1)), 1, draw(st.integers(1, 256)), 1000.0, 125.0,
                          SampleFormat.INT16, SampleFormat.FLOAT32, 8, 1, 0.195, 1.0,
                          draw(st.sampled_from(["ld8x8", ""])))
        return P.encode_device_info(seq, ts, info)
    if kind == 4:
        return P.encode_heartbeat(seq, ts, Heartbeat(draw(st.integers(0, 2**32 - 1)), 0, draw(st.integers(0, 65535))))
    return P.encode_control(seq, ts, Control(draw(st.sampled_from(list(Command))), draw(st.integers(0, 2**32 - 1))))


@st.composite
def damaged_streams(draw):
    """(sent packets, their offsets, mutated stream, per-packet 'untouched' flags)."""
    n = draw(st.integers(1, 12))
    packets = [draw(packet_bytes(i)) for i in range(n)]
    offsets = np.cumsum([0] + [len(p) for p in packets])
    orig = b"".join(packets)
    touched = np.zeros(len(orig) + 1, bool)  # touched[i]: byte i changed / removed, or something inserted before it
    flips: dict[int, int] = {}
    deleted = np.zeros(len(orig), bool)
    inserts: dict[int, bytes] = {}
    cut = len(orig)
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "header", "truncate"]))
        pos = draw(st.integers(0, len(orig) - 1))
        if op == "flip":
            flips[pos] = flips.get(pos, 0) ^ (1 << draw(st.integers(0, 7)))
            touched[pos] |= flips[pos] != 0
        elif op == "delete":
            k = draw(st.integers(1, 30))
            deleted[pos: pos + k] = True
            touched[pos: pos + k] = True
        elif op == "insert":
            inserts[pos] = inserts.get(pos, b"") + draw(st.binary(min_size=1, max_size=30))
            touched[pos] = True
        elif op == "header":  # a real header with nothing behind it: a valid false header
            src = packets[draw(st.integers(0, n - 1))]
            inserts[pos] = inserts.get(pos, b"") + src[: draw(st.integers(2, 26))]
            touched[pos] = True
        else:
            cut = min(cut, pos)
    out = bytearray()
    for i in range(cut + 1):
        out += inserts.get(i, b"")
        if i < cut and not deleted[i]:
            out.append(orig[i] ^ flips.get(i, 0))
    intact = []
    for k in range(n):
        a, b = offsets[k], offsets[k + 1]
        # an insertion right before a packet leaves it intact; anything inside or a cut before its end does not
        intact.append(b <= cut and not touched[a + 1: b].any() and not deleted[a] and flips.get(a, 0) == 0)
    return packets, bytes(out), intact


def _feed(parser: StreamParser, data: bytes, cuts: list[int]) -> list[bytes]:
    got, last = [], 0
    peak = 0
    for c in sorted(set(cuts)) + [len(data)]:
        got += [P.encode(p) for p in parser.feed(data[last:c])]
        last = c
        peak = max(peak, parser.buffered)
    assert peak <= parser.max_packet
    return got


@FUZZ
@given(data=st.binary(max_size=5000), cuts=st.lists(st.integers(0, 5000), max_size=20))
def test_random_bytes(data, cuts):
    parser = StreamParser(max_payload=1024)
    got = _feed(parser, data, [c for c in cuts if c <= len(data)])
    c = parser.counters
    assert c.bytes == len(data)
    assert c.bytes_discarded + sum(map(len, got)) + parser.buffered == len(data)
    for b in got:  # anything accepted from random bytes must still be a self-consistent packet
        assert P.encode(P.decode(b)) == b


@FUZZ
@given(case=damaged_streams(), cuts=st.lists(st.integers(0, 20000), max_size=30),
       max_payload=st.sampled_from([P.MAX_PAYLOAD, 600]))
def test_damaged_streams_never_yield_a_corrupted_packet(case, cuts, max_payload):
    packets, stream, intact = case
    parser = StreamParser(max_payload=max_payload)
    padded = stream + bytes(parser.max_packet)  # zeros resolve a wait on a false header's claimed length
    got = _feed(parser, padded, [c for c in cuts if c <= len(padded)])
    index = {p: i for i, p in enumerate(packets)}
    assert all(g in index for g in got), "a corrupted packet was accepted"
    order = [index[g] for g in got]
    assert order == sorted(set(order)), "packets out of order or duplicated"
    for i, ok in enumerate(intact):
        if ok and len(packets[i]) <= parser.max_packet:
            assert i in order, f"untouched packet {i} was lost"
    c = parser.counters
    assert c.packets_ok == len(got) and c.bytes == len(padded)
    assert c.bytes_discarded + sum(map(len, got)) + parser.buffered == len(padded)
    # the result does not depend on how the bytes were split
    whole = StreamParser(max_payload=max_payload)
    assert [P.encode(p) for p in whole.feed(padded)] == got and whole.counters == c
