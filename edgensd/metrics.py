"""Accuracy measures shared by every evaluation (numpy only).

PCC everywhere in the project: for each held-out trial, Pearson r between decoded and original
normalized-dB spectrograms flattened over frames × 256 bins; the reported figure is the mean over trials.
Every PCC comes with baselines on the same trials (DESIGN.md, "Reporting accuracy honestly").
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dct, idct

from edgensd.spectrogram import db_to_norm, norm_to_db


def pcc(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r between two arrays of equal shape, flattened (NaN if either is constant)."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"pcc needs arrays of equal size, got {a.size} and {b.size}")
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def summarize(values: list[float]) -> dict[str, float]:
    """Mean, median, standard deviation and count of per-trial figures (NaNs ignored)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": float("nan"), "median": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "std": float(v.std()), "n": int(v.size)}


def cepstral_envelope(spec_norm: np.ndarray, n_coefs: int = 30) -> np.ndarray:
    """Smooth spectral envelope of normalized-dB frames: keep the first ``n_coefs`` cepstral coefficients.

    A reference for how far a harmonics-free envelope gets: (n_frames, 256) → (n_frames, 256).
    """
    db = norm_to_db(spec_norm)
    c = dct(db, type=2, norm="ortho", axis=-1)
    c[..., n_coefs:] = 0.0
    return db_to_norm(idct(c, type=2, norm="ortho", axis=-1))
