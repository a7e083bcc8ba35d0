"""Participant files: one HDF5 file per participant, in the layout of the reference code.

A file written by the reference pipeline (h5py, just the five required keys) loads unchanged; this project
adds optional keys. Times are in frames of the shared 125 Hz clock (hop 128 samples at 16 kHz): trial ``i``
covers neural frames ``start[i]:end[i]`` and audio samples ``128 * start[i] : 128 * end[i]``.

Required keys
-------------
=====================================  ============================  =========================================
key                                    dtype, shape                  meaning
=====================================  ============================  =========================================
``ecog_alldataset``                    float32 (n_frames, n_elec)    high-gamma features at 125 Hz (absent
                                                                     in a *speech-only* file)
``wave_re_alldataset``                 float32 (n_samples,)          16 kHz mono audio in [-1, 1]
``start_ind_re_valid_alldataset``      int64 (n_trials,)             trial onset, frames
``end_ind_re_valid_alldataset``        int64 (n_trials,)             trial offset (exclusive), frames
``label_alldataset``                   UTF-8 str (n_trials,)         word / text of each trial
=====================================  ============================  =========================================

Reading is lenient about what the reference wrote: float onsets/offsets holding whole numbers, ``(n, 1)``
or ``(1, n)`` shaped vectors (audio too), float64 arrays, int16 audio (divided by 32768) and labels stored
as bytes or fixed-length byte strings are all converted. The file itself is never modified by reading.

Optional keys (this project)
----------------------------
=========================  ============================  ===============================================
key                        dtype, shape                  meaning
=========================  ============================  ===============================================
``raw_signal``             numeric (n_raw, n_elec)       raw voltage before feature extraction
``raw_fs``                 float64 scalar                its sample rate, Hz (also read from a file
                                                         attribute or an attribute of ``raw_signal``)
``electrode_positions``    float32 (n_elec, 3)           electrode positions, mm
``grid_shape``             int64 (2,)                    grid rows, columns (rows*cols >= n_elec)
``hemisphere``             UTF-8 str scalar              ``'left'`` or ``'right'``
``density``                UTF-8 str scalar              grid density, e.g. ``'low'``, ``'hybrid'``
``voice_range``            UTF-8 str scalar              JSON of :meth:`edgensd.params.VoiceRange.to_dict`
``test_trials``            int64 (n_test,)               held-out trial indices (see :func:`trial_split`)
``transcripts``            UTF-8 str (n_trials,)         full text of each trial
``prompt_names``           UTF-8 str (n_trials,)         name of the prompt / stimulus of each trial
=========================  ============================  ===============================================

Any other dataset is kept as an *extra* (loaded only with ``load_extras=True``); file attributes (strings,
numbers, small arrays) round-trip through :attr:`Participant.attrs`.

Checks on load and save (errors name the file and the key)
----------------------------------------------------------
* every required key is present (the error lists the keys the file does hold); a speech-only file is
  refused unless ``require_neural=False``;
* dtypes and shapes as above; no NaN/inf in the neural data (the error names the electrodes and how many
  frames each) nor in the audio;
* ``0 <= start < end <= n_frames`` for every trial; onsets, offsets and labels have one entry per trial;
* the audio covers the neural recording: ``ceil(n_samples / 128)`` may differ from ``n_frames`` by at most
  ``frame_tolerance`` frames (default :data:`FRAME_TOLERANCE` = 4 frames = 32 ms), which absorbs the
  rounding of different resampling pipelines but not a recording cut at a different time;
* ``raw_signal`` has the same electrodes as the features and, at ``raw_fs``, lasts as long as the feature
  recording (same tolerance, plus one raw sample).

Without neural data, ``n_frames`` is ``ceil(n_samples / 128)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgensd.audio import _tmp_path
from edgensd.log import logger, use_log_level
from edgensd.params import VoiceRange
from edgensd.spectrogram import FRAME_RATE, HOP, SAMPLE_RATE

ECOG_KEY = "ecog_alldataset"
AUDIO_KEY = "wave_re_alldataset"
START_KEY = "start_ind_re_valid_alldataset"
END_KEY = "end_ind_re_valid_alldataset"
LABEL_KEY = "label_alldataset"
#: The five keys of the reference layout (a speech-only file lacks the first).
REQUIRED_KEYS: tuple[str, ...] = (ECOG_KEY, AUDIO_KEY, START_KEY, END_KEY, LABEL_KEY)
#: Optional keys this project adds.
OPTIONAL_KEYS: tuple[str, ...] = (
    "raw_signal",
    "raw_fs",
    "electrode_positions",
    "grid_shape",
    "hemisphere",
    "density",
    "voice_range",
    "test_trials",
    "transcripts",
    "prompt_names",
)
HEMISPHERES: tuple[str, ...] = ("left", "right")
#: Allowed difference, in 8 ms frames, between ``ceil(n_samples / 128)`` and the neural frame count.
FRAME_TOLERANCE = 4
#: Held-out trials when a file names none: the last 50, as the reference does.
N_TEST_DEFAULT = 50
FORMAT_NAME = "edgensd-participant"
FORMAT_VERSION = 1
_FORMAT_ATTRS = ("edgensd_format", "edgensd_format_version", "audio_sample_rate_hz", "frame_rate_hz")

_KEY_OF_FIELD = {
    "ecog": ECOG_KEY,
    "audio": AUDIO_KEY,
    "start": START_KEY,
    "end": END_KEY,
    "labels": LABEL_KEY,
}

__all__ = [
    "FRAME_TOLERANCE",
    "N_TEST_DEFAULT",
    "OPTIONAL_KEYS",
    "REQUIRED_KEYS",
    "Participant",
    "load_participant",
    "save_participant",
    "speech_key",
    "trial_split",
]


# --------------------------------------------------------------------------------------------------
# conversions shared by the constructor and the reader


def _vector(value: Any, where: str, key: str) -> np.ndarray:
    """Flatten ``(n,)``, ``(n, 1)`` or ``(1, n)`` to ``(n,)``; anything else is an error."""
    arr = np.asarray(value)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"{where}: '{key}' must be 1-D (or (n, 1)), got shape {arr.shape}")
    return arr


def _int_vector(value: Any, where: str, key: str) -> np.ndarray:
    """Integer vector (int64); floats must hold finite whole numbers."""
    arr = _vector(value, where, key)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{where}: '{key}' must hold whole numbers of frames; entry {i} is {float(arr[i])!r} "
                f"({int(bad.sum())} such entries)"
            )
        return arr.astype(np.int64)
    raise ValueError(f"{where}: '{key}' must be integer (or whole-number float), got dtype {arr.dtype}")


def _to_str(x: Any, where: str, key: str) -> str:
    if isinstance(x, (bytes, np.bytes_)):
        try:
            return bytes(x).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{where}: '{key}' holds bytes that are not UTF-8: {bytes(x)[:40]!r}") from exc
    return str(x)


def _str_list(value: Any, where: str, key: str) -> list[str]:
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{where}: '{key}' must be a sequence of strings (one per trial), got one string")
    arr = _vector(np.asarray(value, dtype=object), where, key)
    return [_to_str(x, where, key) for x in arr]


def _scalar_str(value: Any, where: str, key: str) -> str:
    arr = np.asarray(value, dtype=object)
    if arr.size != 1:
        raise ValueError(f"{where}: '{key}' must be a single string, got shape {arr.shape}")
    return _to_str(arr.reshape(-1)[0], where, key)


def _nonfinite_report(arr: np.ndarray, max_listed: int = 8) -> str:
    """'electrode 3: 12 frames, electrode 7: 1 frames' for the columns holding NaN/inf."""
    counts = np.sum(~np.isfinite(arr), axis=0)
    cols = np.flatnonzero(counts)
    parts = [f"electrode {int(c)}: {int(counts[c])} frames" for c in cols[:max_listed]]
    if cols.size > max_listed:
        parts.append(f"... ({cols.size} electrodes in all)")
    return ", ".join(parts)


def _check_audio_field(value: Any, where: str) -> np.ndarray:
    """``wave_re_alldataset`` → float32 (n_samples,): int16 is scaled, NaN/inf refused, overs logged."""
    audio = _vector(value, where, AUDIO_KEY)
    if audio.dtype == np.int16:
        logger.info("%s: '%s' is int16; divided by 32768", where, AUDIO_KEY)
        audio = audio.astype(np.float32) / 32768.0
    elif audio.dtype.kind != "f":
        raise ValueError(f"{where}: '{AUDIO_KEY}' must be floating point (or int16), got dtype {audio.dtype}")
    if audio.shape[0] == 0:
        raise ValueError(f"{where}: '{AUDIO_KEY}' holds no samples")
    bad = ~np.isfinite(audio)
    if bad.any():
        raise ValueError(f"{where}: '{AUDIO_KEY}' holds {int(bad.sum())} NaN/inf samples")
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    peak = float(np.max(np.abs(audio)))
    if peak > 1.0:
        logger.warning("%s: '%s' exceeds [-1, 1] (peak %.3g); left as is", where, AUDIO_KEY, peak)
    return audio


def _check_ecog_field(value: Any, n_samples: int, tol: int, where: str) -> np.ndarray:
    """``ecog_alldataset`` → float32 (n_frames, n_electrodes), finite, as long as the audio (± tol)."""
    ecog = np.asarray(value)
    if ecog.ndim != 2:
        raise ValueError(f"{where}: '{ECOG_KEY}' must be 2-D (frames × electrodes), got shape {ecog.shape}")
    if ecog.dtype.kind != "f":
        raise ValueError(f"{where}: '{ECOG_KEY}' must be floating point, got dtype {ecog.dtype}")
    if ecog.shape[0] == 0 or ecog.shape[1] == 0:
        raise ValueError(f"{where}: '{ECOG_KEY}' is empty, shape {ecog.shape}")
    ecog = np.ascontiguousarray(ecog, dtype=np.float32)
    if not np.isfinite(ecog).all():
        raise ValueError(f"{where}: '{ECOG_KEY}' holds NaN/inf values ({_nonfinite_report(ecog)})")
    n_audio_frames = -(-n_samples // HOP)
    if abs(n_audio_frames - ecog.shape[0]) > tol:
        raise ValueError(
            f"{where}: '{AUDIO_KEY}' ({n_samples} samples = {n_audio_frames} frames of 128) does not match "
            f"'{ECOG_KEY}' ({ecog.shape[0]} frames); allowed difference is {tol} frames (frame_tolerance)"
        )
    return ecog


# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(kw_only=True, eq=False)
class Participant:
    """One participant's recording: neural features, audio, trials and metadata (all keyword arguments).

    Construction converts and validates everything (see the module docstring); a bad field raises a
    ValueError naming the HDF5 key and, for a loaded file, the file.

    Parameters
    ----------
    ecog : ndarray, float32, shape (n_frames, n_electrodes), or None
        High-gamma features at 125 Hz; ``None`` for a speech-only participant.
    audio : ndarray, float32, shape (n_samples,)
        16 kHz mono audio in [-1, 1], on the same clock (sample ``128 t`` is frame ``t``).
    start, end : ndarray, int64, shape (n_trials,)
        Trial onsets and (exclusive) offsets in frames.
    labels : list of str, length n_trials
        Word or text of each trial.
    raw_signal : ndarray, shape (n_raw, n_electrodes), or None
        Raw voltage; requires ``raw_fs`` (Hz).
    electrode_positions : ndarray, float32, shape (n_electrodes, 3), or None
        Positions in mm.
    grid_shape : (int, int) or None
        Rows and columns of the grid.
    hemisphere : {'left', 'right'} or None
    density : str or None
        Grid density, e.g. ``'low'`` (clinical 10 mm) or ``'hybrid'``.
    voice_range : VoiceRange or None
    test_trials : ndarray, int64, shape (n_test,), or None
        Held-out trials; see :func:`trial_split`.
    transcripts, prompt_names : list of str (length n_trials) or None
    attrs : dict
        File attributes (str, int, float, bool or small 1-D arrays).
    extras : dict of str to ndarray
        Other datasets, written as they are.
    path : Path or None
        The file this participant was loaded from (used in messages; not saved).
    frame_tolerance : int
        Init-only: allowed audio/neural length difference in frames (default :data:`FRAME_TOLERANCE`).
    """

    ecog: np.ndarray | None = None
    audio: np.ndarray
    start: np.ndarray
    end: np.ndarray
    labels: list[str]
    raw_signal: np.ndarray | None = None
    raw_fs: float | None = None
    electrode_positions: np.ndarray | None = None
    grid_shape: tuple[int, int] | None = None
    hemisphere: str | None = None
    density: str | None = None
    voice_range: VoiceRange | None = None
    test_trials: np.ndarray | None = None
    transcripts: list[str] | None = None
    prompt_names: list[str] | None = None
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)
    extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    path: Path | None = None
    frame_tolerance: dataclasses.InitVar[int] = FRAME_TOLERANCE

    def __post_init__(self, frame_tolerance: int = FRAME_TOLERANCE) -> None:
        self._frame_tolerance = frame_tolerance
        self.validate()

    # ---------------------------------------------------------------- properties
    @property
    def has_neural(self) -> bool:
        """Whether neural features are present (False for a speech-only participant)."""
        return self.ecog is not None

    @property
    def n_trials(self) -> int:
        """Number of trials."""
        return int(self.start.shape[0])

    @property
    def n_frames(self) -> int:
        """Frames on the 125 Hz clock: the neural frame count, else ``ceil(n_samples / 128)``."""
        if self.ecog is not None:
            return int(self.ecog.shape[0])
        return -(-int(self.audio.shape[0]) // HOP)

    @property
    def n_electrodes(self) -> int | None:
        """Number of electrodes, or None when there is no neural data at all."""
        if self.ecog is not None:
            return int(self.ecog.shape[1])
        if self.raw_signal is not None:
            return int(self.raw_signal.shape[1])
        return None

    @property
    def duration_s(self) -> float:
        """Length of the audio in seconds."""
        return self.audio.shape[0] / SAMPLE_RATE

    def __repr__(self) -> str:
        neural = f"ecog={self.ecog.shape}" if self.ecog is not None else "speech-only"
        src = f", path={str(self.path)!r}" if self.path is not None else ""
        return (
            f"Participant({neural}, audio={self.audio.shape[0]} samples ({self.duration_s:.1f} s), "
            f"n_trials={self.n_trials}{src})"
        )

    # ---------------------------------------------------------------- validation
    def _where(self) -> str:
        return f"participant file {self.path}" if self.path is not None else "participant"

    def validate(self, *, frame_tolerance: int | None = None) -> Participant:
        """Convert every field to its documented dtype/shape and check consistency (in place).

        Call it again after changing fields; :func:`save_participant` does.

        Parameters
        ----------
        frame_tolerance : int or None
            Allowed difference in frames between ``ceil(n_samples / 128)`` and the neural frame count;
            ``None`` uses the value given at construction.

        Returns
        -------
        Participant
            ``self``.
        """
        if frame_tolerance is None:
            frame_tolerance = getattr(self, "_frame_tolerance", FRAME_TOLERANCE)
        tol = frame_tolerance
        if isinstance(tol, bool) or not isinstance(tol, (int, np.integer)) or tol < 0:
            raise ValueError(f"frame_tolerance must be a non-negative int (frames), got {frame_tolerance!r}")
        tol = int(tol)
        if self.path is not None:
            self.path = Path(self.path)
        where = self._where()
        self.audio = _check_audio_field(self.audio, where)
        if self.ecog is not None:
            self.ecog = _check_ecog_field(self.ecog, self.audio.shape[0], tol, where)
        self._validate_trials(where)
        self._validate_electrodes(tol, where)
        self._validate_meta(where)
        return self

    def _validate_trials(self, where: str) -> None:
        self.start = _int_vector(self.start, where, START_KEY)
        self.end = _int_vector(self.end, where, END_KEY)
        self.labels = _str_list(self.labels, where, LABEL_KEY)
        n = self.start.shape[0]
        for key, length in ((END_KEY, self.end.shape[0]), (LABEL_KEY, len(self.labels))):
            if length != n:
                raise ValueError(f"{where}: '{key}' has {length} entries but '{START_KEY}' has {n} trials")
        if n == 0:
            raise ValueError(f"{where}: '{START_KEY}' holds no trials")
        n_frames = self.n_frames
        for desc, bad in (
            (f"'{START_KEY}' < 0", self.start < 0),
            (f"'{END_KEY}' <= '{START_KEY}'", self.end <= self.start),
            (f"'{END_KEY}' > n_frames = {n_frames}", self.end > n_frames),
        ):
            if bad.any():
                idx = np.flatnonzero(bad)
                i = int(idx[0])
                raise ValueError(
                    f"{where}: {idx.size} trials have {desc}, first trial {i} (start {int(self.start[i])}, "
                    f"end {int(self.end[i])}); listed: {idx[:10].tolist()}"
                )
        for key in ("transcripts", "prompt_names"):
            value = getattr(self, key)
            if value is not None:
                value = _str_list(value, where, key)
                if len(value) != n:
                    raise ValueError(
                        f"{where}: '{key}' has {len(value)} entries, expected {n} (one per trial)"
                    )
                setattr(self, key, value)
        if self.test_trials is not None:
            tt = _int_vector(self.test_trials, where, "test_trials")
            if tt.size and (tt.min() < 0 or tt.max() >= n):
                raise ValueError(
                    f"{where}: 'test_trials' must lie in [0, {n}), got values from {tt.min()} to {tt.max()}"
                )
            if np.unique(tt).size != tt.size:
                raise ValueError(f"{where}: 'test_trials' holds repeated trial indices")
            self.test_trials = tt

    def _validate_electrodes(self, tol: int, where: str) -> None:
        if self.raw_signal is not None:
            raw = np.asarray(self.raw_signal)
            if raw.ndim != 2 or raw.shape[0] == 0:
                raise ValueError(
                    f"{where}: 'raw_signal' must be 2-D (samples × electrodes), got shape {raw.shape}"
                )
            if raw.dtype.kind not in "iuf":
                raise ValueError(f"{where}: 'raw_signal' must be numeric, got dtype {raw.dtype}")
            if self.ecog is not None and raw.shape[1] != self.ecog.shape[1]:
                raise ValueError(
                    f"{where}: 'raw_signal' has {raw.shape[1]} electrodes, "
                    f"'{ECOG_KEY}' has {self.ecog.shape[1]}"
                )
            if self.raw_fs is None:
                raise ValueError(f"{where}: 'raw_signal' needs 'raw_fs' (its sample rate in Hz)")
            self.raw_signal = raw
        if self.raw_fs is not None:
            fs = np.asarray(self.raw_fs)
            if fs.size != 1 or fs.dtype.kind not in "iuf" or not np.isfinite(fs).all() or fs.item() <= 0:
                raise ValueError(f"{where}: 'raw_fs' must be one positive rate in Hz, got {self.raw_fs!r}")
            self.raw_fs = float(fs.item())
            if self.raw_signal is not None and self.ecog is not None:
                raw_s = self.raw_signal.shape[0] / self.raw_fs
                feat_s = self.ecog.shape[0] / FRAME_RATE
                if abs(raw_s - feat_s) > tol / FRAME_RATE + 1.0 / self.raw_fs:
                    raise ValueError(
                        f"{where}: 'raw_signal' lasts {raw_s:.3f} s at raw_fs={self.raw_fs:g} Hz but "
                        f"'{ECOG_KEY}' lasts {feat_s:.3f} s; allowed difference {tol} frames"
                    )
        n_el = self.n_electrodes
        if self.electrode_positions is not None:
            pos = np.asarray(self.electrode_positions)
            if pos.ndim != 2 or pos.shape[1] != 3 or pos.dtype.kind not in "iuf":
                raise ValueError(
                    f"{where}: 'electrode_positions' must be numeric (n_electrodes, 3) in mm, got shape "
                    f"{pos.shape} dtype {pos.dtype}"
                )
            if n_el is not None and pos.shape[0] != n_el:
                raise ValueError(
                    f"{where}: 'electrode_positions' has {pos.shape[0]} rows for {n_el} electrodes"
                )
            if not np.isfinite(pos).all():
                raise ValueError(f"{where}: 'electrode_positions' holds NaN/inf")
            self.electrode_positions = pos.astype(np.float32)
        if self.grid_shape is not None:
            gs = _int_vector(self.grid_shape, where, "grid_shape")
            if gs.shape != (2,) or (gs <= 0).any():
                raise ValueError(
                    f"{where}: 'grid_shape' must be 2 positive integers (rows, cols), got {gs.tolist()}"
                )
            if n_el is not None and gs[0] * gs[1] < n_el:
                raise ValueError(
                    f"{where}: 'grid_shape' {tuple(gs.tolist())} has fewer places than {n_el} electrodes"
                )
            self.grid_shape = (int(gs[0]), int(gs[1]))

    def _validate_meta(self, where: str) -> None:
        if self.hemisphere is not None:
            hemi = _scalar_str(self.hemisphere, where, "hemisphere")
            if hemi not in HEMISPHERES:
                raise ValueError(f"{where}: 'hemisphere' must be one of {list(HEMISPHERES)}, got {hemi!r}")
            self.hemisphere = hemi
        if self.density is not None:
            self.density = _scalar_str(self.density, where, "density")
            if not self.density:
                raise ValueError(f"{where}: 'density' must be a non-empty string")
        if self.voice_range is not None and not isinstance(self.voice_range, VoiceRange):
            vr = self.voice_range
            try:
                if not isinstance(vr, dict):
                    vr = json.loads(_scalar_str(vr, where, "voice_range"))
                self.voice_range = VoiceRange.from_dict(vr)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{where}: 'voice_range' is not a valid VoiceRange: {exc}") from exc
        if not isinstance(self.attrs, dict):
            raise ValueError(f"{where}: attrs must be a dict, got {type(self.attrs).__name__}")
        self.attrs = dict(self.attrs)
        if not isinstance(self.extras, dict):
            raise ValueError(f"{where}: extras must be a dict, got {type(self.extras).__name__}")
        clash = sorted(set(self.extras) & (set(REQUIRED_KEYS) | set(OPTIONAL_KEYS)))
        if clash:
            raise ValueError(f"{where}: extras may not use the reserved keys {clash}")

    # ---------------------------------------------------------------- trials
    def _trial(self, i: int) -> int:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"trial index must be an int, got {type(i).__name__}")
        if not 0 <= int(i) < self.n_trials:
            raise IndexError(f"trial index must lie in [0, {self.n_trials}), got {i}")
        return int(i)

    def trial_frames(self, i: int) -> tuple[int, int]:
        """``(start, end)`` frames of trial ``i`` (end exclusive)."""
        i = self._trial(i)
        return int(self.start[i]), int(self.end[i])

    def trial_audio(self, i: int, *, before: int = 0, after: int = 0) -> np.ndarray:
        """Audio of trial ``i``, from ``before`` frames ahead of its onset to ``after`` frames past its end.

        Parameters
        ----------
        i : int
            Trial index in ``[0, n_trials)``.
        before, after : int
            Context in frames (>= 0) to include around the trial.

        Returns
        -------
        ndarray, float32, shape ((end - start + before + after) * 128,)
            Samples ``128 (start - before)`` to ``128 (end + after)``; zeros where that leaves the recording.
        """
        s, e = self.trial_frames(i)
        return _cut(self.audio, (s - _ctx(before, "before")) * HOP, (e + _ctx(after, "after")) * HOP)

    def trial_neural(self, i: int, *, before: int = 0, after: int = 0) -> np.ndarray:
        """Neural frames of trial ``i`` with ``before``/``after`` frames of context.

        Returns
        -------
        ndarray, float32, shape (end - start + before + after, n_electrodes)
            Frames ``start - before`` to ``end + after``; zeros where that leaves the recording.
        """
        if self.ecog is None:
            raise ValueError(f"{self._where()} is speech-only: it holds no '{ECOG_KEY}' to cut trials from")
        s, e = self.trial_frames(i)
        return _cut(self.ecog, s - _ctx(before, "before"), e + _ctx(after, "after"))


def _ctx(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative int (frames), got {value!r}")
    return int(value)


def _cut(arr: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``arr[lo:hi]`` along axis 0, zero-padded where ``[lo, hi)`` leaves ``[0, len(arr))``."""
    out = np.zeros((hi - lo, *arr.shape[1:]), dtype=arr.dtype)
    a, b = max(lo, 0), min(hi, arr.shape[0])
    if b > a:
        out[a - lo : b - lo] = arr[a:b]
    return out


def trial_split(p: Participant, *, n_test: int = N_TEST_DEFAULT) -> tuple[np.ndarray, np.ndarray]:
    """Split trials into training and held-out sets (whole trials, never frames).

    Parameters
    ----------
    p : Participant
    n_test : int
        Held-out trials when the file names none (default 50: the last 50 trials, as the reference does).

    Returns
    -------
    train_idx, test_idx : ndarray, int64
        Sorted trial indices; together they cover every trial once. ``test_idx`` is the file's
        ``test_trials`` if present, else the last ``n_test`` trials.

    Raises
    ------
    ValueError
        Without ``test_trials``, fewer than ``n_test + 1`` trials (at least one must remain for training).
    """
    n = p.n_trials
    if p.test_trials is not None:
        test = np.sort(p.test_trials.astype(np.int64))
    else:
        if int(n_test) != n_test or n_test < 1:
            raise ValueError(f"n_test must be a positive integer, got {n_test!r}")
        if n < n_test + 1:
            raise ValueError(
                f"{p._where()} has {n} trials; holding out the last {n_test} needs at least {n_test + 1}. "
                "Store explicit 'test_trials' in the file or pass a smaller n_test"
            )
        test = np.arange(n - int(n_test), n, dtype=np.int64)
    mask = np.ones(n, dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask).astype(np.int64), test


def speech_key(p: Participant) -> str:
    """Hash (16 hex digits) of what a speech model trained on ``p`` depends on: the audio, the trial bounds, the
    held-out split and the stored voice range (``None`` when the file has none, so the range is estimated from
    that same audio). Two participants with equal keys spoke the same recording (e.g. simulated from one speech
    file), whatever their neural data: one speech model serves both (``edgensd sweep`` shares it).

    Parameters
    ----------
    p : Participant

    Returns
    -------
    str
    """
    h = hashlib.sha256(b"edgensd speech key v1")
    _, test = trial_split(p)
    for arr in (p.audio, p.start, p.end, test):
        a = np.ascontiguousarray(arr)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    vr = None if p.voice_range is None else p.voice_range.to_dict()
    h.update(json.dumps(vr, sort_keys=True).encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# HDF5 I/O


def _read_dataset(ds: Any) -> Any:
    """Read a dataset; strings come back as Python str (scalar) or object arrays of str."""
    import h5py

    string_info = h5py.check_string_dtype(ds.dtype)
    if string_info is not None:
        value = ds.asstr()[()] if string_info.encoding == "utf-8" else ds[()]
        return value
    return ds[()]


def load_participant(
    path: str | os.PathLike,
    *,
    require_neural: bool = True,
    load_extras: bool = False,
    frame_tolerance: int = FRAME_TOLERANCE,
    verbose: bool | str | int | None = None,
) -> Participant:
    """Read and validate a participant file (reference layout plus this project's optional keys).

    Parameters
    ----------
    path : str or path-like
        The HDF5 file; it is only read.
    require_neural : bool
        Refuse a speech-only file (one without ``ecog_alldataset``, as written by ``edgensd data speech``).
    load_extras : bool
        Also read datasets this layout does not know into :attr:`Participant.extras` (otherwise they are
        listed in the debug log and skipped, which keeps reference files with large derived arrays cheap).
    frame_tolerance : int
        Allowed difference in frames between ``ceil(n_samples / 128)`` and the neural frame count.
    verbose : bool | str | int | None
        Log level for this call; ``None`` keeps the current one.

    Returns
    -------
    Participant

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not an HDF5 file, a missing required key (the message lists the keys present), speech-only while
        ``require_neural``, or any check of the module docstring failing; messages name the file and key.
    """
    import h5py

    with use_log_level(verbose):
        path = Path(path)
        where = f"participant file {path}"
        if not path.exists():
            raise FileNotFoundError(f"participant file not found: {path}")
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise ValueError(f"{where} is not a readable HDF5 file: {exc}") from exc
        with f:
            keys = sorted(f.keys())
            datasets = {k for k in keys if isinstance(f[k], h5py.Dataset)}
            needed = REQUIRED_KEYS if require_neural else REQUIRED_KEYS[1:]
            missing = [k for k in needed if k not in datasets]
            if missing == [ECOG_KEY]:
                raise ValueError(
                    f"{where} is speech-only: it has no '{ECOG_KEY}' (neural data), as `edgensd data speech` "
                    "writes; a participant file with neural data comes from `edgensd simulate --speech FILE` or "
                    "`edgensd prepare` (in Python, load_participant(..., require_neural=False) reads speech only)"
                )
            if missing:
                raise ValueError(f"{where} lacks required keys {missing}; it holds {keys}")
            fields: dict[str, Any] = {}
            for name, key in _KEY_OF_FIELD.items():
                if key in datasets:
                    fields[name] = _read_dataset(f[key])
            for key in OPTIONAL_KEYS:
                if key in datasets:
                    fields[key] = _read_dataset(f[key])
            attrs = {k: _attr_value(v) for k, v in f.attrs.items() if k not in _FORMAT_ATTRS}
            if "raw_fs" not in fields:
                if "raw_fs" in attrs:
                    fields["raw_fs"] = attrs.pop("raw_fs")
                elif "raw_signal" in datasets:
                    for a in ("raw_fs", "fs", "sfreq"):
                        if a in f["raw_signal"].attrs:
                            fields["raw_fs"] = f["raw_signal"].attrs[a]
                            break
            if "raw_fs" in fields and "raw_signal" not in fields:
                logger.debug("%s: 'raw_fs' present without 'raw_signal'; ignored", where)
                fields.pop("raw_fs")
            other = sorted(set(keys) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
            extras: dict[str, np.ndarray] = {}
            if other:
                if load_extras:
                    extras = {k: _read_dataset(f[k]) for k in other if k in datasets}
                else:
                    logger.debug("%s: skipped keys %s (load_extras=False)", where, other)
        version = attrs.get("edgensd_format_version")
        p = Participant(**fields, attrs=attrs, extras=extras, path=path, frame_tolerance=frame_tolerance)
        logger.debug("loaded %r (format version %s)", p, version)
        return p


def _attr_value(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "SO":
            return [_to_str(x, "attrs", "attrs") for x in v.reshape(-1)]
        return v
    if isinstance(v, np.generic):
        return v.item()
    return v


def save_participant(
    p: Participant,
    path: str | os.PathLike,
    *,
    verbose: bool | str | int | None = None,
) -> Path:
    """Write a participant file atomically (temporary file in the same folder, then ``os.replace``).

    The participant is validated first; an existing file at ``path`` is replaced only once the new one is
    complete, so a crash never leaves a half-written file under the final name.

    Parameters
    ----------
    p : Participant
    path : str or path-like
        Destination (parent folders are created).
    verbose : bool | str | int | None
        Log level for this call; ``None`` keeps the current one.

    Returns
    -------
    Path
        The written file.
    """
    import h5py

    with use_log_level(verbose):
        if not isinstance(p, Participant):
            raise TypeError(f"p must be a Participant, got {type(p).__name__}")
        p.validate()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_path(path)
        str_dt = h5py.string_dtype("utf-8")
        try:
            with h5py.File(tmp, "w-") as f:
                if p.ecog is not None:
                    f.create_dataset(ECOG_KEY, data=p.ecog.astype(np.float32))
                f.create_dataset(AUDIO_KEY, data=p.audio.astype(np.float32))
                f.create_dataset(START_KEY, data=p.start.astype(np.int64))
                f.create_dataset(END_KEY, data=p.end.astype(np.int64))
                f.create_dataset(LABEL_KEY, data=np.array(p.labels, dtype=object), dtype=str_dt)
                if p.raw_signal is not None:
                    f.create_dataset("raw_signal", data=p.raw_signal)
                    f.create_dataset("raw_fs", data=np.float64(p.raw_fs))
                if p.electrode_positions is not None:
                    f.create_dataset("electrode_positions", data=p.electrode_positions.astype(np.float32))
                if p.grid_shape is not None:
                    f.create_dataset("grid_shape", data=np.asarray(p.grid_shape, dtype=np.int64))
                for key in ("hemisphere", "density"):
                    if getattr(p, key) is not None:
                        f.create_dataset(key, data=getattr(p, key), dtype=str_dt)
                if p.voice_range is not None:
                    f.create_dataset("voice_range", data=json.dumps(p.voice_range.to_dict()), dtype=str_dt)
                if p.test_trials is not None:
                    f.create_dataset("test_trials", data=p.test_trials.astype(np.int64))
                for key in ("transcripts", "prompt_names"):
                    if getattr(p, key) is not None:
                        f.create_dataset(key, data=np.array(getattr(p, key), dtype=object), dtype=str_dt)
                for key, value in p.extras.items():
                    value = np.asarray(value)
                    if value.dtype.kind in "OU":
                        f.create_dataset(key, data=np.asarray(value, dtype=object), dtype=str_dt)
                    else:
                        f.create_dataset(key, data=value)
                for key, value in p.attrs.items():
                    _write_attr(f, key, value, path)
                f.attrs["edgensd_format"] = FORMAT_NAME
                f.attrs["edgensd_format_version"] = FORMAT_VERSION
                f.attrs["audio_sample_rate_hz"] = SAMPLE_RATE
                f.attrs["frame_rate_hz"] = FRAME_RATE
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        logger.debug("wrote %s (%d trials, %.1f s of audio)", path, p.n_trials, p.duration_s)
        return path


def _write_attr(f: Any, key: str, value: Any, path: Path) -> None:
    if isinstance(value, (str, bool, int, float, np.generic)):
        f.attrs[key] = value
        return
    if isinstance(value, (Sequence, np.ndarray)):
        arr = np.asarray(value)
        if arr.ndim <= 1 and arr.dtype.kind in "biuf":
            f.attrs[key] = arr
            return
        if arr.ndim == 1 and arr.dtype.kind in "U":
            import h5py

            f.attrs.create(key, data=arr.astype(object), dtype=h5py.string_dtype("utf-8"))
            return
    raise ValueError(
        f"participant file {path}: attr {key!r} must be str, bool, int, float or a 1-D list of numbers or "
        f"strings, got {type(value).__name__}"
    )
