"""Simulator knobs: each knob has the effect it claims (on short real-speech simulations), defaults unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgensd.cli.main import main
from edgensd.data.participant import save_participant
from edgensd.neural import knobs as K
from edgensd.neural.layouts import make_layout
from edgensd.neural.simulate import (
    KNOB_TRUTH_KEYS,
    PRESETS,
    SimulationConfig,
    acoustic_features,
    config_path_for,
    highgamma_amplitude,
    load_ground_truth,
    make_electrode_model,
    simulate,
    speech_drive,
    synthetic_speech,
    write_simulation,
)


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory):
    """12 real Allison prompts with 1 s of silence before each (about 47 s)."""
    from edgensd.data.speech import SpeechDataConfig, build_speech_participant

    sp, _ = build_speech_participant(SpeechDataConfig(max_prompts=12, n_test=2, gap_s=1.0))
    path = tmp_path_factory.mktemp("knobs") / "speech.h5"
    save_participant(sp, path)
    return path


@pytest.fixture(scope="module")
def sims(speech_file):
    """The same participant (ld8x8, seed 11) simulated linear and with one knob on at a time."""
    runs = {
        "linear": {},
        "saturation": {"saturation_c50": 0.4},
        "onset": {"onset_fraction": 0.5},
        "drift": {"gain_drift_sd": 0.3},
        "articulatory": {"articulatory_weight": 1.0},
    }
    out = {}
    for name, kw in runs.items():
        cfg = SimulationConfig(speech=str(speech_file), layout="ld8x8", seed=11, **kw)
        out[name] = simulate(cfg, verbose="error")
    return out


def _envelope(res) -> np.ndarray:
    """Un-normalized high-gamma envelope of a simulation: the stored features with their z-scoring undone."""
    ex = res.participant.extras
    return res.participant.ecog * ex["sim_highgamma_std"] + ex["sim_highgamma_mean"]


def test_defaults_reproduce_the_base_model(tmp_path):
    """The default config is the linear preset with every knob off; its output is today's, bit for bit."""
    cfg = SimulationConfig()
    assert cfg.nonlinearity == "linear" and cfg.knobs == K.SimulatorKnobs() and cfg.knobs.is_linear
    speech = tmp_path / "s.h5"
    save_participant(synthetic_speech(n_trials=6, seed=0), speech)
    base = SimulationConfig(speech=str(speech), layout="strip", seed=5)
    explicit = SimulationConfig(
        speech=str(speech), layout="strip", seed=5, nonlinearity="linear", saturation_c50=0.0, onset_fraction=0.0,
        gain_drift_sd=0.0, articulatory_weight=0.0,
    )
    a, b = simulate(base, verbose="error"), simulate(explicit, verbose="error")
    np.testing.assert_array_equal(a.participant.ecog, b.participant.ecog)
    np.testing.assert_array_equal(a.participant.raw_signal, b.participant.raw_signal)
    assert a.truth.knob_truth == {} and not any(k in a.participant.extras for k in KNOB_TRUTH_KEYS)
    # figures of the simulator before the knobs existed (commit f073d41, measured with that code)
    golden = {
        "ecog": (-0.14847877647792518, 0.9498097916293456, 9.574743270874023),
        "raw": (-39.26875609389245, 360.5347351289756, 2474.381103515625),
        "gain": (0.8831607940373942, 1.0281623018080872, 3.0902184452861547),
    }
    p = a.participant
    for name, x in (("ecog", p.ecog), ("raw", p.raw_signal), ("gain", p.extras["sim_hg_gain"])):
        x = np.asarray(x, np.float64)
        np.testing.assert_allclose([x.mean(), x.std(), np.abs(x).max()], golden[name], rtol=1e-5, err_msg=name)
    # nothing knob-specific is written for the linear preset
    write_simulation(a, tmp_path / "p.h5")
    truth = load_ground_truth(tmp_path / "p.h5")
    assert truth.knob_truth == {}
    assert "n_onset_electrodes" not in truth.summary()


def test_presets_span_linear_to_strong():
    lin, mild, strong = (K.PRESET_KNOBS[n] for n in K.NONLINEARITIES)
    assert lin.is_linear and not mild.is_linear and not strong.is_linear
    # every knob is stronger in 'strong' than in 'mild' (a smaller c50 saturates more)
    assert 0 < strong.saturation_c50 < mild.saturation_c50
    assert 0 < mild.onset_fraction < strong.onset_fraction
    assert 0 < mild.gain_drift_sd < strong.gain_drift_sd
    assert 0 < mild.articulatory_weight < strong.articulatory_weight
    # an explicit knob overrides the preset, None keeps it
    cfg = SimulationConfig(nonlinearity="strong", gain_drift_sd=0.0, onset_fraction=None)
    assert cfg.knobs.gain_drift_sd == 0.0 and cfg.knobs.onset_fraction == strong.onset_fraction


def test_saturation_compresses_high_drive(speech_file, sims):
    # the function: Naka-Rushton, renormalized to mean 1 over speech frames
    from edgensd.data.participant import load_participant

    p = load_participant(speech_file, require_neural=False)
    feats = acoustic_features(p.audio)
    model = make_electrode_model(make_layout("ld8x8"), np.random.default_rng(0), PRESETS["standard"])
    drive = speech_drive(feats.activations, model, feats.is_speech)
    cols = np.flatnonzero(model.role != "none")
    sat = K.saturate(drive, 0.4, 2.0, feats.is_speech, cols)
    np.testing.assert_allclose(sat[feats.is_speech][:, cols].mean(axis=0), 1.0, rtol=1e-4)
    assert np.array_equal(sat[:, model.role == "none"], drive[:, model.role == "none"])
    # amplitude vs linear drive at high drive: the linear correlation drops, the slope flattens
    rng_seed = 3
    amp_lin, _ = highgamma_amplitude(drive, model, np.random.default_rng(rng_seed), PRESETS["easy"], feats.is_speech)
    amp_sat, _ = highgamma_amplitude(sat, model, np.random.default_rng(rng_seed), PRESETS["easy"], feats.is_speech)
    sp = feats.is_speech
    r_lin, r_sat = [], []
    for e in cols:
        d = drive[sp, e]
        hi = d > np.quantile(d, 0.75)
        r_lin.append(np.corrcoef(d[hi], amp_lin[sp, e][hi])[0, 1])
        r_sat.append(np.corrcoef(d[hi], amp_sat[sp, e][hi])[0, 1])
    assert np.median(r_sat) < np.median(r_lin) - 0.1, (np.median(r_lin), np.median(r_sat))
    # in the simulated high-gamma (through the raw signal and the pipeline): compressive against the linear run
    lin, sat_run = _envelope(sims["linear"]), _envelope(sims["saturation"])
    info = sims["linear"].truth.carries_info
    top, mid = [], []
    for e in np.flatnonzero(info):
        x, y = lin[sp, e], sat_run[sp, e]
        q40, q60, q75 = np.quantile(x, [0.4, 0.6, 0.75])
        hi, md = x > q75, (x > q40) & (x < q60)
        top.append(np.polyfit(x[hi], y[hi], 1)[0])
        mid.append(np.polyfit(x[md], y[md], 1)[0])
    assert np.median(top) < 0.92 * np.median(mid), (np.median(top), np.median(mid))
    with pytest.raises(ValueError, match="c50"):
        K.saturate(drive, 0.0, 2.0, feats.is_speech)


def test_onset_electrodes_respond_at_onsets_not_during_sustained_speech(sims):
    res = sims["onset"]
    kt = res.truth.knob_truth
    onset_el = kt["sim_onset_electrode"].astype(bool)
    aud = (res.truth.region == "auditory") & res.truth.carries_info
    assert onset_el.sum() >= 1 and (aud & ~onset_el).sum() >= 1 and not np.any(onset_el & ~aud)
    # the most posterior auditory electrodes (sheet u points anterior), within the 3 mm jitter
    u = res.truth.sheet_positions_mm[:, 0]
    assert u[onset_el].mean() < u[aud & ~onset_el].mean()
    feats = acoustic_features(res.participant.audio)
    events = kt["sim_onset_frames"]
    np.testing.assert_array_equal(events, K.onset_events(feats.is_speech, 0.3))
    assert events.size >= res.participant.n_trials  # every trial starts after 1 s of silence
    n = res.participant.n_frames
    early, late = np.zeros(n, bool), np.zeros(n, bool)
    for t in events:
        early[t + 6 : t + 50] = True  # 50-400 ms after the onset
        late[t + 75 : t + 400] = True  # 0.6-3.2 s after it
    late &= ~early & feats.is_speech
    env, env_lin = _envelope(res), _envelope(sims["linear"])

    def ratio(x, e):
        return x[early, e].mean() / x[late, e].mean()

    for e in np.flatnonzero(onset_el):
        assert ratio(env, e) > 2.0 * ratio(env_lin, e), (e, ratio(env, e), ratio(env_lin, e))
    for e in np.flatnonzero(aud & ~onset_el):  # sustained electrodes: unchanged by the knob
        assert ratio(env, e) == pytest.approx(ratio(env_lin, e), rel=0.05)
    # the event detector: only onsets after enough silence count
    mask = np.zeros(200, bool)
    mask[30:60] = mask[65:90] = mask[130:150] = True  # the recording's start counts as silence
    assert K.onset_events(mask, 0.3).tolist() == [130]  # 0.3 s = 38 frames; 130 follows 40 silent frames
    assert K.onset_events(mask, 0.2).tolist() == [30, 130]  # 65 follows 5 frames (40 ms) of silence
    assert K.onset_events(mask, 0.03).tolist() == [30, 65, 130]


def test_gain_drift_changes_trial_gains_by_the_set_amount(sims):
    # the process: log-normal, mean 1, SD and correlation as set
    g = K.trial_gains(4000, 32, 0.2, 20.0, np.random.default_rng(0))
    lg = np.log(g)
    assert lg.std() == pytest.approx(0.2, rel=0.1) and g.mean() == pytest.approx(1.0, abs=0.02)
    r1 = np.mean([np.corrcoef(lg[:-1, e], lg[1:, e])[0, 1] for e in range(32)])
    assert r1 == pytest.approx(np.exp(-1 / 20), abs=0.03)
    fg = K.frame_gain(g[:3, :2], np.array([10, 30, 50]), np.array([20, 40, 60]), 70)
    assert np.all(fg[:20, 0] == np.float32(g[0, 0])) and np.all(fg[30:40, 1] == np.float32(g[1, 1]))
    # linear through the gap, from the last frame of trial 0 (19) to the first of trial 1 (30)
    assert fg[25, 0] == pytest.approx(g[0, 0] + (25 - 19) / (30 - 19) * (g[1, 0] - g[0, 0]), rel=1e-5)
    # in the simulation: each trial's high-gamma is scaled by its gain (diluted by the unmodulated background)
    res, lin = sims["drift"], sims["linear"]
    gain = res.truth.knob_truth["sim_trial_gain"]
    p = res.participant
    assert gain.shape == (p.n_trials, p.n_electrodes)
    env, env_lin = _envelope(res), _envelope(lin)
    info = res.truth.carries_info
    measured = np.log([[env[s:e, j].mean() / env_lin[s:e, j].mean() for j in np.flatnonzero(info)]
                       for s, e in zip(p.start, p.end, strict=True)])
    truth = np.log(gain[:, info])
    assert np.corrcoef(measured.ravel(), truth.ravel())[0, 1] > 0.9
    assert 0.6 * truth.std() < measured.std() < 1.1 * truth.std()
    assert 0.15 < truth.std() < 0.45  # set 0.3; 12 trials
    # without drift the same comparison shows no per-trial change
    assert np.allclose(_envelope(lin), env_lin)


def test_articulatory_electrodes_lead_the_acoustics(speech_file, sims):
    from edgensd.data.participant import load_participant

    p = load_participant(speech_file, require_neural=False)
    feats = acoustic_features(p.audio)
    prox = K.articulatory_proxies(p.audio, feats)
    assert prox.activations.shape == (feats.n_frames, len(K.ARTICULATORY_NAMES))
    assert prox.activations.min() >= 0 and prox.activations.max() <= 1
    voiced = feats.is_speech & (feats.activations[:, feats.names.index("voicing")] > 0.2)
    f1, f2, f3 = np.median(prox.formants_hz[voiced], axis=0)
    assert 300 < f1 < 800 and 1300 < f2 < 2300 and 2400 < f3 < 3500, (f1, f2, f3)  # an adult female voice
    # the proxies are not loudness again: opposing articulators anti-correlate within speech
    a = prox.activations[feats.is_speech]
    idx = {n: i for i, n in enumerate(K.ARTICULATORY_NAMES)}
    assert np.corrcoef(a[:, idx["jaw_open"]], a[:, idx["tongue_high"]])[0, 1] < -0.8
    assert np.all(prox.activations[~feats.is_speech, idx["jaw_open"]].mean() < 0.2)

    res, lin = sims["articulatory"], sims["linear"]
    kt = res.truth.knob_truth
    w = kt["sim_articulatory_weight"]
    sm = (res.truth.region == "sensorimotor") & res.truth.carries_info
    assert np.all(w[sm] == 1.0) and np.all(w[~sm] == 0.0) and list(kt["sim_articulatory_names"]) == list(
        K.ARTICULATORY_NAMES)
    np.testing.assert_allclose(kt["sim_articulatory_tuning"][sm].sum(axis=1), 1.0)
    lags = np.arange(-40, 41)

    def peak_lag_ms(x, y):
        x, y = (x - x.mean()) / x.std(), (y - y.mean()) / y.std()
        c = [np.mean(y[max(0, -k) : len(y) - max(0, k)] * x[max(0, k) : len(x) - max(0, -k)]) for k in lags]
        return 8.0 * lags[int(np.argmax(c))]  # > 0: x follows y

    # against the proxies the electrode is tuned to (computed from the sound of the same frame): it leads them
    # by its lag
    mix = prox.activations @ kt["sim_articulatory_tuning"].T
    peaks = np.array([peak_lag_ms(res.participant.ecog[:, e], mix[:, e]) for e in np.flatnonzero(sm)])
    assert np.all(peaks < 0), peaks
    assert np.median(np.abs(peaks - res.truth.lag_ms[sm])) < 30, (peaks, res.truth.lag_ms[sm])
    # against the loudness of the sound itself: leads on the whole
    loud = feats.activations[:, feats.names.index("loudness")]
    peaks_loud = np.array([peak_lag_ms(res.participant.ecog[:, e], loud) for e in np.flatnonzero(sm)])
    assert np.median(peaks_loud) < -20 and np.mean(peaks_loud < 0) > 0.75, peaks_loud
    # and carries a different signal than its acoustic drive: its tuned proxies differ from its tuned acoustic
    # features within speech, and so do its features from the linear run's (which share every noise draw)
    sp = feats.is_speech
    acoustic_mix = feats.activations @ res.truth.tuning.T
    c_mix = [np.corrcoef(mix[sp, e], acoustic_mix[sp, e])[0, 1] for e in np.flatnonzero(sm)]
    assert np.median(c_mix) < 0.8, c_mix
    c = [np.corrcoef(res.participant.ecog[sp, e], lin.participant.ecog[sp, e])[0, 1] for e in np.flatnonzero(sm)]
    assert np.median(c) < 0.95, c
    # other electrodes keep their drive (they differ only through the common average reference)
    env, env_lin = _envelope(res), _envelope(lin)
    other = np.flatnonzero(res.truth.carries_info & ~sm)
    assert min(np.corrcoef(env[:, e], env_lin[:, e])[0, 1] for e in other) > 0.98


def test_knob_values_are_checked():
    with pytest.raises(ValueError, match=r"nonlinearity must be one of \['linear', 'mild', 'strong'\]"):
        SimulationConfig(nonlinearity="extreme")
    for field, bad, rng in [
        ("onset_fraction", 1.5, r"\[0, 1\]"),
        ("saturation_c50", -1.0, r"\[0, 10\]"),
        ("saturation_exponent", 0.5, r"\[1, 4\]"),
        ("gain_drift_sd", 2.0, r"\[0, 1\]"),
        ("gain_drift_trials", 0.0, r"\[1, 10000\]"),
        ("onset_silence_s", 0.0, r"\[0.05, 5\]"),
        ("articulatory_weight", "high", r"\[0, 1\]"),
    ]:
        with pytest.raises(ValueError, match=f"{field} must be a number in {rng}"):
            SimulationConfig(**{field: bad})


def test_cli_knob_flags(tmp_path, capsys):
    speech = tmp_path / "s.h5"
    save_participant(synthetic_speech(n_trials=6, seed=0), speech)
    out = tmp_path / "p.h5"
    argv = ["simulate", "--speech", str(speech), "--layout", "strip", "--out", str(out), "-q"]
    assert main([*argv, "--nonlinearity", "strong", "--gain-drift-sd", "0", "--onset-silence", "0.2"]) == 0
    cfg = SimulationConfig.load(config_path_for(out))
    assert (cfg.nonlinearity, cfg.gain_drift_sd, cfg.onset_silence_s, cfg.saturation_c50) == ("strong", 0.0, 0.2, None)
    saved = json.loads(config_path_for(out).read_text())
    assert saved["nonlinearity"] == "strong" and saved["gain_drift_sd"] == 0.0
    report = json.loads(out.with_name("p.simulation_report.json").read_text())
    assert report["simulator_knobs"]["saturation_c50"] == K.PRESET_KNOBS["strong"].saturation_c50
    assert report["simulator_knobs"]["gain_drift_sd"] == 0.0
    truth = load_ground_truth(out)
    assert "sim_trial_gain" not in truth.knob_truth and "sim_articulatory_weight" in truth.knob_truth
    import h5py

    with h5py.File(out, "r") as f:
        assert json.loads(f.attrs["simulator_knobs"])["nonlinearity"] == "strong"
    for flag, value, msg in [
        ("--nonlinearity", "huge", "invalid choice: 'huge'"),
        ("--onset-fraction", "1.5", "--onset-fraction: must be a number in [0, 1], got 1.5"),
        ("--saturation-c50", "x", "--saturation-c50: must be a number in [0, 10], got 'x'"),
    ]:
        with pytest.raises(SystemExit):
            main([*argv, flag, value])
        assert msg in capsys.readouterr().err
