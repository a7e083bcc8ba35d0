"""The host reader: pyserial on its own thread, the stream parser, the sequence tracker, per-sample device and
host time stamps, gap filling, stream-health counters, a stall watchdog and reconnection.

The consumer reads :class:`Block` items with :meth:`SerialReader.get` / :meth:`SerialReader.drain`; the
queue is bounded and the reader never waits for the consumer (when the queue is full the oldest block is
dropped and counted). Works with any ``serial.serial_for_url`` URL: ``loop://``, ``socket://HOST:PORT``,
``/dev/ttyACM0``, a pty path.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import serial
from serial.urlhandler.protocol_socket import Serial as _SocketSerial

from edgensd.config import Config, check_choice
from edgensd.log import logger

from . import protocol as P

GAP_POLICIES = ("zeros", "hold", "nan", "none")


@dataclass
class ReaderConfig(Config):
    """Settings of :class:`SerialReader`.

    Attributes
    ----------
    url : str
        A pyserial URL or device path.
    baudrate : int
        Line rate (ignored by USB CDC and sockets).
    read_timeout_s : float
        Longest a single read waits for the first byte (s); bounds stop and watchdog latency.
    stall_timeout_s : float
        No accepted packet for this long (s) is a stall: counted once per stall and logged.
    reconnect_on_stall : bool
        Close and reopen the port when a stall is detected.
    reconnect_delay_s : float
        Wait between reconnection attempts (s).
    queue_size : int
        Blocks the queue holds; when full the oldest is dropped (counted as ``queue_overflows``).
    gap_policy : str
        How samples missing from a data stream (found from the device timestamps) are filled:
        ``"zeros"``, ``"hold"`` (repeat the last sample), ``"nan"``, or ``"none"`` (not filled; the next
        block is flagged ``after_gap``). Filled blocks are flagged ``filled``.
    max_fill_s : float
        Longer holes are not filled (a device restart or a long outage); counted as ``restarts``.
    request_info : bool
        Send REQUEST_INFO on every (re)connect.
    max_payload : int
        Largest payload accepted (bytes).
    """

    url: str = "loop://"
    baudrate: int = 921_600
    read_timeout_s: float = 0.02
    stall_timeout_s: float = 1.0
    reconnect_on_stall: bool = False
    reconnect_delay_s: float = 0.1
    queue_size: int = 4096
    gap_policy: str = "zeros"
    max_fill_s: float = 2.0
    request_info: bool = True
    max_payload: int = P.MAX_PAYLOAD

    def __post_init__(self) -> None:
        check_choice("gap_policy", self.gap_policy, GAP_POLICIES)
        for name in ("read_timeout_s", "stall_timeout_s", "reconnect_delay_s", "max_fill_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {self.queue_size}")


@dataclass(frozen=True, eq=False)
class Block:
    """A run of samples (RAW) or feature frames (HIGH_GAMMA) from one packet, or a fill for missing ones.

    Attributes
    ----------
    kind : PacketType
        ``RAW`` or ``HIGH_GAMMA``.
    seq : int
        Sequence number of the packet (of the packet after the hole, for a fill).
    values : np.ndarray
        Shape ``(n, n_channels)``, float64 physical values (µV for raw).
    device_time_us : np.ndarray
        Shape ``(n,)``, int64 device time of each sample (µs, unwrapped past the uint32 wrap).
    host_time_s : np.ndarray
        Shape ``(n,)``, ``time.monotonic()`` when each sample became available to the host (the arrival of
        its packet; for a fill, of the packet after the hole).
    filled : bool
        The values are a gap fill (``ReaderConfig.gap_policy``), not data.
    after_gap : bool
        Samples are missing right before this block.
    """

    kind: P.PacketType
    seq: int
    values: np.ndarray
    device_time_us: np.ndarray
    host_time_s: np.ndarray
    filled: bool = False
    after_gap: bool = False


@dataclass
class ReaderCounters:
    """Stream health since the reader started (parser counters summed over connections).

    Attributes
    ----------
    packets, bytes, crc_failures, header_crc_failures, bad_headers, rejected_payloads, resyncs,
    bytes_discarded : int
        As the parser counts them.
    gaps, lost, duplicates, reordered, restarts : int
        From the sequence tracker (device packets only), plus timestamp holes too long to fill in
        ``restarts``.
    filled_samples : int
        Samples (frames) inserted by the gap policy.
    reconnects : int
        Successful reopenings after a disconnect or a stall.
    disconnects : int
        Times the port failed or closed.
    stalls : int
        Watchdog expiries.
    queue_overflows : int
        Blocks dropped because the consumer fell behind.
    channel_mismatches : int
        Data packets whose channel count differs from DEVICE_INFO (dropped).
    data_before_info : int
        Data packets received before any DEVICE_INFO (dropped: rates unknown).
    heartbeats : int
        HEARTBEAT packets.
    """

    packets: int = 0
    bytes: int = 0
    crc_failures: int = 0
    header_crc_failures: int = 0
    bad_headers: int = 0
    rejected_payloads: int = 0
    resyncs: int = 0
    bytes_discarded: int = 0
    gaps: int = 0
    lost: int = 0
    duplicates: int = 0
    reordered: int = 0
    restarts: int = 0
    filled_samples: int = 0
    reconnects: int = 0
    disconnects: int = 0
    stalls: int = 0
    queue_overflows: int = 0
    channel_mismatches: int = 0
    data_before_info: int = 0
    heartbeats: int = 0


class _StreamClock:
    """Unwraps one data stream's uint32 timestamps and finds holes in it."""

    def __init__(self) -> None:
        self.offset = 0
        self.last_raw: int | None = None
        self.next_us: float | None = None  # expected unwrapped time of the next sample
        self.last_values: np.ndarray | None = None

    def unwrap(self, ts: int) -> int:
        if self.last_raw is not None and ts < self.last_raw and self.last_raw - ts > P.TIMESTAMP_MODULUS // 2:
            self.offset += P.TIMESTAMP_MODULUS
        self.last_raw = ts
        return ts + self.offset


class SerialReader:
    """Reads a device on its own thread and queues time-stamped blocks.

    Parameters
    ----------
    config : ReaderConfig
        Port, watchdog, reconnection, queue and gap policy.

    Examples
    --------
    >>> with SerialReader(ReaderConfig(url="socket://127.0.0.1:5555")) as r:  # doctest: +SKIP
    ...     block = r.get(timeout=1.0)
    """

    def __init__(self, config: ReaderConfig) -> None:
        self.config = config
        self.counters = ReaderCounters()
        self.device_info: P.DeviceInfo | None = None
        self.heartbeat: P.Heartbeat | None = None
        self.tracker = P.SequenceTracker()
        self._clocks = {P.PacketType.RAW: _StreamClock(), P.PacketType.HIGH_GAMMA: _StreamClock()}
        self._queue: deque[Block] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._port = None
        self._port_lock = threading.Lock()
        self._host_seq = 0
        self._parser = P.StreamParser(max_payload=config.max_payload)
        self._closed_parser_counts = P.ParserCounters()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgensd-serial-reader", daemon=True)
        self.stalled = False

    # ---- life cycle ----
    def start(self) -> SerialReader:
        """Open the port (retrying until it opens) and start reading on a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and close the port."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._close()

    def __enter__(self) -> SerialReader:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait_connected(self, timeout: float) -> bool:
        """Block until the port is open (or ``timeout`` seconds); returns whether it is."""
        return self._connected.wait(timeout)

    # ---- consumer side ----
    def get(self, timeout: float | None = None) -> Block | None:
        """The oldest queued block, waiting up to ``timeout`` seconds (None: forever); None if none came."""
        with self._cond:
            if not self._queue:
                self._cond.wait_for(lambda: bool(self._queue) or self._stop.is_set(), timeout)
            return self._queue.popleft() if self._queue else None

    def drain(self) -> list[Block]:
        """All queued blocks, without waiting."""
        with self._cond:
            out = list(self._queue)
            self._queue.clear()
        return out

    # ---- host -> device ----
    def write(self, data: bytes) -> None:
        """Write raw bytes to the port (raises ``serial.SerialException`` when not connected)."""
        with self._port_lock:
            if self._port is None:
                raise serial.SerialException("not connected")
            self._port.write(data)

    def send_control(self, command: P.Command, arg: int = 0) -> None:
        """Send a CONTROL packet (the host numbers its packets with its own counter)."""
        self.write(P.encode_control(self._host_seq, int(time.monotonic() * 1e6) % P.TIMESTAMP_MODULUS,
                                    P.Control(P.Command(command), arg)))
        self._host_seq = (self._host_seq + 1) % P.SEQ_MODULUS

    def parser_counters(self) -> P.ParserCounters:
        """Parser counters summed over all connections so far."""
        a, b = self._closed_parser_counts.as_dict(), self._parser.counters.as_dict()
        return P.ParserCounters(**{k: a[k] + b[k] for k in a})

    # ---- the thread ----
    def _open(self) -> bool:
        try:
            port = serial.serial_for_url(self.config.url, baudrate=self.config.baudrate,
                                         timeout=self.config.read_timeout_s)
        except (serial.SerialException, OSError, ValueError) as e:
            logger.debug("reader: cannot open %s: %s", self.config.url, e)
            return False
        with self._port_lock:
            self._port = port
        self._connected.set()
        if self.config.request_info:
            try:
                self.send_control(P.Command.REQUEST_INFO)
            except (serial.SerialException, OSError) as e:
                logger.debug("reader: REQUEST_INFO failed: %s", e)
        return True

    def _close(self) -> None:
        self._connected.clear()
        with self._port_lock:
            port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass

    def _reset_parser(self) -> None:
        """A new connection starts a new byte stream: keep the counts, drop the half-read packet."""
        self._closed_parser_counts = self.parser_counters()
        self._parser = P.StreamParser(max_payload=self.config.max_payload)

    def _run(self) -> None:
        cfg = self.config
        first = True
        while not self._stop.is_set():
            if not self._open():
                self._stop.wait(cfg.reconnect_delay_s)
                continue
            if not first:
                self.counters.reconnects += 1
                logger.info("reader: reconnected to %s (%d)", cfg.url, self.counters.reconnects)
            first = False
            last_packet = time.monotonic()
            self.stalled = False
            while not self._stop.is_set():
                try:
                    data = self._read(self._port)
                except (serial.SerialException, OSError, AttributeError, TypeError) as e:
                    self.counters.disconnects += 1
                    logger.warning("reader: %s disconnected (%s); reconnecting", cfg.url, e)
                    break
                now = time.monotonic()
                if data:
                    if self._handle(self._parser.feed(data), now):
                        last_packet = now
                        self.stalled = False
                    self._sync_parser_counts()
                if now - last_packet > cfg.stall_timeout_s and not self.stalled:
                    self.stalled = True
                    self.counters.stalls += 1
                    logger.warning("reader: no packet from %s for %.2f s (stall %d)", cfg.url, now - last_packet,
                                   self.counters.stalls)
                    if cfg.reconnect_on_stall:
                        self.counters.disconnects += 1
                        break
            self._close()
            self._reset_parser()
            if not self._stop.is_set():
                self._stop.wait(cfg.reconnect_delay_s)
        with self._cond:
            self._cond.notify_all()

    def _read(self, port) -> bytes:
        """Wait up to read_timeout_s for the first byte, then take everything already received."""
        data = port.read(max(1, port.in_waiting))
        if len(data) == 1 and isinstance(port, _SocketSerial):  # its in_waiting says only 0 or 1
            port.timeout = 0
            try:
                data += port.read(1 << 16)
            finally:
                port.timeout = self.config.read_timeout_s
        return data

    def _sync_parser_counts(self) -> None:
        c = self.parser_counters()
        for name in ("bytes", "crc_failures", "header_crc_failures", "bad_headers", "rejected_payloads", "resyncs",
                     "bytes_discarded"):
            setattr(self.counters, name, getattr(c, name))

    def _handle(self, packets: list[P.Packet], now: float) -> bool:
        """Process packets that arrived at host time ``now``; returns whether any came from the device."""
        got = False
        for pkt in packets:
            if pkt.ptype == P.PacketType.CONTROL:  # host -> device (a loopback echo): not device data
                continue
            got = True
            self.counters.packets += 1
            event, _ = self.tracker.update(pkt.seq)
            t = self.tracker.counters
            self.counters.gaps, self.counters.lost = t.gaps, t.lost
            self.counters.duplicates, self.counters.reordered = t.duplicates, t.reordered
            if event in (P.SeqEvent.DUPLICATE, P.SeqEvent.LATE):
                continue  # already delivered, or its hole was already filled
            if event == P.SeqEvent.RESTART:
                self.counters.restarts += 1
            if isinstance(pkt.body, P.DeviceInfo):
                if self.device_info != pkt.body:
                    logger.info("reader: device %#x, %d channels, raw %.0f Hz, frames %.0f Hz, layout %r",
                                pkt.body.device_id, pkt.body.n_channels, pkt.body.raw_rate_hz,
                                pkt.body.frame_rate_hz, pkt.body.layout)
                self.device_info = pkt.body
            elif isinstance(pkt.body, P.Heartbeat):
                self.heartbeat = pkt.body
                self.counters.heartbeats += 1
            elif isinstance(pkt.body, P.Samples):
                self._data(pkt, now)
        return got

    def _data(self, pkt: P.Packet, now: float) -> None:
        info = self.device_info
        if info is None:
            self.counters.data_before_info += 1
            return
        body = pkt.body
        if pkt.n_channels != info.n_channels:
            self.counters.channel_mismatches += 1
            logger.warning("reader: packet %d has %d channels, the device said %d; dropped", pkt.seq,
                           pkt.n_channels, info.n_channels)
            return
        rate = info.raw_rate_hz if pkt.ptype == P.PacketType.RAW else info.frame_rate_hz
        period_us = 1e6 / rate
        clock = self._clocks[pkt.ptype]
        t0 = clock.unwrap(pkt.timestamp_us)
        values = body.values()
        after_gap = False
        if clock.next_us is not None:
            missing = int(round((t0 - clock.next_us) / period_us))
            if missing > 0:
                after_gap = True
                if missing * period_us > self.config.max_fill_s * 1e6:
                    self.counters.restarts += 1
                elif self.config.gap_policy != "none":
                    self._push(self._fill(pkt, clock, missing, period_us, now, values.shape[1]))
        n = values.shape[0]
        dev = t0 + np.rint(np.arange(n) * period_us).astype(np.int64)
        clock.next_us = t0 + n * period_us
        clock.last_values = values[-1]
        self._push(Block(pkt.ptype, pkt.seq, values, dev, np.full(n, now), after_gap=after_gap))

    def _fill(self, pkt: P.Packet, clock: _StreamClock, missing: int, period_us: float, now: float,
              n_channels: int) -> Block:
        policy = self.config.gap_policy
        if policy == "hold" and clock.last_values is not None:
            values = np.repeat(clock.last_values[None, :], missing, axis=0)
        elif policy == "nan":
            values = np.full((missing, n_channels), np.nan)
        else:
            values = np.zeros((missing, n_channels))
        dev = np.rint(clock.next_us + np.arange(missing) * period_us).astype(np.int64)
        self.counters.filled_samples += missing
        return Block(pkt.ptype, pkt.seq, values, dev, np.full(missing, now), filled=True, after_gap=True)

    def _push(self, block: Block) -> None:
        with self._cond:
            if len(self._queue) >= self.config.queue_size:
                self._queue.popleft()
                self.counters.queue_overflows += 1
            self._queue.append(block)
            self._cond.notify()


__all__ = ["GAP_POLICIES", "Block", "ReaderConfig", "ReaderCounters", "SerialReader"]
