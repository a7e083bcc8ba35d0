"""Spectrogram conventions against an independent scipy/numpy computation."""

import numpy as np
import pytest
from scipy import signal

from edgensd import spectrogram as sp


def _scipy_power(x):
    # scipy: periodic Hann, zero boundary padding of nperseg//2, 'spectrum' scaling divides by sum(w)
    _, _, z = signal.stft(x, fs=16000, window="hann", nperseg=511, noverlap=511 - 128, nfft=511,
                          boundary="zeros", padded=True, return_onesided=True, scaling="spectrum")
    w = signal.get_window("hann", 511)
    return (np.abs(z.T) ** 2) * (w.sum() ** 2) / np.sum(w**2)


@pytest.mark.parametrize("n", [16000, 12345, 128 * 40])
def test_power_matches_scipy(n):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, n)
    ours = sp.power_spectrogram(x)
    ref = _scipy_power(x)
    assert ours.shape == (sp.n_frames_for(n), 256)
    assert ours.shape[0] == -(-n // 128)
    np.testing.assert_allclose(ours, ref[: ours.shape[0]], rtol=2e-4, atol=1e-9)


def test_scale_sine_and_white_noise():
    t = np.arange(32000) / 16000
    p = sp.power_spectrogram(np.sin(2 * np.pi * 1000 * t))
    # full-scale sine: (sum w / 2)^2 / sum w^2 = N/6 ≈ 85.2 → 19.3 dB at the peak bin (1000 Hz sits on a bin ± 0.06)
    assert 18.5 < sp.power_to_db(p[20:-20].max()) < 19.4
    assert abs(np.argmax(p[50]) - round(1000 / sp.BIN_HZ)) <= 1
    noise = np.random.default_rng(1).normal(0, 0.1, 320000)
    assert sp.power_spectrogram(noise)[:, 5:250].mean() == pytest.approx(0.01, rel=0.03)


def test_normalized_db_mapping():
    assert sp.db_to_norm(np.array([-50.0, 22.5, -100.0, 100.0])).tolist() == [-1.0, 1.0, -1.0, 1.0]
    assert float(sp.db_to_norm(np.array(-13.75))) == pytest.approx(0.0)
    x = np.linspace(-1, 1, 11)
    np.testing.assert_allclose(sp.db_to_norm(sp.norm_to_db(x)), x, atol=1e-6)
    np.testing.assert_allclose(sp.power_to_norm(sp.norm_to_power(x)), x, atol=1e-5)


def test_mel_filterbank_independent():
    fb = sp.mel_filterbank()
    assert fb.shape == (128, 256)
    np.testing.assert_allclose(fb.sum(axis=1), 1.0, rtol=1e-5)
    assert (fb >= 0).all() and (fb.max(axis=1) > 0).all()
    # independent check of band centres: HTK mel 2595 log10(1 + f/700), 130 points over 0-8 kHz
    mel_max = 2595 * np.log10(1 + 8000 / 700)
    centres = 700 * (10 ** (np.linspace(0, mel_max, 130)[1:-1] / 2595) - 1)
    f = np.arange(256) * 16000 / 511
    peak_f = f[np.argmax(fb, axis=1)]
    assert np.all(np.abs(peak_f - centres) <= 16000 / 511)
    # high bands: plain triangles (wider than a bin) — compare to a direct loop implementation
    pts = 700 * (10 ** (np.linspace(0, mel_max, 130) / 2595) - 1)
    for m in (60, 100, 127):
        lo, c, hi = pts[m], pts[m + 1], pts[m + 2]
        tri = np.array([max(0.0, min((x - lo) / (c - lo), (hi - x) / (hi - c))) for x in f])
        np.testing.assert_allclose(fb[m], tri / tri.sum(), atol=1e-6)


def test_mel_of_tone_lands_in_its_band():
    t = np.arange(16000) / 16000
    for f0 in (300.0, 1500.0, 5000.0):
        m = sp.mel_norm(0.5 * np.sin(2 * np.pi * f0 * t))
        band = int(np.argmax(m[60]))
        mel_max = 2595 * np.log10(1 + 8000 / 700)
        centres = 700 * (10 ** (np.linspace(0, mel_max, 130)[1:-1] / 2595) - 1)
        assert abs(centres[band] - f0) < max(60.0, 0.08 * f0)


def test_stft_rejects_stereo():
    with pytest.raises(ValueError, match="mono"):
        sp.stft(np.zeros((100, 2)))
