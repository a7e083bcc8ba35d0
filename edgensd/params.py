"""The 18 speech parameters: names, units, per-participant ranges and the raw → physical map.

This module is the only place that knows units and limits. A parameter frame array has shape
``(n_frames, 18)``, float32, physical units, columns in :data:`PARAM_NAMES` order, one row per 8 ms frame.

========  =================  ======  ===========================================================
index     name               unit    meaning
========  =================  ======  ===========================================================
0         ``f0_hz``          Hz      fundamental frequency (log-scaled within the voice range)
1         ``loudness_db``    dB      overall source power gain (power scale of ``edgensd.spectrogram``)
2         ``alpha``          1       voiced weight α in [0, 1]; the unvoiced weight is 1 − α
3-8       ``f1_hz``…``f6_hz`` Hz     formant centre frequencies F1–F6
9-14      ``a1``…``a6``      1       formant amplitudes A1–A6 in [0, 1] (linear power gain)
15        ``fu_hz``          Hz      centre frequency of the broadband unvoiced formant
16        ``bu_hz``          Hz      bandwidth of the unvoiced formant
17        ``au``             1       amplitude of the unvoiced formant in [0, 1]
========  =================  ======  ===========================================================

Raw network outputs are unbounded reals; :func:`raw_to_physical` squashes each with a logistic function
into its range (f0 on a log scale), so every decoder, the synthesizer and the exporters share one map.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgensd.config import Config, check_choice

N_FORMANTS = 6
PARAM_NAMES: tuple[str, ...] = (
    "f0_hz",
    "loudness_db",
    "alpha",
    *(f"f{i}_hz" for i in range(1, N_FORMANTS + 1)),
    *(f"a{i}" for i in range(1, N_FORMANTS + 1)),
    "fu_hz",
    "bu_hz",
    "au",
)
N_PARAMS = len(PARAM_NAMES)
PARAM_UNITS: dict[str, str] = {
    n: ("Hz" if n.endswith("_hz") else "dB" if n.endswith("_db") else "1") for n in PARAM_NAMES
}
IDX: dict[str, int] = {n: i for i, n in enumerate(PARAM_NAMES)}
F0, LOUD, ALPHA = IDX["f0_hz"], IDX["loudness_db"], IDX["alpha"]
FORMANT_F = slice(IDX["f1_hz"], IDX["f6_hz"] + 1)
FORMANT_A = slice(IDX["a1"], IDX["a6"] + 1)
FU, BU, AU = IDX["fu_hz"], IDX["bu_hz"], IDX["au"]


@dataclasses.dataclass
class VoiceRange(Config):
    """A participant's voice range: the limits of every parameter (Hz, dB or unitless).

    Use :meth:`preset` for ``'low'`` (typical adult male) or ``'high'`` (typical adult female) voices and
    adjust fields for a participant. The range is saved with every speech model and decoder; a decoder
    trained against one range refuses a speech model of another.
    """

    name: str = "high"
    f0_hz: tuple[float, float] = (110.0, 420.0)
    loudness_db: tuple[float, float] = (-60.0, 30.0)
    formants_hz: tuple[tuple[float, float], ...] = (
        (250.0, 1100.0),
        (650.0, 3000.0),
        (1700.0, 4000.0),
        (2800.0, 5000.0),
        (3800.0, 6200.0),
        (4800.0, 7600.0),
    )
    fu_hz: tuple[float, float] = (1000.0, 7800.0)
    # lower limit small enough that offsets up to 8 kHz reach every knot of the learned unvoiced shape
    bu_hz: tuple[float, float] = (30.0, 5000.0)

    @classmethod
    def preset(cls, name: str) -> VoiceRange:
        """Return the ``'low'`` or ``'high'`` preset."""
        check_choice("voice range preset", name, ("low", "high"))
        if name == "high":
            return cls()
        return cls(
            name="low",
            f0_hz=(50.0, 250.0),
            formants_hz=(
                (200.0, 950.0),
                (550.0, 2600.0),
                (1500.0, 3500.0),
                (2500.0, 4500.0),
                (3400.0, 5500.0),
                (4400.0, 7200.0),
            ),
        )

    def __post_init__(self) -> None:
        self.f0_hz = tuple(float(v) for v in self.f0_hz)
        self.loudness_db = tuple(float(v) for v in self.loudness_db)
        self.formants_hz = tuple(tuple(float(v) for v in r) for r in self.formants_hz)
        self.fu_hz = tuple(float(v) for v in self.fu_hz)
        self.bu_hz = tuple(float(v) for v in self.bu_hz)
        if len(self.formants_hz) != N_FORMANTS:
            raise ValueError(f"formants_hz must hold {N_FORMANTS} (lo, hi) pairs, got {len(self.formants_hz)}")
        for name, (lo, hi) in [
            ("f0_hz", self.f0_hz),
            ("loudness_db", self.loudness_db),
            ("fu_hz", self.fu_hz),
            ("bu_hz", self.bu_hz),
            *((f"formants_hz[{i}]", r) for i, r in enumerate(self.formants_hz)),
        ]:
            if not lo < hi:
                raise ValueError(f"voice range {name} must have lo < hi, got ({lo}, {hi})")
        if self.f0_hz[0] <= 0:
            raise ValueError(f"voice range f0_hz must be positive, got {self.f0_hz}")
        if max(self.fu_hz[1], self.formants_hz[-1][1]) >= 8000.0:
            raise ValueError("formant ranges must stay below the 8 kHz band limit")

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bound of each parameter, two float32 arrays of shape (18,)."""
        lo = np.zeros(N_PARAMS, np.float32)
        hi = np.ones(N_PARAMS, np.float32)
        lo[F0], hi[F0] = self.f0_hz
        lo[LOUD], hi[LOUD] = self.loudness_db
        for i, (a, b) in enumerate(self.formants_hz):
            lo[IDX[f"f{i + 1}_hz"]], hi[IDX[f"f{i + 1}_hz"]] = a, b
        lo[FU], hi[FU] = self.fu_hz
        lo[BU], hi[BU] = self.bu_hz
        return lo, hi

    def same_as(self, other: VoiceRange) -> bool:
        """Whether two ranges are identical (all limits equal)."""
        a_lo, a_hi = self.bounds()
        b_lo, b_hi = other.bounds()
        return bool(np.array_equal(a_lo, b_lo) and np.array_equal(a_hi, b_hi))


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def raw_to_physical(raw: Any, voice: VoiceRange) -> Any:
    """Map raw network outputs to physical parameter values.

    Parameters
    ----------
    raw : ndarray or torch.Tensor, shape (..., 18)
        Unbounded raw outputs.
    voice : VoiceRange
        The participant's limits.

    Returns
    -------
    Same type as ``raw``, shape (..., 18)
        Physical values (Hz, dB, unitless) in :data:`PARAM_NAMES` order; f0 is mapped on a log scale.
    """
    lo, hi = voice.bounds()
    if _is_torch(raw):
        import torch

        s = torch.sigmoid(raw)
        lo_t = torch.as_tensor(lo, dtype=raw.dtype, device=raw.device)
        hi_t = torch.as_tensor(hi, dtype=raw.dtype, device=raw.device)
        out = lo_t + s * (hi_t - lo_t)
        log_f0 = np.log(lo[F0]) + s[..., F0] * float(np.log(hi[F0]) - np.log(lo[F0]))
        return torch.cat([torch.exp(log_f0).unsqueeze(-1), out[..., 1:]], dim=-1)
    raw = np.asarray(raw, dtype=np.float32)
    if raw.shape[-1] != N_PARAMS:
        raise ValueError(f"raw must have {N_PARAMS} values in its last axis, got shape {raw.shape}")
    s = 1.0 / (1.0 + np.exp(-raw.astype(np.float64)))
    out = lo + s * (hi - lo)
    out[..., F0] = np.exp(np.log(lo[F0]) + s[..., F0] * (np.log(hi[F0]) - np.log(lo[F0])))
    return out.astype(np.float32)


def physical_to_raw(phys: np.ndarray, voice: VoiceRange, eps: float = 1e-6) -> np.ndarray:
    """Inverse of :func:`raw_to_physical` (numpy), clipping values at the range edges."""
    phys = np.asarray(phys, dtype=np.float64)
    lo, hi = voice.bounds()
    s = (phys - lo) / (hi - lo)
    s[..., F0] = (np.log(np.clip(phys[..., F0], lo[F0], hi[F0])) - np.log(lo[F0])) / (np.log(hi[F0]) - np.log(lo[F0]))
    s = np.clip(s, eps, 1 - eps)
    return np.log(s / (1 - s)).astype(np.float32)


def check_param_frames(params: np.ndarray, name: str = "params") -> np.ndarray:
    """Validate a parameter frame array: float, shape (n_frames, 18), all finite."""
    arr = np.asarray(params)
    if arr.ndim != 2 or arr.shape[1] != N_PARAMS:
        raise ValueError(f"{name} must have shape (n_frames, {N_PARAMS}), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(f"{name} holds {bad} NaN/inf values")
    return arr.astype(np.float32, copy=False)


def clamp_physical(params: np.ndarray, voice: VoiceRange) -> tuple[np.ndarray, int]:
    """Clamp physical parameters into their ranges, replacing NaN by the range floor.

    Returns
    -------
    clamped : ndarray, float32, same shape
    n_fixed : int
        How many values were NaN/inf or out of range.
    """
    p = np.array(params, dtype=np.float32, copy=True)
    lo, hi = voice.bounds()
    bad = ~np.isfinite(p) | (p < lo) | (p > hi)
    p = np.where(np.isnan(p), lo, p)
    p = np.clip(p, lo, hi).astype(np.float32)
    return p, int(bad.sum())


def params_to_dict(params: np.ndarray) -> dict[str, np.ndarray]:
    """Frame array (n_frames, 18) → ``{name: (n_frames,)}``."""
    params = check_param_frames(params)
    return {n: params[:, i] for i, n in enumerate(PARAM_NAMES)}


def dict_to_params(d: dict[str, np.ndarray]) -> np.ndarray:
    """``{name: (n_frames,)}`` → frame array (n_frames, 18); every name must be present."""
    missing = [n for n in PARAM_NAMES if n not in d]
    if missing:
        raise KeyError(f"parameter dict is missing {missing}")
    return np.stack([np.asarray(d[n], np.float32) for n in PARAM_NAMES], axis=1)
