"""A participant's voice range from their own audio, for files that do not state one.

The f0 limits of the 18 speech parameters differ by a factor of about two between typical low (adult male)
and high (adult female) voices, and a model trained with the wrong range wastes half its f0 resolution or
cannot reach the speaker's pitch at all. When a participant file carries no ``voice_range``, stage 1 tracks
the pitch of the training trials (YIN + spectral refinement, :func:`edgensd.speech.pitch.track_pitch`, over
a wide 50–500 Hz search range), picks the preset by the median voiced f0 (below 165 Hz: ``low``, the usual
boundary between adult male and female speaking f0), and widens the preset's f0 limits to cover the 2nd to
98th percentile of the voiced frames with a margin, so neither the speaker's low nor high pitches clip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from edgensd.log import logger
from edgensd.params import VoiceRange

__all__ = ["LOW_HIGH_BOUNDARY_HZ", "VoiceEstimate", "estimate_voice_range"]

LOW_HIGH_BOUNDARY_HZ = 165.0
"""Median speaking f0 (Hz) below which the ``low`` preset is chosen."""

F0_SEARCH_HZ = (50.0, 500.0)
"""f0 search range of the estimate, Hz (covers adult male and female speech)."""


@dataclasses.dataclass
class VoiceEstimate:
    """A voice range estimated from audio, with the figures it rests on.

    Attributes
    ----------
    voice : VoiceRange
        The range to use (``name`` is ``'low'`` or ``'high'``; f0 limits possibly widened).
    preset : str
        The preset it starts from.
    n_voiced_frames : int
        Voiced 8 ms frames the estimate rests on.
    f0_median_hz, f0_p2_hz, f0_p98_hz : float
        Median and 2nd / 98th percentiles of the voiced frames' f0, Hz (NaN without voiced frames).
    widened : bool
        Whether the f0 limits were widened beyond the preset's.
    reason : str
        One line saying how the range was chosen.
    """

    voice: VoiceRange
    preset: str
    n_voiced_frames: int
    f0_median_hz: float
    f0_p2_hz: float
    f0_p98_hz: float
    widened: bool
    reason: str

    def to_dict(self) -> dict:
        """JSON-ready dict (saved beside a model as ``voice_estimate.json``)."""
        d = dataclasses.asdict(self)
        d["voice"] = self.voice.to_dict()
        for k in ("f0_median_hz", "f0_p2_hz", "f0_p98_hz"):
            d[k] = None if not np.isfinite(d[k]) else round(float(d[k]), 2)
        return d


def estimate_voice_range(
    audio_segments: Iterable[np.ndarray],
    *,
    min_voiced_frames: int = 100,
    margin: float = 1.15,
    max_seconds: float = 300.0,
) -> VoiceEstimate:
    """Estimate a speaker's voice range from their speech.

    Parameters
    ----------
    audio_segments : iterable of ndarray, float32, shape (n_samples,)
        16 kHz mono utterances of one speaker (e.g. the training trials).
    min_voiced_frames : int
        Fewer voiced frames than this (0.8 s of voicing by default) is too little to choose: the ``high``
        preset is kept and the reason says so.
    margin : float
        Factor beyond the 2nd / 98th f0 percentiles that the f0 limits must reach.
    max_seconds : float
        Audio analysed at most (the first segments up to this duration), s.

    Returns
    -------
    VoiceEstimate
    """
    from edgensd.speech.pitch import track_pitch

    if not margin >= 1.0:
        raise ValueError(f"margin must be >= 1, got {margin}")
    f0s, total = [], 0.0
    for seg in audio_segments:
        seg = np.asarray(seg, np.float32)
        if seg.size < 2048:
            continue
        f0, voiced = track_pitch(seg, *F0_SEARCH_HZ)
        f0s.append(f0[voiced])
        total += seg.size / 16000.0
        if total >= max_seconds:
            break
    f0 = np.concatenate(f0s) if f0s else np.zeros(0, np.float32)
    if f0.size < min_voiced_frames:
        voice = VoiceRange.preset("high")
        reason = (f"only {f0.size} voiced frames in {total:.1f} s of audio (need {min_voiced_frames}): kept the "
                  "'high' preset")
        nan = float("nan")
        return VoiceEstimate(voice, "high", int(f0.size), nan, nan, nan, False, reason)
    med, p2, p98 = (float(v) for v in np.percentile(f0, [50, 2, 98]))
    preset = "low" if med < LOW_HIGH_BOUNDARY_HZ else "high"
    voice = VoiceRange.preset(preset)
    lo, hi = voice.f0_hz
    new_lo = max(F0_SEARCH_HZ[0] * 0.8, min(lo, p2 / margin))
    new_hi = min(F0_SEARCH_HZ[1] * 1.2, max(hi, p98 * margin))
    widened = (new_lo, new_hi) != (lo, hi)
    if widened:
        voice = dataclasses.replace(voice, f0_hz=(round(new_lo, 1), round(new_hi, 1)))
    reason = (f"median voiced f0 {med:.0f} Hz over {f0.size} frames ({total:.1f} s of audio) -> '{preset}' preset"
              + (f", f0 limits widened to {voice.f0_hz[0]:g}-{voice.f0_hz[1]:g} Hz to cover the 2nd-98th "
                 f"percentiles {p2:.0f}-{p98:.0f} Hz" if widened else ""))
    return VoiceEstimate(voice, preset, int(f0.size), med, p2, p98, widened, reason)


def log_estimate(est: VoiceEstimate, source: str) -> None:
    """Log how a voice range was chosen for ``source`` (a warning when it fell back for lack of voicing)."""
    if np.isfinite(est.f0_median_hz):
        logger.info("%s has no voice_range; estimated from its audio: %s", source, est.reason)
    else:
        logger.warning("%s has no voice_range and %s", source, est.reason)
