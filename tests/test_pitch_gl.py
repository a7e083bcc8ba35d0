"""DSP pitch tracker and Griffin-Lim."""

import numpy as np
import pytest

from edgensd.spectrogram import spectrogram_norm, stft
from edgensd.speech.griffinlim import griffin_lim, istft
from edgensd.speech.pitch import track_pitch


def harmonic_tone(f0_track_hz: np.ndarray, n_harm: int = 25) -> np.ndarray:
    ph = 2 * np.pi * np.cumsum(f0_track_hz) / 16000
    return 0.1 * sum(np.sin(k * ph) / k for k in range(1, n_harm + 1))


def test_pitch_tracks_vibrato():
    t = np.arange(24000) / 16000
    f0 = 200 + 30 * np.sin(2 * np.pi * 1.5 * t)
    est, voiced = track_pitch(harmonic_tone(f0), 110, 420)
    truth = 200 + 30 * np.sin(2 * np.pi * 1.5 * np.arange(est.size) * 128 / 16000)
    inner = slice(5, -5)
    assert voiced[inner].all()
    assert np.abs(est - truth)[inner].mean() < 1.5 and np.abs(est - truth)[inner].max() < 5.0


def test_pitch_low_voice_and_noise():
    t = np.arange(16000) / 16000
    est, voiced = track_pitch(harmonic_tone(np.full(t.size, 95.0)), 50, 250)
    assert np.median(est[voiced]) == pytest.approx(95.0, abs=1.0) and voiced.mean() > 0.9
    noise = np.random.default_rng(0).normal(0, 0.1, 16000)
    _, voiced = track_pitch(noise, 110, 420)
    assert voiced.mean() < 0.1
    _, voiced = track_pitch(np.zeros(16000), 110, 420)
    assert not voiced.any()


def test_istft_inverts_stft():
    x = np.random.default_rng(0).normal(0, 0.1, 12345).astype(np.float32)
    np.testing.assert_allclose(istft(stft(x), x.size), x, atol=1e-5)


def test_griffin_lim_reconstructs_magnitudes():
    t = np.arange(16000) / 16000
    x = harmonic_tone(180 + 20 * np.sin(2 * np.pi * 2 * t)).astype(np.float32)
    s = spectrogram_norm(x)
    y = griffin_lim(s, n_iter=48)
    assert y.shape == (s.shape[0] * 128,)
    err = np.abs(spectrogram_norm(y)[3:-3] - s[3:-3]).mean()
    assert err < 0.03  # normalized dB units (72.5 dB / 2 per unit)
    with pytest.raises(ValueError, match="n_frames, 256"):
        griffin_lim(np.zeros((10, 255)))
