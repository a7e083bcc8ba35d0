"""A classic DSP pitch tracker on the project's frame clock (numpy only).

Two stages: a YIN-style cumulative-mean-normalized difference function per frame gives a coarse f0 and
an aperiodicity, then the estimate is refined on the 256-bin power spectrogram by maximizing the mean
log power sampled at its harmonics within ±4 % (so f0 agrees with what the synthesizer draws).
Used to supervise the speech encoder's f0 and voicing; not part of the runtime path.
"""

from __future__ import annotations

import numpy as np

from edgensd.spectrogram import BIN_HZ, HOP, SAMPLE_RATE, n_frames_for, power_spectrogram, power_to_db


def _frames(x: np.ndarray, length: int, n_frames: int) -> np.ndarray:
    half = length // 2
    padded = np.zeros(half + n_frames * HOP + length, np.float64)
    padded[half : half + x.shape[0]] = x
    return np.lib.stride_tricks.sliding_window_view(padded, length)[::HOP][:n_frames]


def yin(
    audio: np.ndarray, f0_min_hz: float, f0_max_hz: float, threshold: float = 0.15
) -> tuple[np.ndarray, np.ndarray]:
    """Coarse f0 per frame with the YIN difference function.

    Parameters
    ----------
    audio : ndarray, shape (n_samples,)
        16 kHz mono audio.
    f0_min_hz, f0_max_hz : float
        Search range (Hz).
    threshold : float
        Absolute threshold on the normalized difference for picking the first dip.

    Returns
    -------
    f0_hz : ndarray, float32, shape (n_frames,)
        Estimated f0 (Hz) for every frame (meaningful only where periodic).
    aperiodicity : ndarray, float32, shape (n_frames,)
        Value of the normalized difference at the chosen lag, in [0, ~1]; small means periodic.
    """
    x = np.asarray(audio, np.float64)
    n_frames = n_frames_for(x.shape[0])
    tau_min = int(np.floor(SAMPLE_RATE / f0_max_hz))
    tau_max = int(np.ceil(SAMPLE_RATE / f0_min_hz))
    win = max(2 * tau_max, 320)
    seg = _frames(x, win + tau_max + 2, n_frames)
    nfft = 1 << int(np.ceil(np.log2(2 * (win + tau_max + 2))))
    a = seg[:, :win]
    spec_a = np.fft.rfft(a, nfft)
    spec_s = np.fft.rfft(seg, nfft)
    corr = np.fft.irfft(np.conj(spec_a) * spec_s, nfft)[:, : tau_max + 2]
    sq = np.cumsum(np.concatenate([np.zeros((n_frames, 1)), seg**2], axis=1), axis=1)
    energy_a = sq[:, win][:, None]
    taus = np.arange(tau_max + 2)
    energy_shift = sq[:, taus + win] - sq[:, taus]
    d = np.maximum(energy_a + energy_shift - 2 * corr, 0.0)
    d[:, 0] = 0.0
    cum = np.cumsum(d[:, 1:], axis=1) / np.arange(1, tau_max + 2)
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] / np.maximum(cum, 1e-12)
    f0 = np.zeros(n_frames, np.float32)
    ap = np.ones(n_frames, np.float32)
    search = cmnd[:, tau_min : tau_max + 1]
    for t in range(n_frames):
        c = search[t]
        below = np.nonzero(c < threshold)[0]
        if below.size:
            i = below[0]
            while i + 1 < c.size and c[i + 1] < c[i]:
                i += 1
        else:
            i = int(np.argmin(c))
        tau = i + tau_min
        # parabolic interpolation around the dip
        if 1 <= tau <= tau_max:
            y0, y1, y2 = cmnd[t, tau - 1], cmnd[t, tau], cmnd[t, tau + 1]
            den = y0 - 2 * y1 + y2
            shift = 0.5 * (y0 - y2) / den if abs(den) > 1e-12 else 0.0
            shift = float(np.clip(shift, -0.5, 0.5))
        else:
            shift = 0.0
        f0[t] = SAMPLE_RATE / (tau + shift)
        ap[t] = c[i]
    return f0, ap


def refine_f0(power: np.ndarray, f0_hz: np.ndarray, rel_range: float = 0.04, n_steps: int = 41,
              max_hz: float = 4000.0) -> np.ndarray:
    """Refine f0 per frame by maximizing the mean dB power at its harmonics up to ``max_hz``.

    Parameters
    ----------
    power : ndarray, shape (n_frames, 256)
        Power spectrogram.
    f0_hz : ndarray, shape (n_frames,)
        Starting estimates (Hz).

    Returns
    -------
    ndarray, float32, shape (n_frames,)
    """
    db = power_to_db(power)
    cand = f0_hz[:, None] * (1.0 + np.linspace(-rel_range, rel_range, n_steps))[None, :]  # (T, C)
    n_h = int(max_hz // max(float(np.min(f0_hz)), 1.0)) + 1
    k = np.arange(1, n_h + 1)
    fh = cand[:, :, None] * k  # (T, C, K)
    valid = fh < max_hz
    pos = np.clip(fh / BIN_HZ, 0, db.shape[1] - 1.001)
    i0 = np.floor(pos).astype(np.int64)
    frac = pos - i0
    rows = np.arange(db.shape[0])[:, None, None]
    val = db[rows, i0] * (1 - frac) + db[rows, i0 + 1] * frac
    score = np.where(valid, val, 0.0).sum(-1) / np.maximum(valid.sum(-1), 1)
    best = np.argmax(score, axis=1)
    return cand[np.arange(cand.shape[0]), best].astype(np.float32)


def track_pitch(
    audio: np.ndarray, f0_min_hz: float, f0_max_hz: float, power: np.ndarray | None = None,
    max_aperiodicity: float = 0.25, min_db: float = -30.0,
) -> tuple[np.ndarray, np.ndarray]:
    """f0 track and voicing decision on the 125 Hz frame clock.

    Parameters
    ----------
    audio : ndarray, shape (n_samples,)
        16 kHz mono audio.
    f0_min_hz, f0_max_hz : float
        The voice's f0 range (Hz).
    power : ndarray, shape (n_frames, 256), optional
        The audio's power spectrogram, if already computed.
    max_aperiodicity : float
        Frames whose YIN dip exceeds this are unvoiced.
    min_db : float
        Frames whose mean power (dB) is below this are unvoiced.

    Returns
    -------
    f0_hz : ndarray, float32, shape (n_frames,)
        Refined f0 (Hz); in unvoiced frames the coarse estimate, clipped to the range.
    voiced : ndarray, bool, shape (n_frames,)
    """
    if power is None:
        power = power_spectrogram(audio)
    f0, ap = yin(audio, f0_min_hz, f0_max_hz)
    f0 = np.clip(f0[: power.shape[0]], f0_min_hz, f0_max_hz)
    ap = ap[: power.shape[0]]
    level = power_to_db(power.mean(axis=1))
    voiced = (ap < max_aperiodicity) & (level > min_db)
    refined = np.clip(refine_f0(power, f0), f0_min_hz, f0_max_hz)
    f0 = np.where(voiced, refined, f0).astype(np.float32)
    return f0, voiced
