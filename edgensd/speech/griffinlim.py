"""Griffin-Lim phase reconstruction on the project's STFT (numpy), for offline listening."""

from __future__ import annotations

import numpy as np

from edgensd.spectrogram import HOP, N_FFT, hann_window, norm_to_power, stft


def istft(spec: np.ndarray, n_samples: int | None = None) -> np.ndarray:
    """Inverse of :func:`edgensd.spectrogram.stft` by weighted overlap-add.

    Parameters
    ----------
    spec : ndarray, complex, shape (n_frames, 256)
    n_samples : int, optional
        Output length; defaults to ``n_frames * 128``.

    Returns
    -------
    ndarray, float32, shape (n_samples,)
    """
    n_frames = spec.shape[0]
    if n_samples is None:
        n_samples = n_frames * HOP
    w = hann_window()
    half = N_FFT // 2
    frames = np.fft.irfft(spec, n=N_FFT, axis=-1) * w
    length = half + n_frames * HOP + N_FFT
    out = np.zeros(length)
    norm = np.zeros(length)
    for t in range(n_frames):
        out[t * HOP : t * HOP + N_FFT] += frames[t]
        norm[t * HOP : t * HOP + N_FFT] += w**2
    out = out / np.maximum(norm, 1e-8)
    return out[half : half + n_samples].astype(np.float32)


def griffin_lim(
    spec_norm: np.ndarray, n_iter: int = 64, momentum: float = 0.99, seed: int = 0
) -> np.ndarray:
    """Audio from a normalized-dB spectrogram by (fast) Griffin-Lim.

    Parameters
    ----------
    spec_norm : ndarray, shape (n_frames, 256)
        Normalized-dB spectrogram in [-1, 1].
    n_iter : int
        Iterations.
    momentum : float
        The "fast Griffin-Lim" momentum (0 gives the classic algorithm).
    seed : int
        Seed of the random initial phase.

    Returns
    -------
    ndarray, float32, shape (n_frames * 128,)
    """
    spec_norm = np.asarray(spec_norm, np.float32)
    if spec_norm.ndim != 2 or spec_norm.shape[1] != N_FFT // 2 + 1:
        raise ValueError(f"spec_norm must have shape (n_frames, 256), got {spec_norm.shape}")
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    mag = np.sqrt(norm_to_power(spec_norm).astype(np.float64) * np.sum(hann_window() ** 2))
    rng = np.random.default_rng(seed)
    angles = np.exp(2j * np.pi * rng.random(mag.shape))
    n_samples = spec_norm.shape[0] * HOP
    prev = np.zeros_like(angles)
    for _ in range(n_iter):
        x = istft(mag * angles, n_samples)
        rebuilt = stft(x)[: mag.shape[0]]
        accel = rebuilt - (momentum / (1 + momentum)) * prev if momentum else rebuilt
        prev = rebuilt
        angles = accel / np.maximum(np.abs(accel), 1e-12)
    return istft(mag * angles, n_samples)
