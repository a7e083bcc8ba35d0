"""The differentiable synthesizer: harmonic and formant placement, voicing, loudness, gradients, files."""

import numpy as np
import pytest
import torch

from edgensd import params as P
from edgensd.spectrogram import BIN_HZ
from edgensd.speech.synth import SynthConfig, Synthesizer, estimate_background
from edgensd.speech.synth_weights import SYNTH_FORMAT_VERSION, SynthWeights

torch.set_num_threads(1)
V = P.VoiceRange()


def frame(**kw) -> torch.Tensor:
    """One physical parameter frame: mid-range values overridden by keyword."""
    lo, hi = V.bounds()
    x = (lo + hi) / 2
    x[P.LOUD] = 0.0
    x[P.ALPHA] = 1.0
    x[P.FORMANT_A] = 1.0
    x[P.AU] = 0.0
    for k, v in kw.items():
        if k.startswith("f") and k[1:].isdigit():
            x[P.IDX[f"{k}_hz"]] = v
        else:
            x[P.IDX[k]] = v
    return torch.tensor(x, dtype=torch.float32)


def local_maxima(s: np.ndarray) -> np.ndarray:
    return np.nonzero((s[1:-1] > s[:-2]) & (s[1:-1] >= s[2:]))[0] + 1


@pytest.mark.parametrize("f0", [120.0, 187.0, 260.0, 400.0])
def test_harmonic_peaks_at_multiples_of_f0(f0):
    s = Synthesizer()
    power = s(frame(f0_hz=f0)).detach().numpy()
    peaks = local_maxima(10 * np.log10(power))
    for k in range(1, int(4000 // f0) + 1):
        assert np.min(np.abs(peaks - k * f0 / BIN_HZ)) <= 1.0, f"no peak within 1 bin of harmonic {k} of {f0} Hz"
    # and no spurious peaks: every peak below 4 kHz is within one bin of some harmonic
    low = peaks[peaks * BIN_HZ < 4000]
    assert np.all(np.abs(low * BIN_HZ / f0 - np.round(low * BIN_HZ / f0)) * f0 <= BIN_HZ + 1e-3)


def test_formant_peaks_at_formant_frequencies():
    s = Synthesizer()
    for i, (lo, hi) in enumerate(V.formants_hz):
        fi = 0.3 * lo + 0.7 * hi
        x = frame(alpha=0.0)
        x[P.FORMANT_A] = 0.0
        x[P.IDX[f"a{i + 1}"]] = 1.0
        x[P.IDX[f"f{i + 1}_hz"]] = fi
        power = s(x).detach().numpy()
        assert abs(np.argmax(power) * BIN_HZ - fi) <= BIN_HZ, f"formant {i + 1}"
    # the unvoiced formant too
    x = frame(alpha=0.0, fu_hz=5000.0, bu_hz=800.0, au=1.0)
    x[P.FORMANT_A] = 0.0
    assert abs(np.argmax(s(x).detach().numpy()) * BIN_HZ - 5000.0) <= BIN_HZ


def test_alpha_zero_has_no_harmonic_structure():
    s = Synthesizer()
    a = s(frame(alpha=0.0, f0_hz=150.0)).detach().numpy()
    b = s(frame(alpha=0.0, f0_hz=300.0)).detach().numpy()
    np.testing.assert_array_equal(a, b)  # f0 has no effect at all when unvoiced
    db = 10 * np.log10(a)
    # smooth: no ripple at harmonic spacing — second difference stays small away from formant peaks
    assert np.abs(np.diff(db, 2)).max() < 2.0
    voiced = 10 * np.log10(s(frame(alpha=1.0, f0_hz=150.0)).detach().numpy())
    assert np.abs(np.diff(voiced, 2)).max() > 10.0


def test_loudness_scales_power():
    s = Synthesizer(background=np.zeros(256, np.float32))
    a = s(frame(loudness_db=0.0, alpha=0.5)).detach().numpy()
    b = s(frame(loudness_db=10.0, alpha=0.5)).detach().numpy()
    np.testing.assert_allclose(b, 10 * a, rtol=1e-5)


def test_gradients_reach_every_parameter_and_weight():
    torch.manual_seed(0)
    s = Synthesizer()
    with torch.no_grad():
        for prm in s.parameters():
            prm.add_(0.1 * torch.randn_like(prm))
        s.log_bw0.fill_(float(np.log(20.0)))  # narrow formants: offsets reach the far shape knots
        s.log_bw_slope.fill_(-12.0)
    raw = torch.randn(3, 40, 18) * 0.8
    raw[:, :20, P.BU] = -9.0  # narrow unvoiced formant near the band edge: offsets reach its far knots
    raw[:, :20, P.FU] = -6.0
    raw.requires_grad_(True)
    phys = P.raw_to_physical(raw, V)
    phys.retain_grad()
    spec = s.spectrogram_norm(phys)
    mel = s.mel_norm_from_power(s(phys))
    (spec.square().mean() + mel.square().mean()).backward()
    g = phys.grad.abs().sum(dim=(0, 1))
    assert torch.isfinite(phys.grad).all()
    for i, name in enumerate(P.PARAM_NAMES):
        assert g[i] > 0, f"no gradient reaches {name}"
    for name, prm in s.named_parameters():
        assert prm.grad is not None and torch.isfinite(prm.grad).all(), name
        assert prm.grad.abs().sum() > 0, f"no gradient reaches {name}"
    # every knot segment of every formant shape, voiced and unvoiced
    assert (s.shape_slopes.grad.abs() > 0).all()


def test_stochastic_mode_averages_to_deterministic():
    s = Synthesizer(background=np.zeros(256, np.float32))
    x = frame(alpha=0.0).expand(4000, 18)
    gen = torch.Generator().manual_seed(0)
    det = s(x[:1]).detach().numpy()[0]
    sto = s(x, deterministic=False, generator=gen).detach().numpy()
    np.testing.assert_allclose(sto.mean(axis=0), det, rtol=0.1)
    assert sto.std(axis=0).mean() / det.mean() > 0.5  # exponential spread per bin


def test_shape_errors():
    with pytest.raises(ValueError, match="18 values"):
        Synthesizer()(torch.zeros(5, 17))


def test_weights_file_roundtrip_and_errors(tmp_path):
    s = Synthesizer(SynthConfig(voice=P.VoiceRange.preset("low")))
    w = s.export_weights()
    path = w.save_npz(tmp_path / "w.npz")
    w2 = SynthWeights.load_npz(path)
    assert w2.voice.same_as(w.voice)
    np.testing.assert_array_equal(w2.shape_tables, w.shape_tables)
    with pytest.raises(FileNotFoundError):
        SynthWeights.load_npz(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable synth weights file"):
        SynthWeights.load_npz(bad)
    z = dict(np.load(path))
    z["format_version"] = np.int32(SYNTH_FORMAT_VERSION + 1)
    np.savez(tmp_path / "v.npz", **z)
    with pytest.raises(ValueError, match="format version"):
        SynthWeights.load_npz(tmp_path / "v.npz")


def test_estimate_background():
    rng = np.random.default_rng(0)
    power = np.full((1000, 256), 1e-4) * rng.exponential(1.0, (1000, 256))
    power[:700] *= 100  # speech frames
    bg = estimate_background(power, quantile=0.2)
    assert np.median(bg) == pytest.approx(1e-4 * np.log(2), rel=0.15)
    with pytest.raises(ValueError, match="quantile"):
        estimate_background(power, quantile=0.0)
