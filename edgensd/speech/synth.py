"""Differentiable source-filter synthesizer: 18 speech parameters per frame → power spectrogram.

The model (see :mod:`edgensd.speech.dsp` for the formula) has a harmonic source at multiples of f0 up to
the band limit, each harmonic drawn with the exact power response of the analysis window, a noise source,
six learned unimodal formant shapes placed at F1–F6 with learned bandwidths, a broadband unvoiced formant,
voiced/unvoiced mixing by α, a loudness gain and the participant's background-noise spectrum (estimated
from silent frames, not learned). In deterministic mode the noise contributes its expected power; in
stochastic mode each noise bin is scaled by an Exp(1) draw, as a periodogram of noise is.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from edgensd.config import Config
from edgensd.params import ALPHA, AU, BU, F0, FORMANT_A, FORMANT_F, FU, LOUD, N_FORMANTS, N_PARAMS, VoiceRange
from edgensd.spectrogram import BIN_HZ, DB_MAX, DB_MIN, SAMPLE_RATE, bin_frequencies, mel_filterbank
from edgensd.speech import dsp
from edgensd.speech.synth_weights import SYNTH_FORMAT_VERSION, SynthWeights

# Typical formant bandwidths (Hz) used to initialize the learned bandwidths.
_INIT_BW_HZ = (80.0, 100.0, 150.0, 200.0, 250.0, 300.0)


def _softplus_inv(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, np.float64)
    return np.where(y > 20, y, np.log(np.expm1(np.maximum(y, 1e-8))))


def power_to_norm_t(power: torch.Tensor) -> torch.Tensor:
    """Torch version of :func:`edgensd.spectrogram.power_to_norm` (differentiable inside the clamp)."""
    db = 10.0 * torch.log10(power.clamp_min(1e-12))
    db = db.clamp(DB_MIN, DB_MAX)
    return 2.0 * (db - DB_MIN) / (DB_MAX - DB_MIN) - 1.0


@dataclasses.dataclass
class SynthConfig(Config):
    """Configuration of a :class:`Synthesizer` (saved beside every speech model)."""

    voice: VoiceRange = dataclasses.field(default_factory=VoiceRange)
    format_version: int = SYNTH_FORMAT_VERSION


class Synthesizer(nn.Module):
    """Parameters (physical units) → power spectrogram on the project's 256-bin STFT grid.

    Parameters
    ----------
    config : SynthConfig
        Voice range (sets the harmonic count) and format version.
    background : ndarray, shape (256,), optional
        Background-noise power per bin; defaults to the power of -50 dB (the clamp floor).
    """

    def __init__(self, config: SynthConfig | None = None, background: np.ndarray | None = None) -> None:
        super().__init__()
        self.config = config or SynthConfig()
        voice = self.config.voice
        n_shapes = N_FORMANTS + 1
        init_g = dsp.lorentzian_log_table()
        slopes = np.diff(init_g) / dsp.SHAPE_KNOT_STEP
        self.shape_slopes = nn.Parameter(
            torch.tensor(np.tile(_softplus_inv(np.maximum(slopes, 1e-3)), (n_shapes, 1)), dtype=torch.float32)
        )
        self.log_bw0 = nn.Parameter(torch.tensor(np.log(_INIT_BW_HZ), dtype=torch.float32))
        self.log_bw_slope = nn.Parameter(torch.full((N_FORMANTS,), float(np.log(0.02)), dtype=torch.float32))
        self.gain_v = nn.Parameter(torch.zeros(dsp.N_GAIN_TERMS))
        self.gain_n = nn.Parameter(torch.zeros(dsp.N_GAIN_TERMS))
        if background is None:
            background = np.full(256, 10 ** (DB_MIN / 10), np.float32)
        self.register_buffer("background", torch.as_tensor(np.asarray(background, np.float32)).clone())
        self.register_buffer("bin_hz", torch.as_tensor(bin_frequencies(), dtype=torch.float32))
        self.register_buffer("win_table", torch.as_tensor(dsp.window_power_table()))
        self.register_buffer("mel_fb", torch.as_tensor(mel_filterbank()))
        self.n_harmonics = dsp.max_harmonics(voice.f0_hz[0])
        self.reach = dsp.harmonic_reach(voice.f0_hz[0])

    # ----- learned pieces -------------------------------------------------------------------------------
    def shape_tables(self) -> torch.Tensor:
        """``-ln s`` at the knots for the 6 voiced formants and the unvoiced one, shape (7, SHAPE_N_KNOTS)."""
        inc = F.softplus(self.shape_slopes) * dsp.SHAPE_KNOT_STEP
        return torch.cat([inc.new_zeros(inc.shape[0], 1), torch.cumsum(inc, dim=1)], dim=1)

    def bandwidths(self, formants_hz: torch.Tensor) -> torch.Tensor:
        """Voiced formant bandwidths (Hz) for formant frequencies (..., 6): ``b0 + b1 F``."""
        return torch.exp(self.log_bw0) + torch.exp(self.log_bw_slope) * formants_hz

    def _gain_db(self, coefs: torch.Tensor, f_hz: torch.Tensor) -> torch.Tensor:
        m = torch.arange(coefs.shape[0], dtype=f_hz.dtype, device=f_hz.device)
        return torch.cos((np.pi / (SAMPLE_RATE / 2)) * f_hz.unsqueeze(-1) * m) @ coefs

    @staticmethod
    def _lerp_table(table: torch.Tensor, pos: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Linear interpolation of a flat table at fractional positions; returns (value, inside mask)."""
        inside = pos < (n - 1)
        pos = torch.where(inside, pos, torch.zeros_like(pos))
        i0 = torch.floor(pos).long()
        frac = pos - i0.to(pos.dtype)
        return table[i0] * (1 - frac) + table[i0 + 1] * frac, inside

    def _shapes(self, x: torch.Tensor, tables: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """Evaluate shapes ``which`` (index per last-axis entry) at offsets ``x`` (in bandwidths)."""
        n = dsp.SHAPE_N_KNOTS
        u = torch.log2(1.0 + x.abs()) / dsp.SHAPE_KNOT_STEP
        inside = u < (n - 1)
        u = torch.where(inside, u, torch.zeros_like(u))
        i0 = torch.floor(u).long()
        frac = u - i0.to(u.dtype)
        flat = tables.reshape(-1)
        base = which * n
        g = flat[base + i0] * (1 - frac) + flat[base + i0 + 1] * frac
        return torch.where(inside, torch.exp(-g), torch.zeros_like(g))

    def envelope(self, params: torch.Tensor, f_hz: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
        """Voiced formant envelope ``Env(f)`` at frequencies ``f_hz`` (..., N) for params (..., 18)."""
        fr = params[..., FORMANT_F]
        amp = params[..., FORMANT_A]
        bw = self.bandwidths(fr)
        x = (f_hz.unsqueeze(-1) - fr.unsqueeze(-2)) / bw.unsqueeze(-2)
        which = torch.arange(N_FORMANTS, device=x.device)
        return (self._shapes(x, tables, which) * amp.unsqueeze(-2)).sum(-1)

    # ----- forward --------------------------------------------------------------------------------------
    def forward(
        self, params: torch.Tensor, deterministic: bool = True, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Render power spectrogram frames.

        Parameters
        ----------
        params : Tensor, shape (..., 18)
            Physical parameters (f0 in Hz, loudness in dB, ...), see :mod:`edgensd.params`.
        deterministic : bool
            Expected noise power (True) or an Exp(1)-distributed draw per noise bin (False).
        generator : torch.Generator, optional
            Random generator for the stochastic mode.

        Returns
        -------
        Tensor, shape (..., 256)
            Power per bin (the scale of :func:`edgensd.spectrogram.power_spectrogram`).
        """
        if params.shape[-1] != N_PARAMS:
            raise ValueError(f"params must have {N_PARAMS} values in the last axis, got shape {tuple(params.shape)}")
        tables = self.shape_tables()
        f0 = params[..., F0].unsqueeze(-1)
        loud = torch.pow(10.0, params[..., LOUD] / 10.0).unsqueeze(-1)
        alpha = params[..., ALPHA].unsqueeze(-1)
        fb = self.bin_hz

        # harmonic amplitudes (power per harmonic), shape (..., K)
        k = torch.arange(1, self.n_harmonics + 1, dtype=params.dtype, device=params.device)
        fh = f0 * k
        env_h = self.envelope(params, fh, tables)
        gv_h = torch.pow(10.0, self._gain_db(self.gain_v, fh) / 10.0)
        x = ((fh - dsp.TAPER_START_HZ) / (dsp.TAPER_END_HZ - dsp.TAPER_START_HZ)).clamp(0.0, 1.0)
        taper = 0.5 + 0.5 * torch.cos(np.pi * x)
        hp = alpha * (f0 / SAMPLE_RATE) * gv_h * env_h * taper  # (..., K)

        # spread each harmonic onto nearby bins with the window response
        kc = torch.round(fb / f0).detach()  # (..., 256)
        j = torch.arange(-self.reach, self.reach + 1, dtype=params.dtype, device=params.device)
        kk = kc.unsqueeze(-1) + j  # (..., 256, 2R+1)
        valid = (kk >= 1) & (kk <= self.n_harmonics)
        kidx = (kk.clamp(1, self.n_harmonics) - 1).long()
        df = (fb.unsqueeze(-1) - kk * f0.unsqueeze(-1)).abs() / BIN_HZ
        win, inside = self._lerp_table(self.win_table, df * dsp.WIN_OVERSAMPLE, self.win_table.shape[0])
        hp_g = torch.gather(hp, -1, kidx.flatten(-2)).view(kidx.shape)  # (..., 256, 2R+1)
        pv = (hp_g * win * (valid & inside).to(win.dtype)).sum(-1)

        # noise part on the bins
        env_b = self.envelope(params, fb, tables)
        xu = (fb - params[..., FU].unsqueeze(-1)) / params[..., BU].unsqueeze(-1)
        su = self._shapes(xu, tables, torch.tensor(N_FORMANTS, device=xu.device))
        gn_b = torch.pow(10.0, self._gain_db(self.gain_n, fb) / 10.0)
        en = gn_b * (env_b + params[..., AU].unsqueeze(-1) * su)
        noise = (1.0 - alpha) * en
        if not deterministic:
            noise = noise * torch.empty_like(noise).exponential_(1.0, generator=generator)
        return loud * (pv + noise) + self.background

    def spectrogram_norm(self, params: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Normalized-dB linear spectrogram (..., 256) in [-1, 1]."""
        return power_to_norm_t(self.forward(params, deterministic=deterministic))

    def mel_norm_from_power(self, power: torch.Tensor) -> torch.Tensor:
        """Normalized-dB mel spectrogram (..., 128) from a power spectrogram (..., 256)."""
        return power_to_norm_t(power @ self.mel_fb.T)

    # ----- export of the learned parts -----------------------------------------------------------------
    def export_weights(self) -> SynthWeights:
        """Snapshot the learned parts as numpy arrays (for the numpy renderer and the C synthesizer)."""
        with torch.no_grad():
            return SynthWeights(
                voice=self.config.voice,
                shape_tables=self.shape_tables().cpu().numpy().astype(np.float32),
                bw0_hz=torch.exp(self.log_bw0).cpu().numpy().astype(np.float32),
                bw_slope=torch.exp(self.log_bw_slope).cpu().numpy().astype(np.float32),
                gain_v_db=self.gain_v.detach().cpu().numpy().astype(np.float32),
                gain_n_db=self.gain_n.detach().cpu().numpy().astype(np.float32),
                background=self.background.cpu().numpy().astype(np.float32),
            )


def estimate_background(power: np.ndarray, quantile: float = 0.1) -> np.ndarray:
    """Background-noise power per bin from a participant's quietest frames.

    Parameters
    ----------
    power : ndarray, shape (n_frames, 256)
        Power spectrogram frames (e.g. all training audio).
    quantile : float
        Fraction of frames, by total power, taken as silent.

    Returns
    -------
    ndarray, float32, shape (256,)
        Median power per bin over the silent frames (floored at the -50 dB clamp floor / 10).
    """
    power = np.asarray(power, np.float64)
    if power.ndim != 2 or power.shape[1] != 256:
        raise ValueError(f"power must have shape (n_frames, 256), got {power.shape}")
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    energy = power.sum(axis=1)
    n_sil = max(1, int(round(quantile * power.shape[0])))
    silent = np.argsort(energy)[:n_sil]
    bg = np.median(power[silent], axis=0)
    return np.maximum(bg, 10 ** (DB_MIN / 10) / 10).astype(np.float32)
