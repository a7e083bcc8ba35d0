"""Frame-by-frame harmonic-plus-noise audio renderer (numpy reference of the C synthesizer).

Every frame of 18 parameters yields 128 audio samples; state (phase accumulator, previous amplitudes, the
overlapping half of the last noise segment, a frame counter) is carried across calls, so audio can be
rendered as parameters arrive, with one frame of look-ahead: :meth:`FrameRenderer.push` of frame ``t``
returns samples ``[128 (t-1), 128 t)``, interpolating parameters from frame ``t-1`` (at sample
``128 (t-1)``) to frame ``t`` — the spectrogram convention that frame ``t`` is centred on sample ``128 t``.

Arithmetic is float32 in the order the C code uses, so the two agree to about 1e-6:

* harmonic part: one fundamental phase held as a uint32 accumulator (2^32 = one turn; increments
  ``round(f0 / fs * 2^32)`` per sample, f0 interpolated linearly per sample), harmonic ``k`` at phase
  ``k * acc mod 2^32``; amplitude of harmonic ``k`` is ``2 sqrt(L alpha (f0/fs) Ev(k f0) taper(k f0))``
  (see :mod:`edgensd.speech.dsp`), interpolated linearly across the frame;
* noise part: per frame, 256 uniform white samples of unit variance from a counter-based hash (lowbias32
  of ``counter * 0x9E3779B9 + seed``), shaped in the 256-point FFT domain by ``sqrt(L (1-alpha) En(f))``
  (129 bins at 62.5 Hz), multiplied by a square-root periodic Hann window and overlap-added at hop 128
  (segment ``t`` centred on sample ``128 t``), which keeps the noise variance constant.

Bad parameters never produce NaN/inf audio: NaN, inf and out-of-range values are clamped into the voice
range and counted in :attr:`FrameRenderer.n_clamped`.
"""

from __future__ import annotations

import numpy as np

from edgensd.params import ALPHA, AU, BU, F0, FORMANT_A, FORMANT_F, FU, LOUD, N_PARAMS, clamp_physical
from edgensd.spectrogram import HOP, SAMPLE_RATE
from edgensd.speech import dsp
from edgensd.speech.synth_weights import SynthWeights

NOISE_FFT = 2 * HOP  # 256
_TWO_PI_OVER_2_32 = np.float32(2.0 * np.pi / 2.0**32)
_INC_SCALE = np.float32(2.0**32 / SAMPLE_RATE)
_U32 = np.uint32


def lowbias32(x: np.ndarray) -> np.ndarray:
    """32-bit integer hash (uint32 in, uint32 out, wrap-around arithmetic)."""
    x = np.asarray(x, dtype=np.uint32).copy()
    x ^= x >> _U32(16)
    x *= _U32(0x7FEB352D)
    x ^= x >> _U32(15)
    x *= _U32(0x846CA68B)
    x ^= x >> _U32(16)
    return x


def white_noise(seed: int, frame_index: int, n: int = NOISE_FFT) -> np.ndarray:
    """Uniform white noise of unit variance for one frame, float32, shape (n,).

    Sample ``i`` of frame ``t`` uses counter ``t * n + i``, so any frame can be regenerated on its own.
    """
    counter = (np.uint64(frame_index) * np.uint64(n) + np.arange(n, dtype=np.uint64)).astype(np.uint32)
    with np.errstate(over="ignore"):
        x = counter * _U32(0x9E3779B9) + _U32(seed & 0xFFFFFFFF)
    h = lowbias32(x)
    u = (h >> _U32(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)
    return (np.float32(2.0) * u - np.float32(1.0)) * np.float32(np.sqrt(3.0))


def _sqrt_hann(n: int) -> np.ndarray:
    k = np.arange(n, dtype=np.float64)
    return np.sqrt(0.5 - 0.5 * np.cos(2.0 * np.pi * k / n)).astype(np.float32)


class FrameRenderer:
    """Streaming harmonic-plus-noise renderer.

    Parameters
    ----------
    weights : SynthWeights
        Learned parts of a trained synthesizer (formant shapes, bandwidths, gain curves, background).
    seed : int
        Seed of the noise generator (uint32).
    include_background : bool
        Add the participant's background noise to the noise source (off by default: a prosthesis has no
        reason to reproduce the recording room).
    """

    def __init__(self, weights: SynthWeights, seed: int = 0, include_background: bool = False) -> None:
        self.w = weights
        self.seed = int(seed) & 0xFFFFFFFF
        self.include_background = bool(include_background)
        self.n_harm = dsp.max_harmonics(weights.voice.f0_hz[0])
        self._k = np.arange(1, self.n_harm + 1, dtype=np.float32)
        self._noise_f = (np.arange(NOISE_FFT // 2 + 1) * (SAMPLE_RATE / NOISE_FFT)).astype(np.float32)
        self._win = _sqrt_hann(NOISE_FFT)
        self._gn_noise = (10.0 ** (dsp.eval_gain_db(weights.gain_n_db, self._noise_f) / 10.0)).astype(np.float32)
        bin_of = np.minimum(np.round(self._noise_f / (SAMPLE_RATE / 511)).astype(int), 255)
        self._bg_noise = weights.background[bin_of].astype(np.float32)
        self._ramp = (np.arange(HOP, dtype=np.float32) / np.float32(HOP)).astype(np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget all state (phase, previous frame, noise tail, frame counter, clamp count)."""
        self.phase = np.uint32(0)
        self.prev: np.ndarray | None = None
        self.prev_amp = np.zeros(self.n_harm, np.float32)
        self.tail = np.zeros(HOP, np.float32)
        self.frame_index = 0
        self.n_clamped = 0

    # ------------------------------------------------------------------------------------------------
    def envelope(self, p: np.ndarray, f_hz: np.ndarray) -> np.ndarray:
        """Voiced formant envelope ``Env(f)`` of one parameter frame at frequencies ``f_hz`` (N,)."""
        fr = p[FORMANT_F]
        bw = self.w.bw0_hz + self.w.bw_slope * fr
        x = (f_hz[:, None] - fr[None, :]) / bw[None, :]
        env = np.zeros(f_hz.shape[0], np.float32)
        for i in range(fr.shape[0]):
            env += p[FORMANT_A][i] * dsp.eval_shape(self.w.shape_tables[i], x[:, i])
        return env

    def harmonic_amplitudes(self, p: np.ndarray) -> np.ndarray:
        """Amplitude of each harmonic (K,) for one clamped parameter frame."""
        f0 = p[F0]
        fh = f0 * self._k
        loud = np.float32(10.0 ** (p[LOUD] / 10.0))
        gv = (10.0 ** (dsp.eval_gain_db(self.w.gain_v_db, fh) / 10.0)).astype(np.float32)
        pw = loud * p[ALPHA] * (f0 / np.float32(SAMPLE_RATE)) * gv * self.envelope(p, fh) * dsp.harmonic_taper(fh)
        return (np.float32(2.0) * np.sqrt(np.maximum(pw, 0.0))).astype(np.float32)

    def noise_gain(self, p: np.ndarray) -> np.ndarray:
        """FFT-domain amplitude gain (129,) of the noise source for one clamped parameter frame."""
        loud = np.float32(10.0 ** (p[LOUD] / 10.0))
        su = dsp.eval_shape(self.w.shape_tables[-1], (self._noise_f - p[FU]) / p[BU])
        en = self._gn_noise * (self.envelope(p, self._noise_f) + p[AU] * su)
        pw = loud * (np.float32(1.0) - p[ALPHA]) * en
        if self.include_background:
            pw = pw + self._bg_noise
        return np.sqrt(np.maximum(pw, 0.0)).astype(np.float32)

    def _clamp(self, params: np.ndarray) -> np.ndarray:
        p = np.asarray(params, np.float32)
        if p.shape != (N_PARAMS,):
            raise ValueError(f"params must have shape ({N_PARAMS},) for one frame, got {p.shape}")
        p, n_bad = clamp_physical(p, self.w.voice)
        self.n_clamped += n_bad
        return p

    # ------------------------------------------------------------------------------------------------
    def push(self, params: np.ndarray) -> np.ndarray:
        """Add parameter frame ``t``; return audio samples ``[128 (t-1), 128 t)``, float32, shape (128,).

        The first call returns the fade-in block before sample 0 (amplitudes ramp up from silence).
        """
        p = self._clamp(params)
        amp = self.harmonic_amplitudes(p)
        prev = p if self.prev is None else self.prev
        prev_amp = self.prev_amp if self.prev is not None else np.zeros_like(amp)

        # harmonic part: per-sample f0 and amplitude interpolation, uint32 phase accumulator
        f0s = prev[F0] + (p[F0] - prev[F0]) * self._ramp
        inc = (f0s * _INC_SCALE + np.float32(0.5)).astype(np.uint32)
        with np.errstate(over="ignore"):
            acc = (self.phase + np.concatenate([[np.uint32(0)], np.cumsum(inc[:-1], dtype=np.uint32)])).astype(
                np.uint32
            )
            self.phase = np.uint32(acc[-1] + inc[-1])
            ph = (acc[:, None] * self._k.astype(np.uint32)[None, :]).astype(np.uint32)
        amps = prev_amp[None, :] + (amp - prev_amp)[None, :] * self._ramp[:, None]
        harm = np.sum(amps * np.sin(ph.astype(np.float32) * _TWO_PI_OVER_2_32), axis=1, dtype=np.float32)

        # noise part: shaped segment centred on this frame, overlap-added with the previous tail
        u = white_noise(self.seed, self.frame_index)
        seg = np.fft.irfft(np.fft.rfft(u) * self.noise_gain(p), n=NOISE_FFT).astype(np.float32) * self._win
        noise = self.tail + seg[:HOP]
        self.tail = seg[HOP:].copy()

        self.prev, self.prev_amp = p, amp
        self.frame_index += 1
        return (harm + noise).astype(np.float32)

    def render(self, params: np.ndarray) -> np.ndarray:
        """Render a whole parameter array from the current state.

        Parameters
        ----------
        params : ndarray, shape (n_frames, 18)
            Physical parameters.

        Returns
        -------
        ndarray, float32, shape (n_frames * 128,)
            Samples ``[0, 128 n_frames)`` aligned with the spectrogram frame clock (the fade-in block is
            dropped; the last frame is held for the final block).
        """
        params = np.asarray(params, np.float32)
        if params.ndim != 2 or params.shape[1] != N_PARAMS:
            raise ValueError(f"params must have shape (n_frames, {N_PARAMS}), got {params.shape}")
        if params.shape[0] == 0:
            return np.zeros(0, np.float32)
        out = [self.push(p) for p in params]
        out.append(self.push(params[-1]))
        return np.concatenate(out[1:])


def render_audio(
    weights: SynthWeights, params: np.ndarray, seed: int = 0, include_background: bool = False
) -> np.ndarray:
    """Render a parameter array (n_frames, 18) to audio (n_frames * 128,) with a fresh renderer."""
    return FrameRenderer(weights, seed=seed, include_background=include_background).render(params)
