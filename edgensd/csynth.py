"""The C synthesizer (``csrc/``) behind a small Python API, and parameter trajectories to check it with.

:class:`CSynth` runs the C99 core through the Cython extension ``edgensd._csynth``: whole arrays go through
one call with no per-frame Python overhead. It mirrors the two Python references:

* :meth:`CSynth.spectrogram` — the PyTorch :class:`~edgensd.speech.synth.Synthesizer` in deterministic mode
  (normalized dB or power, 256 bins per frame);
* :meth:`CSynth.render_frame` / :meth:`CSynth.render` — the numpy
  :class:`~edgensd.speech.render.FrameRenderer` (``push`` / ``render``), with the same state, alignment,
  seedable noise and clamp counter; ``fixed_point=True`` renders with the integer-only (Q15/Q30) path.

Parameters are physical (:mod:`edgensd.params`), float32, shape ``(18,)`` per frame or ``(n_frames, 18)``.
NaN, inf and out-of-range values are clamped into the voice range and counted in :attr:`CSynth.n_clamped`;
no input yields NaN/inf output.

The helpers at the end make parameter trajectories for parity checks and benchmarks until decoded
trajectories of a trained speech model exist: :func:`smooth_random_params`, :func:`fit_params_to_audio`
(analysis by synthesis with the PyTorch synthesizer) and :func:`perturbed_synthesizer` (non-default
learned weights).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgensd.log import logger
from edgensd.params import ALPHA, AU, F0, FORMANT_A, LOUD, N_PARAMS, VoiceRange, physical_to_raw, raw_to_physical
from edgensd.spectrogram import HOP
from edgensd.speech.synth_export import load_extension, load_synth_source
from edgensd.speech.synth_weights import SynthWeights

if TYPE_CHECKING:  # pragma: no cover
    from edgensd.speech.synth import Synthesizer

__all__ = ["CSynth", "fit_params_to_audio", "perturbed_synthesizer", "smooth_random_params", "speech_prompt"]


def _frames(params: np.ndarray, name: str = "params") -> np.ndarray:
    arr = np.ascontiguousarray(params, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != N_PARAMS:
        raise ValueError(f"{name} must have shape (n_frames, {N_PARAMS}), got {arr.shape}")
    return arr


def _frame(params: np.ndarray, name: str = "params") -> np.ndarray:
    arr = np.ascontiguousarray(params, dtype=np.float32)
    if arr.shape != (N_PARAMS,):
        raise ValueError(f"{name} must have shape ({N_PARAMS},) for one frame, got {arr.shape}")
    return arr


class CSynth:
    """Spectrogram frames and streaming audio from the C synthesizer.

    Parameters
    ----------
    weights : SynthWeights, str or path-like
        The learned synthesizer parts: a :class:`SynthWeights`, a ``.edsynth`` file (``edgensd export
        synth``), a ``synth_weights.npz`` or a trained speech model directory holding one.
    seed : int
        Seed of the noise generator (taken modulo 2^32, as :class:`~edgensd.speech.render.FrameRenderer`).
    include_background : bool
        Add the participant's background noise to the rendered noise source (as the numpy renderer).
    fixed_point : bool
        Render audio with the fixed-point path (integer arithmetic, Q15 output) instead of float32.

    Raises
    ------
    FileNotFoundError
        ``weights`` names a missing file or a directory without ``synth_weights.npz``.
    ValueError
        The synth file has the wrong magic, version, size or checksum, or holds a value the C core refuses;
        the message names the file and the problem.
    """

    def __init__(
        self,
        weights: SynthWeights | str | os.PathLike,
        seed: int = 0,
        include_background: bool = False,
        fixed_point: bool = False,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.weights, self._image, self.source = load_synth_source(weights)
        self.seed = int(seed) & 0xFFFFFFFF
        self.include_background = bool(include_background)
        self.fixed_point = bool(fixed_point)
        self._engine = load_extension().Engine(np.frombuffer(self._image, np.uint8), self.seed,
                                               self.include_background)
        self._n_clamped_spec = 0
        logger.debug("C synth from %s: %d harmonics, %s audio", self.source, self._engine.n_harmonics,
                     "fixed-point" if self.fixed_point else "float32")

    # ------------------------------------------------------------------------------------------------
    @property
    def voice(self) -> VoiceRange:
        """The voice range the parameters are clamped to."""
        return self.weights.voice

    @property
    def n_harmonics(self) -> int:
        """Harmonics rendered (``ceil(8000 / f0_min)``)."""
        return int(self._engine.n_harmonics)

    @property
    def image(self) -> bytes:
        """The checked ``.edsynth`` image the C side runs on."""
        return self._image

    @property
    def n_clamped(self) -> int:
        """Parameter values clamped (NaN, inf or out of range) since construction or :meth:`reset`, by any
        method (audio and spectrogram)."""
        audio = self._engine.fx_n_clamped if self.fixed_point else self._engine.n_clamped
        return int(audio) + self._n_clamped_spec

    @property
    def n_saturated(self) -> int:
        """Fixed-point path only: amplitudes, gains or output samples that hit their range (0 in float)."""
        return int(self._engine.fx_n_saturated) if self.fixed_point else 0

    @property
    def frame_index(self) -> int:
        """Frames pushed through the audio renderer since construction or :meth:`reset` (mod 2^32)."""
        return int(self._engine.frame_index)

    def reset(self) -> None:
        """Forget the audio state (phase, previous frame, noise tail, frame counter) and the clamp counts."""
        self._engine.reset()
        self._n_clamped_spec = 0

    # ------------------------------------------------------------------------------------------------
    def spectrogram(self, params: np.ndarray, power: bool = False) -> np.ndarray:
        """Spectrogram frames, as the PyTorch synthesizer in deterministic mode.

        Parameters
        ----------
        params : ndarray, shape (n_frames, 18)
            Physical parameters.
        power : bool
            Return power per bin (the scale of :func:`edgensd.spectrogram.power_spectrogram`) instead of
            normalized dB.

        Returns
        -------
        ndarray, float32, shape (n_frames, 256)
            Normalized dB in [-1, 1] (or power).
        """
        out, n_bad = self._engine.spectrogram(_frames(params), bool(power))
        self._n_clamped_spec += int(n_bad)
        return out

    def spectrogram_frame(self, params: np.ndarray, power: bool = False) -> np.ndarray:
        """One spectrogram frame (256,) from one parameter frame (18,); see :meth:`spectrogram`."""
        return self.spectrogram(_frame(params)[None], power=power)[0]

    def _push(self, params: np.ndarray) -> np.ndarray:
        if self.fixed_point:
            return self._engine.push_fixed(params).astype(np.float32) * np.float32(1.0 / 32768.0)
        return self._engine.push(params)

    def render_frame(self, params: np.ndarray) -> np.ndarray:
        """Push parameter frame ``t``; return audio samples ``[128 (t-1), 128 t)``, float32, shape (128,).

        As :meth:`FrameRenderer.push <edgensd.speech.render.FrameRenderer.push>`: the first call returns the
        fade-in block before sample 0.
        """
        return self._push(_frame(params)[None])

    def render(self, params: np.ndarray) -> np.ndarray:
        """Render a whole parameter array from the current state.

        Parameters
        ----------
        params : ndarray, shape (n_frames, 18)
            Physical parameters.

        Returns
        -------
        ndarray, float32, shape (n_frames * 128,)
            Samples ``[0, 128 n_frames)`` aligned with the spectrogram frame clock, as
            :meth:`FrameRenderer.render <edgensd.speech.render.FrameRenderer.render>`: the fade-in block is
            dropped and the last frame is held for the final block.
        """
        params = _frames(params)
        if params.shape[0] == 0:
            return np.zeros(0, np.float32)
        return self._push(np.concatenate([params, params[-1:]]))[HOP:]

    def __repr__(self) -> str:
        return (f"CSynth(source={self.source!r}, seed={self.seed}, fixed_point={self.fixed_point}, "
                f"include_background={self.include_background})")


# ---------------------------------------------------------------------------------------------------------
# Parameter trajectories for parity checks and benchmarks
# ---------------------------------------------------------------------------------------------------------


def smooth_random_params(
    voice: VoiceRange,
    n_frames: int,
    seed: int = 0,
    smooth_frames: int = 12,
    loudness_db: tuple[float, float] = (-40.0, -10.0),
) -> np.ndarray:
    """Smooth random parameter trajectories inside a voice range.

    Parameters
    ----------
    voice : VoiceRange
        Limits of every parameter.
    n_frames : int
        Frames (8 ms each).
    seed : int
        Random seed.
    smooth_frames : int
        Width (frames) of the moving average applied to white raw trajectories.
    loudness_db : (float, float)
        Range of the loudness (dB); the default keeps the rendered audio near or below full scale.

    Returns
    -------
    ndarray, float32, shape (n_frames, 18)
        Physical parameters; f0 on a log scale across the whole range, voicing mostly near 0 or 1.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if smooth_frames < 1:
        raise ValueError(f"smooth_frames must be >= 1, got {smooth_frames}")
    lo_db, hi_db = loudness_db
    if not voice.loudness_db[0] <= lo_db < hi_db <= voice.loudness_db[1]:
        raise ValueError(f"loudness_db must be an increasing pair within the voice range {voice.loudness_db}, "
                         f"got {loudness_db}")
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((n_frames + smooth_frames, N_PARAMS))
    kernel = np.ones(smooth_frames) / np.sqrt(smooth_frames)
    raw = np.stack([np.convolve(white[:, j], kernel, mode="valid")[:n_frames] for j in range(N_PARAMS)], axis=1)
    raw[:, ALPHA] *= 3.0  # voiced/unvoiced stretches rather than constant mixing
    phys = raw_to_physical(raw.astype(np.float32), voice)
    phys[:, LOUD] = lo_db + (hi_db - lo_db) / (1.0 + np.exp(-raw[:, LOUD]))
    return phys.astype(np.float32)


def perturbed_synthesizer(voice: VoiceRange | None = None, seed: int = 0, scale: float = 1.0,
                          background: np.ndarray | None = None) -> Synthesizer:
    """A PyTorch synthesizer whose learned parameters are moved randomly away from their initial values.

    Shape slopes, bandwidths and both gain curves change (gains by a few dB), so parity checks do not run
    on the symmetric initial weights.

    Parameters
    ----------
    voice : VoiceRange, optional
        Voice range (default the ``'high'`` preset).
    seed : int
        Random seed of the perturbation.
    scale : float
        Size of the perturbation (1.0: slopes and bandwidths by about 30 %, gain terms by about 2 dB / (m+1)).
    background : ndarray (256,), optional
        Background power (defaults to the synthesizer's).
    """
    import torch

    from edgensd.speech.synth import SynthConfig, Synthesizer

    synth = Synthesizer(SynthConfig(voice=voice or VoiceRange()), background=background)
    g = torch.Generator().manual_seed(int(seed))
    m = torch.arange(synth.gain_v.shape[0], dtype=torch.float32)
    with torch.no_grad():
        synth.shape_slopes.add_(scale * 0.3 * torch.randn(synth.shape_slopes.shape, generator=g))
        synth.log_bw0.add_(scale * 0.3 * torch.randn(synth.log_bw0.shape, generator=g))
        synth.log_bw_slope.add_(scale * 0.3 * torch.randn(synth.log_bw_slope.shape, generator=g))
        synth.gain_v.add_(scale * 2.0 * torch.randn(m.shape, generator=g) / (m + 1))
        synth.gain_n.add_(scale * 2.0 * torch.randn(m.shape, generator=g) / (m + 1))
    synth.eval()
    return synth


def fit_params_to_audio(
    audio: np.ndarray,
    synth: Synthesizer,
    n_steps: int = 40,
    lr: float = 0.1,
) -> np.ndarray:
    """Physical parameters that make ``synth`` reproduce an utterance's spectrogram (analysis by synthesis).

    f0 and voicing come from the DSP pitch tracker (:func:`edgensd.speech.pitch.track_pitch`); f0 stays
    fixed, everything else starts from voicing-based guesses (loudness matched to the frame power) and is
    refined by ``n_steps`` Adam steps on the L1 distance of normalized-dB spectrograms, through the raw →
    physical map (so every value stays in range). A stand-in for decoded trajectories until a trained
    speech encoder exists; a few dozen steps give realistic, not perfect, fits.

    Parameters
    ----------
    audio : ndarray, shape (n_samples,)
        16 kHz mono speech.
    synth : Synthesizer
        The PyTorch synthesizer to fit through (its voice range sets the limits).
    n_steps : int
        Adam steps (>= 0).
    lr : float
        Adam learning rate on the raw parameters.

    Returns
    -------
    ndarray, float32, shape (ceil(n_samples / 128), 18)
    """
    import torch

    from edgensd.spectrogram import power_spectrogram, power_to_norm
    from edgensd.speech.pitch import track_pitch

    if n_steps < 0:
        raise ValueError(f"n_steps must be >= 0, got {n_steps}")
    voice = synth.config.voice
    power = power_spectrogram(np.asarray(audio, np.float32))
    target = torch.as_tensor(power_to_norm(power))
    f0, voiced = track_pitch(audio, voice.f0_hz[0], voice.f0_hz[1], power=power)
    lo, hi = voice.bounds()
    init = np.tile(((lo + hi) / 2).astype(np.float32), (power.shape[0], 1))
    init[:, F0] = f0
    init[:, ALPHA] = np.where(voiced, 0.9, 0.1)
    init[:, FORMANT_A] = 0.5
    init[:, AU] = 0.5
    init[:, LOUD] = 0.0
    with torch.no_grad():
        ref = synth(torch.as_tensor(init)).numpy() - synth.background.numpy()
    gain_db = 10 * np.log10(np.maximum(power.mean(1), 1e-10) / np.maximum(ref.mean(1), 1e-10))
    init[:, LOUD] = np.clip(gain_db, voice.loudness_db[0] + 1, voice.loudness_db[1] - 1)
    raw = torch.tensor(physical_to_raw(init, voice), requires_grad=True)
    f0_t = torch.as_tensor(f0, dtype=torch.float32)
    opt = torch.optim.Adam([raw], lr=lr)

    def physical() -> torch.Tensor:
        phys = raw_to_physical(raw, voice)
        return torch.cat([f0_t[:, None], phys[:, 1:]], dim=1)

    for _ in range(n_steps):
        opt.zero_grad()
        loss = (synth.spectrogram_norm(physical()) - target).abs().mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return physical().numpy().astype(np.float32)


def speech_prompt(name: str = "activated") -> np.ndarray:
    """A real 16 kHz utterance: one Allison prompt (Debian ``asterisk-core-sounds-en-g722``) by name."""
    from edgensd.audio import load_audio
    from edgensd.data.speech import ALLISON_DIR

    path = Path(ALLISON_DIR) / f"{name}.g722"
    if not path.is_file():
        raise FileNotFoundError(f"speech prompt {name!r} not found at {path}: install asterisk-core-sounds-en-g722")
    return load_audio(path)

