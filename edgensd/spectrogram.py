"""Spectrogram conventions shared by every part of the project (numpy; no torch).

All functions follow ``shared/DESIGN.md``:

* audio: 16 kHz mono float32 in [-1, 1];
* STFT: 511-sample periodic Hann window, hop 128 samples (8 ms, 125 frames/s), centred with zero padding of
  255 samples on each side, 256 bins from 0 Hz to 7984 Hz (bin spacing 16000/511 = 31.31 Hz);
* power: ``|X|^2 / sum(w^2)``, so white noise of variance ``s^2`` has expected power ``s^2`` in every bin
  (a full-scale sine peaks at about +19 dB);
* normalized dB: ``10 log10(power)`` clamped to [-50, 22.5] dB and mapped linearly onto [-1, 1];
* mel: 128 triangular bands on the HTK mel scale over 0-8 kHz, each normalized to unit sum so a band's
  power is the weighted mean power of its bins (same dB scale as the linear bins).

A recording of ``n`` samples gives ``ceil(n / 128)`` frames; frame ``t`` is centred on sample ``128 t``.
"""

from __future__ import annotations

import functools

import numpy as np

SAMPLE_RATE = 16000
HOP = 128
N_FFT = 511
N_BINS = N_FFT // 2 + 1  # 256
FRAME_RATE = SAMPLE_RATE / HOP  # 125.0
N_MELS = 128
DB_MIN = -50.0
DB_MAX = 22.5
BIN_HZ = SAMPLE_RATE / N_FFT


@functools.lru_cache(maxsize=4)
def hann_window(n: int = N_FFT) -> np.ndarray:
    """Periodic Hann window of ``n`` samples, float64, shape (n,)."""
    k = np.arange(n)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * k / n)


def bin_frequencies() -> np.ndarray:
    """Centre frequency of each STFT bin in Hz, shape (256,)."""
    return np.arange(N_BINS) * BIN_HZ


def n_frames_for(n_samples: int) -> int:
    """Number of spectrogram frames for ``n_samples`` audio samples (``ceil(n / 128)``, at least 1)."""
    return max(1, -(-int(n_samples) // HOP))


def stft(audio: np.ndarray) -> np.ndarray:
    """Complex STFT of mono audio.

    Parameters
    ----------
    audio : ndarray, shape (n_samples,)
        16 kHz mono audio.

    Returns
    -------
    ndarray, complex64, shape (n_frames, 256)
        Frame ``t`` is centred on sample ``128 t``; the signal is zero-padded by 255 samples on each side.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"audio must be 1-D (mono), got shape {x.shape}")
    n_frames = n_frames_for(x.shape[0])
    half = N_FFT // 2
    padded = np.zeros(half + n_frames * HOP + N_FFT, dtype=np.float64)
    padded[half : half + x.shape[0]] = x
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames]
    return np.fft.rfft(frames * hann_window(), n=N_FFT, axis=-1).astype(np.complex64)


def power_spectrogram(audio: np.ndarray) -> np.ndarray:
    """Power spectrogram ``|X|^2 / sum(w^2)``, float32, shape (n_frames, 256)."""
    spec = stft(audio)
    return (np.abs(spec) ** 2 / np.sum(hann_window() ** 2)).astype(np.float32)


def power_to_db(power: np.ndarray) -> np.ndarray:
    """``10 log10(power)`` with a floor far below the clamp range (no -inf)."""
    return 10.0 * np.log10(np.maximum(np.asarray(power, dtype=np.float64), 1e-12))


def db_to_norm(db: np.ndarray) -> np.ndarray:
    """Clamp dB to [-50, 22.5] and map linearly to [-1, 1]."""
    db = np.clip(np.asarray(db, dtype=np.float64), DB_MIN, DB_MAX)
    return (2.0 * (db - DB_MIN) / (DB_MAX - DB_MIN) - 1.0).astype(np.float32)


def norm_to_db(norm: np.ndarray) -> np.ndarray:
    """Inverse of :func:`db_to_norm` (within the clamp range), in dB."""
    return (np.asarray(norm, dtype=np.float64) + 1.0) * 0.5 * (DB_MAX - DB_MIN) + DB_MIN


def power_to_norm(power: np.ndarray) -> np.ndarray:
    """Power → normalized dB in [-1, 1]."""
    return db_to_norm(power_to_db(power))


def norm_to_power(norm: np.ndarray) -> np.ndarray:
    """Normalized dB → power (values at the clamp edges map to the edge powers)."""
    return (10.0 ** (norm_to_db(norm) / 10.0)).astype(np.float32)


def hz_to_mel(f_hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``2595 log10(1 + f/700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(f_hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=2)
def mel_filterbank(n_mels: int = N_MELS) -> np.ndarray:
    """Triangular mel filterbank on the linear STFT bins, float32, shape (n_mels, 256).

    Band ``m`` has its peak at the ``m+1``-th of ``n_mels + 2`` points equally spaced on the mel scale over
    0-8 kHz. At low frequencies the bands are narrower than one STFT bin, so each triangle's half-width is
    widened to at least one bin spacing (no empty band). Rows sum to 1.
    """
    points = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2), n_mels + 2))
    f = bin_frequencies()
    fb = np.zeros((n_mels, N_BINS))
    for m in range(n_mels):
        lo, c, hi = points[m], points[m + 1], points[m + 2]
        lo = min(lo, c - BIN_HZ)
        hi = max(hi, c + BIN_HZ)
        rise = (f - lo) / (c - lo)
        fall = (hi - f) / (hi - c)
        fb[m] = np.clip(np.minimum(rise, fall), 0.0, None)
    fb /= fb.sum(axis=1, keepdims=True)
    return fb.astype(np.float32)


def mel_power(power: np.ndarray) -> np.ndarray:
    """Linear power spectrogram (..., 256) → mel power (..., 128)."""
    return np.asarray(power, dtype=np.float32) @ mel_filterbank().T


def spectrogram_norm(audio: np.ndarray) -> np.ndarray:
    """Audio → normalized-dB linear spectrogram, float32, shape (n_frames, 256), values in [-1, 1]."""
    return power_to_norm(power_spectrogram(audio))


def mel_norm(audio: np.ndarray) -> np.ndarray:
    """Audio → normalized-dB mel spectrogram, float32, shape (n_frames, 128), values in [-1, 1]."""
    return power_to_norm(mel_power(power_spectrogram(audio)))
