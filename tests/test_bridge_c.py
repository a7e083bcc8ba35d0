"""Tests of the bridge's C code (firmware_bridge/c): the C unit tests and the seeded fuzz driver, each built
strictly (C99, -Wall -Wextra -Werror -pedantic -Wconversion) and with address + undefined-behaviour sanitizers
in a temporary folder, and cross-language checks: the C framer's bytes equal the Python encoder's for the
same packets (all formats, several channel counts, all packet types), the C parser reads what Python frames
(with garbage and damage) and gives the same packets, decoded values and counters as the Python parser, and
hypothesis feeds the same random / mutated bytes to both parsers."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from edgensd.firmware_bridge import protocol as P
from edgensd.firmware_bridge.protocol import (
    Command,
    Control,
    DeviceInfo,
    Heartbeat,
    Packet,
    PacketType,
    SampleFormat,
    Samples,
    StreamParser,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

C_DIR = Path(__file__).resolve().parent.parent / "firmware_bridge" / "c"
FMT_NAME = {SampleFormat.INT16: "int16", SampleFormat.INT24: "int24", SampleFormat.FLOAT32: "float32"}


def _flags() -> dict[str, list[str]]:
    """The NAME := value lines of firmware_bridge/c/flags.mk (the Makefile includes the same file)."""
    flags = {}
    for line in (C_DIR / "flags.mk").read_text().splitlines():
        if ":=" in line and not line.lstrip().startswith("#"):
            name, value = line.split(":=", 1)
            flags[name.strip()] = value.split()
    return flags


def _run(cmd, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, timeout=timeout, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]!r}\n{proc.stderr[-3000:]!r}"
    return proc


def build(out: Path, main: str, sanitize: bool, core: Path = C_DIR / "edbridge.c") -> Path:
    """Compile firmware_bridge/c/MAIN.c with the core into OUT (never into the source tree)."""
    cc = shutil.which(os.environ.get("CC", "gcc"))
    assert cc is not None, "a C compiler (gcc) is needed: apt-get install gcc"
    f = _flags()
    opt = ["-O1", "-g", *f["SANITIZE"]] if sanitize else ["-O2"]
    exe = out / f"{main}{'_san' if sanitize else ''}"
    _run([cc, *f["STRICT"], *opt, f"-I{C_DIR}", C_DIR / f"{main}.c", core, "-o", exe])
    return exe


@pytest.fixture(scope="module")
def cbin(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("edbridge")
    return {
        "test": build(d, "test_edbridge", False),
        "test_san": build(d, "test_edbridge", True),
        "fuzz": build(d, "edbridge_fuzz", False),
        "fuzz_san": build(d, "edbridge_fuzz", True),
        "tool": build(d, "edbridge_tool", True),
    }


# ---- text descriptions for edbridge_tool, and its parse output ---------------------------------------------


def describe(pkt: Packet) -> str:
    """A packet as the `edbridge_tool frame` text line (floats as exact hex)."""
    b = pkt.body
    head = f"{pkt.seq} {pkt.timestamp_us}"
    if isinstance(b, Samples):
        kind = "raw" if pkt.ptype == PacketType.RAW else "hg"
        vals = (float(v).hex() if b.fmt == SampleFormat.FLOAT32 else str(int(v)) for v in b.codes.reshape(-1))
        return (f"{kind} {head} {FMT_NAME[b.fmt]} {float(np.float32(b.scale)).hex()} {b.codes.shape[1]} "
                f"{b.codes.shape[0]} {' '.join(vals)}")
    if isinstance(b, DeviceInfo):
        return (f"info {head} {b.device_id} {b.firmware_version} {b.n_channels} {b.raw_rate_hz.hex()} "
                f"{b.frame_rate_hz.hex()} {int(b.raw_format)} {int(b.hg_format)} {b.raw_samples_per_packet} "
                f"{b.hg_frames_per_packet} {b.raw_scale.hex()} {b.hg_scale.hex()} {b.layout or '-'}")
    if isinstance(b, Heartbeat):
        return f"heartbeat {head} {b.packets_sent} {b.tx_overruns} {b.status}"
    return f"control {head} {int(b.command)} {b.arg}"


def c_parse(tool: Path, data: bytes, chunk: int = 4096, cap: int = P.MAX_PACKET) -> tuple[list[dict], dict]:
    out = _run([tool, "parse", chunk, cap], input=data).stdout.decode()
    packets, counters = [], {}
    for line in out.splitlines():
        tag, *rest = line.split()
        if tag == "packet":
            packets.append({"bytes": bytes.fromhex(rest[0])})
        elif tag == "counters":
            counters = {k: int(v) for k, v in (t.split("=") for t in rest)}
        else:
            packets[-1][tag] = rest
    return packets, counters


def check_same_as_python(c_packets: list[dict], py_packets: list[Packet]) -> None:
    """Each packet the C parser printed equals the Python parser's, field by field (floats exactly)."""
    assert len(c_packets) == len(py_packets)
    for c, p in zip(c_packets, py_packets, strict=True):
        assert c["bytes"] == P.encode(p)
        t, seq, ts, nch, fmt, ns, scale = c["header"]
        assert (int(t), int(seq), int(ts), int(nch)) == (int(p.ptype), p.seq, p.timestamp_us, p.n_channels)
        b = p.body
        if isinstance(b, Samples):
            want = (int(b.fmt), b.codes.shape[0], float(np.float32(b.scale)))
            assert (int(fmt), int(ns), float.fromhex(scale)) == want
            conv = float.fromhex if b.fmt == SampleFormat.FLOAT32 else int
            np.testing.assert_array_equal(np.array([conv(v) for v in c["values"]]), b.codes.reshape(-1).astype(float))
        elif isinstance(b, DeviceInfo):
            want = describe(p).split()[3:]
            floats = (3, 4, 9, 10)  # rates and scales: compare the values, hex spellings differ
            assert [float.fromhex(x) if i in floats else x for i, x in enumerate(c["info"])] == [
                float.fromhex(x) if i in floats else x for i, x in enumerate(want)]
        elif isinstance(b, Heartbeat):
            assert c["heartbeat"] == [str(b.packets_sent), str(b.tx_overruns), str(b.status)]
        else:
            assert c["control"] == [str(int(b.command)), str(b.arg)]


def random_packets(rng: np.random.Generator, n: int, channels=(1, 3, 17, 64), formats=tuple(FMT_NAME)) -> list[Packet]:
    out = []
    for i in range(n):
        seq, ts = (i * 977) % 65536, int(rng.integers(0, 2**32))
        k = i % 6
        if k == 0:
            body = DeviceInfo(int(rng.integers(0, 2**32)), 3, 64, 1000.0, 125.0, SampleFormat.INT24,
                              SampleFormat.FLOAT32, 8, 1, float(np.float32(0.195)), 1.0, ["ld8x8", "", "hb128"][i % 3])
            out.append(Packet(PacketType.DEVICE_INFO, seq, ts, body))
        elif k == 1:
            hb = Heartbeat(int(rng.integers(0, 2**32)), int(rng.integers(0, 2**32)), int(rng.integers(0, 2**16)))
            out.append(Packet(PacketType.HEARTBEAT, seq, ts, hb))
        elif k == 2:
            out.append(Packet(PacketType.CONTROL, seq, ts, Control(Command(1 + i % 4), int(rng.integers(0, 2**32)))))
        else:
            fmt = formats[i % len(formats)]
            n_ch, n_s = channels[i % len(channels)], int(rng.integers(1, 9))
            if fmt == SampleFormat.FLOAT32:
                codes = rng.integers(0, 2**32, (n_s, n_ch), dtype=np.uint64).astype(np.uint32).view(np.float32)
                codes = np.where(np.isfinite(codes), codes, np.float32(-0.0))  # every finite bit pattern
            else:
                lo, hi = P.INT_RANGE[fmt]
                codes = rng.integers(lo, hi + 1, (n_s, n_ch))
                codes.flat[0] = lo
            ptype = PacketType.RAW if k != 5 else PacketType.HIGH_GAMMA
            out.append(Packet(ptype, seq, ts, Samples(fmt, float(np.float32(0.195 * (1 + k))), codes)))
    return out


# ---- C-only programs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["test", "test_san"])
def test_c_unit_tests(cbin, name):
    out = _run([cbin[name]]).stdout.decode()
    assert "FAIL" not in out and ", 0 failed" in out, out


@pytest.mark.parametrize(("name", "seed", "iters"), [("fuzz_san", 1, 2500), ("fuzz", 2, 8000)])
def test_c_fuzz_driver(cbin, name, seed, iters):
    out = _run([cbin[name], seed, iters]).stdout.decode()
    assert out.strip().endswith(f"fuzz: {iters} iterations, 0 failures"), out[-2000:]


def test_c_fuzz_driver_catches_a_parser_that_skips_the_crc(tmp_path):
    """The fuzz driver can fail: against a copy of the parser whose packet-CRC check is removed it reports
    accepted corrupted packets."""
    src = (C_DIR / "edbridge.c").read_text()
    check = "if (get32(b + total - EDB_CRC_BYTES) != edb_crc32(0, b, total - EDB_CRC_BYTES)) {"
    assert src.count(check) == 1
    broken = tmp_path / "edbridge_nocrc.c"
    broken.write_text(src.replace(check, "if (total == 0) {"))
    exe = build(tmp_path, "edbridge_fuzz", False, core=broken)
    proc = subprocess.run([exe, "3", "400"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "FAIL: accepted a packet that was not sent" in proc.stdout


def test_c_core_has_no_allocation_and_no_static_state(tmp_path):
    """edbridge.c links against nothing but memcpy/memmove/memset (no malloc, no stdio, no libm) and holds no
    writable static data: the parser's state and buffer are the caller's."""
    cc, nm = shutil.which(os.environ.get("CC", "gcc")), shutil.which("nm")
    assert cc is not None and nm is not None, "gcc and nm (binutils) are needed"
    obj = tmp_path / "edbridge.o"
    _run([cc, *_flags()["STRICT"], "-Os", "-c", C_DIR / "edbridge.c", "-o", obj])
    undefined = set(_run([nm, "-u", obj]).stdout.decode().split()) - {"U"}
    assert undefined <= {"memcpy", "memmove", "memset"}, undefined
    symbols = [line.split() for line in _run([nm, obj]).stdout.decode().splitlines()]
    writable = [s for s in symbols if len(s) == 3 and s[1] in "bBdDcC"]
    assert writable == [], writable


# ---- cross-language ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(FMT_NAME))
def test_c_framer_bytes_equal_python(cbin, fmt):
    packets = random_packets(np.random.default_rng(int(fmt)), 36, channels=(1, 2, 5, 64, 128, 256), formats=(fmt,))
    packets.append(Packet(PacketType.RAW, 65535, 2**32 - 1, Samples(fmt, 1.0, np.ones((1, 4096 // P.SAMPLE_BYTES[fmt]),
                                                                                              np.int32))))
    text = "\n".join(describe(p) for p in packets) + "\n"
    c_bytes = _run([cbin["tool"], "frame"], input=text.encode()).stdout
    assert c_bytes == b"".join(P.encode(p) for p in packets)
    parser = StreamParser()  # and Python reads the C bytes back
    assert [P.encode(p) for p in parser.feed(c_bytes)] == [P.encode(p) for p in packets]
    assert parser.counters.packets_ok == len(packets) and parser.counters.bytes_discarded == 0


@pytest.mark.parametrize(("chunk", "cap"), [(1, P.MAX_PACKET), (13, 26 + 700), (4096, P.MAX_PACKET)])
def test_c_parser_reads_python_stream_like_python(cbin, chunk, cap):
    rng = np.random.default_rng(chunk)
    packets = random_packets(rng, 48)
    parts = []
    for i, p in enumerate(packets):
        b = bytearray(P.encode(p))
        if i % 7 == 3:
            b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
        if i % 11 == 5:
            b = b[: len(b) // 2]
        parts.append(rng.integers(0, 256, int(rng.integers(0, 30)), dtype=np.uint8).tobytes() + bytes(b))
    stream = b"".join(parts) + b"\xeb"
    c_packets, c_counters = c_parse(cbin["tool"], stream, chunk, cap)
    parser = StreamParser(max_payload=cap - P.OVERHEAD_BYTES)
    py_packets = parser.feed(stream)
    check_same_as_python(c_packets, py_packets)
    assert c_counters == {**parser.counters.as_dict(), "buffered": parser.buffered}
    damaged = sum(1 for i in range(48) if i % 7 == 3 or i % 11 == 5)
    too_big = sum(1 for p in packets if len(P.encode(p)) > cap)
    assert parser.counters.packets_ok >= 48 - damaged - too_big > 30


@pytest.mark.parametrize(("text", "message"), [
    ("raw 0 0 int16 1.0 2 1 40000 0", "sample code outside the format's range"),
    ("raw 0 0 int24 1.0 1 1 8388608", "sample code outside the format's range"),
    ("hg 0 0 float32 1.0 2 1 nan 0", "non-finite (NaN or Inf) float sample"),
    ("raw 0 0 int16 0 1 1 5", "invalid argument"),
    ("raw 0 0 int16 1.0 0 1", "invalid argument"),
    ("raw 0 0 int16 1.0 2 1 5", "missing or malformed field"),
    ("raw 70000 0 int16 1.0 1 1 5", "missing or malformed field"),
    ("control 0 0 9 0", "invalid argument"),
    ("info 0 0 1 1 0 1000 125 1 1 8 1 0.195 1 ld8x8", "invalid argument"),
    ("bogus 0 0", "unknown packet kind 'bogus'"),
])
def test_c_framer_refuses_bad_input(cbin, text, message):
    proc = subprocess.run([cbin["tool"], "frame"], input=text.encode(), capture_output=True, timeout=60)
    assert proc.returncode == 1 and message in proc.stderr.decode() and proc.stdout == b""


def test_c_tool_bench_parses_everything_it_framed(cbin):
    out = _run([cbin["tool"], "bench", 5, 3, "int24", 2000]).stdout.decode()
    size = 26 + 5 * 3 * 3  # 2000 packets fit the bench buffer once: all accepted, none lost
    assert f"2000 packets of {size} bytes" in out and "(2000 packets accepted)" in out, out


def test_c_tool_usage_errors(cbin):
    for args in (["parse", "0"], ["parse", "16", "10"], ["nothing"], ["bench", "0", "1", "int16", "5"]):
        proc = subprocess.run([cbin["tool"], *args], input=b"", capture_output=True, timeout=60)
        assert proc.returncode == 2 and proc.stderr


# ---- differential fuzzing: the same bytes through both parsers ---------------------------------------------

_SENT = [P.encode(p) for p in random_packets(np.random.default_rng(99), 30, channels=(1, 4, 9))]
_VALID = b"".join(_SENT)


@st.composite
def mutated_streams(draw) -> bytes:
    data = bytearray(_VALID)
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete":
            del data[pos: pos + draw(st.integers(1, 40))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=40))
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.one_of(st.binary(max_size=3000), mutated_streams()), chunk=st.integers(1, 300))
def test_c_and_python_parsers_agree_on_any_bytes(cbin, data, chunk):
    c_packets, c_counters = c_parse(cbin["tool"], data, chunk, 26 + 2048)
    parser = StreamParser(max_payload=2048)
    py_packets = parser.feed(data)
    check_same_as_python(c_packets, py_packets)
    assert c_counters == {**parser.counters.as_dict(), "buffered": parser.buffered}
    assert all(P.encode(p) in _SENT for p in py_packets)  # nothing corrupted is ever accepted
