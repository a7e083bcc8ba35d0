"""Raw recording + speech audio + trial events → participant file (``edgensd prepare``).

Steps:

1. read the raw recording (:func:`edgensd.neural.io.read_raw`) and pick the neural channels (types
   ``ecog``/``seeg``/``dbs`` by default); NaN/inf runs are an error naming channel and sample range, unless
   ``interpolate_nans_s`` allows linear interpolation of runs up to that length;
2. read the audio (:func:`edgensd.audio.load_audio`: 16 kHz mono, other rates resampled);
3. check both are on the same clock: their durations may differ by at most ``max_mismatch_s`` (default
   :data:`MAX_MISMATCH_S` = 0.05 s); both are then cut to the frames they share (frame ``t`` = raw time
   ``t / 125`` s = audio sample ``128 t``);
4. read the events (BIDS ``events.tsv``: ``onset`` and ``duration`` in seconds, the word in ``trial_type``
   or ``value``); every trial must lie inside the shared recording; onsets/offsets become frames
   ``round(onset · 125)`` and ``round((onset + duration) · 125)`` (end exclusive, at least one frame);
5. choose held-out trials (the last ``n_test``; default ``min(50, n_trials // 5)``) and compute high-gamma
   (:func:`edgensd.neural.highgamma.compute_highgamma`) with z-score statistics from the training trials
   only;
6. write the participant file with the raw signal, positions, grid shape and, as file attributes, the
   high-gamma config and statistics (JSON, ``highgamma_config`` / ``highgamma_stats``), plus the channel
   names and bad-channel mask as extra datasets (``channel_names``, ``bad_channels``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np

from edgensd.log import logger
from edgensd.neural.highgamma import HighGammaConfig, HighGammaResult, compute_highgamma, n_frames_for_samples
from edgensd.neural.io import NEURAL_TYPES, RawRecording, check_finite, interpolate_nonfinite, read_raw
from edgensd.spectrogram import FRAME_RATE, HOP, SAMPLE_RATE

__all__ = ["MAX_MISMATCH_S", "TrialEvents", "read_events", "prepare_participant"]

#: Default largest allowed difference between the audio and the neural recording durations, seconds.
MAX_MISMATCH_S = 0.05


@dataclasses.dataclass
class TrialEvents:
    """Trials read from an events file.

    Attributes
    ----------
    onset_s, duration_s : ndarray, float64, shape (n_trials,)
        Seconds from the start of the recording.
    labels : list of str
        Word of each trial.
    rows : list of int
        Line number of each trial in the file (1 = header), for messages.
    path : Path
    """

    onset_s: np.ndarray
    duration_s: np.ndarray
    labels: list
    rows: list
    path: Path

    def to_frames(self, n_frames: int, duration_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Start/end frames (end exclusive), checking every trial lies inside the recording.

        Parameters
        ----------
        n_frames : int
            Frames of the recording.
        duration_s : float
            Its duration in seconds (``n_frames / 125``).

        Raises
        ------
        ValueError
            Naming the file, line, onset and duration of the first trial outside ``[0, duration_s]``.
        """
        start = np.round(self.onset_s * FRAME_RATE).astype(np.int64)
        end = np.round((self.onset_s + self.duration_s) * FRAME_RATE).astype(np.int64)
        end = np.maximum(end, start + 1)
        for i in range(start.size):
            off = self.onset_s[i] + self.duration_s[i]
            if self.onset_s[i] < 0 or off > duration_s + 0.5 / FRAME_RATE or end[i] > n_frames:
                raise ValueError(
                    f"events file {self.path}: line {self.rows[i]} ({self.labels[i]!r}, onset "
                    f"{self.onset_s[i]:.3f} s, duration {self.duration_s[i]:.3f} s, ends {off:.3f} s) lies "
                    f"outside the recording (0 to {duration_s:.3f} s)"
                )
        return start, end


def _num(value: str, path: Path, line: int, column: str) -> float:
    try:
        v = float(value)
    except ValueError:
        v = float("nan")
    if not np.isfinite(v):
        raise ValueError(
            f"events file {path}: line {line}: column {column!r} must be a number of seconds, got {value!r}"
        )
    return v


def read_events(path, *, label_column: str | None = None) -> TrialEvents:
    """Read a BIDS-style ``events.tsv``.

    Parameters
    ----------
    path : str or Path
        Tab-separated, with a header; required columns ``onset`` and ``duration`` (seconds).
    label_column : str, optional
        Column holding the word; default ``trial_type`` if present, else ``value``.

    Returns
    -------
    TrialEvents

    Raises
    ------
    FileNotFoundError
        Missing file.
    ValueError
        Missing columns (the message lists those present), non-numeric or negative durations, empty labels,
        or no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"events file not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        cols = [c.strip() for c in (reader.fieldnames or [])]
        rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
    for c in ("onset", "duration"):
        if c not in cols:
            raise ValueError(f"events file {path} lacks the column {c!r}; it has {cols}")
    if label_column is None:
        label_column = next((c for c in ("trial_type", "value") if c in cols), None)
        if label_column is None:
            raise ValueError(
                f"events file {path} has neither 'trial_type' nor 'value' (the word); it has {cols}"
            )
    elif label_column not in cols:
        raise ValueError(f"label_column must be one of {cols} in {path}, got {label_column!r}")
    if not rows:
        raise ValueError(f"events file {path} holds no events")
    onset, dur, labels, lines = [], [], [], []
    for k, r in enumerate(rows):
        line = k + 2
        o = _num(r["onset"], path, line, "onset")
        d = _num(r["duration"], path, line, "duration")
        if d <= 0:
            raise ValueError(f"events file {path}: line {line}: duration must be > 0 s, got {d}")
        lab = r.get(label_column, "")
        if lab in ("", "n/a"):
            raise ValueError(f"events file {path}: line {line}: empty {label_column!r} (the trial's word)")
        onset.append(o)
        dur.append(d)
        labels.append(lab)
        lines.append(line)
    return TrialEvents(np.array(onset), np.array(dur), labels, lines, path)


def _pick(raw: RawRecording, picks) -> RawRecording:
    if picks is None:
        idx = [i for i, t in enumerate(raw.ch_types) if t in NEURAL_TYPES]
        if not idx:
            logger.info("no channel of type %s; using all %d channels", list(NEURAL_TYPES), raw.n_channels)
            return raw
        return raw.pick(idx)
    return raw.pick(picks)


def prepare_participant(
    raw_path,
    audio_path,
    events_path,
    *,
    config: HighGammaConfig | None = None,
    line_freq: float | None = None,
    pipeline: str | None = None,
    picks=None,
    max_mismatch_s: float = MAX_MISMATCH_S,
    interpolate_nans_s: float | None = None,
    n_test: int | None = None,
    label_column: str | None = None,
    hemisphere: str | None = None,
    keep_raw: bool = True,
):
    """Build a participant from a raw recording, its speech audio and the trial events.

    Parameters
    ----------
    raw_path : str or Path
        Raw recording (any format :func:`edgensd.neural.io.read_raw` reads).
    audio_path : str or Path
        Speech audio recorded on the same clock (resampled to 16 kHz if needed).
    events_path : str or Path
        BIDS-style events (:func:`read_events`).
    config : HighGammaConfig, optional
        Feature settings; ``line_freq``/``pipeline`` override its fields when given.
    line_freq : {50, 60}, optional
        Mains frequency (Hz); default: the recording's ``PowerLineFrequency`` sidecar, else the config's.
    pipeline : {'offline', 'streaming'}, optional
    picks : list of str/int, optional
        Channels (names, indices or types); default: all ``ecog``/``seeg``/``dbs`` channels.
    max_mismatch_s : float
        Largest allowed |audio duration − neural duration| in seconds.
    interpolate_nans_s : float, optional
        Interpolate NaN/inf runs up to this length (s) instead of failing.
    n_test : int, optional
        Held-out trials (the last ones); default ``min(50, n_trials // 5)``.
    label_column : str, optional
        Events column holding the word.
    hemisphere : {'left', 'right'}, optional
    keep_raw : bool
        Store the raw signal (µV, float32) in the file.

    Returns
    -------
    participant : edgensd.data.participant.Participant
    result : HighGammaResult

    Raises
    ------
    FileNotFoundError
        Any of the three inputs missing.
    ValueError
        Audio/neural durations differing by more than ``max_mismatch_s`` (both durations named), an event
        outside the recording (line named), NaN runs (channel and samples named), bad options.
    """
    from edgensd.audio import load_audio
    from edgensd.data.participant import Participant

    for name, p in (("raw", raw_path), ("audio", audio_path), ("events", events_path)):
        if not Path(p).exists():
            raise FileNotFoundError(f"{name} file not found: {p}")
    cfg = config or HighGammaConfig()
    raw = _pick(read_raw(raw_path), picks)
    if line_freq is None and config is None and raw.meta.get("line_freq") in (50.0, 60.0):
        line_freq = raw.meta["line_freq"]
        logger.info("line frequency %g Hz from the recording's sidecar", line_freq)
    changes = {}
    if line_freq is not None:
        changes["line_freq"] = float(line_freq)
    if pipeline is not None:
        changes["pipeline"] = pipeline
    if changes:
        cfg = dataclasses.replace(cfg, **changes)
    data = raw.data
    if interpolate_nans_s is not None:
        data, _ = interpolate_nonfinite(data, raw.fs, interpolate_nans_s, raw.ch_names)
    else:
        check_finite(data, raw.fs, raw.ch_names, what=f"raw recording {Path(raw_path).name}")
    raw = dataclasses.replace(raw, data=data)

    audio = load_audio(audio_path)
    audio_s = audio.shape[0] / SAMPLE_RATE
    neural_s = raw.duration_s
    if abs(audio_s - neural_s) > max_mismatch_s:
        raise ValueError(
            f"audio {audio_path} lasts {audio_s:.3f} s but the neural recording {raw_path} lasts "
            f"{neural_s:.3f} s; they must be on the same clock (allowed difference {max_mismatch_s} s, "
            "max_mismatch_s / --max-mismatch)"
        )
    n_frames = min(
        n_frames_for_samples(raw.n_samples, raw.fs, cfg.max_fs_denominator), -(-audio.shape[0] // HOP)
    )
    shared_s = n_frames / FRAME_RATE
    events = read_events(events_path, label_column=label_column)
    start, end = events.to_frames(n_frames, min(audio_s, neural_s))
    n_trials = start.size
    if n_test is None:
        n_test = min(50, n_trials // 5)
    if not 0 <= n_test < n_trials:
        raise ValueError(f"n_test must be in [0, {n_trials}) for {n_trials} trials, got {n_test}")
    test = np.arange(n_trials - n_test, n_trials, dtype=np.int64)
    train_segments = [(int(start[i]), int(end[i])) for i in range(n_trials - n_test)]

    res: HighGammaResult = compute_highgamma(raw, config=cfg, train_segments=train_segments)
    feats = res.features[:n_frames]
    audio_out = np.zeros(n_frames * HOP, dtype=np.float32)
    m = min(audio.shape[0], audio_out.shape[0])
    audio_out[:m] = audio[:m]
    positions = None
    if raw.positions is not None:
        if np.isfinite(raw.positions).all():
            positions = raw.positions.astype(np.float32)
        else:
            missing = [raw.ch_names[i] for i in np.flatnonzero(~np.isfinite(raw.positions).all(1))]
            logger.warning("positions not stored: channels %s have none", missing)
    raw_sig = None
    if keep_raw:
        n_raw = min(raw.n_samples, int(np.ceil(shared_s * raw.fs)))
        raw_sig = raw.data[:n_raw].astype(np.float32)
    attrs = {
        "highgamma_config": json.dumps(cfg.to_dict()),
        "highgamma_stats": json.dumps(res.stats.to_dict()),
        "source_raw": str(raw_path),
        "source_audio": str(audio_path),
        "source_events": str(events_path),
        "raw_units": "uV",
    }
    extras = {
        "channel_names": np.array(raw.ch_names, dtype=object),
        "channel_types": np.array(raw.ch_types, dtype=object),
        "bad_channels": res.stats.bad.astype(np.uint8),
    }
    part = Participant(
        ecog=feats,
        audio=audio_out,
        start=start,
        end=end,
        labels=events.labels,
        raw_signal=raw_sig,
        raw_fs=raw.fs if keep_raw else None,
        electrode_positions=positions,
        grid_shape=raw.grid_shape,
        hemisphere=hemisphere,
        test_trials=test,
        attrs=attrs,
        extras=extras,
    )
    logger.info(
        "prepared %d trials (%d held out), %d electrodes (%d bad), %d frames (%.2f s), %s pipeline",
        n_trials,
        n_test,
        feats.shape[1],
        int(res.stats.bad.sum()),
        n_frames,
        shared_s,
        cfg.pipeline,
    )
    return part, res
