"""Record what a host received as a participant file (the reference layout), written incrementally.

:class:`SessionRecorder` keeps each received sample in the slot of its device index, so received frame ``i``
is device frame ``i`` and a hole keeps its place: the slot holds zeros and its ``valid`` flag is False (a
hole the reader filled, or one nobody reported). Datasets are resizable and the file is flushed every
``flush_interval_s`` seconds, so a run that is killed keeps everything flushed before and the file stays
loadable by :func:`edgensd.data.participant.load_participant`.

Layout written (``T`` frames at 125 Hz, ``C`` channels, ``R`` raw samples at ``raw_fs``)
---------------------------------------------------------------------------------------
==================================  ======================  ===================================================
key                                 dtype, shape            content
==================================  ======================  ===================================================
``ecog_alldataset``                 float32 (T, C)          received high-gamma frames; zeros where not valid
``valid``                           bool (T,)               frame ``i`` was received (not a gap fill)
``wave_re_alldataset``              float32 (128 T,)        silence: a recording has no audio (see below)
``start_ind_re_valid_alldataset``   int64 (1,)              ``[0]``: the whole recording is one trial
``end_ind_re_valid_alldataset``     int64 (1,)              ``[T]``
``label_alldataset``                str (1,)                ``["session"]``
``raw_signal``                      float32 (R, C)          raw mode: received samples, µV; zeros where not valid
``raw_valid``                       bool (R,)               raw mode: sample ``k`` was received
``raw_fs``                          float64 scalar          raw mode: its rate, Hz
==================================  ======================  ===================================================

File attributes: ``audio_recorded = False``, ``recorded_by = "edgensd.firmware_bridge.record"``,
``device_origin_us`` (device time of slot 0, µs), ``layout`` (when known), plus the participant format's own.

**No audio.** The reference layout requires ``wave_re_alldataset``; a recording stores silence of the
matching length (128 samples per frame) so the file loads unchanged, and marks it with the attribute
``audio_recorded = False`` (``Participant.attrs["audio_recorded"]``). The silent dataset is never written:
HDF5 allocates no chunk for it (it reads as its fill value, 0), so it costs no disk space. A consumer that
needs speech must check that attribute. ``valid`` and ``raw_valid`` load as extras
(``load_participant(path, load_extras=True).extras["valid"]``).

In raw mode the frame axis covers the raw samples received (``floor((R − 1) · 125 / raw_fs) + 1`` frames)
even when no frame was given, and the raw axis covers the frames, so the two durations always agree as the
loader requires. A file is loadable once it holds at least one slot (``T ≥ 1``). HDF5 has no atomic append:
a kill during the few milliseconds of a flush can damage that flush's metadata; one between flushes loses
only what was not yet flushed.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np

from edgensd.log import logger

from . import protocol as P
from .reader import Block

FRAME_RATE_HZ = 125.0
HOP = 128
SESSION_LABEL = "session"


class _Axis:
    """One resizable (slots × channels) dataset, its ``valid`` flags, and the runs waiting to be written."""

    def __init__(self, f, key: str, valid_key: str, n_channels: int, chunk: int) -> None:
        self.data = f.create_dataset(key, shape=(0, n_channels), maxshape=(None, n_channels), dtype=np.float32,
                                     chunks=(chunk, n_channels), fillvalue=0.0)
        self.valid = f.create_dataset(valid_key, shape=(0,), maxshape=(None,), dtype=bool,
                                      chunks=(max(chunk, 1024),), fillvalue=False)
        self.pending: list[list] = []  # [start, [arrays], [valid arrays], n]
        self.extent = 0  # slots, written or pending
        self.flushed = 0  # slots on disk at the last flush

    def add(self, start: int, values: np.ndarray, valid: np.ndarray) -> None:
        n = values.shape[0]
        last = self.pending[-1] if self.pending else None
        if last is not None and last[0] + last[3] == start:
            last[1].append(values)
            last[2].append(valid)
            last[3] += n
        else:
            self.pending.append([start, [values], [valid], n])
        self.extent = max(self.extent, start + n)

    def write(self, extent: int) -> None:
        if extent > self.data.shape[0]:
            self.data.resize(extent, axis=0)
            self.valid.resize(extent, axis=0)
        for start, arrays, valids, n in self.pending:
            self.data[start: start + n] = np.concatenate(arrays)
            self.valid[start: start + n] = np.concatenate(valids)
        self.pending = []
        self.flushed = extent


class SessionRecorder:
    """Writes received frames (and raw samples) to a participant file as they arrive.

    Parameters
    ----------
    path : str or path-like
        The file to create (refused if it exists, unless ``overwrite``).
    n_channels : int
        Electrodes per frame / sample (>= 1).
    frame_rate_hz : float
        High-gamma frame rate; the participant layout's clock is 125 Hz and nothing else is accepted.
    raw_fs : float or None
        Raw sample rate (Hz) in raw mode; None: frames only.
    origin_us : int or None
        Device time (µs, unwrapped as the reader reports it) of slot 0; None: the first block's first sample.
        The device simulator's clock starts at 0.
    flush_interval_s : float
        Longest time (s) received data waits in memory before it is written and the file flushed.
    layout : str or None
        Electrode layout name, stored as the ``layout`` attribute.
    overwrite : bool
        Replace an existing file.
    """

    def __init__(self, path: str | os.PathLike, n_channels: int, frame_rate_hz: float = FRAME_RATE_HZ,
                 raw_fs: float | None = None, *, origin_us: int | None = 0, flush_interval_s: float = 1.0,
                 layout: str | None = None, overwrite: bool = False) -> None:
        import h5py

        from edgensd.data.participant import FORMAT_NAME, FORMAT_VERSION
        from edgensd.spectrogram import SAMPLE_RATE

        if isinstance(n_channels, bool) or not isinstance(n_channels, (int, np.integer)) or n_channels < 1:
            raise ValueError(f"n_channels must be an integer >= 1, got {n_channels!r}")
        if not math.isclose(float(frame_rate_hz), FRAME_RATE_HZ):
            raise ValueError(f"frame_rate_hz must be {FRAME_RATE_HZ:g} (the participant layout's frame clock), "
                             f"got {frame_rate_hz}")
        if raw_fs is not None and not (math.isfinite(raw_fs) and raw_fs > 0):
            raise ValueError(f"raw_fs must be a rate > 0 in Hz, or None for frames only; got {raw_fs}")
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0 seconds, got {flush_interval_s}")
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"recording {self.path} exists; pass overwrite=True to replace it")
        self.n_channels, self.raw_fs = int(n_channels), None if raw_fs is None else float(raw_fs)
        self.origin_us = origin_us
        self.flush_interval_s = float(flush_interval_s)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = f = h5py.File(self.path, "w")
        str_dt = h5py.string_dtype("utf-8")
        self._frames = _Axis(f, "ecog_alldataset", "valid", self.n_channels, 125)
        self._audio = f.create_dataset("wave_re_alldataset", shape=(0,), maxshape=(None,), dtype=np.float32,
                                       chunks=(16000,), fillvalue=0.0)
        f.create_dataset("start_ind_re_valid_alldataset", data=np.zeros(1, np.int64))
        self._end = f.create_dataset("end_ind_re_valid_alldataset", data=np.zeros(1, np.int64))
        f.create_dataset("label_alldataset", data=np.array([SESSION_LABEL], dtype=object), dtype=str_dt)
        self._raw = None
        if self.raw_fs is not None:
            self._raw = _Axis(f, "raw_signal", "raw_valid", self.n_channels, max(1, int(round(self.raw_fs))))
            f.create_dataset("raw_fs", data=np.float64(self.raw_fs))
        f.attrs.update({"edgensd_format": FORMAT_NAME, "edgensd_format_version": FORMAT_VERSION,
                        "audio_sample_rate_hz": SAMPLE_RATE, "frame_rate_hz": FRAME_RATE_HZ,
                        "audio_recorded": False, "recorded_by": "edgensd.firmware_bridge.record"})
        if layout is not None:
            f.attrs["layout"] = str(layout)
        if origin_us is not None:
            f.attrs["device_origin_us"] = int(origin_us)
        f.flush()
        self._last_flush = time.monotonic()
        self.closed = False

    # ---- properties ----
    @property
    def n_frames(self) -> int:
        """Frame slots so far (written or waiting), gaps included."""
        return self._extents()[0]

    @property
    def n_raw(self) -> int:
        """Raw sample slots so far (0 without ``raw_fs``)."""
        return self._extents()[1]

    @property
    def flushed_frames(self) -> int:
        """Frame slots on disk as of the last flush."""
        return self._frames.flushed

    def _extents(self) -> tuple[int, int]:
        t, r = self._frames.extent, 0
        if self._raw is not None:
            r = self._raw.extent
            fs = self.raw_fs
            if r:
                t = max(t, int(math.floor((r - 1) * FRAME_RATE_HZ / fs + 1e-9)) + 1)
            if t:
                r = max(r, int(math.ceil((t - 1) * fs / FRAME_RATE_HZ - 1e-9)) + 1)
        return t, r

    # ---- adding data ----
    def _check(self, name: str, start: int, values, valid) -> tuple[int, np.ndarray, np.ndarray]:
        if self.closed:
            raise ValueError(f"recording {self.path} is closed")
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
            raise ValueError(f"{name}: start must be a slot index >= 0, got {start!r}")
        v = np.asarray(values, dtype=np.float32)
        if v.ndim != 2 or v.shape[1] != self.n_channels:
            raise ValueError(f"{name}: values must have shape (n, n_channels={self.n_channels}), got {v.shape}")
        ok = np.broadcast_to(np.asarray(valid, dtype=bool), (v.shape[0],)).copy()
        v = np.where(ok[:, None], v, np.float32(0.0))  # slots without data hold zeros
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{name}: valid values must be finite")
        return int(start), v, ok

    def add_frames(self, start: int, values: np.ndarray, valid: bool | np.ndarray = True) -> None:
        """Record high-gamma frames in slots ``start … start + n − 1``.

        Parameters
        ----------
        start : int
            Device frame index of the first row (>= 0).
        values : np.ndarray
            Shape ``(n, n_channels)``, z-scored high-gamma.
        valid : bool or np.ndarray
            Whether each row is data (shape ``(n,)`` or a scalar); invalid rows are stored as zeros.
        """
        start, v, ok = self._check("add_frames", start, values, valid)
        self._frames.add(start, v, ok)
        self._maybe_flush()

    def add_raw(self, start: int, values: np.ndarray, valid: bool | np.ndarray = True) -> None:
        """Record raw samples (µV, shape ``(n, n_channels)``) in slots ``start …``; see :meth:`add_frames`."""
        if self._raw is None:
            raise ValueError(f"recording {self.path} has no raw signal: create it with raw_fs=RATE to add raw samples")
        start, v, ok = self._check("add_raw", start, values, valid)
        self._raw.add(start, v, ok)
        self._maybe_flush()

    def add_block(self, block: Block) -> None:
        """Record a reader :class:`~edgensd.firmware_bridge.reader.Block` in the slots of its device times
        (HIGH_GAMMA → frames, RAW → raw samples); a gap fill is stored as zeros, not valid."""
        if block.kind == P.PacketType.HIGH_GAMMA:
            rate, add = FRAME_RATE_HZ, self.add_frames
        elif block.kind == P.PacketType.RAW:
            if self.raw_fs is None:
                raise ValueError(f"recording {self.path} has no raw signal: create it with raw_fs=RATE for RAW blocks")
            rate, add = self.raw_fs, self.add_raw
        else:
            raise ValueError(f"block kind must be RAW or HIGH_GAMMA, got {block.kind!r}")
        if self.origin_us is None:
            self.origin_us = int(block.device_time_us[0])
            self._f.attrs["device_origin_us"] = self.origin_us
        start = int(round((int(block.device_time_us[0]) - self.origin_us) * rate / 1e6))
        if start < 0:
            raise ValueError(f"block at device time {int(block.device_time_us[0])} µs lies before the recording's "
                             f"origin {self.origin_us} µs")
        add(start, block.values, not block.filled)

    # ---- writing ----
    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Write everything received so far and flush the file to disk."""
        if self.closed:
            return
        t, r = self._extents()
        self._frames.write(t)
        if self._raw is not None:
            self._raw.write(r)
        if self._audio.shape[0] != t * HOP:
            self._audio.resize(t * HOP, axis=0)  # never written: no chunk is allocated
        self._end[0] = t
        self._f.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flush and close the file."""
        if self.closed:
            return
        self.flush()
        self._f.close()
        self.closed = True
        logger.debug("recording %s closed: %d frames, %d raw samples", self.path, self._frames.flushed,
                     self._raw.flushed if self._raw is not None else 0)

    def __enter__(self) -> SessionRecorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["SESSION_LABEL", "SessionRecorder"]
