"""Where a live stream's results go: an audio file that is valid at every moment, and per-stage latency
statistics. Both are torch-free and cheap enough to call once per 8 ms frame."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = ["LatencyRecorder", "StreamingWavWriter"]


class StreamingWavWriter:
    """16-bit PCM mono WAV written block by block, its header kept true so the file plays at any moment.

    An interrupted stream (Ctrl-C, a crash, a pulled cable) leaves a valid WAV holding everything written
    up to the last :meth:`write` whose header update ran (every ``update_every`` blocks, and on close).

    Parameters
    ----------
    path : path
        Output file (replaced).
    sample_rate : int
        Hz (16000 for the synthesizer's audio).
    update_every : int
        Blocks between header updates (1: after every block).
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int = 16000, update_every: int = 25) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0 Hz, got {sample_rate}")
        if update_every < 1:
            raise ValueError(f"update_every must be >= 1, got {update_every}")
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self.update_every = int(update_every)
        self.n_samples = 0
        self.n_clipped = 0
        self._blocks_since_update = 0
        self._f = open(self.path, "wb")
        self._f.write(self._header(0))
        self._f.flush()

    def _header(self, n: int) -> bytes:
        data = 2 * n
        return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE" + b"fmt " +
                struct.pack("<IHHIIHH", 16, 1, 1, self.sample_rate, 2 * self.sample_rate, 2, 16) +
                b"data" + struct.pack("<I", data))

    def write(self, block: np.ndarray) -> None:
        """Append float samples in [-1, 1] (values outside are clipped and counted in :attr:`n_clipped`)."""
        if self._f is None:
            raise ValueError(f"{self.path} is closed")
        x = np.asarray(block, np.float32).reshape(-1)
        if not np.isfinite(x).all():
            raise ValueError(f"audio block for {self.path} holds NaN or inf")
        self.n_clipped += int(np.count_nonzero(np.abs(x) > 1.0))
        q = np.clip(np.rint(x * 32767.0), -32768, 32767).astype("<i2")
        self._f.seek(0, os.SEEK_END)
        self._f.write(q.tobytes())
        self.n_samples += q.size
        self._blocks_since_update += 1
        if self._blocks_since_update >= self.update_every:
            self._update_header()

    def _update_header(self) -> None:
        self._f.seek(0)
        self._f.write(self._header(self.n_samples))
        self._f.flush()
        self._blocks_since_update = 0

    def close(self) -> None:
        """Write the final header and close (idempotent)."""
        if self._f is not None:
            self._update_header()
            self._f.close()
            self._f = None

    def __enter__(self) -> StreamingWavWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LatencyRecorder:
    """Per-stage latency samples of a stream and their p50 / p99 / max.

    Parameters
    ----------
    stages : iterable of str
        Stage names, in pipeline order (e.g. ``read``, ``features``, ``decoder``, ``synth``, ``end_to_end``).
    """

    def __init__(self, stages: Iterable[str]) -> None:
        self.stages = list(stages)
        if not self.stages or len(set(self.stages)) != len(self.stages):
            raise ValueError(f"stages must be distinct names, got {self.stages}")
        self._values: dict[str, list[float]] = {s: [] for s in self.stages}

    def add(self, stage: str, seconds: float) -> None:
        """Record one latency of ``stage``, in seconds."""
        if stage not in self._values:
            raise ValueError(f"stage must be one of {self.stages}, got {stage!r}")
        self._values[stage].append(float(seconds))

    def count(self, stage: str) -> int:
        """Samples recorded for ``stage``."""
        return len(self._values[stage])

    def summary(self) -> dict[str, dict[str, float | int | None]]:
        """``{stage: {"p50", "p99", "max", "mean", "n"}}`` in milliseconds (None for a stage with no sample)."""
        out: dict[str, dict[str, float | int | None]] = {}
        for s in self.stages:
            v = np.asarray(self._values[s], np.float64) * 1e3
            if v.size == 0:
                out[s] = {"p50": None, "p99": None, "max": None, "mean": None, "n": 0}
                continue
            p50, p99 = np.percentile(v, [50, 99])
            out[s] = {"p50": round(float(p50), 4), "p99": round(float(p99), 4), "max": round(float(v.max()), 4),
                      "mean": round(float(v.mean()), 4), "n": int(v.size)}
        return out
