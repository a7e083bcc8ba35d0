"""Simulator knobs: what real high-gamma shows and the simulator's linear encoding model lacks.

The base encoding model of :mod:`edgensd.neural.simulate` is linear in its acoustic activations: every
electrode's high-gamma amplitude is ``m0 (1 + g · drive)`` with ``drive`` a lagged, tuned mixture of acoustic
features. A time-lagged ridge decoder inverts such a model almost perfectly, so on it deep decoders cannot
show what they add. The knobs below add four effects the ECoG literature reports, each off by default (the
``linear`` preset, which reproduces the base model exactly) and each with its source. See
``edgensd/neural/simulator_knobs.md`` for the table of presets and how each effect is tested.

Saturating tuning (``saturation_c50``, ``saturation_exponent``)
    The drive passes through a Naka–Rushton function ``r = d^n / (d^n + c50^n)`` (Naka & Rushton 1966,
    J Physiol 185:185–229), renormalized to a mean of 1 over speech frames: weak input is suppressed and
    strong input compressed. Broadband (high-gamma) ECoG responses are compressive in stimulus strength
    (Winawer et al. 2013, Curr Biol 23:1145–1153: broadband power grows sub-linearly with contrast) and in
    time (Zhou, Benson, Kay & Winawer 2019, PLoS Comput Biol 15:e1007484: compressive temporal summation,
    fitted with a divisive-normalization model). ``c50`` is in units of the electrode's mean speech drive.

Onset transients (``onset_fraction``, ``onset_silence_s``)
    Hamilton, Edwards & Chang 2018 (Curr Biol 28:1860–1871) found a spatial map in the superior temporal
    gyrus: posterior STG responds transiently when speech starts after a silence (sentence and phrase
    onsets), middle and anterior STG respond throughout speech (sustained). Here the most posterior
    ``onset_fraction`` of the speech-carrying auditory electrodes become onset electrodes: 80 % of their
    drive is an onset transient (a decaying exponential, τ = 150 ms, at every speech onset that follows at
    least ``onset_silence_s`` of silence) through the electrode's own lag kernel, 20 % the sustained drive.

Gain drift across trials (``gain_drift_sd``, ``gain_drift_trials``)
    Chronic ECoG recordings are not stationary: the same neural features map differently to speech from day
    to day and within a session (Silversmith et al. 2021, Nat Biotechnol 39:326–335, plug-and-play control
    with a chronic ECoG array needing unsupervised adaptation; Moses et al. 2021, N Engl J Med
    385:217–227, 81 weeks of recordings with a decoder retrained as signals changed). Every electrode's
    high-gamma amplitude (rest and response) is multiplied by a slow log-normal gain: an AR(1) process over
    trials with SD ``gain_drift_sd`` (natural log units) and correlation length ``gain_drift_trials``
    trials, constant within a trial and interpolated linearly through the silence between trials.

Articulatory drive (``articulatory_weight``)
    Ventral sensorimotor cortex encodes articulator movements, not sounds: a dorsal–ventral somatotopic map
    of lips, jaw, tongue and larynx (Bouchard et al. 2013, Nature 495:327–332) whose electrodes are tuned to
    coordinated articulatory kinematic trajectories (Chartier et al. 2018, Neuron 98:1042–1054). **No
    articulography (EMA) exists for these speakers: the articulator signals here are proxies computed from
    the acoustics** (:func:`articulatory_proxies`): speaker-normalized formants through sigmoids
    (F1 → jaw opening vs tongue height, F2 → tongue front vs back, low F3 and F2 → lip rounding), high-band
    energy → tongue tip (frication), voicing → larynx, a slow loudness envelope → respiration, and the speed
    of the formant trajectory → articulator speed; each gated by how much the speaker is articulating and
    smoothed below 10 Hz like a movement. Sensorimotor electrodes mix ``articulatory_weight`` of a drive
    from these proxies (somatotopic tuning: lips dorsal, then jaw and tongue, larynx ventral) with
    ``1 − articulatory_weight`` of their acoustic drive. Both go through the electrode's lag kernel, so the
    articulatory drive leads the sound by the electrode's lag (50–200 ms) like the acoustic one.

Everything is drawn from the simulation seed's own stream for the knobs (one child per knob), so turning a
knob on changes nothing the other knobs or the base model draw.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import signal

from edgensd.config import check_choice
from edgensd.log import logger
from edgensd.spectrogram import FRAME_RATE, N_FFT, SAMPLE_RATE

__all__ = [
    "ARTICULATORY_NAMES",
    "NONLINEARITIES",
    "ONSET_MIX",
    "ONSET_TAU_S",
    "PRESET_KNOBS",
    "ArticulatoryProxies",
    "SimulatorKnobs",
    "apply_drive_knobs",
    "articulatory_proxies",
    "articulatory_tuning",
    "check_range",
    "frame_gain",
    "knob_seeds",
    "onset_events",
    "onset_transient",
    "pick_onset_electrodes",
    "resolve_knobs",
    "saturate",
    "trial_gains",
]

NONLINEARITIES: tuple[str, ...] = ("linear", "mild", "strong")
#: Decay time constant of the onset transient, s (STG onset responses last a few hundred ms).
ONSET_TAU_S = 0.15
#: Share of an onset electrode's drive that is the onset transient (the rest is its sustained drive).
ONSET_MIX = 0.8
ARTICULATORY_NAMES: tuple[str, ...] = (
    "jaw_open",
    "tongue_high",
    "tongue_front",
    "tongue_back",
    "tongue_tip",
    "lip_round",
    "larynx",
    "respiration",
    "articulator_speed",
)
#: Preferred dorsal-ventral position (0 ventral, 1 dorsal, within the sensorimotor electrodes) of each
#: articulator (Bouchard et al. 2013: lips dorsal to jaw and tongue, larynx ventral-most; their second,
#: dorsal larynx representation is not modelled); ``None``: no somatotopic preference.
_SOMATOTOPY: dict[str, float | None] = {
    "lip_round": 0.9,
    "jaw_open": 0.7,
    "tongue_front": 0.5,
    "tongue_back": 0.45,
    "tongue_high": 0.5,
    "tongue_tip": 0.55,
    "larynx": 0.1,
    "respiration": None,
    "articulator_speed": None,
}


def check_range(name: str, value, lo: float, hi: float) -> float:
    """Raise a ValueError naming ``name`` unless ``value`` is a finite number in ``[lo, hi]``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= float(value) <= hi
    if not ok:
        raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)



@dataclasses.dataclass(frozen=True)
class SimulatorKnobs:
    """Resolved knob values (a preset with any explicit settings applied).

    Attributes
    ----------
    saturation_c50 : float
        Semi-saturation constant of the Naka–Rushton drive nonlinearity, in units of the electrode's mean
        speech drive (> 0); 0 turns saturation off (linear drive).
    saturation_exponent : float
        Naka–Rushton exponent ``n`` in [1, 4].
    onset_fraction : float
        Fraction in [0, 1] of the speech-carrying auditory electrodes (the most posterior ones) that are onset
        electrodes; 0 turns onset transients off.
    onset_silence_s : float
        Silence that must precede a speech onset for it to evoke a transient, s, in [0.05, 5].
    gain_drift_sd : float
        SD of the per-electrode log gain across trials (natural log units) in [0, 1]; 0 turns drift off.
    gain_drift_trials : float
        Correlation length of the gain drift, trials, in [1, 10000].
    articulatory_weight : float
        Share in [0, 1] of a sensorimotor electrode's drive that comes from the articulator proxies;
        0 keeps the acoustic drive only.
    """

    saturation_c50: float = 0.0
    saturation_exponent: float = 2.0
    onset_fraction: float = 0.0
    onset_silence_s: float = 0.3
    gain_drift_sd: float = 0.0
    gain_drift_trials: float = 20.0
    articulatory_weight: float = 0.0

    def __post_init__(self) -> None:
        check_range("saturation_c50", self.saturation_c50, 0.0, 10.0)
        check_range("saturation_exponent", self.saturation_exponent, 1.0, 4.0)
        check_range("onset_fraction", self.onset_fraction, 0.0, 1.0)
        check_range("onset_silence_s", self.onset_silence_s, 0.05, 5.0)
        check_range("gain_drift_sd", self.gain_drift_sd, 0.0, 1.0)
        check_range("gain_drift_trials", self.gain_drift_trials, 1.0, 10000.0)
        check_range("articulatory_weight", self.articulatory_weight, 0.0, 1.0)

    @property
    def is_linear(self) -> bool:
        """Whether every knob is off (the base model, bit for bit)."""
        return (
            self.saturation_c50 == 0.0
            and self.onset_fraction == 0.0
            and self.gain_drift_sd == 0.0
            and self.articulatory_weight == 0.0
        )

    def to_dict(self) -> dict:
        """JSON-ready dict of the values."""
        return dataclasses.asdict(self)


#: The ``nonlinearity`` presets: ``linear`` is the base model; ``mild`` and ``strong`` turn every knob on.
PRESET_KNOBS: dict[str, SimulatorKnobs] = {
    "linear": SimulatorKnobs(),
    "mild": SimulatorKnobs(
        saturation_c50=1.0, onset_fraction=0.35, gain_drift_sd=0.1, articulatory_weight=0.5
    ),
    "strong": SimulatorKnobs(
        saturation_c50=0.4, onset_fraction=0.7, gain_drift_sd=0.25, articulatory_weight=0.9
    ),
}


def resolve_knobs(nonlinearity: str, **overrides) -> SimulatorKnobs:
    """The preset ``nonlinearity`` with every override that is not ``None`` applied.

    Parameters
    ----------
    nonlinearity : {'linear', 'mild', 'strong'}
    **overrides
        :class:`SimulatorKnobs` fields; ``None`` keeps the preset's value.

    Returns
    -------
    SimulatorKnobs
    """
    check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
    given = {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
             for k, v in overrides.items() if v is not None}
    return dataclasses.replace(PRESET_KNOBS[nonlinearity], **given)


# ----------------------------------------------------------------------------------------------------------
# saturation
# ----------------------------------------------------------------------------------------------------------


def saturate(
    drive: np.ndarray, c50: float, exponent: float, is_speech: np.ndarray, columns: np.ndarray | None = None
) -> np.ndarray:
    """Naka–Rushton saturation of the drive, renormalized to mean 1 over speech frames.

    Parameters
    ----------
    drive : ndarray, shape (n_frames, E)
        Non-negative drive with mean 1 over speech frames (:func:`edgensd.neural.simulate.speech_drive`).
    c50 : float
        Semi-saturation constant (> 0), in units of the mean speech drive.
    exponent : float
        Naka–Rushton exponent ``n``.
    is_speech : ndarray of bool, shape (n_frames,)
    columns : ndarray of int, optional
        Electrodes to transform (default all); the others are returned unchanged.

    Returns
    -------
    ndarray, float32, shape (n_frames, E)
        ``d^n / (d^n + c50^n)`` scaled to mean 1 over speech frames (columns that are 0 stay 0).
    """
    if not c50 > 0:
        raise ValueError(f"c50 must be > 0, got {c50}")
    out = np.array(drive, dtype=np.float32, copy=True)
    cols = np.arange(out.shape[1]) if columns is None else np.asarray(columns)
    d = out[:, cols].astype(np.float64)
    dn = d**exponent
    r = dn / (dn + c50**exponent)
    sp = np.asarray(is_speech, bool)
    m = r[sp].mean(axis=0) if sp.any() else r.mean(axis=0)
    out[:, cols] = (r / np.where(m > 0, m, 1.0)).astype(np.float32)
    return out


# ----------------------------------------------------------------------------------------------------------
# onset transients
# ----------------------------------------------------------------------------------------------------------


def onset_events(is_speech: np.ndarray, min_silence_s: float) -> np.ndarray:
    """Frames where speech starts after at least ``min_silence_s`` of silence.

    Parameters
    ----------
    is_speech : ndarray of bool, shape (n_frames,)
    min_silence_s : float
        Silence before the onset, s (the recording's start counts as silence).

    Returns
    -------
    ndarray of int64
        Onset frame indices, ascending.
    """
    s = np.asarray(is_speech, bool)
    need = int(math.ceil(min_silence_s * FRAME_RATE))
    starts = np.flatnonzero(s & ~np.concatenate([[False], s[:-1]]))
    ends = np.flatnonzero(s & ~np.concatenate([s[1:], [False]]))  # last frame of each run; runs alternate
    silence = starts.copy()  # before the first run: the frames since the recording's start
    silence[1:] = starts[1:] - ends[:-1] - 1
    return starts[silence >= need].astype(np.int64)


def onset_transient(n_frames: int, onsets: np.ndarray, tau_s: float = ONSET_TAU_S) -> np.ndarray:
    """Sum of decaying exponentials starting at each onset, shape (n_frames,), float32 (peak 1 each)."""
    imp = np.zeros(n_frames)
    imp[np.asarray(onsets, np.int64)] = 1.0
    a = math.exp(-1.0 / (tau_s * FRAME_RATE))
    return signal.lfilter([1.0], [1.0, -a], imp).astype(np.float32)


def pick_onset_electrodes(
    positions_mm: np.ndarray, region: np.ndarray, carries: np.ndarray, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """The most posterior ``fraction`` of the speech-carrying auditory electrodes (position ``u`` + 3 mm jitter).

    Returns
    -------
    ndarray of bool, shape (E,)
    """
    cand = np.flatnonzero((np.asarray(region) == "auditory") & carries)
    jitter = rng.normal(0.0, 3.0, positions_mm.shape[0])  # drawn for every electrode: layout-independent
    out = np.zeros(positions_mm.shape[0], bool)
    k = int(round(fraction * cand.size))
    if k:
        order = np.argsort(positions_mm[cand, 0] + jitter[cand], kind="stable")  # u points anterior
        out[cand[order[:k]]] = True
    return out


# ----------------------------------------------------------------------------------------------------------
# gain drift
# ----------------------------------------------------------------------------------------------------------


def trial_gains(n_trials: int, n_electrodes: int, sd: float, corr_trials: float, rng: np.random.Generator):
    """Per-trial multiplicative gains: ``exp(sd · z − sd²/2)``, ``z`` a unit-variance AR(1) over trials.

    Parameters
    ----------
    n_trials, n_electrodes : int
    sd : float
        SD of the log gain (natural log units).
    corr_trials : float
        Correlation length of the AR(1) over trials (lag-1 coefficient ``exp(−1 / corr_trials)``).
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, float64, shape (n_trials, n_electrodes)
        Expected value 1 per electrode and trial.
    """
    a = math.exp(-1.0 / corr_trials)
    w = rng.standard_normal((n_trials, n_electrodes)) * math.sqrt(1.0 - a * a)
    z0 = rng.standard_normal((1, n_electrodes))
    z = signal.lfilter([1.0], [1.0, -a], w, axis=0, zi=z0 * a)[0]
    return np.exp(sd * z - 0.5 * sd * sd)


def frame_gain(gains: np.ndarray, start: np.ndarray, end: np.ndarray, n_frames: int) -> np.ndarray:
    """Per-frame gains: constant within each trial, linear through the gaps, held before the first / after the last.

    Parameters
    ----------
    gains : ndarray, shape (n_trials, E)
    start, end : ndarray of int, shape (n_trials,)
        Trial frames ``start[i]:end[i]``.
    n_frames : int

    Returns
    -------
    ndarray, float32, shape (n_frames, E)
    """
    start, end = np.asarray(start, np.int64), np.asarray(end, np.int64)
    x = np.stack([start, np.maximum(end - 1, start)], axis=1).reshape(-1).astype(np.float64)
    order = np.argsort(x, kind="stable")
    x = x[order]
    t = np.arange(n_frames, dtype=np.float64)
    out = np.empty((n_frames, gains.shape[1]), np.float32)
    for e in range(gains.shape[1]):
        y = np.repeat(gains[:, e], 2)[order]
        out[:, e] = np.interp(t, x, y)
    return out


# ----------------------------------------------------------------------------------------------------------
# articulatory proxies
# ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ArticulatoryProxies:
    """Articulator proxies computed from the acoustics (no articulography), 125 Hz frames.

    Attributes
    ----------
    activations : ndarray, float32, shape (n_frames, len(ARTICULATORY_NAMES))
        Each in [0, 1], 0 when the speaker is not articulating.
    names : tuple of str
        :data:`ARTICULATORY_NAMES`.
    formants_hz : ndarray, float32, shape (n_frames, 3)
        F1–F3 peak picks on the cepstrally smoothed spectrum, Hz (held through unvoiced frames).
    """

    activations: np.ndarray
    names: tuple[str, ...]
    formants_hz: np.ndarray


_STEEP = 2.5  # slope of the proxies' sigmoids per SD of the normalized formant


def _sigmoid(x: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(x)


def _robust_z(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    ref = x[mask] if mask.sum() > 10 else x
    med = float(np.median(ref))
    iqr = float(np.subtract(*np.percentile(ref, [75, 25])))
    return (x - med) / max(iqr / 1.349, 1e-6)


def _hold(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Carry the last valid value forward (and the first valid one backward)."""
    if not valid.any():
        return np.zeros_like(x)
    idx = np.where(valid, np.arange(x.shape[0]), 0)
    np.maximum.accumulate(idx, out=idx)
    first = int(np.argmax(valid))
    idx[:first] = first
    return x[idx]


def articulatory_proxies(audio: np.ndarray, features, chunk_frames: int = 4096) -> ArticulatoryProxies:
    """Articulator proxies derived from the acoustics: **not measured articulation** (there is no EMA here).

    Formants are peak picks on the cepstrally smoothed log spectrum (24 coefficients: below the pitch period
    of voices up to ~600 Hz) in 250–1000 Hz (F1), F1 + 150 Hz – 2800 Hz (F2) and F2 + 150 Hz – 3600 Hz (F3),
    on voiced speech frames; log formants are z-scored over the speaker's voiced frames (speaker
    normalization), held through unvoiced frames and smoothed below 10 Hz (articulator movements). Each
    proxy is a nonlinear function of them, gated by the smoothed loudness activation (how much the speaker
    articulates):

    ========================  ==========================================================================
    ``jaw_open``              σ(1.5 z(F1))                 (open vowels: high F1)
    ``tongue_high``           σ(−1.5 z(F1))                (close vowels: low F1)
    ``tongue_front``          σ(1.5 z(F2))                 (front vowels: high F2)
    ``tongue_back``           σ(−1.5 z(F2))
    ``tongue_tip``            σ(1.5 z(high-band share))    (frication: energy above 4 kHz)
    ``lip_round``             σ(−1.2 (z(F3) + 0.5 z(F2)))  (rounding lowers F3 and F2)
    ``larynx``                voicing activation, smoothed
    ``respiration``           loudness activation below 1.5 Hz (expiration while speaking)
    ``articulator_speed``     |d/dt (z(F1), z(F2), z(F3))|, scaled by its 95th percentile, clipped to 1
    ========================  ==========================================================================

    Parameters
    ----------
    audio : ndarray, shape (n_samples,)
        16 kHz mono audio.
    features : edgensd.neural.simulate.AcousticFeatures
        The same audio's acoustic features (speech mask, loudness and voicing activations).
    chunk_frames : int
        Frames analysed at a time (memory only).

    Returns
    -------
    ArticulatoryProxies
    """
    from scipy import fft as sfft

    from edgensd.neural.simulate import iter_power_spectrogram

    names = features.names
    act = features.activations
    loud = act[:, names.index("loudness")].astype(np.float64)
    voicing = act[:, names.index("voicing")].astype(np.float64)
    n = features.n_frames
    n_bins = N_FFT // 2 + 1
    freqs = np.arange(n_bins) * (SAMPLE_RATE / N_FFT)
    n_lifter = 24
    lifter = np.zeros(N_FFT)
    lifter[:n_lifter] = 1.0
    lifter[-(n_lifter - 1) :] = 1.0
    formants = np.zeros((n, 3), np.float32)
    hi_share = np.zeros(n, np.float32)
    hi_band = freqs >= 4000.0
    for a, pw, _ in iter_power_spectrogram(audio, chunk_frames):
        b = a + pw.shape[0]
        logp = np.log(np.maximum(pw.astype(np.float64), 1e-12))
        cep = sfft.irfft(logp, n=N_FFT, axis=1)  # real cepstrum (the log spectrum is even)
        env = sfft.rfft(cep * lifter, n=N_FFT, axis=1).real
        env += 2.0 * np.log(np.maximum(freqs, 50.0) / 1000.0)  # +6 dB/octave: formant peaks above the tilt
        peak = np.zeros(env.shape, bool)
        peak[:, 1:-1] = (env[:, 1:-1] > env[:, :-2]) & (env[:, 1:-1] >= env[:, 2:])
        f1 = _peak(env, peak, freqs, np.full(b - a, 250.0), np.full(b - a, 1000.0))
        f2 = _peak(env, peak, freqs, f1 + 200.0, np.full(b - a, 2800.0))
        f3 = _peak(env, peak, freqs, f2 + 200.0, np.full(b - a, 3600.0))
        formants[a:b] = np.stack([f1, f2, f3], axis=1)
        tot = pw.sum(axis=1)
        hi_share[a:b] = np.where(tot > 0, pw[:, hi_band].sum(axis=1) / np.maximum(tot, 1e-20), 0.0)
    speech = features.is_speech
    voiced = speech & (voicing > 0.2) & np.all(np.isfinite(formants), axis=1)
    formants = np.where(np.isfinite(formants), formants, 1000.0).astype(np.float32)
    sos10 = signal.butter(2, 10.0, output="sos", fs=FRAME_RATE)
    sos_resp = signal.butter(2, 1.5, output="sos", fs=FRAME_RATE)

    def smooth(x: np.ndarray, sos=sos10) -> np.ndarray:
        return signal.sosfiltfilt(sos, x) if x.shape[0] > 20 else x

    z = np.stack([smooth(_hold(_robust_z(np.log(formants[:, k]), voiced), voiced)) for k in range(3)], axis=1)
    gate = np.clip(smooth(speech.astype(np.float64)), 0.0, 1.0)  # articulating: speech, smoothed like a movement
    z_hi = smooth(_robust_z(np.log(np.maximum(hi_share, 1e-6)), speech))
    speed = np.linalg.norm(np.diff(z, axis=0, prepend=z[:1]), axis=1) * FRAME_RATE
    scale = float(np.percentile(speed[speech], 95)) if speech.sum() > 10 else float(speed.max() or 1.0)
    out = {
        "jaw_open": _sigmoid(_STEEP * z[:, 0]) * gate,
        "tongue_high": _sigmoid(-_STEEP * z[:, 0]) * gate,
        "tongue_front": _sigmoid(_STEEP * z[:, 1]) * gate,
        "tongue_back": _sigmoid(-_STEEP * z[:, 1]) * gate,
        "tongue_tip": _sigmoid(_STEEP * z_hi) * gate,
        "lip_round": _sigmoid(-0.8 * _STEEP * (z[:, 2] + 0.5 * z[:, 1])) * gate,
        "larynx": np.clip(smooth(voicing), 0.0, 1.0),
        "respiration": np.clip(smooth(loud, sos_resp) / max(float(np.percentile(loud, 99)), 1e-6), 0.0, 1.0),
        "articulator_speed": np.clip(speed / max(scale, 1e-6), 0.0, 1.0) * gate,
    }
    acts = np.stack([np.clip(out[k], 0.0, 1.0) for k in ARTICULATORY_NAMES], axis=1).astype(np.float32)
    logger.debug("articulatory proxies: median F1/F2/F3 %s Hz over %d voiced frames",
                 np.round(np.median(formants[voiced], axis=0)) if voiced.any() else "n/a", int(voiced.sum()))
    return ArticulatoryProxies(activations=acts, names=ARTICULATORY_NAMES, formants_hz=formants)


def _peak(env: np.ndarray, peak: np.ndarray, freqs: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Frequency of the highest local maximum of each row of ``env`` between ``lo`` and ``hi`` Hz; NaN if none."""
    inside = peak & (freqs[None, :] >= lo[:, None]) & (freqs[None, :] <= hi[:, None])
    k = np.argmax(np.where(inside, env, -np.inf), axis=1)
    return np.where(inside.any(axis=1), freqs[k], np.nan)


def articulatory_tuning(positions_mm: np.ndarray, sensorimotor: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Somatotopic tuning of sensorimotor electrodes over :data:`ARTICULATORY_NAMES` (rows sum to 1).

    Parameters
    ----------
    positions_mm : ndarray, shape (E, 2)
        Sheet positions ``(u, v)``, ``v`` dorsal.
    sensorimotor : ndarray of bool, shape (E,)
        Electrodes that get a tuning (others: 0).
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, float64, shape (E, len(ARTICULATORY_NAMES))
    """
    e, k = positions_mm.shape[0], len(ARTICULATORY_NAMES)
    noise = rng.normal(0.0, 0.6, (e, k))
    out = np.zeros((e, k))
    sm = np.flatnonzero(sensorimotor)
    if sm.size == 0:
        return out
    v = positions_mm[sm, 1]
    v_norm = (v - v.min()) / max(float(v.max() - v.min()), 1e-6) if sm.size > 1 else np.full(1, 0.5)
    logits = np.empty((sm.size, k))
    for j, name in enumerate(ARTICULATORY_NAMES):
        pref = _SOMATOTOPY[name]
        logits[:, j] = 0.8 if pref is None else 3.0 * np.exp(-0.5 * ((v_norm - pref) / 0.2) ** 2)
    logits += noise[sm]
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    out[sm] = w / w.sum(axis=1, keepdims=True)
    return out


# ----------------------------------------------------------------------------------------------------------
# the knobs applied to the drive
# ----------------------------------------------------------------------------------------------------------


def apply_drive_knobs(
    drive: np.ndarray,
    audio: np.ndarray,
    features,
    model,
    positions_mm: np.ndarray,
    knobs: SimulatorKnobs,
    seed_sequence: np.random.SeedSequence,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Apply the articulatory, onset and saturation knobs to the base drive (in that order).

    Parameters
    ----------
    drive : ndarray, float32, shape (n_frames, E)
        Base drive (:func:`edgensd.neural.simulate.speech_drive`, mean 1 over speech frames).
    audio : ndarray, shape (n_samples,)
        The 16 kHz audio the features come from (for the articulatory proxies).
    features : edgensd.neural.simulate.AcousticFeatures
    model : edgensd.neural.simulate.ElectrodeModel
    positions_mm : ndarray, shape (E, 2)
        Sheet positions of the electrodes.
    knobs : SimulatorKnobs
    seed_sequence : numpy.random.SeedSequence
        The knobs' stream (:func:`knob_seeds`; the gain-drift child is the caller's).

    Returns
    -------
    drive : ndarray, float32, shape (n_frames, E)
        Still non-negative with mean 1 over speech frames on every speech-carrying electrode.
    truth : dict of str to ndarray
        Ground-truth extras (``sim_*`` keys) of the knobs that are on.
    """
    from edgensd.neural.simulate import speech_drive

    s_onset, _s_drift, s_art = knob_seeds(seed_sequence)
    is_speech = features.is_speech
    carries = model.role != "none"
    truth: dict[str, np.ndarray] = {}
    drive = np.array(drive, dtype=np.float32, copy=True)
    if knobs.articulatory_weight > 0:
        sm = carries & (model.region == "sensorimotor")
        tuning = articulatory_tuning(positions_mm, sm, np.random.default_rng(s_art))
        proxies = articulatory_proxies(audio, features)
        art_model = dataclasses.replace(model, tuning=tuning, role=np.where(sm, model.role, "none"))
        art = speech_drive(proxies.activations, art_model, is_speech)
        w = np.where(sm, knobs.articulatory_weight, 0.0)
        cols = np.flatnonzero(sm)
        drive[:, cols] = (1.0 - w[cols]) * drive[:, cols] + w[cols] * art[:, cols]
        truth["sim_articulatory_weight"] = w
        truth["sim_articulatory_tuning"] = tuning
        truth["sim_articulatory_names"] = np.array(ARTICULATORY_NAMES, dtype=object)
        logger.info("articulatory drive: %d sensorimotor electrodes, weight %.2f", cols.size,
                    knobs.articulatory_weight)
    if knobs.onset_fraction > 0:
        onset_el = pick_onset_electrodes(positions_mm, model.region, carries, knobs.onset_fraction,
                                         np.random.default_rng(s_onset))
        events = onset_events(is_speech, knobs.onset_silence_s)
        if onset_el.any() and events.size:
            trans = onset_transient(drive.shape[0], events)[:, None]
            on_model = dataclasses.replace(
                model, tuning=np.ones((model.n_electrodes, 1)), role=np.where(onset_el, model.role, "none")
            )
            on = speech_drive(trans, on_model, is_speech)
            cols = np.flatnonzero(onset_el)
            drive[:, cols] = (1.0 - ONSET_MIX) * drive[:, cols] + ONSET_MIX * on[:, cols]
        else:
            logger.warning("onset transients: %d onset electrodes, %d speech onsets after %.2f s of silence; "
                           "no transient added", int(onset_el.sum()), events.size, knobs.onset_silence_s)
        truth["sim_onset_electrode"] = onset_el.astype(np.uint8)
        truth["sim_onset_frames"] = events
        logger.info("onset transients: %d onset electrodes, %d onsets", int(onset_el.sum()), events.size)
    if knobs.saturation_c50 > 0:
        drive = saturate(drive, knobs.saturation_c50, knobs.saturation_exponent, is_speech,
                         np.flatnonzero(carries))
        logger.info("saturating tuning: Naka-Rushton c50 %.2f, exponent %.1f", knobs.saturation_c50,
                    knobs.saturation_exponent)
    return drive, truth


def knob_seeds(seed_sequence: np.random.SeedSequence) -> tuple[np.random.SeedSequence, ...]:
    """The knobs' three streams (onset electrodes, gain drift, articulatory tuning): children 0, 1, 2 of
    ``seed_sequence``, made from their spawn keys so that asking twice gives the same streams."""
    return tuple(
        np.random.SeedSequence(seed_sequence.entropy, spawn_key=(*seed_sequence.spawn_key, i)) for i in range(3)
    )
