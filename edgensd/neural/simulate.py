"""Speech-driven ECoG simulator: real speech → acoustic features → spatio-temporal encoding model → raw ECoG.

No registry package ships speech-production ECoG, so decoders are trained, compared and demonstrated on
neural data simulated from REAL speech (the Allison prompts gathered by ``edgensd data speech``). The model
follows what the speech-production ECoG literature reports (see ``shared/DATA.md``):

Acoustic features (:func:`acoustic_features`, numpy only, 125 Hz frames of the shared clock)
    16 log-mel band levels, loudness, voicing (normalized autocorrelation peak), pitch height (f0 relative
    to the speaker's median, voiced frames only) and acoustic onsets (rising loudness). Each is mapped to
    an *activation* in [0, 1]: 0 in silence, about 1 at the speaker's loud end.

Encoding model (:func:`make_electrode_model`, :func:`speech_drive`)
    Every electrode gets a **role** from its cortical region (:mod:`edgensd.neural.layouts`): sensorimotor
    and inferior-frontal electrodes *lead* the acoustics (activity 50–200 ms before the sound; IFG
    100–200 ms), superior-temporal (auditory) electrodes *lag* it (50–150 ms after); other electrodes, and a
    difficulty-dependent fraction of the speech-region ones, carry **no speech information**. Lags and tuning
    vary smoothly over the cortex (random Fourier-feature fields with 20–25 mm length scales) plus
    per-electrode jitter, so neighbours are similar but not identical: sensorimotor electrodes favour
    onsets, loudness, voicing and pitch (larynx), auditory electrodes are tuned to a band of the mel
    spectrum that drifts along the gyrus (tonotopy-like) and to onsets. An electrode's drive is its tuned
    mixture of activations convolved with a Gaussian kernel (SD 16–40 ms) centred on its lag.

High-gamma (:func:`highgamma_amplitude`)
    Amplitude ``m(t) = m0 · (1 + g · drive(t)) · exp(slow noise)`` in µV; the gain ``g`` is calibrated per
    electrode so that the expected 70–150 Hz amplitude (including the unmodulated background in that band)
    rises by a target factor in [1.5, 4] during speech (``ratio_range`` of the difficulty); the factor is
    measured afterwards on the features the project's pipeline computes from the raw signal.

Raw signal (:func:`generate_raw`, at ``raw_fs``, generated in chunks with carried filter state, so the
output does not depend on the chunk size; each chunk is computed channel-major, one contiguous row per
electrode)
    per electrode: 1/f^β background (β drawn in [2.1, 3] per electrode: a one-pole low-pass at 1 Hz and
    interleaved pole–zero pairs), alpha (8–12 Hz) and beta (16–25 Hz) resonances (beta desynchronizes in
    speech at sensorimotor sites), high-gamma as band-limited 70–150 Hz noise multiplied by ``m(t)``;
    shared across electrodes with electrode-specific gains: common-mode (reference) noise and mains hum at
    ``line_freq`` with harmonics; bad channels (flat, very noisy, popping).

Features
    ``ecog_alldataset`` is computed from the raw signal by the project's offline high-gamma pipeline
    (:func:`edgensd.neural.highgamma.compute_highgamma`: notch, CAR without bad channels, bad-channel
    detection, 70–150 Hz Hilbert amplitude, 125 Hz, z-scored on the training trials).

Ground truth (``sim_*`` extras in the participant file, :func:`load_ground_truth`)
    role, lag (ms; **negative = neural activity leads the acoustics**), region, tuning weights, kernel SD,
    bad flag and kind, target and measured speech/silence high-gamma ratio, sheet positions and grid index.

Everything is drawn from ``numpy.random.SeedSequence(seed)`` streams: the same seed and configuration give
identical file contents.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from scipy import signal
from scipy.integrate import trapezoid

from edgensd.config import Config, check_choice
from edgensd.log import logger, progress_enabled, use_log_level
from edgensd.neural.knobs import SimulatorKnobs, apply_drive_knobs, frame_gain, knob_seeds, resolve_knobs, trial_gains
from edgensd.neural.layouts import HEMISPHERES, LAYOUT_NAMES, Layout, make_layout
from edgensd.spectrogram import FRAME_RATE, HOP, N_FFT, SAMPLE_RATE, hann_window, mel_filterbank

__all__ = [
    "BAD_KINDS",
    "DIFFICULTIES",
    "KNOB_TRUTH_KEYS",
    "ROLES",
    "AcousticFeatures",
    "DifficultyPreset",
    "ElectrodeModel",
    "GroundTruth",
    "SimulationConfig",
    "SimulationResult",
    "acoustic_features",
    "generate_raw",
    "highgamma_amplitude",
    "iter_power_spectrogram",
    "load_ground_truth",
    "make_electrode_model",
    "measure_speech_ratio",
    "report_path_for",
    "simulate",
    "speech_drive",
    "speech_frames",
    "synthetic_speech",
    "write_report",
    "write_simulation",
]

DIFFICULTIES: tuple[str, ...] = ("easy", "standard", "hard")
ROLES: tuple[str, ...] = ("leading", "lagging", "none")
BAD_KINDS: tuple[str, ...] = ("flat", "noisy", "popping")
N_MEL_BANDS = 16
FEATURE_NAMES: tuple[str, ...] = (
    *(f"mel{i:02d}" for i in range(N_MEL_BANDS)),
    "loudness",
    "voicing",
    "pitch_high",
    "pitch_low",
    "onset",
)
#: Silence around speech frames that a frame needs to count as baseline in :func:`speech_frames`, s.
BASELINE_GUARD_S = 0.35
_TRUTH_PREFIX = "sim_"
_KNOB_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SimulatorKnobs))
#: Ground-truth extras that exist only when a knob is on (:attr:`GroundTruth.knob_truth`).
KNOB_TRUTH_KEYS: tuple[str, ...] = (
    "sim_onset_electrode",
    "sim_onset_frames",
    "sim_trial_gain",
    "sim_articulatory_weight",
    "sim_articulatory_tuning",
    "sim_articulatory_names",
)




# ----------------------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DifficultyPreset:
    """Knobs a difficulty level sets.

    Attributes
    ----------
    silent_fraction : float
        Fraction of sensorimotor / auditory / IFG electrodes that carry no speech information.
    ratio_range : (float, float)
        Range of the per-electrode speech/silence high-gamma amplitude ratio (expected), ×.
    slow_noise_sd : float
        SD of the slow (τ = 0.3 s) log-amplitude fluctuation of high-gamma unrelated to speech.
    bad_per_64 : float
        Bad channels per 64 electrodes (rounded, at least 1).
    background_ratio : (float, float)
        Range of the 70–150 Hz power of the 1/f background relative to the resting high-gamma power.
    """

    silent_fraction: float
    ratio_range: tuple[float, float]
    slow_noise_sd: float
    bad_per_64: float
    background_ratio: tuple[float, float]


PRESETS: dict[str, DifficultyPreset] = {
    "easy": DifficultyPreset(0.05, (2.2, 3.6), 0.10, 1.0, (0.3, 0.6)),
    "standard": DifficultyPreset(0.15, (1.7, 3.2), 0.18, 3.0, (0.5, 1.0)),
    "hard": DifficultyPreset(0.25, (1.5, 2.3), 0.28, 5.0, (0.8, 1.5)),
}


@dataclasses.dataclass
class SimulationConfig(Config):
    """How a participant was simulated (saved as JSON beside the output file).

    Attributes
    ----------
    speech : str
        Speech-only participant file (``edgensd data speech``) whose audio and trials drive the simulation.
    layout : {'ld8x8', 'hb128', 'strip', 'seeg'}
        Electrode layout (:mod:`edgensd.neural.layouts`).
    hemisphere : {'left', 'right'}
    seed : int
        Seed of every random draw.
    raw_fs : float
        Sampling rate of the raw signal, Hz (> 316 Hz, so that 150 Hz lies below 0.95 Nyquist).
    difficulty : {'easy', 'standard', 'hard'}
        Preset of :data:`PRESETS`.
    line_freq : {50.0, 60.0}
        Mains frequency, Hz (harmonics below 0.45 ``raw_fs`` are added).
    max_trials : int or None
        Use only the first this many trials of the speech file (the recording is cut after the last one).
    trial_gap_s : float or None
        If given, trials are re-spaced so at least this much silence (s) precedes each trial (and follows
        the last): a realistic inter-trial interval. ``None`` keeps the speech file's timeline.
    n_bad : int or None
        Number of bad channels; ``None`` uses the difficulty preset.
    placement_jitter : bool
        Grids (``ld8x8``, ``hb128``) are placed with a seeded random rotation (±8°) and shift (±4 mm).
    chunk_s : float
        Longest generation chunk, s (memory only; the output does not depend on it). Chunks are also capped
        at 2**21 samples × electrodes.
    pipeline : {'offline', 'streaming'}
        High-gamma pipeline of the stored features: the zero-phase offline one, or the causal streaming one
        that the runtime computes from a live raw stream ("train as you deploy"). The raw signal, ground
        truth and everything else do not depend on it.
    nonlinearity : {'linear', 'mild', 'strong'}
        Preset of the simulator knobs (:data:`edgensd.neural.knobs.PRESET_KNOBS`): ``linear`` is the base
        encoding model (every knob off, the same output bit for bit as before the knobs existed); ``mild``
        and ``strong`` turn on saturating tuning, onset transients, gain drift and articulatory drive.
    saturation_c50, saturation_exponent : float or None
        Naka–Rushton saturation of the drive (semi-saturation constant in units of the mean speech drive,
        0 = off; exponent in [1, 4]). ``None``: the preset's value. Sources in :mod:`edgensd.neural.knobs`.
    onset_fraction, onset_silence_s : float or None
        Fraction of the speech-carrying auditory electrodes (the most posterior) that respond with onset
        transients, and the silence (s) that must precede an onset. ``None``: the preset's value.
    gain_drift_sd, gain_drift_trials : float or None
        SD of the per-electrode log gain drifting across trials (0 = off) and its correlation length in
        trials. ``None``: the preset's value.
    articulatory_weight : float or None
        Share of sensorimotor electrodes' drive from articulator proxies computed from the acoustics
        (0 = acoustic only). ``None``: the preset's value.
    """

    speech: str = ""
    layout: str = "ld8x8"
    hemisphere: str = "left"
    seed: int = 0
    raw_fs: float = 1000.0
    difficulty: str = "standard"
    line_freq: float = 60.0
    max_trials: int | None = None
    trial_gap_s: float | None = None
    n_bad: int | None = None
    placement_jitter: bool = True
    chunk_s: float = 60.0
    pipeline: str = "offline"
    nonlinearity: str = "linear"
    saturation_c50: float | None = None
    saturation_exponent: float | None = None
    onset_fraction: float | None = None
    onset_silence_s: float | None = None
    gain_drift_sd: float | None = None
    gain_drift_trials: float | None = None
    articulatory_weight: float | None = None

    def __post_init__(self) -> None:
        check_choice("layout", self.layout, LAYOUT_NAMES)
        check_choice("pipeline", self.pipeline, ("offline", "streaming"))
        check_choice("hemisphere", self.hemisphere, HEMISPHERES)
        check_choice("difficulty", self.difficulty, DIFFICULTIES)
        self.line_freq = float(self.line_freq)
        check_choice("line_freq", self.line_freq, (50.0, 60.0))
        self.raw_fs = float(self.raw_fs)
        if not self.raw_fs > 150.0 / 0.475:
            raise ValueError(f"raw_fs must be above {150.0 / 0.475:.0f} Hz for the 70-150 Hz band, got {self.raw_fs}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if self.max_trials is not None and (not isinstance(self.max_trials, int) or self.max_trials < 1):
            raise ValueError(f"max_trials must be a positive int or None, got {self.max_trials!r}")
        if self.trial_gap_s is not None and not 0.0 <= float(self.trial_gap_s) <= 30.0:
            raise ValueError(f"trial_gap_s must be in [0, 30] s or None, got {self.trial_gap_s!r}")
        if self.n_bad is not None and (not isinstance(self.n_bad, int) or self.n_bad < 0):
            raise ValueError(f"n_bad must be a non-negative int or None, got {self.n_bad!r}")
        if not self.chunk_s > 0:
            raise ValueError(f"chunk_s must be positive, got {self.chunk_s}")
        self.knobs  # noqa: B018 - validates the preset name and every knob value (errors name the field)

    @property
    def preset(self) -> DifficultyPreset:
        """The :class:`DifficultyPreset` of ``difficulty``."""
        return PRESETS[self.difficulty]

    @property
    def knobs(self) -> SimulatorKnobs:
        """The resolved :class:`~edgensd.neural.knobs.SimulatorKnobs`: the ``nonlinearity`` preset with every
        knob given here (not ``None``) applied."""
        return resolve_knobs(self.nonlinearity, **{k: getattr(self, k) for k in _KNOB_FIELDS})


# ----------------------------------------------------------------------------------------------------------
# acoustic features
# ----------------------------------------------------------------------------------------------------------


def iter_power_spectrogram(
    audio: np.ndarray, chunk_frames: int = 4096, with_autocorr: bool = False
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """Power spectrogram of :mod:`edgensd.spectrogram` (same frames and scale), computed chunk by chunk.

    Parameters
    ----------
    audio : ndarray, shape (n_samples,)
        16 kHz mono audio.
    chunk_frames : int
        Frames per chunk (memory: about ``chunk_frames × 4 kB``).
    with_autocorr : bool
        Also return each frame's (windowed, circular) autocorrelation, lags 0–255 samples.

    Yields
    ------
    start : int
        Index of the chunk's first frame.
    power : ndarray, float32, shape (n, 256)
        ``|X|² / Σw²`` as :func:`edgensd.spectrogram.power_spectrogram`.
    autocorr : ndarray, float32, shape (n, 256), or None
        Autocorrelation normalized by lag 0 (1 at lag 0; 0 for silent frames).
    """
    from scipy import fft as sfft

    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"audio must be 1-D (mono), got shape {x.shape}")
    n_frames = max(1, -(-x.shape[0] // HOP))
    half = N_FFT // 2
    padded = np.zeros(half + n_frames * HOP + N_FFT, dtype=np.float32)
    padded[half : half + x.shape[0]] = x
    win = hann_window().astype(np.float32)
    norm = float(np.sum(hann_window() ** 2))
    frames_all = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    for a in range(0, n_frames, chunk_frames):
        b = min(n_frames, a + chunk_frames)
        spec = sfft.rfft(frames_all[a:b] * win, n=N_FFT, axis=-1)
        pw = spec.real**2 + spec.imag**2
        ac = None
        if with_autocorr:
            ac = sfft.irfft(pw, n=N_FFT, axis=-1)[:, : N_FFT // 2 + 1]
            ac = (ac / np.maximum(ac[:, :1], 1e-20)).astype(np.float32)
            ac[pw.sum(axis=1) <= 0] = 0.0
        yield a, (pw / norm).astype(np.float32), ac


@dataclasses.dataclass
class AcousticFeatures:
    """Frame-level acoustic features of a recording (125 Hz).

    Attributes
    ----------
    activations : ndarray, float32, shape (n_frames, len(names))
        Features mapped to [0, 1] (0 in silence), the input of the encoding model.
    names : tuple of str
        :data:`FEATURE_NAMES`.
    loudness_db : ndarray, float32, shape (n_frames,)
        Mean STFT power in dB (scale of :mod:`edgensd.spectrogram`).
    mel_db : ndarray, float32, shape (n_frames, 16)
        Log power of 16 mel band groups (8 of the 128 mel bands each), dB.
    f0_hz : ndarray, float32, shape (n_frames,)
        Autocorrelation f0 estimate in Hz (0 where unvoiced).
    voicing : ndarray, float32, shape (n_frames,)
        Normalized autocorrelation peak in [0, 1].
    speech_threshold_db : float
        Loudness above which a frame counts as speech (:func:`speech_frames`).
    """

    activations: np.ndarray
    names: tuple[str, ...]
    loudness_db: np.ndarray
    mel_db: np.ndarray
    f0_hz: np.ndarray
    voicing: np.ndarray
    speech_threshold_db: float

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return int(self.loudness_db.shape[0])

    @property
    def is_speech(self) -> np.ndarray:
        """Boolean speech mask, shape (n_frames,): loudness above ``speech_threshold_db``."""
        return self.loudness_db > self.speech_threshold_db


def acoustic_features(
    audio: np.ndarray,
    f0_range_hz: tuple[float, float] = (90.0, 420.0),
    chunk_frames: int = 4096,
    verbose: bool | str | int | None = None,
) -> AcousticFeatures:
    """Acoustic features of speech on the 125 Hz frame clock (numpy/scipy only).

    Parameters
    ----------
    audio : ndarray, shape (n_samples,)
        16 kHz mono audio in [-1, 1].
    f0_range_hz : (float, float)
        Pitch search range, Hz (the autocorrelation is searched between the corresponding lags).
    chunk_frames : int
        Frames analysed at a time (memory only).
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    AcousticFeatures
        ``ceil(n_samples / 128)`` frames, frame ``t`` centred on sample ``128 t``.
    """
    with use_log_level(verbose):
        x = np.asarray(audio, dtype=np.float32)
        n_frames = max(1, -(-x.shape[0] // HOP))
        fb = mel_filterbank()  # (128, 256)
        groups = fb.reshape(N_MEL_BANDS, -1, fb.shape[1]).sum(axis=1) / (fb.shape[0] // N_MEL_BANDS)
        lag_lo = int(math.floor(SAMPLE_RATE / f0_range_hz[1]))
        lag_hi = int(math.ceil(SAMPLE_RATE / f0_range_hz[0]))
        if not 2 <= lag_lo < lag_hi <= N_FFT // 2:
            raise ValueError(
                f"f0_range_hz must lie within ({SAMPLE_RATE / (N_FFT // 2):.0f}, 8000) Hz, got {f0_range_hz}"
            )
        mel_db = np.empty((n_frames, N_MEL_BANDS), np.float32)
        loud_db = np.empty(n_frames, np.float32)
        voicing = np.empty(n_frames, np.float32)
        lag_best = np.empty(n_frames, np.float32)
        for a, pw, ac in iter_power_spectrogram(x, chunk_frames, with_autocorr=True):
            b = a + pw.shape[0]
            mel_db[a:b] = 10.0 * np.log10(np.maximum(pw @ groups.T, 1e-12))
            loud_db[a:b] = 10.0 * np.log10(np.maximum(pw.mean(axis=1), 1e-12))
            seg = ac[:, lag_lo : lag_hi + 1]
            k = np.argmax(seg, axis=1)
            voicing[a:b] = np.clip(seg[np.arange(seg.shape[0]), k], 0.0, 1.0)
            lag_best[a:b] = lag_lo + k
        thr = float(np.percentile(loud_db, 95) - 40.0)
        speech = loud_db > thr
        voiced = speech & (voicing > 0.5)
        f0 = np.where(voiced, SAMPLE_RATE / np.maximum(lag_best, 1.0), 0.0).astype(np.float32)
        med_f0 = float(np.median(f0[voiced])) if voiced.any() else 200.0

        def activation(db: np.ndarray) -> np.ndarray:
            ref = db[speech] if speech.sum() > 10 else db
            lo = float(np.percentile(ref, 10)) - 3.0
            hi = float(np.percentile(ref, 99))
            return np.clip((db - lo) / max(hi - lo, 1e-3), 0.0, 1.0)

        loud_act = activation(loud_db)
        acts = np.empty((n_frames, len(FEATURE_NAMES)), np.float32)
        for i in range(N_MEL_BANDS):
            acts[:, i] = activation(mel_db[:, i])
        acts[:, N_MEL_BANDS] = loud_act
        v = np.clip((voicing - 0.3) / 0.6, 0.0, 1.0) * loud_act * speech
        acts[:, N_MEL_BANDS + 1] = v
        octave = np.where(voiced, np.log2(np.maximum(f0, 1.0) / med_f0), 0.0)
        acts[:, N_MEL_BANDS + 2] = v * np.clip(0.5 + octave, 0.0, 1.0)
        acts[:, N_MEL_BANDS + 3] = v * np.clip(0.5 - octave, 0.0, 1.0)
        smooth = signal.lfilter([0.3], [1.0, -0.7], loud_act)
        rise = np.diff(smooth, prepend=smooth[:1])
        scale = float(np.percentile(rise[rise > 0], 95)) if np.any(rise > 0) else 1.0
        acts[:, N_MEL_BANDS + 4] = np.clip(rise / max(scale, 1e-6), 0.0, 1.0)
        logger.debug(
            "acoustic features: %d frames, %.1f%% speech, median f0 %.0f Hz",
            n_frames,
            100 * speech.mean(),
            med_f0,
        )
        return AcousticFeatures(
            activations=acts,
            names=FEATURE_NAMES,
            loudness_db=loud_db,
            mel_db=mel_db,
            f0_hz=f0,
            voicing=voicing,
            speech_threshold_db=thr,
        )


def speech_frames(
    is_speech: np.ndarray, guard_s: float = BASELINE_GUARD_S, edge_s: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Speech and baseline frame masks for speech/silence comparisons.

    Parameters
    ----------
    is_speech : ndarray of bool, shape (n_frames,)
        Frames with audible speech.
    guard_s : float
        A baseline frame lies at least this far (s) from every speech frame, so that neural activity
        leading or lagging the sound does not count as baseline.
    edge_s : float
        Frames this close (s) to the start or end of the recording are left out of both masks (filter edges).

    Returns
    -------
    speech, baseline : ndarray of bool, shape (n_frames,)
    """
    from scipy import ndimage

    s = np.asarray(is_speech, dtype=bool)
    k = int(round(guard_s * FRAME_RATE))
    near = ndimage.binary_dilation(s, iterations=k) if k > 0 and s.any() else s.copy()
    edge = np.zeros_like(s)
    e = int(round(edge_s * FRAME_RATE))
    edge[:e] = True
    edge[max(0, len(s) - e) :] = True
    return s & ~edge, ~near & ~edge


def measure_speech_ratio(envelope: np.ndarray, is_speech: np.ndarray, guard_s: float = BASELINE_GUARD_S) -> np.ndarray:
    """Speech/silence high-gamma amplitude ratio per electrode.

    Parameters
    ----------
    envelope : ndarray, shape (n_frames, n_electrodes)
        Un-normalized high-gamma amplitude at 125 Hz (e.g. ``HighGammaResult.envelope``).
    is_speech : ndarray of bool, shape (n_frames,)
        Audible-speech frames (:attr:`AcousticFeatures.is_speech`).
    guard_s : float
        See :func:`speech_frames`.

    Returns
    -------
    ndarray, float64, shape (n_electrodes,)
        Mean amplitude over speech frames divided by mean amplitude over baseline frames; NaN where the
        baseline amplitude is 0. All NaN (with a warning) when fewer than 50 baseline frames exist.
    """
    env = np.asarray(envelope)
    if env.ndim != 2 or env.shape[0] != len(is_speech):
        raise ValueError(f"envelope must have shape (n_frames={len(is_speech)}, n_electrodes), got {env.shape}")
    sp, base = speech_frames(is_speech, guard_s)
    if base.sum() < 50 or sp.sum() < 50:
        logger.warning(
            "speech/silence ratio: only %d baseline and %d speech frames; not measured", base.sum(), sp.sum()
        )
        return np.full(env.shape[1], np.nan)
    num = env[sp].mean(axis=0, dtype=np.float64)  # float64 sums without a float64 copy of the envelope
    den = env[base].mean(axis=0, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def synthetic_speech(
    n_trials: int = 12,
    seed: int = 0,
    trial_s: tuple[float, float] = (0.8, 1.6),
    gap_s: float = 1.0,
):
    """A speech-only participant with speech-like synthetic audio (for tests and demos without real speech).

    Each trial is a run of 150–250 ms syllables: a harmonic voice source (f0 170–260 Hz, falling within each
    syllable) through two formant resonators drawn per syllable (F1 300–900 Hz, F2 900–2500 Hz), half of them
    preceded by a 40–80 ms fricative noise burst (2–6 kHz), under a raised-cosine envelope. Trials are
    separated by ``gap_s`` of silence. Real speech (``edgensd data speech``) should be preferred wherever it
    is installed.

    Parameters
    ----------
    n_trials : int
    seed : int
    trial_s : (float, float)
        Range of trial durations, s.
    gap_s : float
        Silence before each trial and after the last, s.

    Returns
    -------
    edgensd.data.participant.Participant
        Speech-only: 16 kHz audio, one trial per run of syllables, the last quarter of the trials held out.
    """
    from edgensd.data.participant import Participant

    rng = np.random.default_rng(seed)
    fs = SAMPLE_RATE
    gap = int(math.ceil(gap_s * FRAME_RATE))
    pieces, start, end = [], [], []
    pos = 0
    for _ in range(n_trials):
        pieces.append(np.zeros(gap * HOP, np.float32))
        pos += gap
        dur = rng.uniform(*trial_s)
        n_frames = int(math.ceil(dur * FRAME_RATE))
        trial = np.zeros(n_frames * HOP)
        t0 = 0
        while t0 < trial.size - int(0.15 * fs):
            n = int(rng.uniform(0.15, 0.25) * fs)
            n = min(n, trial.size - t0)
            t = np.arange(n) / fs
            f0 = rng.uniform(170.0, 260.0) * (1.0 - 0.15 * t / max(t[-1], 1e-9))
            phase = 2 * np.pi * np.cumsum(f0) / fs
            src = sum(np.sin(h * phase) / h for h in range(1, 16))
            for fc, bw in ((rng.uniform(300, 900), 90.0), (rng.uniform(900, 2500), 140.0)):
                r = math.exp(-math.pi * bw / fs)
                src = signal.lfilter([1 - r], [1.0, -2 * r * math.cos(2 * math.pi * fc / fs), r * r], src)
            syl = src * np.sin(np.pi * np.arange(n) / n) ** 2 * rng.uniform(0.3, 1.0)
            if rng.random() < 0.5:
                k = int(rng.uniform(0.04, 0.08) * fs)
                burst = signal.sosfilt(
                    signal.butter(4, (2000, 6000), btype="bandpass", output="sos", fs=fs), rng.normal(size=k)
                )
                syl[:k] += 0.3 * burst * np.hanning(k)
            trial[t0 : t0 + n] += syl
            t0 += n + int(rng.uniform(0.0, 0.05) * fs)
        pieces.append(trial.astype(np.float32))
        start.append(pos)
        pos += n_frames
        end.append(pos)
    pieces.append(np.zeros(gap * HOP, np.float32))
    audio = np.concatenate(pieces)
    audio = (0.5 * audio / np.max(np.abs(audio))).astype(np.float32)
    n_test = max(1, n_trials // 4)
    return Participant(
        audio=audio,
        start=np.array(start),
        end=np.array(end),
        labels=[f"synthetic trial {i}" for i in range(n_trials)],
        test_trials=np.arange(n_trials - n_test, n_trials),
        attrs={"source": "edgensd.neural.simulate.synthetic_speech", "seed": int(seed)},
    )


# ----------------------------------------------------------------------------------------------------------
# encoding model (ground truth)
# ----------------------------------------------------------------------------------------------------------


def _smooth_field(rng: np.random.Generator, positions_mm: np.ndarray, length_mm: float, n: int = 1) -> np.ndarray:
    """``n`` smooth unit-variance random fields over the sheet (random Fourier features), shape (E, n)."""
    m = 48
    w = rng.normal(0.0, 1.0 / length_mm, size=(n, m, 2))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, m))
    p = np.asarray(positions_mm, dtype=np.float64)
    vals = np.cos(np.einsum("ed,nmd->enm", p, w) + phase[None]) * math.sqrt(2.0 / m)
    return vals.sum(axis=2)


def _phi(z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(z)


@dataclasses.dataclass
class ElectrodeModel:
    """Per-electrode ground truth of the encoding model and of the raw-signal model.

    Attributes
    ----------
    role : ndarray of str, shape (E,)
        ``'leading'``, ``'lagging'`` or ``'none'`` (no speech information).
    lag_ms : ndarray, float64, shape (E,)
        Centre of the response kernel relative to the acoustics, ms: **negative = neural activity leads
        the sound**, positive = it follows; 0 for ``'none'``.
    kernel_sd_ms : ndarray, float64, shape (E,)
        SD of the Gaussian response kernel, ms.
    tuning : ndarray, float64, shape (E, n_features)
        Non-negative weights over :data:`FEATURE_NAMES`, each row summing to 1 (0 for ``'none'``).
    region : ndarray of str, shape (E,)
    ratio_target : ndarray, float64, shape (E,)
        Expected speech/silence high-gamma amplitude ratio (1 for ``'none'``).
    hg_rest_uv : ndarray, float64, shape (E,)
        Resting high-gamma amplitude (RMS of the 70–150 Hz component), µV.
    background_ratio : ndarray, float64, shape (E,)
        70–150 Hz power of the 1/f background relative to ``hg_rest_uv²``.
    aperiodic_exponent : ndarray, float64, shape (E,)
        β of the 1/f^β background power spectrum.
    alpha_hz, beta_hz : ndarray, float64, shape (E,)
        Peak frequencies of the alpha and beta resonances, Hz.
    beta_erd : ndarray, float64, shape (E,)
        Fractional drop of beta amplitude at full speech drive (sensorimotor electrodes).
    bad_kind : ndarray of str, shape (E,)
        ``''`` for good channels, else one of :data:`BAD_KINDS`.
    line_gain : ndarray, float64, shape (E,)
        Mains hum amplitude at the fundamental, µV.
    common_gain : ndarray, float64, shape (E,)
        Gain of the common-mode noise (about 1).
    """

    role: np.ndarray
    lag_ms: np.ndarray
    kernel_sd_ms: np.ndarray
    tuning: np.ndarray
    region: np.ndarray
    ratio_target: np.ndarray
    hg_rest_uv: np.ndarray
    background_ratio: np.ndarray
    aperiodic_exponent: np.ndarray
    alpha_hz: np.ndarray
    beta_hz: np.ndarray
    beta_erd: np.ndarray
    bad_kind: np.ndarray
    line_gain: np.ndarray
    common_gain: np.ndarray

    @property
    def n_electrodes(self) -> int:
        """Number of electrodes."""
        return int(self.role.shape[0])

    @property
    def bad(self) -> np.ndarray:
        """Bad-channel mask, shape (E,)."""
        return self.bad_kind != ""

    @property
    def carries_info(self) -> np.ndarray:
        """Electrodes whose recording carries speech information: a role other than ``'none'`` and good."""
        return (self.role != "none") & ~self.bad


def make_electrode_model(
    layout: Layout,
    rng: np.random.Generator,
    preset: DifficultyPreset,
    n_bad: int | None = None,
    line_uv: float = 25.0,
) -> ElectrodeModel:
    """Draw every electrode's role, lag, tuning and signal properties.

    Parameters
    ----------
    layout : Layout
        Positions and regions.
    rng : numpy.random.Generator
    preset : DifficultyPreset
    n_bad : int, optional
        Bad channels; default ``max(1, round(bad_per_64 · E / 64))``.
    line_uv : float
        Typical mains hum amplitude at the fundamental, µV.

    Returns
    -------
    ElectrodeModel
    """
    e = layout.n_electrodes
    pos = layout.positions_mm
    region = np.array(layout.regions)
    k = len(FEATURE_NAMES)
    f_lag, f_sd, f_tono, f_amp, f_mix = (_smooth_field(rng, pos, ln)[:, 0] for ln in (22.0, 25.0, 30.0, 20.0, 20.0))
    f_tuning = _smooth_field(rng, pos, 20.0, n=k)

    role = np.full(e, "none", dtype=object)
    role[np.isin(region, ["sensorimotor", "ifg"])] = "leading"
    role[region == "auditory"] = "lagging"
    speech_region = np.flatnonzero(role != "none")
    n_silent = int(round(preset.silent_fraction * speech_region.size))
    if n_silent:
        role[rng.choice(speech_region, size=n_silent, replace=False)] = "none"

    jitter = rng.normal(0.0, 8.0, e)
    lag = np.zeros(e)
    u = _phi(1.5 * f_lag)
    sm = region == "sensorimotor"
    lag[sm] = -np.clip(50.0 + 150.0 * u[sm] + jitter[sm], 50.0, 200.0)
    ifg = region == "ifg"
    lag[ifg] = -np.clip(100.0 + 100.0 * u[ifg] + jitter[ifg], 100.0, 200.0)
    aud = region == "auditory"
    lag[aud] = np.clip(50.0 + 100.0 * u[aud] + jitter[aud], 50.0, 150.0)
    lag[role == "none"] = 0.0
    kernel_sd = 16.0 + 24.0 * _phi(f_sd)

    # tuning: region prior + smooth field + electrode noise, through a softmax
    names = np.array(FEATURE_NAMES)
    prior = np.zeros((e, k))
    idx = {n: i for i, n in enumerate(names)}
    band_centre = (N_MEL_BANDS - 1) * _phi(f_tono)  # tonotopy-like drift along the cortex
    bands = np.arange(N_MEL_BANDS)
    band_pref = -0.5 * ((bands[None, :] - band_centre[:, None]) / 2.5) ** 2
    prior[:, :N_MEL_BANDS] = np.where(aud[:, None], 1.5 + 2.5 * band_pref, -0.5 + 1.0 * band_pref)
    prior[:, idx["loudness"]] = np.where(aud, 1.0, 1.2)
    prior[:, idx["onset"]] = np.where(aud, 1.2, 1.5)
    prior[:, idx["voicing"]] = np.where(sm, 1.6, 0.2)
    prior[:, idx["pitch_high"]] = np.where(sm, 0.8 + f_mix, 0.0)
    prior[:, idx["pitch_low"]] = np.where(sm, 0.8 - f_mix, 0.0)
    logits = prior + 0.9 * f_tuning + 0.5 * rng.normal(size=(e, k))
    tuning = np.exp(logits - logits.max(axis=1, keepdims=True))
    tuning /= tuning.sum(axis=1, keepdims=True)
    tuning[role == "none"] = 0.0

    lo, hi = preset.ratio_range
    ratio = lo + (hi - lo) * _phi(0.8 * f_amp + 0.6 * rng.normal(size=e))
    ratio[role == "none"] = 1.0
    hg_rest = 3.0 * np.exp(0.2 * rng.normal(size=e))
    b_lo, b_hi = preset.background_ratio
    bg_ratio = rng.uniform(b_lo, b_hi, e)
    exponent = rng.uniform(2.1, 3.0, e)
    alpha_hz = rng.uniform(8.0, 12.0, e)
    beta_hz = rng.uniform(16.0, 25.0, e)
    beta_erd = np.where(sm & (role != "none"), rng.uniform(0.2, 0.5, e), 0.0)

    if n_bad is None:
        n_bad = max(1, int(round(preset.bad_per_64 * e / 64.0)))
    if n_bad > e:
        raise ValueError(f"n_bad={n_bad} exceeds the layout's {e} electrodes")
    bad_kind = np.full(e, "", dtype=object)
    if n_bad:
        chosen = rng.choice(e, size=n_bad, replace=False)
        kinds = [BAD_KINDS[i % len(BAD_KINDS)] for i in range(n_bad)]
        bad_kind[chosen] = kinds
    line_gain = line_uv * np.exp(0.4 * rng.normal(size=e))
    common_gain = 1.0 + 0.03 * rng.normal(size=e)
    return ElectrodeModel(
        role=role.astype(str),
        lag_ms=lag,
        kernel_sd_ms=kernel_sd,
        tuning=tuning,
        region=region.astype(str),
        ratio_target=ratio,
        hg_rest_uv=hg_rest,
        background_ratio=bg_ratio,
        aperiodic_exponent=exponent,
        alpha_hz=alpha_hz,
        beta_hz=beta_hz,
        beta_erd=beta_erd,
        bad_kind=bad_kind.astype(str),
        line_gain=line_gain,
        common_gain=common_gain,
    )


def speech_drive(activations: np.ndarray, model: ElectrodeModel, is_speech: np.ndarray | None = None) -> np.ndarray:
    """Each electrode's speech drive: tuned mixture of activations, convolved with its lagged kernel.

    ``drive_e(t) = Σ_τ h_e(τ) Σ_k w_ek a_k(t − τ)`` with ``h_e`` a Gaussian (SD ``kernel_sd_ms``) centred
    on ``τ = lag_ms`` (a negative lag uses future acoustics: the electrode leads the sound).

    Parameters
    ----------
    activations : ndarray, shape (n_frames, n_features)
        :attr:`AcousticFeatures.activations`.
    model : ElectrodeModel
    is_speech : ndarray of bool, shape (n_frames,), optional
        If given, each drive is scaled to mean 1 over these frames.

    Returns
    -------
    ndarray, float32, shape (n_frames, E)
        Non-negative; 0 for electrodes without speech information.
    """
    a = np.asarray(activations, dtype=np.float32)
    mix = a @ model.tuning.T.astype(np.float32)  # (T, E)
    frame_ms = 1000.0 / FRAME_RATE
    reach = float(np.max(np.abs(model.lag_ms) + 3.0 * model.kernel_sd_ms))
    half = int(math.ceil(reach / frame_ms))
    taus = np.arange(-half, half + 1) * frame_ms  # kernel index j ↔ lag tau_j
    h = np.exp(-0.5 * ((taus[:, None] - model.lag_ms[None, :]) / model.kernel_sd_ms[None, :]) ** 2)
    h /= h.sum(axis=0, keepdims=True)
    # out[t] = Σ_j h[j] mix[t - tau_j]  → full convolution, output index t + half
    full = signal.fftconvolve(mix, h.astype(np.float32), mode="full", axes=0)
    drive = np.clip(full[half : half + a.shape[0]], 0.0, None)
    drive[:, model.role == "none"] = 0.0
    if is_speech is not None and np.any(is_speech):
        m = drive[np.asarray(is_speech, bool)].mean(axis=0)
        drive = drive / np.where(m > 0, m, 1.0)
    return drive.astype(np.float32)


def _ar1(rng: np.random.Generator, n: int, e: int, tau_frames: float) -> np.ndarray:
    """Unit-variance AR(1) noise, shape (n, e), time constant ``tau_frames``."""
    a = math.exp(-1.0 / tau_frames)
    w = rng.standard_normal((n, e)) * math.sqrt(1 - a * a)
    zi = rng.standard_normal((1, e))
    return signal.lfilter([1.0], [1.0, -a], w, axis=0, zi=zi * a)[0]


def highgamma_amplitude(
    drive: np.ndarray,
    model: ElectrodeModel,
    rng: np.random.Generator,
    preset: DifficultyPreset,
    is_speech: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """High-gamma amplitude of every electrode on the 125 Hz clock, gains calibrated to the target ratios.

    For gain ``g`` the expected 70–150 Hz amplitude is ``sqrt(m(t)² + B)`` with
    ``m(t) = m0 (1 + g d(t)) ν(t)`` (``ν`` the slow noise) and ``B = background_ratio · m0²`` the
    unmodulated background power in the band; ``g`` is found by bisection so that its mean over speech
    frames divided by its mean over baseline frames (:func:`speech_frames`) equals ``ratio_target``.

    Parameters
    ----------
    drive : ndarray, shape (n_frames, E)
        :func:`speech_drive` output.
    model : ElectrodeModel
    rng : numpy.random.Generator
        For the slow noise.
    preset : DifficultyPreset
    is_speech : ndarray of bool, shape (n_frames,)

    Returns
    -------
    amplitude : ndarray, float32, shape (n_frames, E)
        ``m(t)``, RMS µV of the high-gamma component.
    gain : ndarray, float64, shape (E,)
        The calibrated ``g``.
    """
    n, e = drive.shape
    slow = np.exp(preset.slow_noise_sd * _ar1(rng, n, e, 0.3 * FRAME_RATE) - 0.5 * preset.slow_noise_sd**2)
    m0 = model.hg_rest_uv
    bg = model.background_ratio * m0**2
    sp, base = speech_frames(is_speech)
    gain = np.zeros(e)
    cols = np.flatnonzero(model.role != "none")
    if sp.sum() >= 10 and base.sum() >= 10:
        # every 3rd frame is plenty for a mean; bisection on all electrodes at once
        d_s, d_b = drive[sp][::3][:, cols].astype(np.float64), drive[base][::3][:, cols].astype(np.float64)
        n_s, n_b = slow[sp][::3][:, cols], slow[base][::3][:, cols]
        m0c, bgc, target = m0[cols], bg[cols], model.ratio_target[cols]

        def ratio(g: np.ndarray) -> np.ndarray:
            num = np.sqrt((m0c * (1 + g * d_s) * n_s) ** 2 + bgc).mean(axis=0)
            den = np.sqrt((m0c * (1 + g * d_b) * n_b) ** 2 + bgc).mean(axis=0)
            return num / den

        lo, hi = np.zeros(cols.size), np.ones(cols.size)
        for _ in range(12):
            low = ratio(hi) < target
            if not low.any():
                break
            hi = np.where(low, 2 * hi, hi)
        for _ in range(30):
            mid = 0.5 * (lo + hi)
            below = ratio(mid) < target
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        gain[cols] = 0.5 * (lo + hi)
    else:
        logger.warning(
            "only %d speech and %d baseline frames: high-gamma gains not calibrated (gain 1.5); "
            "set trial_gap_s for silence between trials",
            sp.sum(),
            base.sum(),
        )
        gain[cols] = 1.5
    amp = m0[None, :] * (1.0 + gain[None, :] * drive) * slow
    return amp.astype(np.float32), gain


# ----------------------------------------------------------------------------------------------------------
# raw signal
# ----------------------------------------------------------------------------------------------------------


def _aperiodic_sos(exponent: float, fs: float) -> np.ndarray:
    """Filter turning white noise into 1/f^exponent power between ~1 Hz and ~0.4 fs (SOS).

    A one-pole low-pass at 0.3 Hz gives 1/f² above it; pole–zero pairs spaced half a decade apart from
    0.5 Hz, each zero ``10^(α/2)`` above its pole (α = (exponent − 2) / 2), add the remaining slope.
    """
    alpha = (exponent - 2.0) / 2.0  # extra amplitude slope beyond the one-pole's 1/f
    zeros, poles = [], [-2 * np.pi * 0.3]
    spacing = 0.5  # decades between extra poles
    f = 0.5
    while f < 0.4 * fs:
        poles.append(-2 * np.pi * f)
        zeros.append(-2 * np.pi * f * 10 ** (alpha * spacing))
        f *= 10**spacing
    z, p, k = signal.bilinear_zpk(np.array(zeros), np.array(poles), 1.0, fs)
    sos = signal.zpk2sos(z, p, k)
    _, h = signal.sosfreqz(sos, worN=[10.0], fs=fs)
    sos[0, :3] /= abs(h[0])  # unit gain at 10 Hz
    return sos


def _band_power(sos: np.ndarray, fs: float, band: tuple[float, float]) -> float:
    """Power in ``band`` (Hz) of unit-variance white noise through ``sos``."""
    f = np.linspace(band[0], band[1], 161)
    _, h = signal.sosfreqz(sos, worN=f, fs=fs)
    return float(trapezoid(np.abs(h) ** 2, f) * 2.0 / fs)


def _white_variance(sos: np.ndarray, fs: float) -> float:
    """Variance of unit-variance white noise through ``sos`` (sum of the squared impulse response)."""
    imp = np.zeros(int(20 * fs))
    imp[0] = 1.0
    return float(np.sum(signal.sosfilt(sos, imp) ** 2))


def _psd_at(sos: np.ndarray, fs: float, f_hz: float) -> float:
    _, h = signal.sosfreqz(sos, worN=[f_hz], fs=fs)
    return float(abs(h[0]) ** 2 * 2.0 / fs)


def _frame_interp(values: np.ndarray, n0: int, n: int, fs: float) -> np.ndarray:
    """Linear interpolation of 125 Hz frame values at raw samples ``n0 … n0 + n - 1``, channel-major.

    Parameters
    ----------
    values : ndarray, shape (n_frames, E)
        Frame values (float32 in the simulator); only the frames the samples need are read (and transposed).
    n0, n : int
        First raw sample and number of samples.
    fs : float
        Raw sampling rate, Hz.

    Returns
    -------
    ndarray, shape (E, n)
        float32 for float32 values.
    """
    pos = (np.arange(n0, n0 + n, dtype=np.float64) * FRAME_RATE) / fs
    i0 = np.minimum(np.floor(pos).astype(np.int64), values.shape[0] - 1)
    i1 = np.minimum(i0 + 1, values.shape[0] - 1)
    frac = (pos - i0).astype(np.float32)
    lo = int(i0[0])
    sub = np.ascontiguousarray(values[lo : int(i1[-1]) + 1].T)  # (E, frames the chunk spans)
    return sub[:, i0 - lo] * (1.0 - frac) + sub[:, i1 - lo] * frac


def _to_channel_major(x: np.ndarray, dtype=np.float64, tile: int = 1 << 13) -> np.ndarray:
    """Contiguous ``x.T`` (shape (E, n)) cast to ``dtype``, copied ``tile`` rows at a time (cache friendly)."""
    out = np.empty((x.shape[1], x.shape[0]), dtype=dtype)
    for a in range(0, x.shape[0], tile):
        out[:, a : a + tile] = x[a : a + tile].T
    return out


def _store_time_major(out: np.ndarray, x_t: np.ndarray, tile: int = 1 << 13) -> None:
    """``out[:] = x_t.T`` (cast to ``out.dtype``), ``tile`` rows at a time."""
    for a in range(0, out.shape[0], tile):
        out[a : a + tile] = x_t[:, a : a + tile].T


def generate_raw(
    amplitude: np.ndarray,
    drive: np.ndarray,
    model: ElectrodeModel,
    n_raw: int,
    fs: float,
    line_freq: float,
    seed_sequence: np.random.SeedSequence,
    chunk_s: float = 60.0,
) -> np.ndarray:
    """Generate the raw signal, µV, chunk by chunk (identical output for any ``chunk_s``).

    Parameters
    ----------
    amplitude : ndarray, shape (n_frames, E)
        High-gamma amplitude ``m(t)`` (:func:`highgamma_amplitude`), µV.
    drive : ndarray, shape (n_frames, E)
        Speech drive (for the beta desynchronization).
    model : ElectrodeModel
    n_raw : int
        Number of raw samples.
    fs : float
        Raw sampling rate, Hz.
    line_freq : float
        Mains frequency, Hz.
    seed_sequence : numpy.random.SeedSequence
        Parent of the noise streams.
    chunk_s : float
        Longest chunk, s; chunks are also capped at ``2**21 // E`` samples (16 MiB per float64 temporary).

    Returns
    -------
    ndarray, float32, shape (n_raw, E)
    """
    from tqdm import tqdm

    e = model.n_electrodes
    ss = seed_sequence.spawn(5)
    rng_bg, rng_hg, rng_cm, rng_bad, rng_line = (np.random.default_rng(s) for s in ss)
    bad = model.bad_kind

    # per-electrode background: 1/f^β plus alpha and beta resonances (4-pole band-passes, so their skirts stay
    # out of the high-gamma band); all three filter the same white noise, so the 70-150 Hz power of their
    # (coherent) sum is scaled to background_ratio * m0^2
    bg_sos, a_sos, b_sos, bg_gain, a_gain, b_gain = [], [], [], [], [], []
    f_band = np.linspace(70.0, 150.0, 161)
    for i in range(e):
        sos = _aperiodic_sos(model.aperiodic_exponent[i], fs)
        gains = [1.0]
        res = []
        for f0, rel in ((model.alpha_hz[i], 4.0), (model.beta_hz[i], 2.0)):
            bw = f0 / 3.0
            rs = signal.butter(2, (f0 - bw / 2, f0 + bw / 2), btype="bandpass", output="sos", fs=fs)
            res.append(rs)
            # resonance peak power = rel × background power at f0
            gains.append(math.sqrt(rel * _psd_at(sos, fs, f0) / _psd_at(rs, fs, f0)))
        filters = [sos, *res]
        h = sum(g * signal.sosfreqz(s_, worN=f_band, fs=fs)[1] for g, s_ in zip(gains, filters, strict=True))
        band_power = float(trapezoid(np.abs(h) ** 2, f_band) * 2.0 / fs)
        scale = math.sqrt(model.background_ratio[i] * model.hg_rest_uv[i] ** 2 / band_power)
        bg_sos.append(sos)
        a_sos.append(res[0])
        b_sos.append(res[1])
        bg_gain.append(scale * gains[0])
        a_gain.append(scale * gains[1])
        b_gain.append(scale * gains[2])
    hg_sos = signal.butter(4, (70.0, 150.0), btype="bandpass", output="sos", fs=fs)
    hg_norm = 1.0 / math.sqrt(_white_variance(hg_sos, fs))  # carrier of unit variance
    # common-mode (reference) noise: 1/f^2, 20 µV RMS above 1 Hz
    cm_sos = _aperiodic_sos(2.0, fs)
    cm_gain = 20.0 / math.sqrt(_white_variance(cm_sos, fs))

    zi_bg = [np.zeros((s.shape[0], 2)) for s in bg_sos]
    zi_a = [np.zeros((s.shape[0], 2)) for s in a_sos]
    zi_b = [np.zeros((s.shape[0], 2)) for s in b_sos]
    zi_hg = np.zeros((hg_sos.shape[0], e, 2))
    zi_cm = np.zeros((cm_sos.shape[0], 2, 1))
    # warm-up state: run 10 s of noise through the background filters so the start is stationary
    warm = int(10 * fs)
    w0 = rng_bg.standard_normal((warm, e), dtype=np.float32)
    for i in range(e):
        _, zi_bg[i] = signal.sosfilt(bg_sos[i], w0[:, i], zi=zi_bg[i])
        _, zi_a[i] = signal.sosfilt(a_sos[i], w0[:, i], zi=zi_a[i])
        _, zi_b[i] = signal.sosfilt(b_sos[i], w0[:, i], zi=zi_b[i])
    _, zi_cm = signal.sosfilt(cm_sos, rng_cm.standard_normal((warm, 1), dtype=np.float32), axis=0, zi=zi_cm)

    # popping: decaying steps at Poisson times over the whole recording (chunk independent)
    pops: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i in np.flatnonzero(bad == "popping"):
        rate = rng_bad.uniform(0.8, 2.0)
        n_ev = rng_bad.poisson(rate * n_raw / fs)
        t_ev = np.sort(rng_bad.integers(0, n_raw, n_ev))
        a_ev = rng_bad.uniform(300.0, 900.0, n_ev) * rng_bad.choice([-1.0, 1.0], n_ev)
        pops[int(i)] = (t_ev, a_ev)
    pop_decay = math.exp(-1.0 / (0.08 * fs))
    zi_pop = {i: np.zeros(1) for i in pops}
    noisy_sd = {int(i): rng_bad.uniform(40.0, 80.0) for i in np.flatnonzero(bad == "noisy")}
    # one noise stream per noisy channel: drawing them in turn from one stream chunk by chunk would make
    # the output depend on the chunk size as soon as there are two noisy channels
    noisy_rng = {i: np.random.default_rng(s) for i, s in zip(noisy_sd, ss[3].spawn(len(noisy_sd)), strict=True)}
    flat_offset = {int(i): rng_bad.uniform(-50.0, 50.0) for i in np.flatnonzero(bad == "flat")}
    n_harm = max(1, int((0.45 * fs) // line_freq))
    line_phase = rng_line.uniform(0, 2 * np.pi, (n_harm, e))
    line_rel = np.array([0.35**h for h in range(n_harm)])
    line_drift_f = rng_line.uniform(0.01, 0.05)
    # sin(ωt + φ) = sin ωt cos φ + cos ωt sin φ: one (n, 2H) @ (2H, E) product per chunk
    line_coef = (
        np.concatenate([line_rel[:, None] * np.cos(line_phase), line_rel[:, None] * np.sin(line_phase)], axis=0)
        * model.line_gain[None, :]
    )

    # The chunk is computed channel-major (E, n): every per-electrode filter then runs on contiguous rows. The
    # random draws keep their (n, E) shapes and every value goes through the same operations as in a
    # time-major computation, so the output does not depend on the layout either.
    out = np.empty((n_raw, e), dtype=np.float32)
    # chunks of at most 2**21 values per (E, n) float64 array (16 MiB): larger temporaries would be fresh
    # memory maps, page-faulted anew in every chunk
    chunk = max(1, min(int(round(chunk_s * fs)), (1 << 21) // e))
    with tqdm(
        total=n_raw,
        desc="simulating raw ECoG",
        unit="sample",
        unit_scale=True,
        disable=not progress_enabled(),
    ) as bar:
        for n0 in range(0, n_raw, chunk):
            n = min(chunk, n_raw - n0)
            w = rng_bg.standard_normal((n, e), dtype=np.float32)
            carrier = _to_channel_major(rng_hg.standard_normal((n, e), dtype=np.float32))
            carrier, zi_hg = signal.sosfilt(hg_sos, carrier, axis=-1, zi=zi_hg)
            x = (carrier * hg_norm) * _frame_interp(amplitude, n0, n, fs)  # (E, n) float64
            del carrier
            erd_t = None
            if np.any(model.beta_erd > 0):
                erd_t = 1.0 - model.beta_erd[:, None] * np.clip(_frame_interp(drive, n0, n, fs), 0.0, 1.5) / 1.5
            w_t = _to_channel_major(w)
            bg_t = np.empty((e, n), np.float32)
            for i in range(e):
                y, zi_bg[i] = signal.sosfilt(bg_sos[i], w_t[i], zi=zi_bg[i])
                ya, zi_a[i] = signal.sosfilt(a_sos[i], w_t[i], zi=zi_a[i])
                yb, zi_b[i] = signal.sosfilt(b_sos[i], w_t[i], zi=zi_b[i])
                if erd_t is not None and model.beta_erd[i] > 0:
                    yb *= erd_t[i]
                bg_t[i] = bg_gain[i] * y + a_gain[i] * ya + b_gain[i] * yb
            x += bg_t
            del bg_t, w_t
            cm, zi_cm = signal.sosfilt(cm_sos, rng_cm.standard_normal((n, 1), dtype=np.float32), axis=0, zi=zi_cm)
            x += (cm_gain * cm[:, 0])[None, :] * model.common_gain[:, None]
            t = np.arange(n0, n0 + n, dtype=np.float64) / fs
            ph = (2 * np.pi * line_freq) * t[:, None] * np.arange(1, n_harm + 1)[None, :]
            drift = (1.0 + 0.1 * np.sin(2 * np.pi * line_drift_f * t))[:, None]
            basis = np.concatenate([np.sin(ph), np.cos(ph)], axis=1) * drift
            x += _to_channel_major(basis @ line_coef, np.float32)
            for i, (t_ev, a_ev) in pops.items():
                imp = np.zeros(n)
                sel = (t_ev >= n0) & (t_ev < n0 + n)
                np.add.at(imp, t_ev[sel] - n0, a_ev[sel])
                y, zi_pop[i] = signal.lfilter([1.0], [1.0, -pop_decay], imp, zi=zi_pop[i])
                x[i] += y
            for i, sd in noisy_sd.items():
                x[i] += sd * noisy_rng[i].standard_normal(n)
            for i, off in flat_offset.items():
                x[i] = off + 0.01 * x[i]
            _store_time_major(out[n0 : n0 + n], x)
            bar.update(n)
    return out


# ----------------------------------------------------------------------------------------------------------
# the whole simulation
# ----------------------------------------------------------------------------------------------------------


def _finite_median(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else float("nan")


@dataclasses.dataclass
class GroundTruth:
    """Ground truth stored with a simulated participant (``sim_*`` extras).

    Attributes
    ----------
    role, region, bad_kind : ndarray of str, shape (E,)
    lag_ms, kernel_sd_ms, ratio_target, ratio_measured : ndarray, float64, shape (E,)
        ``lag_ms`` is negative when neural activity leads the acoustics.
    tuning : ndarray, float64, shape (E, n_features)
    feature_names : tuple of str
    bad : ndarray of bool, shape (E,)
        Bad channels as simulated.
    bad_detected : ndarray of bool, shape (E,)
        Bad channels the feature pipeline detected (their features are 0).
    carries_info : ndarray of bool, shape (E,)
        Role other than ``'none'`` and not bad (simulated or detected).
    sheet_positions_mm : ndarray, shape (E, 2)
    grid_rows_cols : ndarray of int64, shape (E, 2)
        The layout's grid tensor index.
    aperiodic_exponent : ndarray, float64, shape (E,)
        β of each electrode's 1/f^β background.
    alpha_hz, beta_hz : ndarray, float64, shape (E,)
        Alpha and beta peak frequencies, Hz.
    knob_truth : dict of str to ndarray
        Ground truth of the simulator knobs that are on (keys of :data:`KNOB_TRUTH_KEYS`):
        ``sim_onset_electrode`` (E,) uint8 and ``sim_onset_frames`` (onset frames); ``sim_trial_gain``
        (n_trials, E) multiplicative gain of each trial; ``sim_articulatory_weight`` (E,),
        ``sim_articulatory_tuning`` (E, n_articulators) and ``sim_articulatory_names``. Empty for the
        ``linear`` preset (nothing extra is written).
    """

    role: np.ndarray
    region: np.ndarray
    bad_kind: np.ndarray
    lag_ms: np.ndarray
    kernel_sd_ms: np.ndarray
    ratio_target: np.ndarray
    ratio_measured: np.ndarray
    tuning: np.ndarray
    feature_names: tuple[str, ...]
    bad: np.ndarray
    bad_detected: np.ndarray
    sheet_positions_mm: np.ndarray
    grid_rows_cols: np.ndarray
    aperiodic_exponent: np.ndarray
    alpha_hz: np.ndarray
    beta_hz: np.ndarray
    knob_truth: dict = dataclasses.field(default_factory=dict)

    @property
    def carries_info(self) -> np.ndarray:
        """Electrodes whose features carry speech information (role set, good, not zeroed by detection)."""
        return (self.role != "none") & ~self.bad & ~self.bad_detected

    def to_extras(self) -> dict[str, np.ndarray]:
        """Arrays for :attr:`edgensd.data.participant.Participant.extras` (keys ``sim_*``)."""
        d = {}
        for f in dataclasses.fields(self):
            if f.name == "knob_truth":
                continue
            v = getattr(self, f.name)
            arr = np.asarray(v)
            if arr.dtype.kind in "OU":
                arr = arr.astype(str).astype(object)
            elif arr.dtype == bool:
                arr = arr.astype(np.uint8)
            d[_TRUTH_PREFIX + f.name] = arr
        for k, v in self.knob_truth.items():
            arr = np.asarray(v)
            d[k] = arr.astype(str).astype(object) if arr.dtype.kind in "OU" else arr
        return d

    @classmethod
    def from_extras(cls, extras: dict) -> GroundTruth:
        """Inverse of :meth:`to_extras`; raises a ValueError naming the missing keys."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != "knob_truth"]
        missing = [_TRUTH_PREFIX + n for n in names if _TRUTH_PREFIX + n not in extras]
        if missing:
            raise ValueError(f"not a simulated participant: ground-truth keys {missing} are missing")
        kw: dict = {"knob_truth": {}}
        for k in KNOB_TRUTH_KEYS:
            if k in extras:
                v = np.asarray(extras[k])
                if k == "sim_articulatory_names":
                    v = np.array([x.decode() if isinstance(x, bytes) else str(x) for x in v.reshape(-1)])
                kw["knob_truth"][k] = v
        for f in dataclasses.fields(cls):
            if f.name == "knob_truth":
                continue
            v = np.asarray(extras[_TRUTH_PREFIX + f.name])
            if f.name in ("role", "region", "bad_kind"):
                v = np.array([x.decode() if isinstance(x, bytes) else str(x) for x in v.reshape(-1)])
            elif f.name == "feature_names":
                v = tuple(x.decode() if isinstance(x, bytes) else str(x) for x in v.reshape(-1))
            elif f.name in ("bad", "bad_detected"):
                v = v.astype(bool)
            kw[f.name] = v
        return cls(**kw)

    def summary(self) -> dict:
        """Counts per role and region, bad channels, ratio statistics (JSON-serializable)."""
        info = self.carries_info
        r = self.ratio_measured[info]
        r = r[np.isfinite(r)]

        return {
            "n_electrodes": int(self.role.shape[0]),
            "roles": {k: int(np.sum(self.role == k)) for k in ROLES},
            "regions": {k: int(np.sum(self.region == k)) for k in sorted(set(self.region.tolist()))},
            "n_carrying_info": int(info.sum()),
            "bad_simulated": {int(i): str(self.bad_kind[i]) for i in np.flatnonzero(self.bad)},
            "bad_detected": [int(i) for i in np.flatnonzero(self.bad_detected)],
            "hg_ratio_info_median": float(np.median(r)) if r.size else float("nan"),
            "hg_ratio_info_min": float(r.min()) if r.size else float("nan"),
            "hg_ratio_info_max": float(r.max()) if r.size else float("nan"),
            "hg_ratio_none_median": _finite_median(self.ratio_measured[(self.role == "none") & ~self.bad]),
            **self._knob_summary(),
        }

    def _knob_summary(self) -> dict:
        kt, out = self.knob_truth, {}
        if "sim_onset_electrode" in kt:
            out["n_onset_electrodes"] = int(np.sum(kt["sim_onset_electrode"]))
            out["n_onsets"] = int(np.size(kt.get("sim_onset_frames", [])))
        if "sim_trial_gain" in kt:
            out["trial_log_gain_sd"] = float(np.log(kt["sim_trial_gain"]).std())
        if "sim_articulatory_weight" in kt:
            out["n_articulatory_electrodes"] = int(np.sum(np.asarray(kt["sim_articulatory_weight"]) > 0))
        return out


@dataclasses.dataclass
class SimulationResult:
    """What :func:`simulate` produced.

    Attributes
    ----------
    participant : edgensd.data.participant.Participant
        With ``ecog`` (pipeline features), ``raw_signal``, positions, grid shape and ground-truth extras.
    truth : GroundTruth
    config : SimulationConfig
    layout : Layout
    timings_s : dict
        Seconds per stage.
    """

    participant: object
    truth: GroundTruth
    config: SimulationConfig
    layout: Layout
    timings_s: dict


def _respace(audio: np.ndarray, start: np.ndarray, end: np.ndarray, gap_s: float):
    """Re-lay trials with at least ``gap_s`` of silence before each (and after the last)."""
    gap = int(math.ceil(gap_s * FRAME_RATE))
    pieces, new_start, new_end = [], [], []
    pos = 0  # frames
    prev_end = 0
    for s, e in zip(start, end, strict=True):
        lead = int(s - prev_end)
        silence = max(gap, lead) if prev_end else max(gap, int(s))
        pieces.append(np.zeros(silence * HOP, np.float32))
        pos += silence
        seg = audio[s * HOP : e * HOP]
        seg = np.pad(seg, (0, (e - s) * HOP - seg.shape[0]))
        pieces.append(seg)
        new_start.append(pos)
        pos += e - s
        new_end.append(pos)
        prev_end = int(e)
    pieces.append(np.zeros(gap * HOP, np.float32))
    return np.concatenate(pieces), np.array(new_start), np.array(new_end)


def simulate(config: SimulationConfig, verbose: bool | str | int | None = None) -> SimulationResult:
    """Simulate one participant from a speech-only participant file.

    Parameters
    ----------
    config : SimulationConfig
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    SimulationResult

    Raises
    ------
    FileNotFoundError
        The speech file does not exist.
    ValueError
        The speech file lacks a required key (e.g. ``wave_re_alldataset``; the message lists the keys it
        holds), or the configuration is invalid.
    """
    from edgensd.data.participant import Participant, load_participant
    from edgensd.neural.highgamma import HighGammaConfig, compute_highgamma

    with use_log_level(verbose):
        t_all = time.perf_counter()
        timings: dict[str, float] = {}
        cfg = config
        if not cfg.speech:
            raise ValueError("speech must name a speech participant file (made by `edgensd data speech`)")
        t0 = time.perf_counter()
        sp = load_participant(cfg.speech, require_neural=False)
        audio, start, end = sp.audio, sp.start.copy(), sp.end.copy()
        labels = list(sp.labels)
        transcripts = list(sp.transcripts) if sp.transcripts is not None else None
        prompts = list(sp.prompt_names) if sp.prompt_names is not None else None
        test = sp.test_trials
        n_tr = sp.n_trials
        if cfg.max_trials is not None and cfg.max_trials < n_tr:
            n_tr = cfg.max_trials
            start, end, labels = start[:n_tr], end[:n_tr], labels[:n_tr]
            transcripts = transcripts[:n_tr] if transcripts else None
            prompts = prompts[:n_tr] if prompts else None
            cut = min(audio.shape[0], (int(end[-1]) + int(0.5 * FRAME_RATE)) * HOP)
            audio = audio[:cut]
            n_test = max(1, n_tr // 4) if test is None or np.all(test >= n_tr) else None
            test = np.arange(n_tr - n_test, n_tr) if n_test else test[test < n_tr]
        if cfg.trial_gap_s is not None:
            audio, start, end = _respace(audio, start, end, float(cfg.trial_gap_s))
        timings["load"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        logger.info(
            "simulating %s (%s hemisphere, %s, seed %d) from %d trials, %.1f min of audio",
            cfg.layout,
            cfg.hemisphere,
            cfg.difficulty,
            cfg.seed,
            len(start),
            audio.shape[0] / SAMPLE_RATE / 60,
        )
        feats = acoustic_features(audio)
        n_frames = feats.n_frames
        timings["acoustic_features"] = time.perf_counter() - t0

        root = np.random.SeedSequence(cfg.seed)
        s_layout, s_model, s_slow, s_raw, s_knobs = root.spawn(5)  # the first four as before the knobs existed
        rng_layout = np.random.default_rng(s_layout)
        kwargs = {}
        if cfg.placement_jitter and cfg.layout in ("ld8x8", "hb128"):
            from edgensd.neural.layouts import GRID_CENTRE_MM

            kwargs = {
                "rotation_deg": float(rng_layout.uniform(-8.0, 8.0)),
                "centre_mm": tuple(float(c + rng_layout.uniform(-4.0, 4.0)) for c in GRID_CENTRE_MM),
            }
        layout = make_layout(cfg.layout, cfg.hemisphere, **kwargs)
        grid = layout.grid()
        model = make_electrode_model(layout, np.random.default_rng(s_model), cfg.preset, n_bad=cfg.n_bad)

        t0 = time.perf_counter()
        knobs = cfg.knobs
        drive = speech_drive(feats.activations, model, feats.is_speech)
        knob_truth: dict[str, np.ndarray] = {}
        if not knobs.is_linear:
            logger.info("simulator knobs (%s preset): %s", cfg.nonlinearity, knobs.to_dict())
            drive, knob_truth = apply_drive_knobs(
                drive, audio, feats, model, layout.positions_mm, knobs, s_knobs
            )
        amp, gain = highgamma_amplitude(drive, model, np.random.default_rng(s_slow), cfg.preset, feats.is_speech)
        if knobs.gain_drift_sd > 0:
            g_trial = trial_gains(len(start), layout.n_electrodes, knobs.gain_drift_sd, knobs.gain_drift_trials,
                                  np.random.default_rng(knob_seeds(s_knobs)[1]))
            amp *= frame_gain(g_trial, start, end, n_frames)
            knob_truth["sim_trial_gain"] = g_trial
            logger.info("gain drift: log-gain SD %.3f over %d trials (set %.3f, correlation %.0f trials)",
                        float(np.log(g_trial).std()), len(start), knobs.gain_drift_sd, knobs.gain_drift_trials)
        timings["encoding_model"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        fs = cfg.raw_fs
        n_raw = int(math.ceil((n_frames - 1) * fs / FRAME_RATE)) + 1
        raw = generate_raw(amp, drive, model, n_raw, fs, cfg.line_freq, s_raw, cfg.chunk_s)
        del drive
        timings["raw_signal"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        logger.info(
            "high-gamma features: offline pipeline on %d samples x %d electrodes (bad-channel detection, "
            "notches, CAR, 70-150 Hz amplitude, z-scoring on the training trials)",
            n_raw,
            layout.n_electrodes,
        )
        test_set = set(int(i) for i in (test if test is not None else []))
        train_segments = [
            (int(s), int(e)) for i, (s, e) in enumerate(zip(start, end, strict=True)) if i not in test_set
        ]
        hg_cfg = HighGammaConfig(line_freq=cfg.line_freq, pipeline=cfg.pipeline)
        hg = compute_highgamma(raw, fs, hg_cfg, train_segments=train_segments)
        timings["highgamma_pipeline"] = time.perf_counter() - t0
        if hg.features.shape[0] != n_frames:
            raise RuntimeError(f"high-gamma pipeline returned {hg.features.shape[0]} frames, expected {n_frames}")
        ratio = measure_speech_ratio(hg.envelope, feats.is_speech)
        detected = np.asarray(hg.stats.bad, dtype=bool)
        truth = GroundTruth(
            role=model.role,
            region=model.region,
            bad_kind=model.bad_kind,
            lag_ms=model.lag_ms,
            kernel_sd_ms=model.kernel_sd_ms,
            ratio_target=model.ratio_target,
            ratio_measured=ratio,
            tuning=model.tuning,
            feature_names=FEATURE_NAMES,
            bad=model.bad,
            bad_detected=detected,
            sheet_positions_mm=layout.positions_mm,
            grid_rows_cols=np.stack([grid.rows, grid.cols], axis=1),
            aperiodic_exponent=model.aperiodic_exponent,
            alpha_hz=model.alpha_hz,
            beta_hz=model.beta_hz,
            knob_truth=knob_truth,
        )
        missed = np.flatnonzero(model.bad & ~detected)
        extra = np.flatnonzero(~model.bad & detected)
        if missed.size or extra.size:
            logger.info(
                "bad channels: %d simulated not detected %s, %d detected not simulated %s",
                missed.size,
                missed.tolist(),
                extra.size,
                extra.tolist(),
            )
        summ = truth.summary()
        logger.info(
            "high-gamma speech/silence ratio (pipeline envelope), speech electrodes: median %.2f, "
            "range %.2f-%.2f;"
            " no-info electrodes median %.2f",
            summ["hg_ratio_info_median"],
            summ["hg_ratio_info_min"],
            summ["hg_ratio_info_max"],
            summ["hg_ratio_none_median"],
        )
        density = {"ld8x8": "low", "hb128": "hybrid", "strip": "strip", "seeg": "depth"}[cfg.layout]
        attrs = {k: v for k, v in sp.attrs.items() if isinstance(v, (str, int, float, bool))}
        attrs.update(
            {
                "simulated": True,
                "simulator": "edgensd.neural.simulate",
                "simulation_config": json.dumps(cfg.to_dict(), sort_keys=True),
                "simulator_knobs": json.dumps({"nonlinearity": cfg.nonlinearity, **knobs.to_dict()}, sort_keys=True),
                "layout": cfg.layout,
                "difficulty": cfg.difficulty,
                "seed": int(cfg.seed),
                "line_freq": float(cfg.line_freq),
                "highgamma_config": json.dumps(hg.stats.config.to_dict(), sort_keys=True),
                "highgamma_stats": json.dumps(hg.stats.to_dict()),
            }
        )
        extras = truth.to_extras()
        extras["sim_hg_gain"] = gain
        extras["sim_highgamma_mean"] = hg.stats.mean
        extras["sim_highgamma_std"] = hg.stats.std
        p = Participant(
            ecog=hg.features,
            audio=audio,
            start=start,
            end=end,
            labels=labels,
            raw_signal=raw,
            raw_fs=fs,
            electrode_positions=layout.positions_3d_mm,
            grid_shape=grid.shape,
            hemisphere=cfg.hemisphere,
            density=density,
            voice_range=sp.voice_range,
            test_trials=test,
            transcripts=transcripts,
            prompt_names=prompts,
            attrs=attrs,
            extras=extras,
        )
        timings["total"] = time.perf_counter() - t_all
        logger.info(
            "simulated %d electrodes x %.1f min (%d trials) in %.1f s",
            layout.n_electrodes,
            n_frames / FRAME_RATE / 60.0,
            len(start),
            timings["total"],
        )
        return SimulationResult(participant=p, truth=truth, config=cfg, layout=layout, timings_s=timings)


def config_path_for(out: str | Path) -> Path:
    """Where :func:`write_simulation` puts the config JSON: ``<out stem>.simulation.json`` beside ``out``."""
    out = Path(out)
    return out.with_name(out.stem + ".simulation.json")


def write_simulation(result: SimulationResult, out: str | Path) -> tuple[Path, Path]:
    """Write the participant file and the :class:`SimulationConfig` JSON beside it.

    Parameters
    ----------
    result : SimulationResult
    out : str or Path
        Participant HDF5 file to write.

    Returns
    -------
    (Path, Path)
        The participant file and the config JSON.
    """
    from edgensd.data.participant import save_participant

    out = Path(out)
    path = save_participant(result.participant, out)
    cfg_path = result.config.save(config_path_for(out))
    return path, cfg_path


def report_path_for(out: str | Path) -> Path:
    """Where :func:`write_report` puts the report: ``<out stem>.simulation_report.json`` beside ``out``."""
    out = Path(out)
    return out.with_name(out.stem + ".simulation_report.json")


def write_report(result: SimulationResult, out: str | Path) -> dict:
    """Write the simulation report beside the participant file ``out`` (atomically) and return it.

    The report holds the file names, the resolved simulator knobs, the number of trials and minutes, the
    timings per stage (s), the ground-truth summary and the measured speech/silence ratio of every electrode.
    """
    from edgensd.audio import _tmp_path

    out = Path(out)
    p = result.participant
    report = {
        "participant_file": str(out),
        "config_file": str(config_path_for(out)),
        "n_trials": int(p.n_trials),
        "minutes": round(p.n_frames / FRAME_RATE / 60.0, 3),
        "simulator_knobs": {"nonlinearity": result.config.nonlinearity, **result.config.knobs.to_dict()},
        "timings_s": {k: round(v, 3) for k, v in result.timings_s.items()},
        "truth_summary": result.truth.summary(),
        "hg_ratio_measured": [None if v != v else round(float(v), 4) for v in result.truth.ratio_measured],
    }
    path = report_path_for(out)
    tmp = _tmp_path(path)
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(path)
    return report


def load_ground_truth(source) -> GroundTruth:
    """Ground truth of a simulated participant.

    Parameters
    ----------
    source : str, Path or Participant
        A participant file written by :func:`write_simulation` (or its loaded Participant with extras).

    Returns
    -------
    GroundTruth

    Raises
    ------
    ValueError
        The participant holds no simulation ground truth (the message lists the missing keys).
    """
    from edgensd.data.participant import Participant, load_participant

    if not isinstance(source, Participant):
        import h5py

        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"participant file not found: {path}")
        with h5py.File(path, "r") as f:
            extras = {}
            for k in f.keys():
                if k.startswith(_TRUTH_PREFIX):
                    ds = f[k]
                    extras[k] = ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) else ds[()]
        return GroundTruth.from_extras(extras)
    p = source
    if not p.extras and p.path is not None:
        p = load_participant(p.path, load_extras=True)
    return GroundTruth.from_extras(p.extras)
