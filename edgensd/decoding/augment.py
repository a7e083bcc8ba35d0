"""Augmentation of stage-2 training crops (z-scored high-gamma), for small data.

Every function takes a batch of crops ``x`` (batch, frames, electrodes) of z-scored features and a NumPy
``Generator``, draws what it needs from it (so a seed fixes the result) and returns a new array; none is
applied at evaluation. Zero is each electrode's mean in z units, so a dropped electrode reads as a flat,
information-free channel at its mean level (no rescaling of the others: the input statistics of the kept
electrodes stay those seen at test time).

* :func:`electrode_dropout` — each electrode of each crop set to 0 with probability ``p``;
* :func:`jitter_shifts` — per-crop integer shifts in ``[-max_frames, max_frames]`` of the neural crop
  relative to its targets (the training loop reads the neural frames ``t + shift`` for targets ``t``);
* :func:`add_noise` — additive Gaussian noise, ``sd`` in z units;
* :func:`gain_scale` — each electrode of each crop multiplied by ``exp(N(0, sd))`` (log-normal gain).
"""

from __future__ import annotations

import numpy as np

__all__ = ["add_noise", "electrode_dropout", "gain_scale", "jitter_shifts"]


def _check_batch(x: np.ndarray) -> None:
    if x.ndim != 3:
        raise ValueError(f"x must have shape (batch, frames, electrodes), got {x.shape}")


def electrode_dropout(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """Zero whole electrodes, independently per crop, with probability ``p``.

    Parameters
    ----------
    x : ndarray, shape (batch, frames, electrodes)
    p : float
        Drop probability in [0, 1).
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, same shape and dtype
    """
    _check_batch(x)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p (electrode dropout) must be in [0, 1), got {p}")
    keep = rng.random((x.shape[0], 1, x.shape[2])) >= p
    return (x * keep).astype(x.dtype, copy=False)


def jitter_shifts(n: int, max_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Per-crop shifts of the neural frames relative to the targets, uniform in ``[-max_frames, max_frames]``.

    Parameters
    ----------
    n : int
        Number of crops.
    max_frames : int
        Largest shift, frames (>= 0).
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of int64, shape (n,)
    """
    if int(max_frames) != max_frames or max_frames < 0:
        raise ValueError(f"max_frames (time jitter) must be an integer >= 0, got {max_frames}")
    return rng.integers(-int(max_frames), int(max_frames) + 1, size=int(n)).astype(np.int64)


def add_noise(x: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian noise of standard deviation ``sd`` (z units) to every value.

    Parameters
    ----------
    x : ndarray, shape (batch, frames, electrodes)
    sd : float
        >= 0.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, same shape and dtype
    """
    _check_batch(x)
    if not sd >= 0:
        raise ValueError(f"sd (noise) must be >= 0, got {sd}")
    return (x + sd * rng.standard_normal(x.shape)).astype(x.dtype, copy=False)


def gain_scale(x: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Scale each electrode of each crop by a log-normal gain ``exp(N(0, sd))``.

    Parameters
    ----------
    x : ndarray, shape (batch, frames, electrodes)
    sd : float
        Standard deviation of the log gain, >= 0.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, same shape and dtype
    """
    _check_batch(x)
    if not sd >= 0:
        raise ValueError(f"sd (gain) must be >= 0, got {sd}")
    g = np.exp(sd * rng.standard_normal((x.shape[0], 1, x.shape[2])))
    return (x * g).astype(x.dtype, copy=False)
