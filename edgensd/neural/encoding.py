"""Encoding models: cross-validated ridge temporal receptive fields from speech features to high-gamma.

Following Khanday et al. ("Recreating neural activity during speech production with language and speech
model embeddings"), each electrode's high-gamma ``y_e(t)`` is modelled as a linear function of
time-lagged speech features::

    y_e(t) = b_e + Σ_τ Σ_k W_e[τ, k] · x_k(t − τ),     τ ∈ {lag_min_ms, …, lag_max_ms}

**Lag sign.** ``τ > 0`` uses acoustics *before* the neural frame: the electrode *follows* (lags) the sound,
as auditory cortex does. ``τ < 0`` uses acoustics *after* it: the electrode *leads* the sound (motor
planning and articulation). Every lag this module reports is ``τ`` in ms, so **negative = neural activity
leads the acoustics** (the same convention as the simulator's ground truth,
:mod:`edgensd.neural.simulate`).

Fitting
    Ridge regression with the penalty chosen per electrode by nested cross-validation. Folds are contiguous
    blocks of whole trials (never frames): every frame belongs to the trial whose interval is nearest
    (boundaries halfway between trials) and ``max |τ|`` frames on each side of a fold boundary are left out
    so no lagged window straddles two folds. All fits run on sufficient statistics (per-fold Gram
    matrices), so the cost is one pass over the data plus small eigen-decompositions.

Reported per electrode
    ``r``: mean over the outer folds of the held-out Pearson correlation between prediction and
    high-gamma; ``best_lag_ms``: the lag at which the TRF (fitted on all data, standardized features) has
    the most energy ``Σ_k W[τ, k]²``; ``role``: ``'none'`` (no speech information) if ``r < min_r``,
    else ``'leading'`` if ``best_lag_ms ≤ 0`` (0 = simultaneous, usable by a causal decoder without
    look-ahead) and ``'lagging'`` otherwise.

Features
    ``'mel'``: the normalized-dB mel spectrogram of the project (:func:`edgensd.spectrogram.mel_norm`),
    averaged into ``n_mel_bands`` groups of adjacent bands. ``'params'``: the 18 speech parameters per
    frame (:mod:`edgensd.params`) from a trained speech encoder, given as an array or an HDF5 file with a
    ``params`` dataset (n_frames, 18); f0 and formant frequencies enter as log2, every column is
    standardized.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np

from edgensd.config import Config, check_choice
from edgensd.log import logger
from edgensd.params import BU, F0, FORMANT_F, FU, N_PARAMS, PARAM_NAMES
from edgensd.spectrogram import FRAME_RATE, mel_filterbank, power_to_norm

__all__ = [
    "FEATURE_KINDS",
    "ROLES",
    "EncodingConfig",
    "EncodingResult",
    "compare_with_truth",
    "encoding_features",
    "fit_encoding",
    "load_params_h5",
    "mel_band_features",
    "params_features",
    "trial_folds",
]

FEATURE_KINDS: tuple[str, ...] = ("params", "mel")
ROLES: tuple[str, ...] = ("leading", "lagging", "none")
FRAME_MS = 1000.0 / FRAME_RATE


@dataclasses.dataclass
class EncodingConfig(Config):
    """Settings of the encoding-model analysis (saved in its JSON report).

    Attributes
    ----------
    features : {'params', 'mel'}
        Speech features the model starts from.
    n_mel_bands : int
        Groups of adjacent mel bands for ``'mel'`` (must divide 128).
    lag_min_ms, lag_max_ms : float
        Lag range of the TRF, ms (negative = neural leads; see module docstring).
    lag_step_frames : int
        Spacing of the lags, frames of 8 ms.
    n_folds : int
        Cross-validation folds (contiguous blocks of whole trials), ≥ 3.
    alphas : tuple of float
        Ridge penalties relative to the mean eigenvalue of the training covariance.
    min_r : float
        Held-out correlation below which an electrode counts as carrying no speech information.
    """

    features: str = "mel"
    n_mel_bands: int = 16
    lag_min_ms: float = -300.0
    lag_max_ms: float = 300.0
    lag_step_frames: int = 2
    n_folds: int = 5
    alphas: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
    min_r: float = 0.1

    def __post_init__(self) -> None:
        check_choice("features", self.features, FEATURE_KINDS)
        if self.n_mel_bands < 1 or 128 % self.n_mel_bands:
            raise ValueError(f"n_mel_bands must divide 128 (e.g. 8, 16, 32), got {self.n_mel_bands}")
        if not self.lag_min_ms < self.lag_max_ms:
            raise ValueError(f"lag_min_ms must be below lag_max_ms, got {self.lag_min_ms}, {self.lag_max_ms}")
        if self.lag_step_frames < 1:
            raise ValueError(f"lag_step_frames must be >= 1, got {self.lag_step_frames}")
        if self.n_folds < 3:
            raise ValueError(f"n_folds must be >= 3 (nested cross-validation), got {self.n_folds}")
        self.alphas = tuple(float(a) for a in self.alphas)
        if not self.alphas or min(self.alphas) <= 0:
            raise ValueError(f"alphas must be positive, got {self.alphas}")

    def lags_frames(self) -> np.ndarray:
        """The TRF lags in frames (int64), symmetric grid through 0 within the configured range."""
        step = self.lag_step_frames
        lo = int(math.ceil(self.lag_min_ms / FRAME_MS / step)) * step
        hi = int(math.floor(self.lag_max_ms / FRAME_MS / step)) * step
        return np.arange(lo, hi + 1, step, dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------
# features
# ----------------------------------------------------------------------------------------------------------


def mel_band_features(audio: np.ndarray, n_bands: int = 16, chunk_frames: int = 4096) -> np.ndarray:
    """Normalized-dB mel spectrogram averaged into ``n_bands`` groups of adjacent bands.

    Parameters
    ----------
    audio : ndarray, shape (n_samples,)
        16 kHz mono audio.
    n_bands : int
        Number of groups (divides 128).
    chunk_frames : int
        Frames computed at a time (memory only).

    Returns
    -------
    ndarray, float32, shape (ceil(n_samples / 128), n_bands)
        Values in [-1, 1], as :func:`edgensd.spectrogram.mel_norm` averaged over each group.
    """
    from edgensd.neural.simulate import iter_power_spectrogram

    fb = mel_filterbank()
    if fb.shape[0] % n_bands:
        raise ValueError(f"n_bands must divide {fb.shape[0]}, got {n_bands}")
    n_frames = max(1, -(-np.asarray(audio).shape[0] // 128))
    out = np.empty((n_frames, n_bands), np.float32)
    for a, pw, _ in iter_power_spectrogram(audio, chunk_frames):
        mel = power_to_norm(pw @ fb.T)
        out[a : a + pw.shape[0]] = mel.reshape(mel.shape[0], n_bands, -1).mean(axis=2)
    return out


def params_features(params: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The 18 speech parameters as regression features.

    Parameters
    ----------
    params : ndarray, shape (n_frames, 18)
        Physical units (:mod:`edgensd.params`).

    Returns
    -------
    features : ndarray, float32, shape (n_frames, 18)
        f0, formant, unvoiced-formant frequency and bandwidth as log2(Hz); other columns as they are.
    names : list of str
    """
    p = np.asarray(params, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != N_PARAMS:
        raise ValueError(f"params must have shape (n_frames, {N_PARAMS}), got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"params hold {int(np.sum(~np.isfinite(p)))} NaN/inf values")
    out = p.copy()
    log_cols = [F0, FU, BU, *range(FORMANT_F.start, FORMANT_F.stop)]
    out[:, log_cols] = np.log2(np.maximum(p[:, log_cols], 1.0))
    names = [("log2_" + n if i in log_cols else n) for i, n in enumerate(PARAM_NAMES)]
    return out.astype(np.float32), names


def load_params_h5(path: str | os.PathLike, key: str = "params") -> np.ndarray:
    """Read speech parameters (n_frames, 18) from an HDF5 file written by the speech model.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file lacks ``key`` (the message lists what it holds) or it has the wrong shape.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    with h5py.File(path, "r") as f:
        if key not in f:
            raise ValueError(
                f"params file {path} has no '{key}' dataset (n_frames, {N_PARAMS}); "
                f"it holds {sorted(f.keys())}"
            )
        arr = f[key][()]
    if arr.ndim != 2 or arr.shape[1] != N_PARAMS:
        raise ValueError(
            f"params file {path}: '{key}' must have shape (n_frames, {N_PARAMS}), got {arr.shape}"
        )
    return arr


PARAMS_MISSING = (
    "--features params needs the 18 speech parameters per frame from a trained speech encoder, which this "
    "data file does not hold; pass --speech-model DIR (a trained speech model encodes the audio) or --params-h5 "
    "FILE with a 'params' dataset of shape (n_frames, 18) (physical units, same 125 Hz frames as the data), or "
    "use --features mel"
)


def encoding_features(
    participant, kind: str = "mel", params: np.ndarray | None = None, n_mel_bands: int = 16
) -> tuple[np.ndarray, list[str]]:
    """Speech features of a participant for the encoding model.

    Parameters
    ----------
    participant : edgensd.data.participant.Participant
        Its audio is used for ``'mel'``.
    kind : {'params', 'mel'}
    params : ndarray, shape (n_frames, 18), optional
        Required for ``'params'`` (from the speech encoder).
    n_mel_bands : int

    Returns
    -------
    features : ndarray, float32, shape (n_frames, K)
    names : list of str
    """
    check_choice("features", kind, FEATURE_KINDS)
    if kind == "mel":
        f = mel_band_features(participant.audio, n_mel_bands)
        return f, [f"mel_band{i:02d}" for i in range(f.shape[1])]
    if params is None:
        raise ValueError(PARAMS_MISSING)
    return params_features(params)


# ----------------------------------------------------------------------------------------------------------
# folds and sufficient statistics
# ----------------------------------------------------------------------------------------------------------


def trial_folds(start: np.ndarray, end: np.ndarray, n_frames: int, n_folds: int, guard: int) -> np.ndarray:
    """Fold index of every frame: contiguous blocks of whole trials, guard frames at fold edges = -1.

    Parameters
    ----------
    start, end : ndarray of int, shape (n_trials,)
        Trial onsets / offsets in frames (sorted by onset).
    n_frames : int
    n_folds : int
    guard : int
        Frames left out (-1) on each side of every fold boundary.

    Returns
    -------
    ndarray of int64, shape (n_frames,)
        Fold of each frame (0 … n_folds-1) or -1.
    """
    start = np.asarray(start, dtype=np.int64)
    end = np.asarray(end, dtype=np.int64)
    n_tr = start.shape[0]
    if n_tr < n_folds:
        raise ValueError(
            f"need at least n_folds={n_folds} trials for trial-wise cross-validation, got {n_tr}"
        )
    order = np.argsort(start, kind="stable")
    s, e = start[order], end[order]
    bounds = np.concatenate([[0], (e[:-1] + s[1:]) // 2, [n_frames]])
    bounds = np.clip(bounds, 0, n_frames)
    trial_fold = (np.arange(n_tr) * n_folds) // n_tr
    fold = np.empty(n_frames, np.int64)
    for i in range(n_tr):
        fold[bounds[i] : bounds[i + 1]] = trial_fold[i]
    change = np.flatnonzero(np.diff(fold) != 0) + 1
    for c in change:
        fold[max(0, c - guard) : min(n_frames, c + guard)] = -1
    return fold


@dataclasses.dataclass
class _Stats:
    n: float
    sx: np.ndarray
    sy: np.ndarray
    sxx: np.ndarray
    sxy: np.ndarray
    syy: np.ndarray

    def __add__(self, o: _Stats) -> _Stats:
        return _Stats(
            self.n + o.n, self.sx + o.sx, self.sy + o.sy, self.sxx + o.sxx, self.sxy + o.sxy, self.syy + o.syy
        )

    def __sub__(self, o: _Stats) -> _Stats:
        return _Stats(
            self.n - o.n, self.sx - o.sx, self.sy - o.sy, self.sxx - o.sxx, self.sxy - o.sxy, self.syy - o.syy
        )


def _lagged(fpad: np.ndarray, idx: np.ndarray, lags: np.ndarray, pad: int) -> np.ndarray:
    """Design rows for frames ``idx``: column block j holds features at frame ``t - lags[j]``."""
    k = fpad.shape[1]
    x = np.empty((idx.size, lags.size * k))
    for j, lag in enumerate(lags):
        x[:, j * k : (j + 1) * k] = fpad[idx - lag + pad]
    return x


def _fold_stats(features, y, fold, n_folds, lags, chunk=4096) -> list[_Stats]:
    pad = int(np.max(np.abs(lags)))
    fpad = np.zeros((features.shape[0] + 2 * pad, features.shape[1]))
    fpad[pad : pad + features.shape[0]] = features
    p = lags.size * features.shape[1]
    e = y.shape[1]
    out = []
    for f in range(n_folds):
        idx_all = np.flatnonzero(fold == f)
        st = _Stats(0.0, np.zeros(p), np.zeros(e), np.zeros((p, p)), np.zeros((p, e)), np.zeros(e))
        for a in range(0, idx_all.size, chunk):
            idx = idx_all[a : a + chunk]
            x = _lagged(fpad, idx, lags, pad)
            yy = y[idx]
            st.n += idx.size
            st.sx += x.sum(axis=0)
            st.sy += yy.sum(axis=0)
            st.sxx += x.T @ x
            st.sxy += x.T @ yy
            st.syy += (yy * yy).sum(axis=0)
        out.append(st)
    return out


class _Ridge:
    """Ridge solutions for many penalties from one eigen-decomposition of the centred training covariance."""

    def __init__(self, st: _Stats):
        mx, my = st.sx / st.n, st.sy / st.n
        cxx = st.sxx - st.n * np.outer(mx, mx)
        cxy = st.sxy - st.n * np.outer(mx, my)
        self.evals, self.v = np.linalg.eigh(cxx)
        self.evals = np.clip(self.evals, 0.0, None)
        self.vtc = self.v.T @ cxy
        self.scale = float(np.mean(self.evals))

    def weights(self, alpha_rel: float | np.ndarray) -> np.ndarray:
        """(p, E) weights; ``alpha_rel`` scalar or one per electrode."""
        a = np.asarray(alpha_rel, dtype=np.float64) * self.scale
        return self.v @ (self.vtc / (self.evals[:, None] + a))


def _heldout_r(w: np.ndarray, st: _Stats) -> np.ndarray:
    cxx = st.sxx - np.outer(st.sx, st.sx) / st.n
    cxy = st.sxy - np.outer(st.sx, st.sy) / st.n
    vy = st.syy - st.sy**2 / st.n
    cov = np.sum(w * cxy, axis=0)
    vp = np.sum(w * (cxx @ w), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = cov / np.sqrt(vp * vy)
    return np.where((vy > 1e-12 * st.n) & (vp > 0), r, np.nan)


# ----------------------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class EncodingResult:
    """Cross-validated TRF encoding model of every electrode.

    Attributes
    ----------
    r : ndarray, float64, shape (E,)
        Mean held-out correlation over the outer folds (NaN for electrodes with constant features,
        e.g. bad channels zeroed by the pipeline).
    r_folds : ndarray, float64, shape (n_folds, E)
    best_lag_ms : ndarray, float64, shape (E,)
        Lag of peak TRF energy, ms (negative = neural leads the acoustics).
    role : ndarray of str, shape (E,)
        ``'leading'``, ``'lagging'`` or ``'none'``.
    alpha : ndarray, float64, shape (E,)
        Chosen relative ridge penalty.
    lags_ms : ndarray, float64, shape (n_lags,)
    lag_profile : ndarray, float64, shape (n_lags, E)
        TRF energy per lag, normalized to sum 1 per electrode.
    weights : ndarray, float32, shape (n_lags, K, E)
        TRF fitted on all frames (standardized features).
    feature_names : list of str
    config : EncodingConfig
    """

    r: np.ndarray
    r_folds: np.ndarray
    best_lag_ms: np.ndarray
    role: np.ndarray
    alpha: np.ndarray
    lags_ms: np.ndarray
    lag_profile: np.ndarray
    weights: np.ndarray
    feature_names: list
    config: EncodingConfig

    def to_dict(self) -> dict:
        """JSON-serializable report (per-electrode list plus summary; NaN → None)."""

        def num(x):
            return None if not np.isfinite(x) else float(x)

        electrodes = [
            {
                "index": i,
                "r": num(self.r[i]),
                "r_folds": [num(v) for v in self.r_folds[:, i]],
                "best_lag_ms": float(self.best_lag_ms[i]),
                "role": str(self.role[i]),
                "alpha": float(self.alpha[i]),
            }
            for i in range(self.r.shape[0])
        ]
        finite = self.r[np.isfinite(self.r)]
        return {
            "lag_convention": "lag = neural minus acoustic time; negative = neural activity leads the sound",
            "config": self.config.to_dict(),
            "feature_names": list(self.feature_names),
            "lags_ms": [float(v) for v in self.lags_ms],
            "summary": {
                **{f"n_{k}": int(np.sum(self.role == k)) for k in ROLES},
                "median_r": float(np.median(finite)) if finite.size else None,
            },
            "electrodes": electrodes,
        }


def fit_encoding(
    ecog: np.ndarray,
    features: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    config: EncodingConfig | None = None,
    feature_names: list | None = None,
) -> EncodingResult:
    """Fit and cross-validate the ridge TRF encoding model of every electrode.

    Parameters
    ----------
    ecog : ndarray, shape (n_frames, E)
        High-gamma features at 125 Hz.
    features : ndarray, shape (n_frames_f, K)
        Speech features on the same clock (``n_frames_f`` may differ by a few frames; both are cut to the
        shorter). Each column is standardized over all frames (the stimulus only; no neural data).
    start, end : ndarray of int, shape (n_trials,)
        Trial onsets / offsets in frames (the folds are built from them).
    config : EncodingConfig, optional
    feature_names : list of str, optional

    Returns
    -------
    EncodingResult
    """
    cfg = config or EncodingConfig()
    y = np.asarray(ecog, dtype=np.float64)
    x = np.asarray(features, dtype=np.float64)
    if y.ndim != 2 or x.ndim != 2:
        raise ValueError(f"ecog and features must be 2-D (frames × channels), got {y.shape} and {x.shape}")
    n = min(y.shape[0], x.shape[0])
    if abs(y.shape[0] - x.shape[0]) > 8:
        raise ValueError(
            f"ecog has {y.shape[0]} frames but features have {x.shape[0]}; they must share the clock"
        )
    y, x = y[:n], x[:n]
    if not (np.isfinite(y).all() and np.isfinite(x).all()):
        raise ValueError("ecog and features must be finite (NaN/inf found)")
    sd = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    lags = cfg.lags_frames()
    guard = int(np.max(np.abs(lags)))
    fold = trial_folds(start, end, n, cfg.n_folds, guard)
    logger.info(
        "encoding model: %d frames, %d electrodes, %d features x %d lags (%g to %g ms), %d folds by trial",
        n,
        y.shape[1],
        x.shape[1],
        lags.size,
        lags[0] * FRAME_MS,
        lags[-1] * FRAME_MS,
        cfg.n_folds,
    )
    stats = _fold_stats(x, y, fold, cfg.n_folds, lags)
    total = stats[0]
    for s in stats[1:]:
        total = total + s
    alphas = np.asarray(cfg.alphas)
    e = y.shape[1]
    r_folds = np.full((cfg.n_folds, e), np.nan)
    r_outer_alpha = np.zeros((cfg.n_folds, alphas.size, e))
    for k in range(cfg.n_folds):
        inner = np.zeros((alphas.size, e))
        for j in range(cfg.n_folds):
            if j == k:
                continue
            ridge = _Ridge(total - stats[k] - stats[j])
            for a, alpha in enumerate(alphas):
                inner[a] += np.nan_to_num(_heldout_r(ridge.weights(alpha), stats[j]), nan=-1.0)
        best = alphas[np.argmax(inner, axis=0)]
        ridge = _Ridge(total - stats[k])
        r_folds[k] = _heldout_r(ridge.weights(best), stats[k])
        for a, alpha in enumerate(alphas):
            r_outer_alpha[k, a] = np.nan_to_num(_heldout_r(ridge.weights(alpha), stats[k]), nan=-1.0)
    with np.errstate(invalid="ignore"):
        r = np.where(np.all(np.isfinite(r_folds), axis=0), np.mean(r_folds, axis=0), np.nan)
    alpha_final = alphas[np.argmax(r_outer_alpha.mean(axis=0), axis=0)]
    w = _Ridge(total).weights(alpha_final)  # (p, E)
    weights = w.reshape(lags.size, x.shape[1], e)
    energy = np.sum(weights**2, axis=1)
    smooth = np.apply_along_axis(lambda c: np.convolve(c, [0.25, 0.5, 0.25], mode="same"), 0, energy)
    profile = smooth / np.maximum(smooth.sum(axis=0, keepdims=True), 1e-300)
    best_lag = lags[np.argmax(smooth, axis=0)] * FRAME_MS
    role = np.where(~np.isfinite(r) | (r < cfg.min_r), "none", np.where(best_lag <= 0, "leading", "lagging"))
    names = list(feature_names) if feature_names is not None else [f"f{i}" for i in range(x.shape[1])]
    return EncodingResult(
        r=r,
        r_folds=r_folds,
        best_lag_ms=best_lag.astype(np.float64),
        role=role.astype(str),
        alpha=alpha_final,
        lags_ms=lags * FRAME_MS,
        lag_profile=profile,
        weights=weights.astype(np.float32),
        feature_names=names,
        config=cfg,
    )


def compare_with_truth(result: EncodingResult, truth) -> dict:
    """Score an encoding analysis against a simulated participant's ground truth.

    Parameters
    ----------
    result : EncodingResult
    truth : edgensd.neural.simulate.GroundTruth

    Returns
    -------
    dict
        ``role_recovery``: fraction of the electrodes carrying speech information
        (:attr:`GroundTruth.carries_info`) whose recovered role equals the true one (leading vs lagging;
        ``'none'`` counts as a miss); ``n_info``; ``n_correct``; ``confusion`` (true role → recovered role
        → count, all good electrodes); ``false_info``: good no-information electrodes classified as leading
        or lagging; ``lag_error_ms_median``: median |recovered − true| lag over correctly classified
        electrodes; ``misclassified``: indices of missed information electrodes.
    """
    info = np.asarray(truth.carries_info, bool)
    if info.shape[0] != result.role.shape[0]:
        raise ValueError(
            f"ground truth has {info.shape[0]} electrodes but the result has {result.role.shape[0]}"
        )
    correct = info & (result.role == truth.role)
    good = ~(np.asarray(truth.bad, bool) | np.asarray(truth.bad_detected, bool))
    confusion: dict[str, dict[str, int]] = {}
    for t in ROLES:
        confusion[t] = {p: int(np.sum(good & (truth.role == t) & (result.role == p))) for p in ROLES}
    none_good = good & (truth.role == "none")
    lag_err = np.abs(result.best_lag_ms[correct] - truth.lag_ms[correct])
    return {
        "role_recovery": float(correct.sum() / info.sum()) if info.any() else float("nan"),
        "n_info": int(info.sum()),
        "n_correct": int(correct.sum()),
        "confusion": confusion,
        "false_info": int(np.sum(none_good & (result.role != "none"))),
        "n_none_good": int(none_good.sum()),
        "lag_error_ms_median": float(np.median(lag_err)) if lag_err.size else float("nan"),
        "misclassified": [int(i) for i in np.flatnonzero(info & ~correct)],
    }
