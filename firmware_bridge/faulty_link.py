"""A protocol-agnostic faulty wire: a byte proxy between a device endpoint and a host that flips bits, deletes
bytes and inserts bytes at given rates with a seed, and logs every fault by byte offset.

It knows nothing of the bridge protocol, so it tests the parser's claims from outside: a damaged packet is
never delivered, and the stream resynchronises after any damage. The host connects to :attr:`FaultyLink.url`
(a local TCP server, or a pseudo-terminal the host opens as a serial port); for each host connection the
proxy opens the upstream endpoint (``socket://HOST:PORT`` or a serial device / pty path) and pumps bytes both
ways. Faults hit the device → host direction (and host → device too with ``both_ways``).

Fault model, per byte of the input stream, drawn from one seeded generator so the faults do not depend on
how the stream is split into reads: with probability ``delete_rate`` the byte is deleted; otherwise with
probability ``flip_rate`` one of its 8 bits (uniform) is flipped; independently, with probability
``insert_rate`` a uniform random byte is inserted after it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgensd.config import Config, check_choice
from edgensd.log import logger

FAULT_KINDS = ("flip", "delete", "insert")
DIRECTIONS = ("down", "up")  # down: device -> host
_SOCKET_URL = re.compile(r"^socket://([^:/]+):(\d+)$")


@dataclass
class FaultyLinkConfig(Config):
    """Fault rates of a :class:`FaultyLink` (each a probability per input byte, in [0, 1]).

    Attributes
    ----------
    flip_rate : float
        A byte (not deleted) has one bit flipped.
    delete_rate : float
        A byte is deleted.
    insert_rate : float
        A random byte is inserted after a byte.
    seed : int
        Seed of the faults (one generator per direction).
    both_ways : bool
        Damage host → device bytes too (by default only device → host bytes are damaged).
    listen : str
        Where the host connects: ``"socket://HOST:PORT"`` (PORT 0: any free one) or ``"pty"``.
    """

    flip_rate: float = 0.0
    delete_rate: float = 0.0
    insert_rate: float = 0.0
    seed: int = 0
    both_ways: bool = False
    listen: str = "socket://127.0.0.1:0"

    def __post_init__(self) -> None:
        for name in ("flip_rate", "delete_rate", "insert_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if self.listen != "pty" and (_SOCKET_URL.match(self.listen) is None
                                     or int(_SOCKET_URL.match(self.listen).group(2)) > 65535):
            raise ValueError(f"listen must be 'pty' or 'socket://HOST:PORT' (PORT 0..65535), got {self.listen!r}")


@dataclass(frozen=True)
class ByteFault:
    """One fault the proxy made.

    Attributes
    ----------
    direction : str
        ``"down"`` (device → host) or ``"up"`` (host → device).
    connection : int
        Host connection number (1, 2, ...); offsets restart at 0 on each.
    offset : int
        Offset of the input byte concerned in that connection's input stream (0-based); an insertion comes
        right after it.
    kind : str
        ``"flip"``, ``"delete"`` or ``"insert"``.
    value : int
        The bit mask flipped, the byte deleted, or the byte inserted.
    """

    direction: str
    connection: int
    offset: int
    kind: str
    value: int


class ByteMangler:
    """Applies the fault model to one byte stream (pure: bytes in, bytes out, faults logged).

    Parameters
    ----------
    config : FaultyLinkConfig
        The rates.
    seed : int | list[int]
        Seed of this stream's generator.
    direction : str
        ``"down"`` or ``"up"``, written into each :class:`ByteFault`.
    connection : int
        Host connection number, written into each :class:`ByteFault`.

    Attributes
    ----------
    offset : int
        Input bytes processed so far.
    faults : list[ByteFault]
        Every fault made, in stream order.
    """

    def __init__(self, config: FaultyLinkConfig, seed, direction: str = "down", connection: int = 1) -> None:
        check_choice("direction", direction, DIRECTIONS)
        self.config, self.direction, self.connection = config, direction, connection
        self._rng = np.random.default_rng(seed)
        self.offset = 0  # input bytes seen
        self.faults: list[ByteFault] = []

    def process(self, data: bytes) -> bytes:
        """Damage the next bytes of the stream and log each fault.

        Parameters
        ----------
        data : bytes
            The next input bytes (any split of the stream gives the same output and log).

        Returns
        -------
        bytes
            What leaves the wire: ``len(data)`` − deletions + insertions bytes.
        """
        n = len(data)
        if n == 0:
            return b""
        c = self.config
        u = self._rng.random((n, 5))  # delete, flip, which bit, insert, inserted byte: 5 draws per byte
        delete = u[:, 0] < c.delete_rate
        flip = ~delete & (u[:, 1] < c.flip_rate)
        insert = u[:, 3] < c.insert_rate
        if not (delete.any() or flip.any() or insert.any()):
            self.offset += n
            return bytes(data)
        orig = np.frombuffer(bytes(data), np.uint8)
        arr = orig.copy()
        masks = (1 << (u[:, 2] * 8).astype(np.int64)).astype(np.uint8)
        inserted = (u[:, 4] * 256).astype(np.int64).astype(np.uint8)
        arr[flip] ^= masks[flip]
        events: list[tuple[int, str, int]] = [(int(i), "flip", int(masks[i])) for i in np.flatnonzero(flip)]
        out = bytearray()
        prev = 0
        for i in np.flatnonzero(delete | insert):  # only the bytes with a structural fault are visited
            if delete[i]:
                out += arr[prev:i].tobytes()
                events.append((int(i), "delete", int(orig[i])))
            else:
                out += arr[prev: i + 1].tobytes()
            if insert[i]:
                out.append(int(inserted[i]))
                events.append((int(i), "insert", int(inserted[i])))
            prev = i + 1
        for i, kind, value in sorted(events, key=lambda e: (e[0], FAULT_KINDS.index(e[1]))):
            self._log(i, kind, value)
        out += arr[prev:].tobytes()
        self.offset += n
        return bytes(out)

    def _log(self, i: int, kind: str, value: int) -> None:
        f = ByteFault(self.direction, self.connection, self.offset + int(i), kind, value)
        self.faults.append(f)
        logger.debug("faulty link: %s byte %d of connection %d (%s): %#04x", kind, f.offset, f.connection,
                     f.direction, value)


def apply_faults(data: bytes, faults: list[ByteFault]) -> bytes:
    """Rebuild a damaged stream from the clean one and a fault log (the log's own check).

    Parameters
    ----------
    data : bytes
        The clean input stream of one direction and connection.
    faults : list[ByteFault]
        Its faults, in any order.

    Returns
    -------
    bytes
        What the proxy must have sent.
    """
    by_offset: dict[int, list[ByteFault]] = {}
    for f in faults:
        by_offset.setdefault(f.offset, []).append(f)
    out = bytearray()
    for i, b in enumerate(data):
        fs = by_offset.get(i, [])
        kinds = {f.kind: f.value for f in fs}
        if "delete" not in kinds:
            out.append(b ^ kinds.get("flip", 0))
        if "insert" in kinds:
            out.append(kinds["insert"])
    return bytes(out)


@dataclass
class _Counters:
    connections: int = 0
    bytes_in: dict[str, int] = field(default_factory=lambda: {"down": 0, "up": 0})
    bytes_out: dict[str, int] = field(default_factory=lambda: {"down": 0, "up": 0})


class FaultyLink:
    """The proxy: host ↔ (faults) ↔ upstream device endpoint, on its own thread.

    Parameters
    ----------
    upstream : str
        The device side: ``socket://HOST:PORT`` or a serial device / pty path; opened anew for each host
        connection and closed when the host goes.
    config : FaultyLinkConfig
        Rates, seed, and where the host connects.

    Attributes
    ----------
    url : str
        What the host opens: ``socket://HOST:PORT`` or a ``/dev/pts/N`` path.
    faults : list[ByteFault]
        Every fault so far.
    """

    def __init__(self, upstream: str, config: FaultyLinkConfig | None = None) -> None:
        self.upstream = upstream
        self.config = c = config or FaultyLinkConfig()
        self.counters = _Counters()
        self.faults: list[ByteFault] = []
        self._stop = threading.Event()
        self._manglers: dict[str, ByteMangler] = {}
        if c.listen == "pty":
            self._master, slave = os.openpty()
            self.url = os.ttyname(slave)
            _set_raw(slave)
            os.close(slave)
            os.set_blocking(self._master, False)
            self._server = None
        else:
            m = _SOCKET_URL.match(c.listen)
            self._server = socket.create_server((m.group(1), int(m.group(2))))
            self._server.setblocking(False)
            self.url = f"socket://{m.group(1)}:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._run, name="edgensd-faulty-link", daemon=True)

    def start(self) -> FaultyLink:
        """Start pumping bytes."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop and close every endpoint."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._server is not None:
            self._server.close()
        else:
            try:
                os.close(self._master)
            except OSError:
                pass

    def __enter__(self) -> FaultyLink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self) -> dict:
        """The fault log as JSON-ready data: settings, byte counts per direction, and every fault."""
        return {
            "upstream": self.upstream,
            "url": self.url,
            "config": self.config.to_dict(),
            "connections": self.counters.connections,
            "bytes_in": dict(self.counters.bytes_in),
            "bytes_out": dict(self.counters.bytes_out),
            "faults": [dataclasses.asdict(f) for f in self.faults],
        }

    def write_log(self, path: str | os.PathLike) -> Path:
        """Write :meth:`log` as JSON."""
        path = Path(path)
        path.write_text(json.dumps(self.log(), indent=1) + "\n")
        return path

    # ---- endpoints ----
    def _accept_host(self):
        """The host's endpoint if one has connected: a socket, or the pty master fd (int)."""
        if self._server is not None:
            try:
                conn, _ = self._server.accept()
            except (BlockingIOError, OSError):
                return None
            conn.setblocking(False)
            return conn
        p = select.poll()
        p.register(self._master, select.POLLIN)
        if any(ev & select.POLLHUP for _, ev in p.poll(0)):
            return None
        return self._master

    def _open_upstream(self):
        m = _SOCKET_URL.match(self.upstream)
        if m is not None:
            conn = socket.create_connection((m.group(1), int(m.group(2))), timeout=2.0)
            conn.setblocking(False)
            return conn
        fd = os.open(self.upstream, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        _set_raw(fd)
        return fd

    @staticmethod
    def _read(ep) -> bytes | None:
        """Available bytes; b'' when the endpoint is gone; None when nothing is there yet."""
        try:
            return ep.recv(1 << 16) if isinstance(ep, socket.socket) else os.read(ep, 1 << 16)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""

    def _write(self, ep, data: bytes) -> bool:
        view = memoryview(data)
        while view and not self._stop.is_set():
            try:
                n = ep.send(view) if isinstance(ep, socket.socket) else os.write(ep, view)
                view = view[n:]
            except BlockingIOError:
                select.select([], [ep], [], 0.01)
            except OSError:
                return False
        return not view

    def _close(self, ep) -> None:
        if ep is None or ep is getattr(self, "_master", None):
            return
        try:
            ep.close() if isinstance(ep, socket.socket) else os.close(ep)
        except OSError:
            pass

    def _run(self) -> None:
        c = self.config
        host = up = None
        while not self._stop.is_set():
            if host is None:
                host = self._accept_host()
                if host is None:
                    time.sleep(0.005)
                    continue
                try:
                    up = self._open_upstream()
                except OSError as exc:
                    logger.warning("faulty link: cannot open the upstream %s: %s", self.upstream, exc)
                    self._close(host)
                    host = None
                    time.sleep(0.1)
                    continue
                self.counters.connections += 1
                k = self.counters.connections
                self._manglers = {"down": ByteMangler(c, [c.seed, 0, k], "down", k),
                                  "up": ByteMangler(c, [c.seed, 1, k], "up", k)}
                logger.debug("faulty link: host connection %d, upstream %s open", k, self.upstream)
            ready, _, _ = select.select([host, up], [], [], 0.02)
            gone = False
            for src, dst, direction in ((up, host, "down"), (host, up, "up")):
                if src not in ready:
                    continue
                data = self._read(src)
                if data is None:
                    continue
                if not data:
                    gone = True
                    break
                self.counters.bytes_in[direction] += len(data)
                if direction == "down" or c.both_ways:
                    mangler = self._manglers[direction]
                    n_before = len(mangler.faults)
                    data = mangler.process(data)
                    self.faults.extend(mangler.faults[n_before:])
                self.counters.bytes_out[direction] += len(data)
                if not self._write(dst, data):
                    gone = True
                    break
            if gone:
                logger.debug("faulty link: connection %d closed", self.counters.connections)
                self._close(up)
                self._close(host)
                host = up = None
        self._close(up)
        self._close(host)


def _set_raw(fd: int) -> None:
    """Put a terminal in raw mode (no echo, no line editing, 8-bit clean)."""
    import termios  # POSIX only, like the pty endpoints; imported here so the module imports everywhere

    attrs = termios.tcgetattr(fd)
    attrs[0] = attrs[1] = attrs[3] = 0
    attrs[2] = termios.CS8 | termios.CREAD | termios.CLOCAL
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


__all__ = ["DIRECTIONS", "FAULT_KINDS", "ByteFault", "ByteMangler", "FaultyLink", "FaultyLinkConfig", "apply_faults"]
