"""The numpy frame renderer: agreement with the synthesizer, streaming, phase continuity, bad input."""

import numpy as np
import pytest
import torch

from edgensd import params as P
from edgensd.spectrogram import power_spectrogram, power_to_norm
from edgensd.speech.render import FrameRenderer, lowbias32, render_audio, white_noise
from edgensd.speech.synth import Synthesizer

torch.set_num_threads(1)
V = P.VoiceRange()


def steady(n=120, **kw):
    lo, hi = V.bounds()
    x = ((lo + hi) / 2).astype(np.float32)
    x[P.LOUD] = -10.0
    x[P.FORMANT_A] = 0.8
    for k, v in kw.items():
        x[P.IDX[k]] = v
    return np.tile(x, (n, 1))


def trained_like_synth():
    torch.manual_seed(1)
    s = Synthesizer()
    with torch.no_grad():
        for prm in s.parameters():
            prm.add_(0.2 * torch.randn_like(prm))
    return s


@pytest.mark.parametrize("f0", [130.0, 240.0])
def test_voiced_audio_spectrogram_matches_synth(f0):
    s = trained_like_synth()
    p = steady(alpha=1.0, f0_hz=f0)
    audio = render_audio(s.export_weights(), p)
    assert audio.shape == (p.shape[0] * 128,)
    got = power_to_norm(power_spectrogram(audio))[10:-10]
    want = s.spectrogram_norm(torch.tensor(p)).detach().numpy()[10:-10]
    # same model in two domains; differences come from the window table's interpolation and float32
    assert np.abs(got - want).mean() < 0.02
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.99


def test_noise_audio_spectrogram_matches_synth_in_expectation():
    s = trained_like_synth()
    p = steady(n=400, alpha=0.0)
    audio = render_audio(s.export_weights(), p)
    got_db = 10 * np.log10(power_spectrogram(audio)[10:-10].mean(axis=0))
    want = s(torch.tensor(p[:1])).detach().numpy()[0] - s.background.numpy()
    want_db = 10 * np.log10(want)
    sel = want_db > want_db.max() - 30
    assert np.abs(got_db[sel] - want_db[sel]).mean() < 0.6  # dB, mean of expectation over 380 frames


def test_streaming_equals_whole_and_frames_are_aligned():
    s = trained_like_synth()
    rng = np.random.default_rng(0)
    raw = np.cumsum(rng.normal(0, 0.1, (60, 18)), axis=0).astype(np.float32)
    p = P.raw_to_physical(raw, V)
    whole = render_audio(s.export_weights(), p, seed=7)
    r = FrameRenderer(s.export_weights(), seed=7)
    blocks = [r.push(x) for x in p] + [r.push(p[-1])]
    np.testing.assert_array_equal(np.concatenate(blocks[1:]), whole)
    assert all(b.shape == (128,) and b.dtype == np.float32 for b in blocks)
    # reset gives the same audio again; another seed gives other noise
    r.reset()
    np.testing.assert_array_equal(r.render(p), whole)
    assert not np.array_equal(render_audio(s.export_weights(), p, seed=8), whole)


def test_phase_continuity_across_frames():
    s = trained_like_synth()
    p = steady(n=50, alpha=1.0, f0_hz=200.0)
    p[25:, P.F0] = 230.0  # a pitch jump is interpolated over one frame, with no phase reset
    audio = render_audio(s.export_weights(), p)
    d = np.abs(np.diff(audio))
    boundary = d[127::128]
    assert boundary.max() <= 1.5 * d.max(initial=0) and boundary.max() < 3 * np.percentile(d, 99.9)


def test_bad_parameters_never_give_nan():
    s = trained_like_synth()
    p = steady(n=20, alpha=0.6)
    p[3, P.F0] = np.nan
    p[4, P.LOUD] = np.inf
    p[5, P.ALPHA] = -3.0
    p[6, :] = np.nan
    p[7, P.F0] = 0.0
    p[8:, P.LOUD] = V.loudness_db[0]  # silence
    r = FrameRenderer(s.export_weights())
    audio = r.render(p)
    assert np.isfinite(audio).all()
    assert r.n_clamped == 1 + 1 + 1 + 18 + 1  # NaN f0, inf loudness, alpha < 0, a NaN frame, f0 = 0
    assert np.abs(audio[-128 * 5 :]).max() < 1e-2
    with pytest.raises(ValueError, match="shape"):
        r.push(np.zeros(17, np.float32))


def test_white_noise_generator():
    a = white_noise(3, 10)
    np.testing.assert_array_equal(a, white_noise(3, 10))
    big = np.concatenate([white_noise(3, t) for t in range(400)])
    assert abs(big.mean()) < 0.02 and big.var() == pytest.approx(1.0, rel=0.03)
    assert abs(np.corrcoef(big[:-1], big[1:])[0, 1]) < 0.02
    # lowbias32 values from a plain-Python evaluation of the hash (the C code must give the same)
    assert lowbias32(np.array([0, 1, 0xFFFFFFFF], np.uint32)).tolist() == [0, 1753845952, 1734902346]
