"""The serial bridge's framed binary protocol: packet dataclasses, encoders and an incremental parser.

Pure bytes-in / packets-out code with no I/O, so it is easy to fuzz; ``PROTOCOL.md`` beside this file is the
specification (byte layout, CRCs, the parser's resynchronisation rule) and the C framer/parser in ``c/``
implements the same rules. All multi-byte fields are little-endian.
"""

from __future__ import annotations

import binascii
import dataclasses
import math
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

SYNC = b"\xeb\x90"
VERSION = 1
HEADER_BYTES = 22
CRC_BYTES = 4
OVERHEAD_BYTES = HEADER_BYTES + CRC_BYTES
MAX_PAYLOAD = 16384
MAX_PACKET = HEADER_BYTES + MAX_PAYLOAD + CRC_BYTES
SEQ_MODULUS = 1 << 16
TIMESTAMP_MODULUS = 1 << 32
INFO_PAYLOAD_BYTES = 44
HEARTBEAT_PAYLOAD_BYTES = 10
CONTROL_PAYLOAD_BYTES = 6
LAYOUT_BYTES = 16

# sync, version, type, seq, timestamp_us, n_channels, format, n_samples, payload_len, scale
_HEAD = struct.Struct("<2sBBHIHBBHf")
_INFO = struct.Struct(f"<IHHffBBBBff{LAYOUT_BYTES}s")
_HEARTBEAT = struct.Struct("<IIH")
_CONTROL = struct.Struct("<BBI")
assert _HEAD.size + 2 == HEADER_BYTES
assert _INFO.size == INFO_PAYLOAD_BYTES and _HEARTBEAT.size == HEARTBEAT_PAYLOAD_BYTES
assert _CONTROL.size == CONTROL_PAYLOAD_BYTES


class PacketType(IntEnum):
    """The ``type`` byte of the header."""

    RAW = 1
    HIGH_GAMMA = 2
    DEVICE_INFO = 3
    HEARTBEAT = 4
    CONTROL = 5


class SampleFormat(IntEnum):
    """The ``format`` byte: how one sample is stored in a payload."""

    NONE = 0
    INT16 = 1
    INT24 = 2
    FLOAT32 = 3


class Command(IntEnum):
    """Host → device commands carried by a CONTROL packet."""

    START = 1
    STOP = 2
    REQUEST_INFO = 3
    SET_STREAMS = 4  # arg bit 0: raw samples, bit 1: high-gamma frames


SAMPLE_BYTES = {SampleFormat.INT16: 2, SampleFormat.INT24: 3, SampleFormat.FLOAT32: 4}
INT_RANGE = {SampleFormat.INT16: (-(1 << 15), (1 << 15) - 1), SampleFormat.INT24: (-(1 << 23), (1 << 23) - 1)}
DATA_TYPES = (PacketType.RAW, PacketType.HIGH_GAMMA)
_FIXED_PAYLOAD = {
    PacketType.DEVICE_INFO: INFO_PAYLOAD_BYTES,
    PacketType.HEARTBEAT: HEARTBEAT_PAYLOAD_BYTES,
    PacketType.CONTROL: CONTROL_PAYLOAD_BYTES,
}


class ProtocolError(ValueError):
    """A packet cannot be encoded or decoded; the message names the field and what is wrong."""


def crc16_ccitt_false(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor); check value 0x29B1.

    Parameters
    ----------
    data : bytes
        Bytes to checksum.
    crc : int
        Initial register value (0xFFFF for a fresh CRC).

    Returns
    -------
    int
        The 16-bit CRC.
    """
    return binascii.crc_hqx(data, crc)


def crc32_iso_hdlc(data: bytes) -> int:
    """CRC-32/ISO-HDLC (the zlib/Ethernet CRC, reflected poly 0xEDB88320); check value 0xCBF43926."""
    return zlib.crc32(data) & 0xFFFFFFFF


# ---- packets ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """The fixed 22-byte packet header (sync and header CRC excluded).

    Attributes
    ----------
    version : int
        Protocol version (``VERSION``).
    ptype : PacketType
        What the payload holds.
    seq : int
        Sequence number, 0..65535, +1 (mod 65536) for every packet the sender sends.
    timestamp_us : int
        Device clock in µs (uint32, wraps every 2**32 µs ≈ 71.6 min) at the first sample of the packet.
    n_channels : int
        Channels per sample (data packets), 0 otherwise.
    fmt : SampleFormat
        Sample format (data packets), ``NONE`` otherwise.
    n_samples : int
        Samples per channel in the payload (data packets, 1..255), 0 otherwise.
    payload_len : int
        Payload bytes, 0..``MAX_PAYLOAD``.
    scale : float
        Physical units per count (µV per LSB for raw samples); 0.0 for non-data packets.
    """

    version: int
    ptype: PacketType
    seq: int
    timestamp_us: int
    n_channels: int
    fmt: SampleFormat
    n_samples: int
    payload_len: int
    scale: float


@dataclass(frozen=True, eq=False)
class Samples:
    """Payload of RAW and HIGH_GAMMA packets.

    Attributes
    ----------
    fmt : SampleFormat
        Storage format.
    scale : float
        Physical units per count (float32-representable); physical value = code × scale.
    codes : np.ndarray
        Shape ``(n_samples, n_channels)``: int32 codes for INT16/INT24, float32 for FLOAT32.
    """

    fmt: SampleFormat
    scale: float
    codes: np.ndarray

    def values(self) -> np.ndarray:
        """Physical values, float64, shape ``(n_samples, n_channels)`` (µV for raw samples)."""
        return self.codes.astype(np.float64) * float(np.float32(self.scale))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Samples):
            return NotImplemented
        return (
            self.fmt == other.fmt
            and np.float32(self.scale).tobytes() == np.float32(other.scale).tobytes()
            and self.codes.shape == other.codes.shape
            and self.codes.tobytes() == np.asarray(other.codes, self.codes.dtype).tobytes()
        )


@dataclass(frozen=True)
class DeviceInfo:
    """The handshake: what the device streams and how to read it (payload of DEVICE_INFO, 44 bytes).

    Attributes
    ----------
    device_id : int
        uint32 identifier of the device.
    firmware_version : int
        uint16 firmware version.
    n_channels : int
        Electrodes in every data packet (1..65535), in the layout's channel order.
    raw_rate_hz : float
        Raw sampling rate (Hz).
    frame_rate_hz : float
        High-gamma frame rate (Hz; 125 in edgensd).
    raw_format, hg_format : SampleFormat
        Sample formats of RAW and HIGH_GAMMA packets.
    raw_samples_per_packet, hg_frames_per_packet : int
        Samples (frames) per channel in one RAW (HIGH_GAMMA) packet, 1..255.
    raw_scale : float
        µV per raw count.
    hg_scale : float
        High-gamma units (z-score) per count.
    layout : str
        Electrode layout name (ASCII, ≤ 16 bytes), e.g. ``"ld8x8"``.
    """

    device_id: int
    firmware_version: int
    n_channels: int
    raw_rate_hz: float
    frame_rate_hz: float
    raw_format: SampleFormat
    hg_format: SampleFormat
    raw_samples_per_packet: int
    hg_frames_per_packet: int
    raw_scale: float
    hg_scale: float
    layout: str


@dataclass(frozen=True)
class Heartbeat:
    """Device health (payload of HEARTBEAT, 10 bytes).

    Attributes
    ----------
    packets_sent : int
        Packets the device has framed since boot (uint32).
    tx_overruns : int
        Packets the device dropped because its transmit buffer was full (uint32).
    status : int
        Flags (uint16): bit 0 raw streaming, bit 1 high-gamma streaming, bit 2 ADC error.
    """

    packets_sent: int
    tx_overruns: int
    status: int


@dataclass(frozen=True)
class Control:
    """A host → device command (payload of CONTROL, 6 bytes)."""

    command: Command
    arg: int = 0


Body = Samples | DeviceInfo | Heartbeat | Control


@dataclass(frozen=True)
class Packet:
    """One decoded packet.

    Attributes
    ----------
    ptype : PacketType
        Packet type.
    seq : int
        Sequence number (uint16).
    timestamp_us : int
        Device time in µs (uint32, wrapping).
    body : Samples | DeviceInfo | Heartbeat | Control
        The decoded payload.
    """

    ptype: PacketType
    seq: int
    timestamp_us: int
    body: Body

    @property
    def n_channels(self) -> int:
        """Channels in a data packet (0 for other types)."""
        return int(self.body.codes.shape[1]) if isinstance(self.body, Samples) else 0


# ---- encoding --------------------------------------------------------------------------------------------


def _check_uint(name: str, value: int, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ProtocolError(f"{name} must be an integer, got {type(value).__name__}")
    if not 0 <= int(value) < (1 << bits):
        raise ProtocolError(f"{name} must be in 0..{(1 << bits) - 1}, got {value}")
    return int(value)


def _check_f32(name: str, value: float, positive: bool = False) -> float:
    v = float(value)
    if not math.isfinite(v) or not math.isfinite(float(np.float32(v))):
        raise ProtocolError(f"{name} must be a finite float32, got {value}")
    if positive and not v > 0:
        raise ProtocolError(f"{name} must be > 0, got {value}")
    return v


def _frame(ptype: PacketType, seq: int, timestamp_us: int, payload: bytes, n_channels: int = 0,
           fmt: SampleFormat = SampleFormat.NONE, n_samples: int = 0, scale: float = 0.0) -> bytes:
    seq = _check_uint("seq", seq, 16)
    timestamp_us = _check_uint("timestamp_us", timestamp_us, 32)
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds MAX_PAYLOAD={MAX_PAYLOAD}")
    head = _HEAD.pack(SYNC, VERSION, int(ptype), seq, timestamp_us, n_channels, int(fmt), n_samples,
                      len(payload), scale)
    head += struct.pack("<H", crc16_ccitt_false(head))
    return head + payload + struct.pack("<I", crc32_iso_hdlc(head + payload))


def encode_samples(ptype: PacketType, seq: int, timestamp_us: int, codes: np.ndarray, fmt: SampleFormat,
                   scale: float) -> bytes:
    """Frame a RAW or HIGH_GAMMA packet.

    Parameters
    ----------
    ptype : PacketType
        ``RAW`` or ``HIGH_GAMMA``.
    seq : int
        Sequence number, 0..65535.
    timestamp_us : int
        Device time of the first sample in µs, 0..2**32-1.
    codes : np.ndarray
        Shape ``(n_samples, n_channels)``, sample-major (all channels of sample 0, then sample 1, ...):
        integers within the format's range for INT16/INT24, finite float32-representable values for FLOAT32.
    fmt : SampleFormat
        ``INT16``, ``INT24`` or ``FLOAT32``.
    scale : float
        Physical units per count (> 0, finite; stored as float32).

    Returns
    -------
    bytes
        The packet, ``26 + n_samples * n_channels * bytes_per_sample`` bytes.
    """
    if ptype not in DATA_TYPES:
        raise ProtocolError(f"ptype must be RAW or HIGH_GAMMA for samples, got {ptype!r}")
    try:
        fmt = SampleFormat(fmt)
    except ValueError:
        raise ProtocolError(f"fmt must be one of {[f.name for f in SAMPLE_BYTES]}, got {fmt!r}") from None
    if fmt not in SAMPLE_BYTES:
        raise ProtocolError(f"fmt must be one of {[f.name for f in SAMPLE_BYTES]}, got {fmt.name}")
    scale = _check_f32("scale", scale, positive=True)
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] < 1 or codes.shape[1] < 1:
        raise ProtocolError(f"codes must have shape (n_samples, n_channels) with both >= 1, got {codes.shape}")
    n_samples, n_channels = codes.shape
    if n_samples > 255:
        raise ProtocolError(f"n_samples must be <= 255 per packet, got {n_samples}")
    if n_channels > 65535:
        raise ProtocolError(f"n_channels must be <= 65535, got {n_channels}")
    if fmt == SampleFormat.FLOAT32:
        if not np.issubdtype(codes.dtype, np.floating) and not np.issubdtype(codes.dtype, np.integer):
            raise ProtocolError(f"FLOAT32 samples must be numeric, got dtype {codes.dtype}")
        with np.errstate(over="ignore", invalid="ignore"):
            f = codes.astype(np.float32)  # out-of-range values become inf and are refused below
        if not np.all(np.isfinite(f)):
            bad = np.argwhere(~np.isfinite(f))[0]
            raise ProtocolError(f"FLOAT32 samples must be finite; sample {bad[0]}, channel {bad[1]} is {f[tuple(bad)]}")
        payload = f.astype("<f4").tobytes()
    else:
        if not np.issubdtype(codes.dtype, np.integer):
            raise ProtocolError(f"{fmt.name} samples must be integer codes, got dtype {codes.dtype}")
        lo, hi = INT_RANGE[fmt]
        c = codes.astype(np.int64)
        if c.min() < lo or c.max() > hi:
            raise ProtocolError(f"{fmt.name} codes must be in {lo}..{hi}, got {c.min()}..{c.max()}")
        if fmt == SampleFormat.INT16:
            payload = c.astype("<i2").tobytes()
        else:
            payload = c.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    return _frame(ptype, seq, timestamp_us, payload, n_channels, fmt, n_samples, scale)


def encode_raw(seq: int, timestamp_us: int, codes: np.ndarray, fmt: SampleFormat, scale: float) -> bytes:
    """Frame a RAW packet (see :func:`encode_samples`)."""
    return encode_samples(PacketType.RAW, seq, timestamp_us, codes, fmt, scale)


def encode_high_gamma(seq: int, timestamp_us: int, codes: np.ndarray, fmt: SampleFormat, scale: float) -> bytes:
    """Frame a HIGH_GAMMA packet (see :func:`encode_samples`); rows are 8 ms feature frames."""
    return encode_samples(PacketType.HIGH_GAMMA, seq, timestamp_us, codes, fmt, scale)


def _check_info(info: DeviceInfo) -> None:
    _check_uint("device_id", info.device_id, 32)
    _check_uint("firmware_version", info.firmware_version, 16)
    if _check_uint("n_channels", info.n_channels, 16) < 1:
        raise ProtocolError("n_channels must be >= 1")
    _check_f32("raw_rate_hz", info.raw_rate_hz, positive=True)
    _check_f32("frame_rate_hz", info.frame_rate_hz, positive=True)
    _check_f32("raw_scale", info.raw_scale, positive=True)
    _check_f32("hg_scale", info.hg_scale, positive=True)
    for name in ("raw_format", "hg_format"):
        if getattr(info, name) not in tuple(int(f) for f in SAMPLE_BYTES):
            raise ProtocolError(f"{name} must be INT16, INT24 or FLOAT32, got {getattr(info, name)!r}")
    for name in ("raw_samples_per_packet", "hg_frames_per_packet"):
        if not 1 <= _check_uint(name, getattr(info, name), 8):
            raise ProtocolError(f"{name} must be in 1..255, got {getattr(info, name)}")
    raw = info.layout.encode("ascii", "replace") if isinstance(info.layout, str) else b""
    if not isinstance(info.layout, str) or len(raw) > LAYOUT_BYTES or not all(32 <= b < 127 for b in raw):
        raise ProtocolError(f"layout must be printable ASCII of at most {LAYOUT_BYTES} bytes, got {info.layout!r}")


def encode_device_info(seq: int, timestamp_us: int, info: DeviceInfo) -> bytes:
    """Frame a DEVICE_INFO packet (the handshake; 70 bytes)."""
    _check_info(info)
    payload = _INFO.pack(info.device_id, info.firmware_version, info.n_channels, info.raw_rate_hz,
                         info.frame_rate_hz, int(info.raw_format), int(info.hg_format),
                         info.raw_samples_per_packet, info.hg_frames_per_packet, info.raw_scale, info.hg_scale,
                         info.layout.encode("ascii"))
    return _frame(PacketType.DEVICE_INFO, seq, timestamp_us, payload)


def encode_heartbeat(seq: int, timestamp_us: int, hb: Heartbeat) -> bytes:
    """Frame a HEARTBEAT packet (36 bytes)."""
    payload = _HEARTBEAT.pack(_check_uint("packets_sent", hb.packets_sent, 32),
                              _check_uint("tx_overruns", hb.tx_overruns, 32), _check_uint("status", hb.status, 16))
    return _frame(PacketType.HEARTBEAT, seq, timestamp_us, payload)


def encode_control(seq: int, timestamp_us: int, ctrl: Control) -> bytes:
    """Frame a CONTROL packet (host → device; 32 bytes)."""
    if ctrl.command not in tuple(int(c) for c in Command):
        raise ProtocolError(f"command must be one of {[c.name for c in Command]}, got {ctrl.command!r}")
    payload = _CONTROL.pack(int(ctrl.command), 0, _check_uint("arg", ctrl.arg, 32))
    return _frame(PacketType.CONTROL, seq, timestamp_us, payload)


def encode(packet: Packet) -> bytes:
    """Frame any :class:`Packet` (the inverse of the parser)."""
    b = packet.body
    if isinstance(b, Samples):
        return encode_samples(packet.ptype, packet.seq, packet.timestamp_us, b.codes, b.fmt, b.scale)
    if isinstance(b, DeviceInfo):
        return encode_device_info(packet.seq, packet.timestamp_us, b)
    if isinstance(b, Heartbeat):
        return encode_heartbeat(packet.seq, packet.timestamp_us, b)
    if isinstance(b, Control):
        return encode_control(packet.seq, packet.timestamp_us, b)
    raise ProtocolError(f"unknown packet body type {type(b).__name__}")


# ---- decoding --------------------------------------------------------------------------------------------


def decode_header(head: bytes, max_payload: int = MAX_PAYLOAD) -> Header:
    """Check and decode the 22 header bytes.

    Parameters
    ----------
    head : bytes
        At least ``HEADER_BYTES`` bytes starting with the sync word.
    max_payload : int
        Largest payload this receiver accepts (bytes).

    Returns
    -------
    Header

    Raises
    ------
    ProtocolError
        ``"header crc"`` in the message if the header CRC fails, otherwise the field that is invalid.
    """
    if len(head) < HEADER_BYTES:
        raise ProtocolError(f"header needs {HEADER_BYTES} bytes, got {len(head)}")
    if head[:2] != SYNC:
        raise ProtocolError(f"sync word must be {SYNC.hex()}, got {bytes(head[:2]).hex()}")
    (crc,) = struct.unpack_from("<H", head, HEADER_BYTES - 2)
    if crc != crc16_ccitt_false(bytes(head[: HEADER_BYTES - 2])):
        raise ProtocolError("header crc mismatch")
    _, version, ptype, seq, ts, n_ch, fmt, n_s, plen, scale = _HEAD.unpack_from(head)
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {version} (this parser reads {VERSION})")
    if ptype not in _TYPE_VALUES:
        raise ProtocolError(f"unknown packet type {ptype}")
    if plen > max_payload:
        raise ProtocolError(f"payload_len {plen} exceeds this receiver's maximum {max_payload}")
    ptype = PacketType(ptype)
    if ptype in DATA_TYPES:
        if fmt not in _FMT_BYTES:
            raise ProtocolError(f"unknown sample format {fmt}")
        if n_ch < 1 or n_s < 1:
            raise ProtocolError(f"data packet needs n_channels >= 1 and n_samples >= 1, got {n_ch}, {n_s}")
        if plen != n_ch * n_s * _FMT_BYTES[fmt]:
            raise ProtocolError(f"payload_len {plen} != n_channels {n_ch} x n_samples {n_s} x "
                                f"{_FMT_BYTES[fmt]} bytes")
        if not (math.isfinite(scale) and scale > 0):
            raise ProtocolError(f"scale must be finite and > 0, got {scale}")
        fmt = SampleFormat(fmt)
    else:
        if n_ch or fmt or n_s or scale != 0.0 or struct.pack("<f", scale) != b"\0\0\0\0":
            raise ProtocolError(f"{ptype.name} packet must have n_channels, format, n_samples and scale all 0")
        if plen != _FIXED_PAYLOAD[ptype]:
            raise ProtocolError(f"{ptype.name} payload must be {_FIXED_PAYLOAD[ptype]} bytes, got {plen}")
        fmt = SampleFormat.NONE
    return Header(version, ptype, seq, ts, n_ch, fmt, n_s, plen, scale)


_TYPE_VALUES = frozenset(int(t) for t in PacketType)
_FMT_BYTES = {int(k): v for k, v in SAMPLE_BYTES.items()}


def decode_payload(header: Header, payload: bytes) -> Body:
    """Decode a CRC-checked payload according to its header; raises :class:`ProtocolError` if invalid."""
    if len(payload) != header.payload_len:
        raise ProtocolError(f"payload has {len(payload)} bytes, header says {header.payload_len}")
    if header.ptype in DATA_TYPES:
        shape = (header.n_samples, header.n_channels)
        if header.fmt == SampleFormat.INT16:
            codes = np.frombuffer(payload, "<i2").astype(np.int32).reshape(shape)
        elif header.fmt == SampleFormat.INT24:
            b = np.frombuffer(payload, np.uint8).reshape(-1, 3).astype(np.int32)
            codes = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
            codes = ((codes ^ 0x800000) - 0x800000).reshape(shape)
        else:
            codes = np.frombuffer(payload, "<f4").astype(np.float32).reshape(shape)
            if not np.all(np.isfinite(codes)):
                raise ProtocolError("FLOAT32 payload holds non-finite values (NaN or Inf)")
        return Samples(header.fmt, header.scale, codes)
    if header.ptype == PacketType.DEVICE_INFO:
        f = _INFO.unpack(payload)
        layout = f[11].rstrip(b"\0")
        if b"\0" in layout or not all(32 <= c < 127 for c in layout):
            raise ProtocolError(f"device info layout is not NUL-padded printable ASCII: {f[11]!r}")
        info = DeviceInfo(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], layout.decode())
        _check_info(info)
        return dataclasses.replace(info, raw_format=SampleFormat(info.raw_format),
                                   hg_format=SampleFormat(info.hg_format))
    if header.ptype == PacketType.HEARTBEAT:
        return Heartbeat(*_HEARTBEAT.unpack(payload))
    command, reserved, arg = _CONTROL.unpack(payload)
    if command not in tuple(int(c) for c in Command) or reserved != 0:
        raise ProtocolError(f"unknown control command {command} (reserved byte {reserved})")
    return Control(Command(command), arg)


def decode(packet_bytes: bytes) -> Packet:
    """Decode exactly one complete packet (checks both CRCs); raises :class:`ProtocolError` if invalid."""
    header = decode_header(packet_bytes)
    total = HEADER_BYTES + header.payload_len + CRC_BYTES
    if len(packet_bytes) != total:
        raise ProtocolError(f"packet has {len(packet_bytes)} bytes, header says {total}")
    (crc,) = struct.unpack_from("<I", packet_bytes, total - CRC_BYTES)
    if crc != crc32_iso_hdlc(bytes(packet_bytes[: total - CRC_BYTES])):
        raise ProtocolError("packet crc mismatch")
    body = decode_payload(header, bytes(packet_bytes[HEADER_BYTES: total - CRC_BYTES]))
    return Packet(header.ptype, header.seq, header.timestamp_us, body)


@dataclass
class ParserCounters:
    """Stream-health counters of :class:`StreamParser` (all cumulative).

    Attributes
    ----------
    bytes : int
        Bytes fed.
    packets_ok : int
        Packets accepted.
    header_crc_failures : int
        Candidate headers (sync word found) whose CRC-16 failed.
    crc_failures : int
        Packets whose header was valid but whose CRC-32 failed.
    bad_headers : int
        Headers with a valid CRC but an impossible field (version, type, format, length).
    rejected_payloads : int
        CRC-valid packets with an invalid payload (non-finite float, bad device info, unknown command).
    resyncs : int
        Times the parser lost sync (started discarding bytes) since the last accepted packet.
    bytes_discarded : int
        Bytes dropped while searching for a valid packet.
    """

    bytes: int = 0
    packets_ok: int = 0
    header_crc_failures: int = 0
    crc_failures: int = 0
    bad_headers: int = 0
    rejected_payloads: int = 0
    resyncs: int = 0
    bytes_discarded: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return dataclasses.asdict(self)


class StreamParser:
    """Incremental parser: ``feed(bytes) -> list[Packet]``, resynchronising after garbage.

    The rule (PROTOCOL.md, "Parser"): a packet may start at the first byte of the buffer only; a candidate
    is dropped one byte at a time unless it shows the sync word, a header whose CRC-16 and fields are valid,
    and a CRC-32 that matches. The payload length is read only after the header CRC has passed. The result
    does not depend on how the stream is split into ``feed`` calls, and the C parser gives the same packets
    and counters.

    Parameters
    ----------
    max_payload : int
        Largest payload accepted (bytes, ≤ ``MAX_PAYLOAD``); the buffer never holds more than
        ``HEADER_BYTES + max_payload + CRC_BYTES`` bytes between calls.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        if not 0 <= int(max_payload) <= MAX_PAYLOAD:
            raise ValueError(f"max_payload must be in 0..{MAX_PAYLOAD}, got {max_payload}")
        self.max_payload = int(max_payload)
        self.max_packet = HEADER_BYTES + self.max_payload + CRC_BYTES
        self.counters = ParserCounters()
        self._buf = bytearray()
        self._in_sync = True
        self._header: Header | None = None  # header of the candidate at the buffer start, once checked

    @property
    def buffered(self) -> int:
        """Bytes held, waiting for the rest of a packet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Packet]:
        """Add received bytes and return the packets they complete, in stream order.

        Parameters
        ----------
        data : bytes
            Any number of bytes, split anywhere.

        Returns
        -------
        list[Packet]
        """
        out: list[Packet] = []
        view = memoryview(bytes(data))
        self.counters.bytes += len(view)
        step = self.max_packet
        for i in range(0, len(view), step):  # bounded buffer: at most two packets' worth held at once
            self._buf += view[i: i + step]
            self._drain(out)
        return out

    def _discard(self, n: int) -> None:
        if n <= 0:
            return
        if self._in_sync:
            self.counters.resyncs += 1
            self._in_sync = False
        self.counters.bytes_discarded += n
        del self._buf[:n]
        self._header = None

    def _drain(self, out: list[Packet]) -> None:
        buf = self._buf
        c = self.counters
        while buf:
            if self._header is None:
                i = buf.find(SYNC)
                if i < 0:  # keep a trailing first sync byte: it may start a packet
                    self._discard(len(buf) - 1 if buf[-1] == SYNC[0] else len(buf))
                    return
                self._discard(i)
                if len(buf) < HEADER_BYTES:
                    return
                try:
                    self._header = decode_header(bytes(buf[:HEADER_BYTES]), self.max_payload)
                except ProtocolError as e:
                    if "header crc" in str(e):
                        c.header_crc_failures += 1
                    else:
                        c.bad_headers += 1
                    self._discard(1)
                    continue
            h = self._header
            total = HEADER_BYTES + h.payload_len + CRC_BYTES
            if len(buf) < total:
                return
            (crc,) = struct.unpack_from("<I", buf, total - CRC_BYTES)
            if crc != crc32_iso_hdlc(bytes(buf[: total - CRC_BYTES])):
                c.crc_failures += 1
                self._discard(1)
                continue
            try:
                body = decode_payload(h, bytes(buf[HEADER_BYTES: total - CRC_BYTES]))
            except ProtocolError:
                c.rejected_payloads += 1
                self._discard(total)  # CRC-valid: these are the sender's bytes, skip the whole packet
                continue
            out.append(Packet(h.ptype, h.seq, h.timestamp_us, body))
            c.packets_ok += 1
            self._in_sync = True
            del buf[:total]
            self._header = None


# ---- sequence numbers ------------------------------------------------------------------------------------


@dataclass
class SequenceCounters:
    """Counters of :class:`SequenceTracker`.

    Attributes
    ----------
    received : int
        Sequence numbers seen (including duplicates).
    gaps : int
        Forward jumps (events) in the sequence.
    lost : int
        Packets missing now (gap sizes minus late arrivals that filled them).
    duplicates : int
        Sequence numbers seen twice within the window.
    reordered : int
        Late packets that filled an earlier gap.
    restarts : int
        Jumps too large to be a gap or a late packet (device reset); the tracker restarted there.
    """

    received: int = 0
    gaps: int = 0
    lost: int = 0
    duplicates: int = 0
    reordered: int = 0
    restarts: int = 0


class SeqEvent(IntEnum):
    """What :meth:`SequenceTracker.update` found."""

    FIRST = 0
    IN_ORDER = 1
    GAP = 2
    DUPLICATE = 3
    LATE = 4
    RESTART = 5


class SequenceTracker:
    """Gap, duplicate and reorder detection on wrapping sequence numbers.

    Distances are taken modulo ``modulus``: a number 1..``max_gap`` ahead of the expected one is a gap of
    that many packets; one up to ``window`` behind the newest is a duplicate (already seen) or a late packet
    (it fills a gap); anything else is a restart.

    Parameters
    ----------
    modulus : int
        Sequence-number modulus (65536 for the protocol's uint16).
    window : int
        How many past sequence numbers are remembered for duplicate / late detection.
    max_gap : int
        Largest forward jump taken as lost packets (bigger jumps are restarts); < ``modulus - window``.
    """

    def __init__(self, modulus: int = SEQ_MODULUS, window: int = 1024, max_gap: int = 16384) -> None:
        if not (1 <= window and 1 <= max_gap and window + max_gap < modulus):
            raise ValueError(f"need window >= 1, max_gap >= 1 and window + max_gap < modulus; got "
                             f"window={window}, max_gap={max_gap}, modulus={modulus}")
        self.modulus, self.window, self.max_gap = int(modulus), int(window), int(max_gap)
        self.counters = SequenceCounters()
        self._newest: int | None = None
        self._seen: dict[int, bool] = {}  # seq -> received, for the last `window` numbers up to newest

    @property
    def newest(self) -> int | None:
        """The newest sequence number seen (None before the first)."""
        return self._newest

    def update(self, seq: int) -> tuple[SeqEvent, int]:
        """Register one received sequence number.

        Parameters
        ----------
        seq : int
            Sequence number, 0..modulus-1.

        Returns
        -------
        tuple[SeqEvent, int]
            The event and, for ``GAP``, the number of packets missing before ``seq`` (else 0).
        """
        if not 0 <= int(seq) < self.modulus:
            raise ValueError(f"seq must be in 0..{self.modulus - 1}, got {seq}")
        seq = int(seq)
        c = self.counters
        c.received += 1
        if self._newest is None:
            self._restart(seq)
            return SeqEvent.FIRST, 0
        ahead = (seq - self._newest) % self.modulus
        if 1 <= ahead <= self.max_gap:
            missing = ahead - 1
            for k in range(1, ahead + 1):
                self._seen[(self._newest + k) % self.modulus] = k == ahead
            self._newest = seq
            self._trim()
            if missing:
                c.gaps += 1
                c.lost += missing
                return SeqEvent.GAP, missing
            return SeqEvent.IN_ORDER, 0
        behind = (self._newest - seq) % self.modulus
        if behind < self.window and seq in self._seen:
            if self._seen[seq]:
                c.duplicates += 1
                return SeqEvent.DUPLICATE, 0
            self._seen[seq] = True
            c.reordered += 1
            c.lost -= 1
            return SeqEvent.LATE, 0
        c.restarts += 1
        self._restart(seq)
        return SeqEvent.RESTART, 0

    def _restart(self, seq: int) -> None:
        self._newest = seq
        self._seen = {seq: True}

    def _trim(self) -> None:
        while len(self._seen) > self.window:
            del self._seen[next(iter(self._seen))]  # dicts keep insertion order: oldest first
