"""Baselines every decoder PCC is reported with (DESIGN.md, "Reporting accuracy honestly"); numpy only.

* **floor** — the training trials' mean normalized-dB spectrum predicted for every frame;
* **ridge** — ridge regression from time-lagged neural frames straight to the 256-bin normalized-dB
  spectrogram (the linear models of earlier studies). Causal lags use frames ``t, t-2, ..., t-24``
  (0–192 ms of history); non-causal lags add ``t+2, ..., t+24``. The penalty is chosen on the last 10 % of
  the training trials (mean per-trial PCC) from a grid scaled by the mean feature variance, then the model
  is refitted on all training trials.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from edgensd.decoding.targets import Segments
from edgensd.log import logger
from edgensd.metrics import pcc

#: Lags (frames; positive = past) of the causal ridge baseline.
CAUSAL_LAGS: tuple[int, ...] = tuple(range(0, 25, 2))
#: Lags of the non-causal ridge baseline (negative = future frames).
NONCAUSAL_LAGS: tuple[int, ...] = tuple(range(-24, 25, 2))
#: Candidate penalties, times the mean diagonal of the centred X'X.
ALPHA_GRID: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)

__all__ = ["CAUSAL_LAGS", "NONCAUSAL_LAGS", "RidgeBaseline", "fit_ridge", "floor_spectrum", "lagged", "load_ridge"]


def floor_spectrum(seg: Segments) -> np.ndarray:
    """Mean normalized-dB spectrum of the trials (context excluded), float32 (256,)."""
    if len(seg) == 0:
        raise ValueError("floor_spectrum needs at least one training trial")
    return np.mean(np.concatenate([seg.spec[seg.trial_rows(k)] for k in range(len(seg))]), axis=0).astype(
        np.float32
    )


def lagged(neural: np.ndarray, lags: tuple[int, ...]) -> np.ndarray:
    """Time-lagged design matrix of one segment.

    Parameters
    ----------
    neural : ndarray, shape (n, n_electrodes)
    lags : tuple of int
        Frames; lag ``L > 0`` puts frame ``t - L`` in row ``t``, ``L < 0`` frame ``t + |L|``; zeros where
        that leaves the segment.

    Returns
    -------
    ndarray, float32, shape (n, n_electrodes * len(lags))
        Column block ``j`` holds lag ``lags[j]``.
    """
    n, e = neural.shape
    out = np.zeros((n, e * len(lags)), np.float32)
    for j, lag in enumerate(lags):
        blk = out[:, j * e : (j + 1) * e]
        if lag >= 0:
            if lag < n:
                blk[lag:] = neural[: n - lag]
        elif -lag < n:
            blk[: n + lag] = neural[-lag:]
    return out


class RidgeBaseline:
    """A fitted ridge decoder (lagged neural frames → normalized-dB spectrogram).

    Attributes
    ----------
    lags : tuple of int
    weights : ndarray, float32, shape (n_electrodes * n_lags, 256)
    bias : ndarray, float32, shape (256,)
    alpha : float
        The chosen penalty.
    val_pcc : dict
        Validation PCC of each candidate penalty.
    """

    def __init__(self, lags, weights, bias, alpha, val_pcc) -> None:
        self.lags = tuple(int(v) for v in lags)
        self.weights = np.asarray(weights, np.float32)
        self.bias = np.asarray(bias, np.float32)
        self.alpha = float(alpha)
        self.val_pcc = dict(val_pcc)

    @property
    def causal(self) -> bool:
        """Whether every lag looks only at the present or the past."""
        return min(self.lags) >= 0

    def predict(self, neural: np.ndarray) -> np.ndarray:
        """Predict the normalized-dB spectrogram of a segment, float32 (n, 256)."""
        return lagged(neural, self.lags) @ self.weights + self.bias

    def describe(self) -> str:
        """One line: which lags, which penalty."""
        lo, hi = min(self.lags), max(self.lags)
        span = f"t-{hi}..t" if self.causal else f"t-{hi}..t+{-lo}"
        return (f"ridge on {len(self.lags)} lags ({span} frames, step 2; {8 * hi} ms of history"
                + ("" if self.causal else f", {8 * -lo} ms of future") + f"), alpha={self.alpha:.3g}")


def _accumulate(seg: Segments, ks, lags):
    d = seg.neural.shape[1] * len(lags)
    sxx = np.zeros((d, d))
    sx = np.zeros(d)
    sxy = np.zeros((d, 256))
    sy = np.zeros(256)
    n = 0
    for k in ks:
        x = lagged(seg.neural[seg.rows(k)], lags).astype(np.float64)
        y = seg.spec[seg.rows(k)].astype(np.float64)
        sxx += x.T @ x
        sx += x.sum(0)
        sxy += x.T @ y
        sy += y.sum(0)
        n += x.shape[0]
    return sxx, sx, sxy, sy, n


def _solve(acc, alphas):
    from scipy.linalg import solve

    sxx, sx, sxy, sy, n = acc
    mx, my = sx / n, sy / n
    c = sxx - n * np.outer(mx, mx)
    cy = sxy - n * np.outer(mx, my)
    scale = float(np.mean(np.diag(c)))
    out = []
    for a in alphas:
        w = solve(c + a * scale * np.eye(c.shape[0]), cy, assume_a="pos")
        out.append((w, my - mx @ w))
    return out


def fit_ridge(seg: Segments, lags: tuple[int, ...], alphas: tuple[float, ...] = ALPHA_GRID) -> RidgeBaseline:
    """Fit a ridge decoder on training segments (penalty chosen on the last 10 % of them).

    Parameters
    ----------
    seg : Segments
        Training segments (context included as rows; targets are the true spectrogram).
    lags : tuple of int
        See :func:`lagged`.
    alphas : tuple of float
        Candidate penalties relative to the mean feature variance.

    Returns
    -------
    RidgeBaseline
    """
    n_seg = len(seg)
    if n_seg < 2:
        raise ValueError(f"ridge baseline needs at least 2 training trials, got {n_seg}")
    n_val = max(1, n_seg // 10)
    fit_ks, val_ks = range(n_seg - n_val), range(n_seg - n_val, n_seg)
    acc_fit = _accumulate(seg, fit_ks, lags)
    scores = {}
    for a, (w, b) in zip(alphas, _solve(acc_fit, alphas), strict=True):
        rs = []
        for k in val_ks:
            pred = lagged(seg.neural[seg.rows(k)], lags) @ w + b
            tr = slice(int(seg.first[k]), int(seg.first[k] + seg.length[k]))
            rs.append(pcc(pred[tr], seg.spec[seg.rows(k)][tr]))
        scores[float(a)] = float(np.nanmean(rs))
    best = max(scores, key=lambda a: scores[a] if np.isfinite(scores[a]) else -np.inf)
    acc_val = _accumulate(seg, val_ks, lags)
    acc_all = tuple(f + v for f, v in zip(acc_fit, acc_val, strict=True))
    (w, b), = _solve(acc_all, (best,))
    logger.debug("ridge lags %s: validation PCC %s, chose alpha %g", lags, scores, best)
    return RidgeBaseline(lags, w, b, best, scores)


def load_ridge(seg: Segments, lags: tuple[int, ...], key: str, cache_dir: str | os.PathLike | None) -> RidgeBaseline:
    """:func:`fit_ridge`, cached in ``cache_dir/ridge_<hash>.npz`` (hash of ``key`` and the lags)."""
    h = hashlib.sha256(f"{key};{lags};{ALPHA_GRID};v1".encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"ridge_{h}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path) as z:
                val = dict(zip(z["val_alphas"].tolist(), z["val_pcc"].tolist(), strict=True))
                return RidgeBaseline(z["lags"], z["weights"], z["bias"], float(z["alpha"]), val)
        except Exception as exc:
            logger.warning("ridge cache %s unreadable (%s); refitting", path, exc)
    model = fit_ridge(seg, lags)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, lags=np.asarray(model.lags), weights=model.weights, bias=model.bias, alpha=model.alpha,
                 val_alphas=np.asarray(list(model.val_pcc)), val_pcc=np.asarray(list(model.val_pcc.values())))
        os.replace(tmp, path)
    return model
