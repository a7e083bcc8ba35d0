"""Per-trial speech features for the speech encoder (numpy; no torch).

For a trial with ``n`` frames the encoder sees ``CONTEXT`` extra frames on each side (the encoder is not
causal; it is only used offline, on the participant's own speech).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edgensd.data.participant import Participant
from edgensd.log import logger, progress_enabled
from edgensd.params import VoiceRange
from edgensd.spectrogram import N_BINS, mel_power, power_spectrogram, power_to_norm
from edgensd.speech.pitch import track_pitch

#: Context frames on each side of a trial given to the (non-causal) encoder.
CONTEXT = 16
#: Input channels of the encoder: 256 normalized-dB bins + log-f0 (normalized) + voiced flag.
N_INPUT = N_BINS + 2


@dataclasses.dataclass
class TrialFeatures:
    """Features of one trial (with ``CONTEXT`` frames on each side).

    Attributes
    ----------
    power : ndarray (n + 2C, 256)
        Power spectrogram.
    spec : ndarray (n + 2C, 256)
        Normalized-dB linear spectrogram.
    mel : ndarray (n + 2C, 128)
        Normalized-dB mel spectrogram.
    f0_hz : ndarray (n + 2C,)
        DSP pitch track (Hz).
    voiced : ndarray (n + 2C,) bool
        DSP voicing decision.
    """

    power: np.ndarray
    spec: np.ndarray
    mel: np.ndarray
    f0_hz: np.ndarray
    voiced: np.ndarray

    @property
    def n_frames(self) -> int:
        return self.spec.shape[0]

    def encoder_input(self, voice: VoiceRange) -> np.ndarray:
        """The encoder's input, float32, shape (n + 2C, N_INPUT)."""
        lo, hi = np.log(voice.f0_hz[0]), np.log(voice.f0_hz[1])
        lf0 = (2.0 * (np.log(self.f0_hz) - lo) / (hi - lo) - 1.0).astype(np.float32)
        return np.concatenate([self.spec, lf0[:, None], self.voiced[:, None].astype(np.float32)], axis=1)


def audio_features(audio: np.ndarray, voice: VoiceRange) -> TrialFeatures:
    """Features of a mono 16 kHz audio segment (frames on the shared clock)."""
    power = power_spectrogram(audio)
    f0, voiced = track_pitch(audio, voice.f0_hz[0], voice.f0_hz[1], power=power)
    return TrialFeatures(
        power=power, spec=power_to_norm(power), mel=power_to_norm(mel_power(power)), f0_hz=f0, voiced=voiced
    )


def trial_features(p: Participant, trials: np.ndarray, voice: VoiceRange) -> list[TrialFeatures]:
    """Features of the given trials of a participant, each with ``CONTEXT`` frames of context."""
    from tqdm import tqdm

    out = []
    for i in tqdm(list(trials), desc="speech features", unit="trial", disable=not progress_enabled()):
        audio = p.trial_audio(int(i), before=CONTEXT, after=CONTEXT)
        out.append(audio_features(audio, voice))
    logger.debug("features for %d trials (%d frames)", len(out), sum(f.n_frames for f in out))
    return out
