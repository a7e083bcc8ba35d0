"""A device simulator: plays raw samples and high-gamma frames as an ECoG front end would, framed by the
bridge protocol, over a TCP socket or a pseudo-terminal, with seeded fault injection.

:class:`DeviceSimulator` is the device (clock, sequence numbers, packets, faults, the truth of what it dropped
and corrupted); :class:`SimulatorLink` plays it in real time over a transport and answers the host's CONTROL
packets. Torch-free: numpy + the standard library.
"""

from __future__ import annotations

import os
import select
import socket
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
    """

    sent: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    corrupted: list[int] = field(default_factory=list)
    lost_offline: list[int] = field(default_factory=list)
    types: dict[int, P.PacketType] = field(default_factory=dict)


class DeviceSimulator:
    """The simulated device: a clock, one sequence counter, RAW / HIGH_GAMMA / HEARTBEAT packets and faults.

    Parameters
    ----------
    config : SimulatorConfig
        Streams, rates, formats and fault rates.
    raw : np.ndarray, optional
        Raw signal to play, shape ``(n_samples, n_channels)`` in µV, repeated when it runs out; by default a
        seeded synthetic signal (per-channel 10 Hz sine of 50 µV plus 10 µV noise).
    hg : np.ndarray, optional
        High-gamma frames to play, shape ``(n_frames, n_channels)``; by default seeded positive values.
    """

    def __init__(self, config: SimulatorConfig | None = None, raw: np.ndarray | None = None,
                 hg: np.ndarray | None = None) -> None:
        self.config = c = config or SimulatorConfig()
        self._rng = np.random.default_rng(c.seed)
        self._fault_rng = np.random.default_rng([c.seed, 1])
        self.raw = self._check_source("raw", raw)
        self.hg = self._check_source("hg", hg)
        self.truth = FaultTruth()
        self.streams = {"raw": c.send_raw, "hg": c.send_hg}
        self._seq = c.start_seq % P.SEQ_MODULUS
        self._raw_i = 0
        self._hg_i = 0
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

    def _raw_block(self, n: int, t0_s: float) -> np.ndarray:
        c = self.config
        if self.raw is not None:
            idx = (self._raw_i + np.arange(n)) % self.raw.shape[0]
            self._raw_i += n
            return self.raw[idx]
        t = t0_s + np.arange(n)[:, None] / c.raw_rate_hz
        phase = np.arange(c.n_channels)[None, :] * 0.3
        return 50.0 * np.sin(2 * np.pi * 10.0 * t + phase) + 10.0 * self._rng.standard_normal((n, c.n_channels))

    def _hg_block(self, n: int) -> np.ndarray:
        if self.hg is not None:
            idx = (self._hg_i + np.arange(n)) % self.hg.shape[0]
            self._hg_i += n
            return self.hg[idx]
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

    def packets(self, duration_s: float | None = None) -> Iterator[tuple[float, int, bytes | None]]:
        """Generate the device's packets in device-time order, with faults applied.

        Parameters
        ----------
        duration_s : float, optional
            Stop after this much device time (s); endless if None.

        Yields
        ------
        tuple[float, int, bytes | None]
            Device time since start (s), sequence number, the bytes to send (None when the packet is dropped).
        """
        c = self.config
        raw_dt = c.raw_samples_per_packet / c.raw_rate_hz
        hg_dt = c.hg_frames_per_packet / c.frame_rate_hz
        next_t = {"raw": 0.0, "hg": 0.0, "hb": c.heartbeat_period_s}
        while True:
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
            if kind == "raw":
                next_t["raw"] += raw_dt
                if not self.streams["raw"]:
                    continue
                fmt = _FORMATS[c.raw_format]
                block = self._raw_block(c.raw_samples_per_packet, t)
                if fmt == P.SampleFormat.FLOAT32:  # float32 samples carry µV directly
                    codes, scale = block.astype(np.float32), 1.0
                else:
                    codes, scale = self._codes(block, fmt, c.raw_scale_uv), c.raw_scale_uv
                seq, wire = self._emit(lambda s, t=t, x=codes, f=fmt, sc=scale: P.encode_raw(s, self._ts(t), x, f, sc))
            elif kind == "hg":
                next_t["hg"] += hg_dt
                if not self.streams["hg"]:
                    continue
                fmt = _FORMATS[c.hg_format]
                block = self._hg_block(c.hg_frames_per_packet)
                if fmt == P.SampleFormat.FLOAT32:
                    codes, scale = block.astype(np.float32), 1.0
                else:
                    codes, scale = self._codes(block, fmt, c.hg_scale), c.hg_scale
                seq, wire = self._emit(lambda s, t=t, x=codes, f=fmt, sc=scale:
                                       P.encode_high_gamma(s, self._ts(t), x, f, sc))
            else:
                next_t["hb"] += c.heartbeat_period_s
                status = int(self.streams["raw"]) | (int(self.streams["hg"]) << 1)
                hb = P.Heartbeat(self._packets_sent % 2**32, self._overruns % 2**32, status)
                seq, wire = self._emit(lambda s, t=t, hb=hb: P.encode_heartbeat(s, self._ts(t), hb))
            yield t, seq, self._fault(seq, wire)

    def _fault(self, seq: int, wire: bytes) -> bytes | None:
        r = self._fault_rng.random(3)
        if r[0] < self.config.drop_rate:
            self.truth.dropped.append(seq)
            return None
        self.truth.sent.append(seq)
        if r[1] < self.config.corrupt_rate:
            b = bytearray(wire)
            bit = int(r[2] * len(b) * 8)
            b[bit // 8] ^= 1 << (bit % 8)
            self.truth.corrupted.append(seq)
            return bytes(b)
        return wire

    def _ts(self, t_s: float) -> int:
        return (self.config.start_time_us + int(round(t_s * 1e6))) % P.TIMESTAMP_MODULUS

    def stream_bytes(self, duration_s: float) -> bytes:
        """All bytes the device sends in ``duration_s`` seconds of device time (for offline tests)."""
        return b"".join(w for _, _, w in self.packets(duration_s) if w is not None)


class SimulatorLink:
    """Plays a :class:`DeviceSimulator` in real time over a TCP server socket or a pseudo-terminal.

    The device clock runs from the moment the link starts; packets whose time comes while no host is
    connected are lost (recorded in ``truth.lost_offline``). CONTROL packets from the host are obeyed.

    Parameters
    ----------
    device : DeviceSimulator
        The device to play.
    transport : str
        ``"socket"`` (a TCP server on ``host``; connect to :attr:`url`) or ``"pty"`` (open :attr:`url`, a
        ``/dev/pts/N`` path, as a serial port).
    host : str
        Address the socket server binds (port chosen by the OS).
    speed : float
        Device seconds per wall-clock second.
    """

    def __init__(self, device: DeviceSimulator, transport: str = "socket", host: str = "127.0.0.1",
                 speed: float = 1.0) -> None:
        check_choice("transport", transport, ["socket", "pty"])
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.device, self.transport, self.speed = device, transport, float(speed)
        self._stop = threading.Event()
        self._pause_until = 0.0
        self._drop_connection = threading.Event()
        self._lock = threading.Lock()
        self.connections = 0
        self.started_at: float | None = None  # time.monotonic() at device time 0
        self._parser = P.StreamParser(max_payload=P.CONTROL_PAYLOAD_BYTES)
        if transport == "socket":
            self._server = socket.create_server((host, 0))
            self._server.settimeout(0.05)
            self.url = f"socket://{host}:{self._server.getsockname()[1]}"
        else:
            self._master, slave = os.openpty()
            self._slave = slave  # kept open so the master does not see EIO before the host opens the pty
            os.set_blocking(self._master, False)
            self.url = os.ttyname(slave)
        self._thread = threading.Thread(target=self._run, name="edgensd-device-sim", daemon=True)

    def start(self) -> SimulatorLink:
        """Start the device clock and serve."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close everything."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self.transport == "socket":
            self._server.close()
        else:
            for fd in (self._master, self._slave):
                try:
                    os.close(fd)
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
    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                return None
            conn.setblocking(False)
            self.connections += 1
            logger.debug("simulator: host connected (%d)", self.connections)
            return conn
        return None

    def _send(self, conn, data: bytes) -> bool:
        if self.transport == "pty":
            view = memoryview(data)
            while view and not self._stop.is_set():
                try:
                    n = os.write(self._master, view)
                    view = view[n:]
                except BlockingIOError:
                    time.sleep(0.001)
            return True
        try:
            conn.sendall(data)
            return True
        except OSError:
            return False

    def _poll_control(self, conn) -> None:
        try:
            if self.transport == "pty":
                ready, _, _ = select.select([self._master], [], [], 0)
                data = os.read(self._master, 4096) if ready else b""
            else:
                data = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        for pkt in self._parser.feed(data):
            if isinstance(pkt.body, P.Control):
                self.device.handle_control(pkt.body)

    def _run(self) -> None:
        conn = None if self.transport == "socket" else True
        start = self.started_at = time.monotonic()
        for t_dev, seq, wire in self.device.packets():
            while not self._stop.is_set():  # wait for the packet's time
                now = time.monotonic()
                due = start + t_dev / self.speed
                if conn is None:
                    conn = self._accept()
                elif conn is not True:
                    self._poll_control(conn)
                else:
                    self._poll_control(None)
                if now >= due:
                    break
                time.sleep(min(0.002, due - now))
            if self._stop.is_set():
                break
            if self._drop_connection.is_set() and conn not in (None, True):
                self._drop_connection.clear()
                conn.close()
                conn = None
            if wire is None:
                continue
            if conn is None or time.monotonic() < self._pause_until:
                self.device.truth.sent.remove(seq)
                if seq in self.device.truth.corrupted:
                    self.device.truth.corrupted.remove(seq)
                self.device.truth.lost_offline.append(seq)
                continue
            if not self._send(conn, wire):
                conn.close()
                conn = None
        if conn not in (None, True):
            conn.close()


__all__ = ["DeviceSimulator", "FaultTruth", "SimulatorConfig", "SimulatorLink"]
