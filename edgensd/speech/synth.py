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


# ----- fast path for a frozen synthesizer (stage 2) -----------------------------------------------------------
# When no weight needs a gradient, the weight-only pieces are computed once and cached, and the three costly
# evaluations (formant shapes, harmonic gain, harmonic spreading) are autograd Functions that return the value
# and, in backward, the analytic derivative from what forward kept: no backward through per-element table
# lookups, no (..., K, 24) cosine tensor, and the harmonics are spread from the harmonic side, 8 taps each,
# instead of gathered at every bin, (..., 256, 2R+1).

_SHAPE_DU_DX = 1.0 / (np.log(2.0) * dsp.SHAPE_KNOT_STEP)  # du/d|x| = _SHAPE_DU_DX / (1 + |x|)
_SPREAD_TAPS = 2 * dsp.WIN_HALF_BINS  # bins a harmonic reaches: |b - p| < WIN_HALF_BINS
_SPREAD_PAD = _SPREAD_TAPS  # spare columns on each side of the 256 bins (low harmonics, far harmonics)
_FROZEN_BLOCK = 512  # frames per block in the frozen path


class _ShapeSum(torch.autograd.Function):
    """``sum_i A_i s_i((f - F_i) / B_i)`` for learned shapes with fixed tables; shape (N, M).

    Inputs: ``f`` (N or 1, M) Hz, ``fr`` / ``bw`` / ``amp`` (N, n) Hz, Hz, linear; ``neg_v`` / ``neg_s`` flat
    tables of ``-g`` at the knot below and ``-(g[j+1] - g[j])`` per knot step (one row of SHAPE_N_KNOTS per
    shape, the last column 'beyond the table': value -1e30, slope 0); ``base`` (n,) int32 row offsets in the
    flat tables. The offsets are laid out (N, n, M), frequency last, so that the broadcasts of ``f`` and the
    per-shape values run along contiguous memory; for M = 1 ((frame, harmonic) pairs) (N, 1, n).
    """

    @staticmethod
    def forward(ctx, f, fr, bw, amp, neg_v, neg_s, base):
        freq_last = f.shape[-1] > 1
        if freq_last:  # offsets in bandwidths, (N, n, M)
            x = (f.unsqueeze(-2) - fr.unsqueeze(-1)).div_(bw.unsqueeze(-1))
            base = base.unsqueeze(-1)
        else:  # (N, 1, n)
            x = (f.unsqueeze(-1) - fr.unsqueeze(-2)).div_(bw.unsqueeze(-2))
        u = x.abs().log1p_().mul_(_SHAPE_DU_DX)  # log2(1 + |x|) / step
        last = float(dsp.SHAPE_N_KNOTS - 1)
        u.clamp_(max=last).nan_to_num_(nan=last)  # beyond the table (or NaN): the last column
        idx = u.to(torch.int32)  # the knot below (u >= 0); int32: a fresh int64 buffer costs more than it saves
        frac = u.frac_()
        idx = idx.add_(base).view(-1)
        ns = neg_s.index_select(0, idx).view(frac.shape)  # index_select: far faster than take/index on CPU
        s = neg_v.index_select(0, idx).view(frac.shape).addcmul_(ns, frac).exp_()  # exp(-g); 0 beyond the table
        ctx.save_for_backward(s, ns, x, amp, bw)
        ctx.freq_last = freq_last
        return _sum_shapes(amp, s, freq_last)

    @staticmethod
    def backward(ctx, grad):
        s, ns, x, amp, bw = ctx.saved_tensors
        # ds/dx = -s g'(u) du/dx, du/dx = sign(x) / ((1 + |x|) ln2 step): 0 at x = 0 (as autograd's abs); the
        # constant 1 / (ln2 step) is in coef
        dsdx = x.abs().add_(1.0)
        torch.div(s, dsdx, out=dsdx).mul_(ns).mul_(torch.sign(x))
        grad_f = grad_fr = grad_bw = grad_amp = None
        freq_last = ctx.freq_last
        if ctx.needs_input_grad[3]:
            grad_amp = _sum_freqs(grad, s, freq_last)
        coef = amp / bw * _SHAPE_DU_DX  # dx/dF = -1/B, dx/dB = -x/B, dx/df = 1/B
        if ctx.needs_input_grad[0]:
            grad_f = _sum_shapes(coef, dsdx, freq_last).mul_(grad)
        if ctx.needs_input_grad[1]:
            grad_fr = -coef * _sum_freqs(grad, dsdx, freq_last)
        if ctx.needs_input_grad[2]:
            grad_bw = -coef * _sum_freqs(grad, dsdx.mul_(x), freq_last)
        return grad_f, grad_fr, grad_bw, grad_amp, None, None, None


def _sum_shapes(w: torch.Tensor, t: torch.Tensor, freq_last: bool) -> torch.Tensor:
    """``sum_i w[n, i] t[n, i, m]`` (freq_last, BLAS) or ``sum_i w[n, i] t[n, 0, i]`` (M = 1); shape (N, M)."""
    if freq_last:
        return (w.unsqueeze(-2) @ t).squeeze(-2)
    return (t.squeeze(-2) * w).sum(-1, keepdim=True)


def _sum_freqs(g: torch.Tensor, t: torch.Tensor, freq_last: bool) -> torch.Tensor:
    """``sum_m g[n, m] t[n, i, m]`` (freq_last, BLAS on the transposed view) or ``g[n, 0] t[n, 0, i]``; (N, n)."""
    if freq_last:
        return (g.unsqueeze(-2) @ t.transpose(-1, -2)).squeeze(-2)
    return t.squeeze(-2) * g


class _GainDb(torch.autograd.Function):
    """Gain curve ``sum_m c_m cos(m theta)``, ``theta = pi f / 8000``, by Clenshaw's recurrence on ``cos theta``.

    Inputs: ``f`` (...) Hz, ``coefs`` (N_GAIN_TERMS,) dB (no gradient). Output: dB, same shape as ``f``.
    The derivative ``-sin(theta) sum_m m c_m U_{m-1}(cos theta)`` comes from a second recurrence, run in
    forward only when ``f`` needs a gradient.
    """

    @staticmethod
    def forward(ctx, f, coefs):
        theta = f.double() * (np.pi / (SAMPLE_RATE / 2))  # float64: the recurrence's error stays below float32's
        y = torch.cos(theta)
        c = coefs.double().unbind(0)
        value = _clenshaw(c, y, chebyshev_u=False).to(f.dtype)
        if ctx.needs_input_grad[0]:
            m = len(c)
            dc = [(n + 1) * c[n + 1] for n in range(m - 1)]
            dtheta = _clenshaw(dc, y, chebyshev_u=True).mul_(torch.sin(theta)).mul_(-np.pi / (SAMPLE_RATE / 2))
            ctx.save_for_backward(dtheta.to(f.dtype))
        return value

    @staticmethod
    def backward(ctx, grad):
        (dgain_df,) = ctx.saved_tensors
        return grad * dgain_df, None


def _clenshaw(c, y: torch.Tensor, chebyshev_u: bool) -> torch.Tensor:
    """``sum_m c[m] T_m(y)`` (or ``U_m(y)``) for a sequence of 0-d tensors ``c``, elementwise in ``y``."""
    y2 = 2.0 * y
    b1 = torch.zeros_like(y)
    b2 = torch.zeros_like(y)
    for cm in reversed(c[1:]):  # b_m = c_m + 2 y b_{m+1} - b_{m+2}, in place in two rotating buffers
        torch.sub(cm, b2, out=b2).addcmul_(y2, b1)
        b1, b2 = b2, b1
    return torch.sub(c[0], b2, out=b2).addcmul_(y2 if chebyshev_u else y, b1)


class _Spread(torch.autograd.Function):
    """Harmonic powers spread onto the 256 bins with the window response ``T``; shape (n_frames, 256).

    Harmonic ``k`` at ``p = f_k / BIN_HZ`` bins reaches the taps ``b = floor(p) - WIN_HALF_BINS + 1 + j``,
    ``j < 2 WIN_HALF_BINS``, at signed offsets ``t = WIN_OVERSAMPLE (f_k - f_b) / BIN_HZ`` knot steps, which split
    into the harmonic's phase ``WIN_OVERSAMPLE p mod WIN_OVERSAMPLE`` (shared by its taps) and the tap: so one
    row of a (phase, tap) table gives ``T(|t|)`` as value + slope x fraction, with no per-tap abs or floor.

    Inputs: ``hp`` (P,) powers and ``f_hz`` (P,) frequencies (Hz) of P harmonics, ``frame`` (P,) int64 the
    frame each belongs to, ``n_frames``; ``win_v`` / ``win_s`` flat (WIN_OVERSAMPLE + 2) x 2 WIN_HALF_BINS
    tables from :func:`_window_rows`; ``bin_err`` (256 + 2 pad,) each bin's stored frequency minus ``b BIN_HZ``,
    in knot steps (the float32 rounding of the bin grid, which the reference's ``|f_b - f_k|`` includes; it can
    move a tap across a knot, so the row is picked per tap).
    """

    @staticmethod
    def forward(ctx, hp, f_hz, frame, n_frames, win_v, win_s, bin_err):
        n = hp.shape[0]
        q = f_hz.double() * (dsp.WIN_OVERSAMPLE / BIN_HZ)  # float64: the phase as exact as |f_b - f_k| is
        qi = torch.floor(q)
        frac = q.sub_(qi).to(f_hz.dtype).unsqueeze(-1)
        qi = qi.long()
        width = 256 + 2 * _SPREAD_PAD
        first = torch.div(qi, dsp.WIN_OVERSAMPLE, rounding_mode="floor").add_(_SPREAD_PAD - dsp.WIN_HALF_BINS + 1)
        first.clamp_(0, width - _SPREAD_TAPS)  # far above the band: spare columns, cut off below
        taps = torch.arange(_SPREAD_TAPS, device=hp.device)
        col = first.unsqueeze(-1) + taps  # (P, taps)
        frac = frac - bin_err.index_select(0, col.view(-1)).view(n, _SPREAD_TAPS)  # in (-1, 2)
        step = torch.floor(frac)  # -1, 0 or 1: the tap's offset crossed a knot
        frac.sub_(step)
        row = torch.remainder(qi, dsp.WIN_OVERSAMPLE).add_(1).mul_(_SPREAD_TAPS).unsqueeze(-1).to(frac.dtype)
        idx = step.mul_(_SPREAD_TAPS).add_(row).add_(taps.to(frac.dtype)).long().view(-1)
        slope = win_s.index_select(0, idx).view(n, _SPREAD_TAPS)
        val = torch.addcmul(win_v.index_select(0, idx).view(n, _SPREAD_TAPS), slope, frac)
        dest = col.add_((frame * width).unsqueeze(-1)).view(-1)  # into the (n_frames, width) output, flat
        out = hp.new_zeros(n_frames * width).index_add_(0, dest, (val * hp.unsqueeze(-1)).view(-1))
        ctx.save_for_backward(hp, val, slope, dest)
        return out.view(n_frames, width)[:, _SPREAD_PAD : _SPREAD_PAD + 256]

    @staticmethod
    def backward(ctx, grad):
        hp, val, slope, dest = ctx.saved_tensors
        gp = F.pad(grad, (_SPREAD_PAD, _SPREAD_PAD)).view(-1).index_select(0, dest).view(val.shape)
        grad_hp = (gp * val).sum(-1) if ctx.needs_input_grad[0] else None
        grad_f = (gp * slope).sum(-1).mul_(hp).mul_(dsp.WIN_OVERSAMPLE / BIN_HZ) if ctx.needs_input_grad[1] else None
        return grad_hp, grad_f, None, None, None, None, None


def _window_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arrange the window table for :class:`_Spread`.

    Returns ``(value, slope)``, each flat float64 of (WIN_OVERSAMPLE + 2) x 2 WIN_HALF_BINS: row ``r`` (phase
    ``r - 1``, so -1 .. WIN_OVERSAMPLE) and tap ``j`` hold ``T(|t|)`` for the signed offset
    ``t = A + e``, ``A = WIN_OVERSAMPLE (WIN_HALF_BINS - 1 - j) + r - 1``, ``0 <= e < 1``: ``T(|t|) = value + slope e``;
    0 from ``|t| >= WIN_HALF_BINS WIN_OVERSAMPLE`` on, as the reference's lookup.
    """
    os_, half = dsp.WIN_OVERSAMPLE, dsp.WIN_HALF_BINS
    t = np.asarray(table, np.float64)
    last = half * os_  # |t| must stay below this
    a = os_ * (half - 1 - np.arange(2 * half))[None, :] + np.arange(-1, os_ + 1)[:, None]
    value = np.zeros(a.shape)
    slope = np.zeros(a.shape)
    up = (a >= 0) & (a < last)  # |t| = a + e grows with e
    value[up], slope[up] = t[a[up]], t[a[up] + 1] - t[a[up]]
    down = (a < 0) & (-a <= last)  # |t| = -a - e shrinks with e (strictly inside the table for e > 0)
    value[down], slope[down] = t[-a[down]], t[-a[down] - 1] - t[-a[down]]
    return value.reshape(-1), slope.reshape(-1)


class Synthesizer(nn.Module):
    """Parameters (physical units) → power spectrogram on the project's 256-bin STFT grid.

    Two evaluations of the same model: while a weight needs a gradient (stage 1), one autograd graph
    (:meth:`_forward_autograd`); otherwise (stage 2: frozen weights, or under ``torch.no_grad()``) a faster
    path with the weight-only pieces cached and analytic derivatives w.r.t. the params
    (:meth:`_forward_frozen`; a stage-2 step, forward + backward, costs 3.5-5x less, measured with
    ``bench/bench_stage2_step.py``). They agree to float rounding.

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
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            return self._forward_autograd(params, deterministic, generator)
        return self._forward_frozen(params, deterministic, generator)

    def _forward_autograd(
        self, params: torch.Tensor, deterministic: bool, generator: torch.Generator | None
    ) -> torch.Tensor:
        """The reference formulation, differentiable w.r.t. the weights too (stage 1)."""
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

    def _frozen_cache(self, dtype: torch.dtype, device: torch.device) -> dict:
        """Weight-only pieces for :meth:`_forward_frozen`, recomputed when a weight or buffer changes.

        Changes are seen through the tensors' version counters (in-place updates: optimizer steps,
        ``load_state_dict``) and storage (reassignment). Weights made in inference mode have no version counter:
        then nothing is kept. The pieces are ordinary tensors even when made in inference mode, so that a later
        call with autograd can use them.
        """
        tensors = [*self.parameters(), *self.buffers()]
        key = None
        if not any(t.is_inference() for t in tensors):
            key = (dtype, device, tuple((id(t), t.data_ptr(), t._version) for t in tensors))
            if getattr(self, "_cache_key", None) == key:
                return self._cache
        with torch.inference_mode(False), torch.no_grad():
            n = dsp.SHAPE_N_KNOTS
            g = self.shape_tables().to(torch.float64)
            neg_v = torch.cat([-g[:, :-1], g.new_full((g.shape[0], 1), -1e30)], dim=1)  # exp(-1e30) = 0
            neg_s = torch.cat([-(g[:, 1:] - g[:, :-1]), g.new_zeros(g.shape[0], 1)], dim=1)
            win_v, win_s = _window_rows(self.win_table.cpu().numpy())
            fb = self.bin_hz.to(dtype)
            err = (self.bin_hz.double() - torch.arange(256, dtype=torch.float64, device=device) * BIN_HZ) / BIN_HZ
            bin_err = F.pad(err * dsp.WIN_OVERSAMPLE, (_SPREAD_PAD, _SPREAD_PAD))
            cache = {
                "neg_v": neg_v.reshape(-1).to(dtype),
                "neg_s": neg_s.reshape(-1).to(dtype),
                "base_v": torch.arange(N_FORMANTS, device=device, dtype=torch.int32) * n,
                "base_b": torch.arange(N_FORMANTS + 1, device=device, dtype=torch.int32) * n,  # + the unvoiced shape
                "win_v": torch.as_tensor(win_v, dtype=dtype, device=device),
                "win_s": torch.as_tensor(win_s, dtype=dtype, device=device),
                "bin_err": bin_err.to(dtype),
                "gain_v": self.gain_v.detach().to(dtype),
                "gn_b": torch.pow(10.0, self._gain_db(self.gain_n.to(dtype), fb) / 10.0),
                "fb": fb.unsqueeze(0),
                "k": torch.arange(1, self.n_harmonics + 1, dtype=dtype, device=device),
            }
        self._cache_key, self._cache = key, cache
        return cache

    def _forward_frozen(
        self, params: torch.Tensor, deterministic: bool, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Same model as :meth:`_forward_autograd` for weights that need no gradient (stage 2): cached
        weight-only pieces and analytic derivatives w.r.t. the params (see :class:`_ShapeSum`,
        :class:`_GainDb`, :class:`_Spread`).

        Every harmonic within the window's reach of a bin is counted; the reference formulation looks only
        ``reach`` harmonics either side of the nearest one, which covers them all for f0 within the voice
        range (as :func:`edgensd.params.raw_to_physical` gives) but may miss some far below it.
        """
        c = self._frozen_cache(params.dtype, params.device)
        p = params.reshape(-1, N_PARAMS)
        # frames are independent: in blocks, the (frames, 7, 256) temporaries stay in cache (a stage-2 step of
        # 2048 frames took about 1/1.2 of the time of one block here; 256 or 1024 frames were slower than 512)
        parts = [self._frozen_block(q, c, deterministic, generator) for q in p.split(_FROZEN_BLOCK)]
        power = parts[0] if len(parts) == 1 else torch.cat(parts)
        return power.reshape(*params.shape[:-1], 256)

    def _frozen_block(
        self, p: torch.Tensor, c: dict, deterministic: bool, generator: torch.Generator | None
    ) -> torch.Tensor:
        """:meth:`_forward_frozen` for params (N, 18); power (N, 256)."""
        f0 = p[:, F0 : F0 + 1]
        loud = torch.pow(10.0, p[:, LOUD : LOUD + 1] / 10.0)
        alpha = p[:, ALPHA : ALPHA + 1]
        fr = p[:, FORMANT_F]
        amp = p[:, FORMANT_A]
        bw = self.bandwidths(fr)

        # harmonic powers, spread onto the bins; only the harmonics up to TAPER_END_HZ: the taper makes the others
        # exactly 0, with 0 gradient, and they are about half of the (N, K) grid for a mid-range f0
        fh = f0 * c["k"]
        pair = torch.nonzero((fh <= dsp.TAPER_END_HZ).view(-1)).squeeze(1)  # (P,) flat (frame, harmonic) index
        frame = torch.div(pair, fh.shape[1], rounding_mode="floor")
        fh = fh.view(-1).index_select(0, pair)
        frame_f0 = f0.index_select(0, frame).squeeze(1)
        env_h = _ShapeSum.apply(
            fh.unsqueeze(1),
            fr.index_select(0, frame),
            bw.index_select(0, frame),
            amp.index_select(0, frame),
            c["neg_v"],
            c["neg_s"],
            c["base_v"],
        ).squeeze(1)
        gv_h = torch.pow(10.0, _GainDb.apply(fh, c["gain_v"]) / 10.0)
        x = ((fh - dsp.TAPER_START_HZ) / (dsp.TAPER_END_HZ - dsp.TAPER_START_HZ)).clamp(0.0, 1.0)
        taper = 0.5 + 0.5 * torch.cos(np.pi * x)
        hp = alpha.index_select(0, frame).squeeze(1) * (frame_f0 / SAMPLE_RATE) * gv_h * env_h * taper
        pv = _Spread.apply(hp, fh, frame, p.shape[0], c["win_v"], c["win_s"], c["bin_err"])

        # noise part: the six voiced shapes and the unvoiced one in one pass over the bins
        fr7 = torch.cat([fr, p[:, FU : FU + 1]], dim=1)
        bw7 = torch.cat([bw, p[:, BU : BU + 1]], dim=1)
        amp7 = torch.cat([amp, p[:, AU : AU + 1]], dim=1)
        en = c["gn_b"] * _ShapeSum.apply(c["fb"], fr7, bw7, amp7, c["neg_v"], c["neg_s"], c["base_b"])
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
