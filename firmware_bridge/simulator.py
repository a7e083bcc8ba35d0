"""A device simulator: plays raw samples and high-gamma frames as an ECoG front end would, framed by the
bridge protocol, over a TCP socket or a pseudo-terminal, with seeded fault injection.

:class:`DeviceSimulator` is the device (clock, sequence numbers, packets, faults, the truth of what it dropped
and corrupted); :class:`SimulatorLink` plays it in real time over a transport and answers the host's CONTROL
packets. Torch-free: numpy + the standard library.
"""

from __future__ import annotations

import math
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from edgensd.config import Config, check_choice
from edgensd.log import logger

from . import protocol as P

_FORMATS = {"int16": P.SampleFormat.INT16, "int24": P.SampleFormat.INT24, "float32": P.SampleFormat.FLOAT32}


@dataclass
class SimulatorConfig(Config):
    """What the simulated device streams and which faults it injects.

    Attributes
    ----------
    n_channels : int
        Electrodes (1..65535).
    raw_rate_hz, frame_rate_hz : float
        Raw sampling rate and high-gamma frame rate (Hz).
    raw_format, hg_format : str
        ``"int16"``, ``"int24"`` or ``"float32"``.
    raw_samples_per_packet, hg_frames_per_packet : int
        Samples (frames) per channel in one packet, 1..255.
    raw_scale_uv : float
        µV per raw count.
    hg_scale : float
        High-gamma units per count.
    layout : str
        Layout name sent in DEVICE_INFO.
    send_raw, send_hg : bool
        Which streams are on at start.
    heartbeat_period_s : float
        Seconds between HEARTBEAT packets (device time).
    start_time_us : int
        Device clock at start (µs, uint32; set near 2**32 to exercise the wrap).
    start_seq : int
        First sequence number.
    corrupt_rate, drop_rate : float
        Probability that a packet (other than DEVICE_INFO) has one bit flipped / is not sent at all.
    seed : int
        Seed of the signal and the faults.
    """

    n_channels: int = 64
    raw_rate_hz: float = 1000.0
    frame_rate_hz: float = 125.0
    raw_format: str = "int16"
    hg_format: str = "int16"
    raw_samples_per_packet: int = 8
    hg_frames_per_packet: int = 1
    raw_scale_uv: float = 0.195
    hg_scale: float = 1 / 256
    layout: str = "ld8x8"
    send_raw: bool = True
    send_hg: bool = True
    heartbeat_period_s: float = 1.0
    start_time_us: int = 0
    start_seq: int = 0
    device_id: int = 0xED5D0001
    firmware_version: int = 1
    corrupt_rate: float = 0.0
    drop_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("raw_format", self.raw_format, _FORMATS)
        check_choice("hg_format", self.hg_format, _FORMATS)
        for name in ("corrupt_rate", "drop_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("raw_rate_hz", "frame_rate_hz", "heartbeat_period_s", "raw_scale_uv", "hg_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("raw_samples_per_packet", "hg_frames_per_packet"):
            if not 1 <= getattr(self, name) <= 255:
                raise ValueError(f"{name} must be in 1..255, got {getattr(self, name)}")
        if not 1 <= self.n_channels <= 65535:
            raise ValueError(f"n_channels must be in 1..65535, got {self.n_channels}")


FATES = ("sent", "corrupted", "dropped", "lost_offline")


@dataclass
class DataPacketTruth:
    """What one data packet carried and what became of it.

    Attributes
    ----------
    seq : int
        Its sequence number (uint16; numbers repeat after 65536 packets, the list order does not).
    ptype : PacketType
        ``RAW`` or ``HIGH_GAMMA``.
    start, stop : int
        Device sample range ``[start, stop)`` it carried: raw sample indices (RAW) or high-gamma frame
        indices (HIGH_GAMMA), counted from device time 0 (sample ``k`` is at ``k / rate`` s).
    fate : str
        ``"sent"``, ``"corrupted"`` (sent with one bit flipped), ``"dropped"`` (fault injection) or
        ``"lost_offline"`` (its time came while no host was connected, or the device was paused).
    """

    seq: int
    ptype: P.PacketType
    start: int
    stop: int
    fate: str = "sent"


@dataclass
class FaultTruth:
    """What the simulator did to each sequence number (ground truth for the host's counters).

    Attributes
    ----------
    sent : list[int]
        Sequence numbers written to the link (corrupted ones included).
    dropped : list[int]
        Sequence numbers framed but not sent (fault injection).
    corrupted : list[int]
        Sequence numbers sent with one bit flipped.
    lost_offline : list[int]
        Sequence numbers whose time came while no host was connected.
    types : dict[int, PacketType]
        The packet type of every sequence number framed (the last one, after the 65536 wrap).
    data : list[DataPacketTruth]
        Every data packet framed, in order, with the sample range it carried and its fate.
    """

    sent: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    corrupted: list[int] = field(default_factory=list)
    lost_offline: list[int] = field(default_factory=list)
    types: dict[int, P.PacketType] = field(default_factory=dict)
    data: list[DataPacketTruth] = field(default_factory=list)

    def _data_of(self, seq: int) -> DataPacketTruth | None:
        for d in reversed(self.data[-8:]):  # the packet in question is among the last few framed
            if d.seq == seq:
                return d
        return None

    def mark_lost_offline(self, seq: int) -> None:
        """Move the newest packet ``seq`` from sent (and corrupted) to lost while offline."""
        self.sent.remove(seq)
        if seq in self.corrupted:
            self.corrupted.remove(seq)
        self.lost_offline.append(seq)
        d = self._data_of(seq)
        if d is not None:
            d.fate = "lost_offline"

    def retract(self, seq: int) -> None:
        """Forget the newest packet ``seq`` entirely (framed but never due: the device was stopped first)."""
        for lst in (self.sent, self.dropped, self.corrupted):
            if lst and lst[-1] == seq:
                lst.pop()
        self.types.pop(seq, None)
        d = self._data_of(seq)
        if d is not None:
            self.data.remove(d)

    def gap_ranges(self, ptype: P.PacketType) -> list[tuple[int, int]]:
        """Sample ranges ``[start, stop)`` of the data packets of ``ptype`` that the host cannot have received
        (dropped, corrupted or lost offline), merged where they touch, in order."""
        out: list[tuple[int, int]] = []
        for d in self.data:
            if d.ptype != ptype or d.fate == "sent":
                continue
            if out and out[-1][1] == d.start:
                out[-1] = (out[-1][0], d.stop)
            else:
                out.append((d.start, d.stop))
        return out

    def to_dict(self) -> dict:
        """JSON-ready form: the sequence lists, each sequence number's type name and every data packet as
        ``{"seq", "type", "start", "stop", "fate"}``."""
        return {
            "sent": list(self.sent),
            "dropped": list(self.dropped),
            "corrupted": list(self.corrupted),
            "lost_offline": list(self.lost_offline),
            "types": {str(k): P.PacketType(v).name for k, v in sorted(self.types.items())},
            "data_packets": [{"seq": d.seq, "type": P.PacketType(d.ptype).name, "start": d.start, "stop": d.stop,
                              "fate": d.fate} for d in self.data],
        }


class DeviceSimulator:
    """The simulated device: a clock, one sequence counter, RAW / HIGH_GAMMA / HEARTBEAT packets and faults.

    The sources are indexed by device time, as an ADC that never stops: RAW packet ``k`` carries raw samples
    ``k·N … k·N + N − 1`` (``N = raw_samples_per_packet``), HIGH_GAMMA packet ``k`` frames ``k·M …`` (``M =
    hg_frames_per_packet``), whether or not the stream was switched on for the packets before.

    Parameters
    ----------
    config : SimulatorConfig
        Streams, rates, formats and fault rates.
    raw : np.ndarray, optional
        Raw signal to play, shape ``(n_samples, n_channels)`` in µV; by default a seeded synthetic signal
        (per-channel 10 Hz sine of 50 µV plus 10 µV noise).
    hg : np.ndarray, optional
        High-gamma frames to play, shape ``(n_frames, n_channels)``; by default seeded positive values.
    repeat : bool
        Repeat the sources when they run out (endless play). With ``False`` each source is played once (the
        last packet of a stream may carry fewer samples) and :meth:`packets` ends when every source given
        has been played out.
    """

    def __init__(self, config: SimulatorConfig | None = None, raw: np.ndarray | None = None,
                 hg: np.ndarray | None = None, repeat: bool = True) -> None:
        self.config = c = config or SimulatorConfig()
        self._rng = np.random.default_rng(c.seed)
        self._fault_rng = np.random.default_rng([c.seed, 1])
        self.raw = self._check_source("raw", raw)
        self.hg = self._check_source("hg", hg)
        self.repeat = bool(repeat)
        self.truth = FaultTruth()
        self.streams = {"raw": c.send_raw, "hg": c.send_hg}
        self._seq = c.start_seq % P.SEQ_MODULUS
        self._pending_info = True
        self._packets_sent = 0
        self._overruns = 0

    def _check_source(self, name: str, x: np.ndarray | None) -> np.ndarray | None:
        if x is None:
            return None
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.config.n_channels or x.shape[0] < 1:
            raise ValueError(f"{name} must have shape (n, n_channels={self.config.n_channels}), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} holds NaN or Inf values")
        return x

    @property
    def info(self) -> P.DeviceInfo:
        """The DEVICE_INFO this device sends (the handshake)."""
        c = self.config
        return P.DeviceInfo(c.device_id, c.firmware_version, c.n_channels, c.raw_rate_hz, c.frame_rate_hz,
                            _FORMATS[c.raw_format], _FORMATS[c.hg_format], c.raw_samples_per_packet,
                            c.hg_frames_per_packet, c.raw_scale_uv, c.hg_scale, c.layout)

    def request_info(self) -> None:
        """Send DEVICE_INFO before the next packet (as on REQUEST_INFO or START)."""
        self._pending_info = True

    def handle_control(self, ctrl: P.Control) -> None:
        """Act on a host command."""
        if ctrl.command == P.Command.START:
            self.streams = {"raw": self.config.send_raw, "hg": self.config.send_hg}
            self.request_info()
        elif ctrl.command == P.Command.STOP:
            self.streams = {"raw": False, "hg": False}
        elif ctrl.command == P.Command.REQUEST_INFO:
            self.request_info()
        elif ctrl.command == P.Command.SET_STREAMS:
            self.streams = {"raw": bool(ctrl.arg & 1), "hg": bool(ctrl.arg & 2)}
        logger.debug("simulator: %s %d -> streams %s", ctrl.command.name, ctrl.arg, self.streams)

    def _n_in_packet(self, source: np.ndarray | None, start: int, per_packet: int) -> int:
        """Samples the packet starting at ``start`` carries (0: the source is played out)."""
        if source is None or self.repeat:
            return per_packet
        return max(0, min(per_packet, source.shape[0] - start))

    def _raw_block(self, start: int, n: int, t0_s: float) -> np.ndarray:
        c = self.config
        if self.raw is not None:
            return self.raw[(start + np.arange(n)) % self.raw.shape[0]]
        t = t0_s + np.arange(n)[:, None] / c.raw_rate_hz
        phase = np.arange(c.n_channels)[None, :] * 0.3
        return 50.0 * np.sin(2 * np.pi * 10.0 * t + phase) + 10.0 * self._rng.standard_normal((n, c.n_channels))

    def _hg_block(self, start: int, n: int) -> np.ndarray:
        if self.hg is not None:
            return self.hg[(start + np.arange(n)) % self.hg.shape[0]]
        return np.abs(self._rng.standard_normal((n, self.config.n_channels)))

    @staticmethod
    def _codes(values: np.ndarray, fmt: P.SampleFormat, scale: float) -> np.ndarray:
        """Integer codes of physical values (rounded, clipped to the format's range, as an ADC saturates)."""
        lo, hi = P.INT_RANGE[fmt]
        return np.clip(np.rint(values / np.float32(scale)), lo, hi).astype(np.int32)

    def _emit(self, make) -> tuple[int, bytes | None]:
        seq = self._seq
        self._seq = (self._seq + 1) % P.SEQ_MODULUS
        wire = make(seq)
        self.truth.types[seq] = P.PacketType(wire[3])
        self._packets_sent += 1
        return seq, wire

    def _data_packet(self, kind: str, k: int, t: float) -> tuple[int, bytes]:
        """Frame data packet ``k`` of stream ``kind`` (device time ``t`` s) and record its sample range."""
        c = self.config
        if kind == "raw":
            ptype, fmt, scale, per = P.PacketType.RAW, _FORMATS[c.raw_format], c.raw_scale_uv, c.raw_samples_per_packet
            start = k * per
            block = self._raw_block(start, self._n_in_packet(self.raw, start, per), t)
        else:
            ptype, fmt, scale, per = P.PacketType.HIGH_GAMMA, _FORMATS[c.hg_format], c.hg_scale, c.hg_frames_per_packet
            start = k * per
            block = self._hg_block(start, self._n_in_packet(self.hg, start, per))
        if fmt == P.SampleFormat.FLOAT32:  # float32 samples carry physical units directly
            codes, scale = block.astype(np.float32), 1.0
        else:
            codes = self._codes(block, fmt, scale)
        seq, wire = self._emit(lambda s: P.encode_samples(ptype, s, self._ts(t), codes, fmt, scale))
        self.truth.data.append(DataPacketTruth(seq, ptype, start, start + codes.shape[0]))
        return seq, wire

    def packets(self, duration_s: float | None = None) -> Iterator[tuple[float, int, bytes | None]]:
        """Generate the device's packets in device-time order, with faults applied.

        Parameters
        ----------
        duration_s : float, optional
            Stop after this much device time (s); endless if None (unless ``repeat`` is False, when the
            sources end the play).

        Yields
        ------
        tuple[float, int, bytes | None]
            Device time since start (s), sequence number, the bytes to send (None when the packet is dropped).
        """
        c = self.config
        per = {"raw": c.raw_samples_per_packet, "hg": c.hg_frames_per_packet}
        dt = {"raw": per["raw"] / c.raw_rate_hz, "hg": per["hg"] / c.frame_rate_hz}
        k = {"raw": 0, "hg": 0}  # packet counters of the data streams (their clocks: t = k * dt)
        n_hb = 1
        next_t = {"raw": 0.0, "hg": 0.0, "hb": c.heartbeat_period_s}
        sources = {"raw": self.raw, "hg": self.hg}
        finite = [kind for kind, src in sources.items() if src is not None and not self.repeat]
        while True:
            if finite and all(self._n_in_packet(sources[f], k[f] * per[f], per[f]) == 0 for f in finite):
                return
            if self._pending_info:
                self._pending_info = False
                t = min(next_t.values())
                seq, wire = self._emit(lambda s, t=t: P.encode_device_info(s, self._ts(t), self.info))
                self.truth.sent.append(seq)
                yield t, seq, wire
                continue
            kind = min(next_t, key=next_t.get)
            t = next_t[kind]
            if duration_s is not None and t >= duration_s:
                return
            if kind == "hb":
                n_hb += 1
                next_t["hb"] = n_hb * c.heartbeat_period_s
                status = int(self.streams["raw"]) | (int(self.streams["hg"]) << 1)
                hb = P.Heartbeat(self._packets_sent % 2**32, self._overruns % 2**32, status)
                seq, wire = self._emit(lambda s, t=t, hb=hb: P.encode_heartbeat(s, self._ts(t), hb))
            else:
                i = k[kind]
                k[kind] += 1
                if self._n_in_packet(sources[kind], i * per[kind], per[kind]) == 0:
                    next_t[kind] = math.inf  # played out
                    continue
                next_t[kind] = k[kind] * dt[kind]
                if not self.streams[kind]:
                    continue
                seq, wire = self._data_packet(kind, i, t)
            yield t, seq, self._fault(seq, wire)

    def _fault(self, seq: int, wire: bytes) -> bytes | None:
        r = self._fault_rng.random(3)
        data = self.truth.data
        is_data = self.truth.types.get(seq) in P.DATA_TYPES
        d = data[-1] if is_data and data and data[-1].seq == seq else None
        if r[0] < self.config.drop_rate:
            self.truth.dropped.append(seq)
            if d is not None:
                d.fate = "dropped"
            return None
        self.truth.sent.append(seq)
        if r[1] < self.config.corrupt_rate:
            b = bytearray(wire)
            bit = int(r[2] * len(b) * 8)
            b[bit // 8] ^= 1 << (bit % 8)
            self.truth.corrupted.append(seq)
            if d is not None:
                d.fate = "corrupted"
            return bytes(b)
        return wire

    def _ts(self, t_s: float) -> int:
        return (self.config.start_time_us + int(round(t_s * 1e6))) % P.TIMESTAMP_MODULUS

    def stream_bytes(self, duration_s: float) -> bytes:
        """All bytes the device sends in ``duration_s`` seconds of device time (for offline tests)."""
        return b"".join(w for _, _, w in self.packets(duration_s) if w is not None)


class SimulatorLink:
    """Plays a :class:`DeviceSimulator` in real time (or faster) over a TCP server socket or a pseudo-terminal.

    The device clock runs from the moment the link starts (or, with ``wait_for_host``, from the moment the
    first host connects); packets whose time comes while no host is connected are lost (recorded in
    ``truth.lost_offline``). CONTROL packets from the host are obeyed.

    A host counts as connected once it has sent a byte or stayed connected for ``settle_s``: a serial
    library discards its input right after opening a port (pyserial does, for a tty and for a socket), so
    bytes sent before that would vanish without a trace. A pty host is connected while it holds the terminal
    open (the link keeps no descriptor of its own on the terminal side, so the master reports a hang-up
    otherwise); a socket host until it closes the connection.

    Parameters
    ----------
    device : DeviceSimulator
        The device to play.
    transport : str
        ``"socket"`` (a TCP server on ``host``:``port``; connect to :attr:`url`) or ``"pty"`` (open
        :attr:`url`, a ``/dev/pts/N`` path, as a serial port).
    host : str
        Address the socket server binds.
    speed : float
        Device seconds per wall-clock second; ``math.inf`` sends as fast as the link takes the bytes.
    port : int
        TCP port of the socket server, 0..65535 (0: one the OS picks). ``OSError`` if it is in use.
    wait_for_host : bool
        Start the device clock when the first host connects instead of at :meth:`start`.
    linger_s : float
        When a finite play ends, wait up to this long (s) for the host to take the bytes still in transit
        before closing the link.
    settle_s : float
        See above (s).
    """

    def __init__(self, device: DeviceSimulator, transport: str = "socket", host: str = "127.0.0.1",
                 speed: float = 1.0, port: int = 0, wait_for_host: bool = False, linger_s: float = 2.0,
                 settle_s: float = 0.2) -> None:
        check_choice("transport", transport, ["socket", "pty"])
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
        self.device, self.transport, self.speed = device, transport, float(speed)
        self.wait_for_host, self.linger_s, self.settle_s = bool(wait_for_host), float(linger_s), float(settle_s)
        self._stop = threading.Event()
        self.done = threading.Event()  # set when the play has ended (finished, or stopped)
        self.finished = False  # the device played its sources to the end
        self._pause_until = 0.0
        self._drop_connection = threading.Event()
        self.connections = 0
        self.bytes_sent = 0
        self.started_at: float | None = None  # time.monotonic() at device time 0
        self._parser = P.StreamParser(max_payload=P.CONTROL_PAYLOAD_BYTES)
        self._conn = None  # the host's socket, True for a pty held open, None without a host
        self._conn_since = 0.0
        self._heard = False
        if transport == "socket":
            self._server = socket.create_server((host, port))
            self._server.setblocking(False)  # polled: accept() must not hold up the device clock
            self.url = f"socket://{host}:{self._server.getsockname()[1]}"
        else:
            self._master, slave = os.openpty()
            self.url = os.ttyname(slave)
            _set_raw(slave)
            os.close(slave)  # the host's open is then visible: the master stops reporting a hang-up
            os.set_blocking(self._master, False)
            self._poller = select.poll()
            self._poller.register(self._master, select.POLLIN)
        self._thread = threading.Thread(target=self._run, name="edgensd-device-sim", daemon=True)

    def start(self) -> SimulatorLink:
        """Start serving (and the device clock, unless it waits for a host)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close everything."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._close_transport()

    def request_stop(self) -> None:
        """Ask the play to end at the next packet, without waiting (safe in a signal handler)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the play has ended (``timeout`` s; None: forever); returns whether it has."""
        return self.done.wait(timeout)

    def _close_transport(self) -> None:
        try:
            if self.transport == "socket":
                self._server.close()
            else:
                os.close(self._master)
        except OSError:
            pass

    def __enter__(self) -> SimulatorLink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def pause(self, seconds: float) -> None:
        """Stop sending for ``seconds`` of wall time (a stalled device); the clock keeps running."""
        self._pause_until = time.monotonic() + seconds

    def disconnect(self) -> None:
        """Close the current host connection (socket only), as an unplugged cable would."""
        self._drop_connection.set()

    # ---- transport ----
    def _hangup(self) -> bool:
        return any(ev & select.POLLHUP for _, ev in self._poller.poll(0))

    def _drop(self) -> None:
        if self._conn not in (None, True):
            self._conn.close()
        if self._conn is not None:
            logger.debug("simulator: host gone")
        self._conn = None

    def _poll_host(self) -> bool:
        """Accept or detect a host, read its commands; returns whether a connected host takes packets."""
        now = time.monotonic()
        if self.transport == "pty":
            if self._hangup():
                self._drop()
            elif self._conn is None:
                self._conn, self._conn_since, self._heard = True, now, False
                self.connections += 1
                logger.debug("simulator: host opened the pty (%d)", self.connections)
        else:
            if self._drop_connection.is_set():
                self._drop_connection.clear()
                self._drop()
            if self._conn is None:
                try:
                    conn, _ = self._server.accept()
                except (TimeoutError, OSError):
                    return False
                conn.setblocking(False)
                self._conn, self._conn_since, self._heard = conn, now, False
                self.connections += 1
                logger.debug("simulator: host connected (%d)", self.connections)
        if self._conn is None:
            return False
        self._read_control()
        return self._conn is not None and (self._heard or now - self._conn_since >= self.settle_s)

    def _read_control(self) -> None:
        try:
            if self.transport == "pty":
                data = os.read(self._master, 4096)
            else:
                data = self._conn.recv(4096)
                if not data:  # the host closed the connection
                    self._drop()
                    return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            if self.transport == "socket":
                self._drop()
            return
        self._heard = True
        for pkt in self._parser.feed(data):
            if isinstance(pkt.body, P.Control):
                self.device.handle_control(pkt.body)

    def _send(self, data: bytes) -> bool:
        if self.transport == "pty":
            view = memoryview(data)
            while view and not self._stop.is_set():
                try:
                    n = os.write(self._master, view)
                    view = view[n:]
                except BlockingIOError:
                    if self._hangup():
                        break  # the host closed the pty with the packet half written
                    time.sleep(0.001)
                except OSError:
                    break
            self.bytes_sent += len(data) - len(view)
            return not view
        view = memoryview(data)
        while view and not self._stop.is_set():  # the socket is non-blocking: wait while its buffer is full
            try:
                n = self._conn.send(view)
                view = view[n:]
                self.bytes_sent += n
            except BlockingIOError:
                select.select([], [self._conn], [], 0.01)
            except OSError:
                return False
        return not view

    def _run(self) -> None:
        try:
            if self.wait_for_host:
                while not self._poll_host() and not self._stop.is_set():
                    time.sleep(0.002)
            start = self.started_at = time.monotonic()
            for t_dev, seq, wire in self.device.packets():
                due = start + t_dev / self.speed
                while not self._stop.is_set():  # wait for the packet's time
                    live = self._poll_host()
                    now = time.monotonic()
                    if now >= due:
                        break
                    time.sleep(min(0.002, due - now))
                if self._stop.is_set():
                    self.device.truth.retract(seq)  # never due: the device was stopped first
                    break
                if wire is None:
                    continue
                if not live or time.monotonic() < self._pause_until:
                    self.device.truth.mark_lost_offline(seq)
                    continue
                if not self._send(wire):
                    self._drop()
            else:
                self.finished = True
                self._linger()
        finally:
            self._drop()
            if self.transport == "socket":  # the device is gone: a host's reconnection is refused
                self._server.close()
            self.done.set()

    def _linger(self) -> None:
        """After the last packet, give the host up to ``linger_s`` to take the bytes still in transit."""
        end = time.monotonic() + self.linger_s
        if self._conn is None:
            return
        if self.transport == "socket":
            while time.monotonic() < end and not self._stop.is_set() and _unacked_bytes(self._conn) > 0:
                time.sleep(0.005)
            self._read_control()  # unread input would turn the close into a reset
            if self._conn is not None:
                try:
                    self._conn.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            return
        import fcntl
        import termios

        try:
            fd = os.open(self.url, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return
        try:
            quiet = 0
            while time.monotonic() < end and not self._stop.is_set() and quiet < 3:
                waiting = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
                quiet = quiet + 1 if waiting == 0 else 0
                time.sleep(0.02)
        finally:
            os.close(fd)


def _set_raw(fd: int) -> None:
    """Put a terminal in raw mode (no echo, no line editing, 8-bit clean)."""
    import termios  # POSIX only, like the pty transport; imported here so the module imports everywhere

    attrs = termios.tcgetattr(fd)
    attrs[0] = 0  # iflag
    attrs[1] = 0  # oflag
    attrs[2] = termios.CS8 | termios.CREAD | termios.CLOCAL  # cflag
    attrs[3] = 0  # lflag
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _unacked_bytes(conn: socket.socket) -> int:
    """Bytes in a TCP socket's send queue the peer has not acknowledged (Linux ``SIOCOUTQ``); 0 elsewhere."""
    try:
        import fcntl
        import termios

        return struct.unpack("i", fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (ImportError, AttributeError, OSError):
        return 0


__all__ = ["FATES", "DataPacketTruth", "DeviceSimulator", "FaultTruth", "SimulatorConfig", "SimulatorLink"]
