"""Play a participant file as a device would: its raw signal (``mode="raw"``) or its high-gamma frames
(``mode="frames"``) once from the start, framed by the bridge protocol, over a pseudo-terminal or a local
socket, with seeded fault injection, and the truth of what was sent, dropped, corrupted and lost.

This is the library behind ``edgensd device-sim``; a test or an end-to-end check can use it in-process::

    cfg = PlaybackConfig(data="p.h5", link="pty", mode="frames", pace="fast", fmt="float32")
    source = load_source(cfg)
    link = open_playback(cfg, source).start()   # connect a host to link.url
    link.wait()
    report = truth_report(cfg, source, link)

Device sample ``k`` of the played stream is row ``k`` of the file's ``raw_signal`` (raw mode, at ``raw_fs``)
or ``ecog_alldataset`` (frames mode, 125 Hz); its device time stamp is ``round(k · 10⁶ / rate)`` µs
(packets carry the time of their first sample), counted from the moment the first host connects.
"""

from __future__ import annotations

import errno
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgensd.config import Config, check_choice

from . import protocol as P
from .simulator import DeviceSimulator, SimulatorConfig, SimulatorLink

MODES = ("raw", "frames")
PACES = ("realtime", "fast")
FORMATS = ("int16", "int24", "float32")
FRAME_RATE_HZ = 125.0
_SOCKET_URL = re.compile(r"^socket://([^:/]+):(\d+)$")


def parse_link(text: str) -> tuple[str, str, int]:
    """Read a ``--link`` value.

    Parameters
    ----------
    text : str
        ``"pty"`` or ``"socket://HOST:PORT"`` (PORT 0..65535; 0 lets the OS pick a free one).

    Returns
    -------
    tuple[str, str, int]
        Transport (``"pty"`` or ``"socket"``), host and port (``""`` and 0 for a pty).

    Raises
    ------
    ValueError
        Naming ``--link`` and the allowed forms.
    """
    if text == "pty":
        return "pty", "", 0
    m = _SOCKET_URL.match(text)
    if m is None or int(m.group(2)) > 65535:
        raise ValueError(f"--link must be 'pty' or 'socket://HOST:PORT' with PORT in 0..65535 (0: any free port), "
                         f"e.g. socket://127.0.0.1:5555; got {text!r}")
    return "socket", m.group(1), int(m.group(2))


@dataclass
class PlaybackConfig(Config):
    """What to play and how (the options of ``edgensd device-sim``).

    Attributes
    ----------
    data : str
        Participant file (HDF5).
    link : str
        ``"pty"`` or ``"socket://HOST:PORT"`` (see :func:`parse_link`).
    mode : str
        ``"raw"`` (the file's ``raw_signal`` at ``raw_fs``, µV) or ``"frames"`` (``ecog_alldataset``, 125 Hz).
    pace : str
        ``"realtime"`` (device time runs at wall-clock speed) or ``"fast"`` (as fast as the host reads).
    corrupt, drop : float
        Probability, per packet, of one flipped bit / of not sending it (DEVICE_INFO is never touched).
    seed : int
        Seed of the faults.
    duration_s : float or None
        Play only the first ``duration_s`` seconds of the file (None: all of it).
    fmt : str
        Sample format of the data packets: ``"int16"``, ``"int24"`` or ``"float32"``.
    raw_scale_uv : float
        µV per count of integer raw samples (0.195 µV: an Intan RHD2000 front end).
    hg_scale : float
        High-gamma (z-score) units per count of integer frames.
    packet_samples : int or None
        Samples (frames) per channel in one data packet, 1..255; None: one packet per 8 ms frame
        (``round(raw_fs / 125)`` raw samples, or 1 frame).
    heartbeat_period_s : float
        Device seconds between HEARTBEAT packets.
    linger_s : float
        After the last packet, how long (s) the device waits for the host to take the bytes in transit.
    """

    data: str = ""
    link: str = "pty"
    mode: str = "frames"
    pace: str = "realtime"
    corrupt: float = 0.0
    drop: float = 0.0
    seed: int = 0
    duration_s: float | None = None
    fmt: str = "int16"
    raw_scale_uv: float = 0.195
    hg_scale: float = 1 / 256
    packet_samples: int | None = None
    heartbeat_period_s: float = 1.0
    linger_s: float = 2.0

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        check_choice("pace", self.pace, PACES)
        check_choice("format", self.fmt, FORMATS)
        parse_link(self.link)
        for flag, value in (("--corrupt", self.corrupt), ("--drop", self.drop)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{flag} must be a probability in [0, 1], got {value}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"--duration must be > 0 seconds, got {self.duration_s}")
        if self.packet_samples is not None and not 1 <= self.packet_samples <= 255:
            raise ValueError(f"--packet-samples must be in 1..255, got {self.packet_samples}")


@dataclass(frozen=True, eq=False)
class PlaybackSource:
    """The samples a playback sends.

    Attributes
    ----------
    values : np.ndarray
        Shape ``(n, n_channels)``, float64: raw µV (raw mode) or high-gamma frames (frames mode).
    rate_hz : float
        Their rate: ``raw_fs`` or 125 Hz.
    ptype : PacketType
        ``RAW`` or ``HIGH_GAMMA``.
    layout : str
        Layout name sent in DEVICE_INFO (the file's ``layout`` attribute, else ``"unknown"``).
    samples_per_packet : int
        Samples (frames) per channel in one data packet.
    path : Path
        The participant file.
    """

    values: np.ndarray
    rate_hz: float
    ptype: P.PacketType
    layout: str
    samples_per_packet: int
    path: Path

    @property
    def n_channels(self) -> int:
        """Electrodes."""
        return int(self.values.shape[1])

    @property
    def duration_s(self) -> float:
        """Length of the played stream (s)."""
        return self.values.shape[0] / self.rate_hz


def load_source(cfg: PlaybackConfig) -> PlaybackSource:
    """Read what ``cfg`` plays from its participant file, checking that it can be played.

    Parameters
    ----------
    cfg : PlaybackConfig

    Returns
    -------
    PlaybackSource

    Raises
    ------
    FileNotFoundError, ValueError
        Messages name the flag (``--data``, ``--mode``, ``--duration``, ``--packet-samples``) and the file.
    """
    from edgensd.data.participant import load_participant

    path = Path(cfg.data)
    if not path.is_file():
        raise FileNotFoundError(f"--data: no such file: {path}")
    try:
        p = load_participant(path, require_neural=cfg.mode == "frames")
    except ValueError as exc:
        raise ValueError(f"--data: {exc}") from None
    import h5py

    with h5py.File(path, "r") as f:  # the loader keeps format attributes to itself
        frame_rate = float(f.attrs.get("frame_rate_hz", FRAME_RATE_HZ))
    if cfg.mode == "raw":
        if p.raw_signal is None:
            raise ValueError(f"--mode raw needs a raw signal, but {path} holds none ('raw_signal' with 'raw_fs'); "
                             "play its high-gamma frames with --mode frames, or pass a file written by "
                             "`edgensd simulate`")
        values, rate, ptype = p.raw_signal, float(p.raw_fs), P.PacketType.RAW
    else:
        if not math.isclose(frame_rate, FRAME_RATE_HZ):
            raise ValueError(f"--mode frames: {path} says its frames are at {frame_rate:g} Hz (attribute "
                             f"'frame_rate_hz'); the device sends high-gamma frames at {FRAME_RATE_HZ:g} Hz only")
        values, rate, ptype = p.ecog, FRAME_RATE_HZ, P.PacketType.HIGH_GAMMA
    n = values.shape[0]
    if cfg.duration_s is not None:
        n = min(n, int(round(cfg.duration_s * rate)))
        if n < 1:
            raise ValueError(f"--duration {cfg.duration_s} s holds no sample at {rate:g} Hz")
    if cfg.packet_samples is not None:
        per = cfg.packet_samples
    else:
        per = max(1, min(255, int(round(rate / FRAME_RATE_HZ))))
    n_ch = values.shape[1]
    nbytes = P.SAMPLE_BYTES[P.SampleFormat[cfg.fmt.upper()]]
    if n_ch * per * nbytes > P.MAX_PAYLOAD:
        most = P.MAX_PAYLOAD // (n_ch * nbytes)
        if most < 1:
            raise ValueError(f"--data: {path} has {n_ch} channels, too many for one packet in --format {cfg.fmt}")
        raise ValueError(f"--packet-samples: {n_ch} channels x {per} samples x {nbytes} bytes exceeds the "
                         f"protocol's {P.MAX_PAYLOAD}-byte payload; allowed for this file and --format {cfg.fmt}: "
                         f"1..{most}")
    layout = str(p.attrs.get("layout", "unknown"))[: P.LAYOUT_BYTES]
    if not layout.isascii() or not layout.isprintable():
        layout = "unknown"
    return PlaybackSource(np.asarray(values[:n], dtype=np.float64), rate, ptype, layout, per, path)


def open_playback(cfg: PlaybackConfig, source: PlaybackSource) -> SimulatorLink:
    """Build the device and its link (not started): the clock starts when the first host connects.

    Raises
    ------
    ValueError
        ``--link`` names a port that is in use or an address that cannot be bound.
    """
    transport, host, port = parse_link(cfg.link)
    raw_mode = source.ptype == P.PacketType.RAW
    per = source.samples_per_packet
    sim_cfg = SimulatorConfig(
        n_channels=source.n_channels,
        raw_rate_hz=source.rate_hz if raw_mode else 1000.0,
        frame_rate_hz=FRAME_RATE_HZ,
        raw_format=cfg.fmt if raw_mode else "int16",
        hg_format=cfg.fmt if not raw_mode else "int16",
        raw_samples_per_packet=per if raw_mode else 8,
        hg_frames_per_packet=per if not raw_mode else 1,
        raw_scale_uv=cfg.raw_scale_uv,
        hg_scale=cfg.hg_scale,
        layout=source.layout,
        send_raw=raw_mode,
        send_hg=not raw_mode,
        heartbeat_period_s=cfg.heartbeat_period_s,
        corrupt_rate=cfg.corrupt,
        drop_rate=cfg.drop,
        seed=cfg.seed,
    )
    device = DeviceSimulator(sim_cfg, raw=source.values if raw_mode else None,
                             hg=None if raw_mode else source.values, repeat=False)
    speed = 1.0 if cfg.pace == "realtime" else math.inf
    try:
        return SimulatorLink(device, transport, host=host or "127.0.0.1", port=port, speed=speed,
                             wait_for_host=True, linger_s=cfg.linger_s)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ValueError(f"--link: port {port} on {host} is in use; pass another port, or "
                             f"socket://{host}:0 for any free one") from None
        raise ValueError(f"--link: cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def quantized(source: PlaybackSource, cfg: PlaybackConfig) -> np.ndarray:
    """The values a host receives for ``source`` in ``cfg.fmt``: float32 as is, integers rounded to the scale
    and clipped to the format's range (float64, shape as ``source.values``)."""
    if cfg.fmt == "float32":
        return source.values.astype(np.float32).astype(np.float64)
    fmt = P.SampleFormat[cfg.fmt.upper()]
    scale = np.float32(cfg.raw_scale_uv if source.ptype == P.PacketType.RAW else cfg.hg_scale)
    lo, hi = P.INT_RANGE[fmt]
    return np.clip(np.rint(source.values / scale), lo, hi) * float(scale)


def truth_report(cfg: PlaybackConfig, source: PlaybackSource, link: SimulatorLink,
                 interrupted: str | None = None) -> dict:
    """The truth file's content: the play's settings, what happened to every packet, and a summary.

    Parameters
    ----------
    cfg : PlaybackConfig
    source : PlaybackSource
    link : SimulatorLink
        The link after the play (or after it was stopped).
    interrupted : str or None
        Name of the signal that stopped the play early (``"SIGINT"``, ``"SIGTERM"``), or None.

    Returns
    -------
    dict
        JSON-ready. ``data_packets`` lists every data packet framed, in order, as ``{"seq", "type", "start",
        "stop", "fate"}`` with ``[start, stop)`` in device samples (raw samples or frame indices) and fate
        ``sent`` / ``corrupted`` / ``dropped`` / ``lost_offline``; ``gaps`` lists the merged ``[start, stop)``
        ranges of those not sent intact.
    """
    truth = link.device.truth.to_dict()
    data = truth["data_packets"]
    fates = {f: sum(1 for d in data if d["fate"] == f) for f in ("sent", "corrupted", "dropped", "lost_offline")}
    played = data[-1]["stop"] if data else 0
    return {
        "data": str(source.path),
        "mode": cfg.mode,
        "type": source.ptype.name,
        "format": cfg.fmt,
        "scale": 1.0 if cfg.fmt == "float32" else float(np.float32(
            cfg.raw_scale_uv if source.ptype == P.PacketType.RAW else cfg.hg_scale)),
        "rate_hz": source.rate_hz,
        "n_channels": source.n_channels,
        "samples_per_packet": source.samples_per_packet,
        "link": link.url,
        "pace": cfg.pace,
        "corrupt": cfg.corrupt,
        "drop": cfg.drop,
        "seed": cfg.seed,
        "samples_in_source": int(source.values.shape[0]),
        "samples_played": int(played),
        "complete": bool(link.finished),
        "interrupted": interrupted,
        "connections": link.connections,
        "bytes_sent": link.bytes_sent,
        "data_packet_fates": fates,
        "gaps": [list(g) for g in link.device.truth.gap_ranges(source.ptype)],
        **truth,
    }


__all__ = ["FORMATS", "MODES", "PACES", "PlaybackConfig", "PlaybackSource", "load_source", "open_playback",
           "parse_link", "quantized", "truth_report"]
