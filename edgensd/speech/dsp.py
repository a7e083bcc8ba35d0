"""Pure DSP pieces of the source-filter model, shared by the PyTorch synthesizer, the numpy frame
renderer and (mirrored) the C synthesizer. No torch, no state.

Model of one frame's power spectrum (power scale of :mod:`edgensd.spectrogram`)::

    P(f) = L * [ alpha * sum_k (f0/fs) * Ev(k f0) * taper(k f0) * T(f - k f0)
               + (1 - alpha) * En(f) ] + Bg(f)

    Env(f) = sum_i A_i * s_i((f - F_i) / B_i)                       (6 voiced formants)
    Ev(f)  = Gv(f) * Env(f)
    En(f)  = Gn(f) * (Env(f) + Au * s_u((f - Fu) / Bu))

with ``L = 10**(loudness_db / 10)``, ``T`` the normalized power response of the analysis window
(``|W(df)|^2 / sum(w^2)``), ``s_i`` learned unimodal, symmetric formant shapes, ``B_i = b0_i + b1_i F_i``
learned bandwidths, ``Gv``/``Gn`` learned smooth gain curves (cosine series in dB) and ``Bg`` the
participant's background-noise power. A sinusoid of amplitude ``a`` has STFT power ``a^2/4 T(f - f_k)``,
so harmonic ``k`` is rendered with amplitude ``2 sqrt(L alpha (f0/fs) Ev(k f0) taper(k f0))``, which
gives voiced and unvoiced sources of equal envelope the same power spectral density.
"""

from __future__ import annotations

import functools

import numpy as np

from edgensd.spectrogram import BIN_HZ, N_FFT, SAMPLE_RATE, hann_window

#: Formant shapes are piecewise-linear in ``u = log2(1 + |x|)``, ``x = (f - F) / B``, on these knots.
SHAPE_KNOT_STEP = 0.25
SHAPE_N_KNOTS = 33  # u in [0, 8]: |x| up to 255 bandwidths
#: Gain curves are cosine series with this many terms over 0-8 kHz.
N_GAIN_TERMS = 24
#: Window response table: offsets up to this many bins, resolution 1/WIN_OVERSAMPLE bin.
WIN_HALF_BINS = 4
WIN_OVERSAMPLE = 64
#: Harmonics fade out (raised cosine) between these frequencies (Hz); none at or above 8 kHz.
TAPER_START_HZ = 7600.0
TAPER_END_HZ = 8000.0


@functools.lru_cache(maxsize=1)
def window_power_table() -> np.ndarray:
    """Normalized power response of the 511-point Hann window, ``T(df)``.

    Returns
    -------
    ndarray, float32, shape (WIN_HALF_BINS * WIN_OVERSAMPLE + 1,)
        ``T`` at offsets ``df = j / WIN_OVERSAMPLE`` bins, ``j = 0..``; symmetric in ``df``; ``T(0) = 2N/3``
        for the periodic Hann. Beyond ``WIN_HALF_BINS`` bins the response is taken as 0.
    """
    w = hann_window()
    n_big = N_FFT * WIN_OVERSAMPLE
    resp = np.abs(np.fft.fft(w, n=n_big)) ** 2 / np.sum(w**2)
    return resp[: WIN_HALF_BINS * WIN_OVERSAMPLE + 1].astype(np.float32)


def window_power(df_bins: np.ndarray) -> np.ndarray:
    """Evaluate ``T`` at offsets in bins by linear interpolation of :func:`window_power_table`."""
    table = window_power_table()
    pos = np.abs(np.asarray(df_bins, np.float32)) * np.float32(WIN_OVERSAMPLE)
    inside = pos < WIN_HALF_BINS * WIN_OVERSAMPLE
    pos = np.where(inside, pos, 0.0).astype(np.float32)
    i0 = np.floor(pos).astype(np.int64)
    frac = pos - i0.astype(np.float32)
    i1 = np.minimum(i0 + 1, table.shape[0] - 1)
    return np.where(inside, table[i0] * (1 - frac) + table[i1] * frac, 0.0).astype(np.float32)


def harmonic_taper(f_hz: np.ndarray) -> np.ndarray:
    """Band-limit weight of a harmonic at ``f_hz``: 1 below 7.6 kHz, raised-cosine fade, 0 from 8 kHz."""
    f = np.asarray(f_hz, np.float32)
    x = np.clip((f - TAPER_START_HZ) / (TAPER_END_HZ - TAPER_START_HZ), 0.0, 1.0)
    return (0.5 + 0.5 * np.cos(np.pi * x)).astype(np.float32)


def shape_knots() -> np.ndarray:
    """Knot positions ``u_j`` of the formant shapes, shape (SHAPE_N_KNOTS,)."""
    return (np.arange(SHAPE_N_KNOTS) * SHAPE_KNOT_STEP).astype(np.float32)


def lorentzian_log_table() -> np.ndarray:
    """``-ln s`` at the knots for a Lorentzian power shape ``1/(1 + x^2)`` (the synthesizer's init)."""
    x = 2.0 ** shape_knots().astype(np.float64) - 1.0
    return np.log1p(x**2).astype(np.float32)


def eval_shape(neglog_table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Evaluate a formant shape ``s(x) = exp(-g(u))``, ``u = log2(1 + |x|)``, g linear between knots.

    Parameters
    ----------
    neglog_table : ndarray, shape (SHAPE_N_KNOTS,)
        ``g`` at the knots (non-decreasing, ``g[0] = 0``).
    x : ndarray
        Offsets in bandwidths, any shape.

    Returns
    -------
    ndarray, float32, same shape as ``x``; 0 beyond the last knot.
    """
    u = np.log2(1.0 + np.abs(np.asarray(x, np.float32))) / np.float32(SHAPE_KNOT_STEP)
    inside = u < SHAPE_N_KNOTS - 1
    u = np.where(inside, u, 0.0).astype(np.float32)
    i0 = np.floor(u).astype(np.int64)
    frac = u - i0.astype(np.float32)
    g = neglog_table[i0] * (1 - frac) + neglog_table[i0 + 1] * frac
    return np.where(inside, np.exp(-g), 0.0).astype(np.float32)


def eval_gain_db(coefs: np.ndarray, f_hz: np.ndarray) -> np.ndarray:
    """Gain curve in dB: ``sum_m c_m cos(pi m f / 8000)``; ``coefs`` (N_GAIN_TERMS,), ``f_hz`` any shape."""
    f = np.asarray(f_hz, np.float32)[..., None]
    m = np.arange(coefs.shape[-1], dtype=np.float32)
    return np.sum(np.asarray(coefs, np.float32) * np.cos(np.float32(np.pi / (SAMPLE_RATE / 2)) * m * f), axis=-1)


def max_harmonics(f0_min_hz: float) -> int:
    """Number of harmonics below 8 kHz for the lowest f0 of a voice range."""
    return int(np.ceil(TAPER_END_HZ / f0_min_hz))


def harmonic_reach(f0_min_hz: float) -> int:
    """How many harmonics on each side of the nearest one can fall within ``WIN_HALF_BINS`` of a bin."""
    return int(np.ceil(WIN_HALF_BINS * BIN_HZ / f0_min_hz))
