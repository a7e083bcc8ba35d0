"""The differentiable synthesizer: harmonic and formant placement, voicing, loudness, gradients, files."""

from pathlib import Path

import numpy as np
import pytest
import torch

from edgensd import params as P
from edgensd.spectrogram import BIN_HZ
from edgensd.speech import dsp
from edgensd.speech import synth as synth_mod
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


# ---- the frozen-weights path (stage 2) against the reference formulation --------------------------------------
# ``reference_power`` is the synthesizer's forward pass as first written (one autograd graph over
# (..., 256, 6) formant shapes, (..., K, 24) gain cosines and (..., 256, 2R+1) harmonic taps), kept here as the
# independent reference that the fast frozen path (cached tables, analytic derivatives) must reproduce.


def _reference_lerp(table, pos, n):
    inside = pos < (n - 1)
    pos = torch.where(inside, pos, torch.zeros_like(pos))
    i0 = torch.floor(pos).long()
    frac = pos - i0.to(pos.dtype)
    return table[i0] * (1 - frac) + table[i0 + 1] * frac, inside


def _reference_shapes(x, tables, which):
    n = dsp.SHAPE_N_KNOTS
    u = torch.log2(1.0 + x.abs()) / dsp.SHAPE_KNOT_STEP
    inside = u < (n - 1)
    u = torch.where(inside, u, torch.zeros_like(u))
    i0 = torch.floor(u).long()
    frac = u - i0.to(u.dtype)
    flat = tables.reshape(-1)
    g = flat[which * n + i0] * (1 - frac) + flat[which * n + i0 + 1] * frac
    return torch.where(inside, torch.exp(-g), torch.zeros_like(g))


def _reference_gain_db(coefs, f_hz):
    m = torch.arange(coefs.shape[0], dtype=f_hz.dtype)
    return torch.cos((np.pi / 8000.0) * f_hz.unsqueeze(-1) * m) @ coefs


def reference_power(s: Synthesizer, params: torch.Tensor) -> torch.Tensor:
    """Deterministic power spectrogram (..., 256) of ``s`` for physical ``params`` (..., 18), autograd only."""
    dt = params.dtype
    tables = s.shape_tables().to(dt)
    fb = s.bin_hz.to(dt)
    bw0, bw1 = torch.exp(s.log_bw0).to(dt), torch.exp(s.log_bw_slope).to(dt)
    fr, amp = params[..., P.FORMANT_F], params[..., P.FORMANT_A]
    bw = bw0 + bw1 * fr

    def envelope(f):
        x = (f.unsqueeze(-1) - fr.unsqueeze(-2)) / bw.unsqueeze(-2)
        return (_reference_shapes(x, tables, torch.arange(6)) * amp.unsqueeze(-2)).sum(-1)

    f0 = params[..., P.F0].unsqueeze(-1)
    loud = torch.pow(10.0, params[..., P.LOUD] / 10.0).unsqueeze(-1)
    alpha = params[..., P.ALPHA].unsqueeze(-1)
    k = torch.arange(1, s.n_harmonics + 1, dtype=dt)
    fh = f0 * k
    gv_h = torch.pow(10.0, _reference_gain_db(s.gain_v.to(dt), fh) / 10.0)
    taper = 0.5 + 0.5 * torch.cos(
        np.pi * ((fh - dsp.TAPER_START_HZ) / (dsp.TAPER_END_HZ - dsp.TAPER_START_HZ)).clamp(0, 1)
    )
    hp = alpha * (f0 / 16000.0) * gv_h * envelope(fh) * taper
    kc = torch.round(fb / f0).detach()
    kk = kc.unsqueeze(-1) + torch.arange(-s.reach, s.reach + 1, dtype=dt)
    valid = (kk >= 1) & (kk <= s.n_harmonics)
    kidx = (kk.clamp(1, s.n_harmonics) - 1).long()
    df = (fb.unsqueeze(-1) - kk * f0.unsqueeze(-1)).abs() / BIN_HZ
    win_table = s.win_table.to(dt)
    win, inside = _reference_lerp(win_table, df * dsp.WIN_OVERSAMPLE, win_table.shape[0])
    hp_g = torch.gather(hp, -1, kidx.flatten(-2)).view(kidx.shape)
    pv = (hp_g * win * (valid & inside).to(dt)).sum(-1)
    xu = (fb - params[..., P.FU].unsqueeze(-1)) / params[..., P.BU].unsqueeze(-1)
    su = _reference_shapes(xu, tables, torch.tensor(6))
    gn_b = torch.pow(10.0, _reference_gain_db(s.gain_n.to(dt), fb) / 10.0)
    en = gn_b * (envelope(fb) + params[..., P.AU].unsqueeze(-1) * su)
    return loud * (pv + (1.0 - alpha) * en) + s.background.to(dt)


def perturbed(seed=1) -> Synthesizer:
    """A synthesizer with weights moved away from the symmetric initial ones (as after training)."""
    torch.manual_seed(seed)
    s = Synthesizer()
    with torch.no_grad():
        for prm in s.parameters():
            prm.add_(0.2 * torch.randn_like(prm))
    return s


def random_params(n=700, seed=0, dtype=torch.float32) -> torch.Tensor:
    """Physical params from standard-normal raw outputs (as a fresh decoder gives), shape (n, 18).

    The default n spans two of the frozen path's blocks of frames.
    """
    raw = torch.randn(n, 18, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return P.raw_to_physical(raw, V).to(dtype)


@pytest.fixture(scope="module")
def realistic_params() -> torch.Tensor:
    """Params the demo speech model's encoder gives for a real utterance, shape (n_frames, 18)."""
    from edgensd.csynth import speech_prompt
    from edgensd.speech.evaluate import encode_audio
    from edgensd.speech.model import load_speech_model

    model = load_speech_model(Path(__file__).resolve().parents[1] / "edgensd" / "assets" / "demo" / "speech_model")
    assert model.config.voice.same_as(V)
    return torch.as_tensor(encode_audio(model, speech_prompt("activated"))[0])


def _smooth_vjp(power_fn, params, seed=3):
    """Params and the gradient of a smooth scalar of the power spectrogram, sum(W * log P), w.r.t. them."""
    p = params.clone().requires_grad_(True)
    power = power_fn(p)
    w = torch.randn(power.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(p.dtype)
    (torch.log(power) * w).sum().backward()
    return power.detach(), p.grad


@pytest.mark.parametrize("kind", ["random", "realistic"])
def test_frozen_path_equals_reference_in_float64(kind, realistic_params):
    s = perturbed().double().requires_grad_(False)
    params = random_params(dtype=torch.float64) if kind == "random" else realistic_params.double()
    assert kind != "random" or params.shape[0] > synth_mod._FROZEN_BLOCK  # more than one block of frames
    got_p, got_g = _smooth_vjp(s, params)
    want_p, want_g = _smooth_vjp(lambda p: reference_power(s, p), params)
    np.testing.assert_allclose(got_p.numpy(), want_p.numpy(), rtol=1e-9)
    # same formulas: only float64 rounding apart (the gradient's scale per parameter sets the tolerance)
    scale = want_g.abs().amax(dim=0, keepdim=True)
    assert ((got_g - want_g).abs() <= 1e-7 * scale).all()


@pytest.mark.parametrize("kind", ["random", "realistic"])
def test_frozen_path_float32_is_as_accurate_as_reference(kind, realistic_params):
    s = perturbed().requires_grad_(False)
    params = random_params(dtype=torch.float32) if kind == "random" else realistic_params.float()
    got_p, got_g = _smooth_vjp(s, params)
    ref_p, ref_g = _smooth_vjp(lambda p: reference_power(s, p), params)
    s64 = perturbed().double().requires_grad_(False)
    exact_p, exact_g = _smooth_vjp(lambda p: reference_power(s64, p), params.double())
    # power: float32 rounding apart (the C synthesizer's parity test allows rtol 1e-4 against this output)
    np.testing.assert_allclose(got_p.numpy(), ref_p.numpy(), rtol=2e-5)
    # gradient: no further from the float64 value than the float32 reference is (per parameter, max abs),
    # both errors are dominated by float32 positions landing on either side of a table knot
    err_new = (got_g.double() - exact_g).abs().amax(dim=0)
    err_ref = (ref_g.double() - exact_g).abs().amax(dim=0)
    scale = exact_g.abs().amax(dim=0)
    assert (err_new <= 2 * err_ref + 1e-5 * scale).all(), (err_new / scale, err_ref / scale)


def test_frozen_and_autograd_paths_agree_on_the_existing_cases():
    s = perturbed()
    frames = torch.stack(
        [frame(f0_hz=f0, alpha=a, au=au) for f0 in (120.0, 187.0, 400.0) for a in (0.0, 0.4, 1.0) for au in (0.0, 0.7)]
    )
    trained = s(frames)  # weights need a gradient: the reference formulation
    assert trained.requires_grad
    with torch.no_grad():
        frozen = s(frames)  # no gradient needed: the fast path
    np.testing.assert_allclose(frozen.numpy(), trained.detach().numpy(), rtol=2e-5)
    np.testing.assert_allclose(frozen.numpy(), reference_power(s, frames).detach().numpy(), rtol=2e-5)
    # any leading shape, a single frame too
    with torch.no_grad():
        np.testing.assert_allclose(s(frames.view(3, 6, 18)).numpy(), frozen.view(3, 6, 256).numpy())
        np.testing.assert_allclose(s(frames[5]).numpy(), frozen[5].numpy(), rtol=1e-6)  # other kernel sums


def test_frozen_stochastic_mode_draws_like_the_reference_path():
    s = perturbed()
    x = torch.cat([torch.stack([frame(alpha=a) for a in (0.0, 0.5, 0.9)]), random_params(1100)])  # three blocks
    want = s(x, deterministic=False, generator=torch.Generator().manual_seed(7)).detach()
    with torch.no_grad():
        got = s(x, deterministic=False, generator=torch.Generator().manual_seed(7))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-5)


def test_frozen_cache_follows_weight_changes():
    s = perturbed().requires_grad_(False)
    params = random_params(64)
    before = s(params)
    with torch.no_grad():  # an optimizer step or a load changes weights in place
        s.shape_slopes.mul_(1.3)
        s.gain_n.add_(0.5)
        s.gain_v[3] += 1.0
        s.log_bw0.sub_(0.2)
        s.background.mul_(2.0)
    after = s(params)
    assert not torch.allclose(after, before)
    np.testing.assert_allclose(after.numpy(), reference_power(s, params).numpy(), rtol=2e-5)
    s.load_state_dict(perturbed(seed=2).state_dict())
    np.testing.assert_allclose(s(params).numpy(), reference_power(s, params).numpy(), rtol=2e-5)


def test_weight_gradients_in_training_mode_equal_the_reference():
    s = perturbed().double()
    params = random_params(96, dtype=torch.float64)
    w = torch.randn(96, 256, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    (torch.log(s(params)) * w).sum().backward()
    got = {name: prm.grad.clone() for name, prm in s.named_parameters()}
    s.zero_grad()
    (torch.log(reference_power(s, params)) * w).sum().backward()
    for name, prm in s.named_parameters():
        np.testing.assert_allclose(got[name].numpy(), prm.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
        assert prm.grad.abs().sum() > 0, name


def test_frozen_functions_gradcheck_float64():
    s = perturbed().double().requires_grad_(False)
    c = s._frozen_cache(torch.float64, torch.device("cpu"))
    g = torch.Generator().manual_seed(5)
    n = 3
    params = random_params(n, seed=6, dtype=torch.float64)
    fr = params[:, P.FORMANT_F].clone().requires_grad_(True)
    bw = s.bandwidths(fr).detach().requires_grad_(True)
    amp = params[:, P.FORMANT_A].clone().requires_grad_(True)
    fh = (params[:, P.F0 : P.F0 + 1] * torch.arange(1, s.n_harmonics + 1, dtype=torch.float64)).requires_grad_(True)
    shape_sum = synth_mod._ShapeSum.apply
    assert torch.autograd.gradcheck(
        lambda f, a, b, c_: shape_sum(f, a, b, c_, c["neg_v"], c["neg_s"], c["base_v"]), (fh, fr, bw, amp)
    )
    # on the bins (f needs no gradient), with offsets up to and beyond the last knot: narrow bandwidths
    narrow = (0.05 * bw).detach().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b, c_: shape_sum(c["fb"], a, b, c_, c["neg_v"], c["neg_s"], c["base_v"]), (fr, narrow, amp)
    )
    f = (torch.rand(n, 40, generator=g, dtype=torch.float64) * 8000).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f_: synth_mod._GainDb.apply(f_, c["gain_v"]), (f,))
    # one harmonic per (frame, harmonic) pair, as the frozen path calls them; harmonics of frames 0 and 2 only
    pairs = torch.tensor([0, 1, 2, 3, 40, 72, 2 * s.n_harmonics + 5, 2 * s.n_harmonics + 6])
    frame_of = torch.div(pairs, s.n_harmonics, rounding_mode="floor")
    fh_p = fh.detach().reshape(-1)[pairs].requires_grad_(True)
    amp_p = amp.detach()[frame_of].requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda f_, c_: shape_sum(
            f_.unsqueeze(1), fr.detach()[frame_of], bw.detach()[frame_of], c_, c["neg_v"], c["neg_s"], c["base_v"]
        ),
        (fh_p, amp_p),
    )
    hp = torch.rand(pairs.shape[0], generator=g, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda h, f_: synth_mod._Spread.apply(h, f_, frame_of, n, c["win_v"], c["win_s"], c["bin_err"]), (hp, fh_p)
    )


def test_gain_recurrence_matches_cosine_series():
    s = perturbed()
    f = torch.linspace(0.0, 8000.0, 2001, dtype=torch.float64)
    want = _reference_gain_db(s.gain_v.detach().double(), f)
    got = synth_mod._GainDb.apply(f, s.gain_v.detach().double())
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-10)


def test_frozen_shapes_beyond_the_table_and_nan_offsets_are_zero():
    s = perturbed().requires_grad_(False)
    c = s._frozen_cache(torch.float32, torch.device("cpu"))
    fr = torch.tensor([[1000.0, float("nan")]])
    bw = torch.tensor([[1.0, 100.0]])
    amp = torch.tensor([[1.0, 1.0]])
    f = torch.tensor([[1000.0, 1200.0, 1256.5, 3000.0]])  # |x| = 0, 200 (inside), 256.5 and 2000 (beyond)
    got = synth_mod._ShapeSum.apply(f, fr, bw, amp, c["neg_v"], c["neg_s"], c["base_v"][:2])
    want = _reference_shapes(
        (f.unsqueeze(-1) - fr.unsqueeze(-2)) / bw.unsqueeze(-2), s.shape_tables().detach(), torch.arange(2)
    ).sum(-1)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)
    assert got[0, 0] == pytest.approx(1.0) and got[0, 1] > 0 and got[0, 2] == 0 and got[0, 3] == 0


def test_frozen_path_after_inference_mode_and_with_inference_weights():
    s = perturbed().requires_grad_(False)
    params = random_params(40)
    with torch.inference_mode():  # the cache made here must still serve autograd afterwards
        first = s(params)
    raw = torch.randn(40, 18, generator=torch.Generator().manual_seed(8), requires_grad=True)
    power = s(P.raw_to_physical(raw, V))
    power.sum().backward()
    assert torch.isfinite(raw.grad).all() and raw.grad.abs().sum() > 0
    np.testing.assert_allclose(first.numpy(), reference_power(s, params).numpy(), rtol=2e-5)
    with torch.inference_mode():  # weights without a version counter: nothing cached, still right
        s2 = perturbed().requires_grad_(False)
        got = s2(params)
        s2.gain_n.add_(0.5)
        changed = s2(params)
    np.testing.assert_allclose(got.numpy(), first.numpy())
    np.testing.assert_allclose(changed.numpy(), reference_power(s2, params).numpy(), rtol=2e-5)
    assert not torch.allclose(changed, got)


def test_dispatch_frozen_weights_use_the_fast_path(monkeypatch):
    s = perturbed()
    params = random_params(30).requires_grad_(True)

    def refuse(*args, **kwargs):
        raise AssertionError("the reference formulation ran")

    assert s(params).requires_grad  # weights need a gradient: the reference formulation
    monkeypatch.setattr(Synthesizer, "_forward_autograd", refuse)
    with pytest.raises(AssertionError, match="reference formulation ran"):
        s(params)
    s.requires_grad_(False)  # as stage 2 freezes it
    s(params).sum().backward()
    assert params.grad.abs().sum() > 0
    s.requires_grad_(True)
    with torch.no_grad():
        s(params)
