"""Encoding models: trial folds, lag sign convention, recovery of simulated roles, params features, CLI."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from scipy import signal

from edgensd.cli.main import main
from edgensd.data.participant import save_participant
from edgensd.neural.encoding import (
    EncodingConfig,
    compare_with_truth,
    encoding_features,
    fit_encoding,
    load_params_h5,
    mel_band_features,
    params_features,
    trial_folds,
)
from edgensd.neural.simulate import SimulationConfig, simulate, synthetic_speech, write_simulation
from edgensd.spectrogram import mel_norm


def test_trial_folds_are_whole_trials_with_guards():
    start = np.arange(20) * 100 + 20
    end = start + 60
    fold = trial_folds(start, end, 2000, 4, guard=10)
    for s, e in zip(start, end, strict=True):
        assert len(set(fold[s:e].tolist()) - {-1}) == 1  # one fold per trial
    assert set(fold.tolist()) == {-1, 0, 1, 2, 3}
    assert np.sum(fold == -1) == 3 * 20  # 10 guard frames each side of 3 boundaries
    with pytest.raises(ValueError, match="n_folds"):
        trial_folds(start[:3], end[:3], 400, 4, 5)


def test_lag_sign_convention_and_role_recovery_on_known_trfs():
    rng = np.random.default_rng(0)
    n, k = 16000, 3
    x = signal.lfilter([1.0], [1.0, -0.8], rng.normal(size=(n, k)), axis=0)
    y = np.zeros((n, 3))
    y[10:, 0] = x[:-10, 0] + 0.5 * x[:-10, 1]  # follows the features by 10 frames = +80 ms: lagging
    y[:-15, 1] = x[15:, 2]  # precedes them by 15 frames = -120 ms: leading
    y += rng.normal(size=y.shape) * np.array([1.5, 1.5, 1.0])  # electrode 2: noise only
    start = np.arange(40) * 400 + 50
    end = start + 300
    res = fit_encoding(y, x, start, end, EncodingConfig(n_folds=4))
    assert list(res.role) == ["lagging", "leading", "none"]
    assert res.best_lag_ms[0] == pytest.approx(80.0, abs=8.1)
    assert res.best_lag_ms[1] == pytest.approx(-120.0, abs=8.1)
    assert res.r[0] > 0.3 and res.r[1] > 0.3 and abs(res.r[2]) < 0.05
    assert res.weights.shape == (res.lags_ms.size, k, 3)
    np.testing.assert_allclose(res.lag_profile.sum(axis=0), 1.0)
    d = res.to_dict()
    assert d["summary"]["n_leading"] == 1 and len(d["electrodes"]) == 3
    json.dumps(d)


def test_mel_band_features_match_the_spectrogram_convention():
    p = synthetic_speech(n_trials=2, seed=3)
    bands = mel_band_features(p.audio, 16, chunk_frames=100)
    ref = mel_norm(p.audio).reshape(-1, 16, 8).mean(axis=2)
    np.testing.assert_allclose(bands, ref, atol=1e-4)


def test_params_features_need_the_speech_encoder(tmp_path):
    p = synthetic_speech(n_trials=2, seed=3)
    with pytest.raises(ValueError, match="speech encoder.*--params-h5"):
        encoding_features(p, "params")
    with pytest.raises(ValueError, match="features"):
        encoding_features(p, "wav2vec")
    params = np.tile(np.linspace(100.0, 4000.0, 18, dtype=np.float32), (p.n_frames, 1))
    feats, names = params_features(params)
    assert feats.shape == (p.n_frames, 18) and names[0] == "log2_f0_hz"
    assert feats[0, 0] == pytest.approx(np.log2(100.0))
    with pytest.raises(ValueError, match="18"):
        params_features(params[:, :5])
    path = tmp_path / "params.h5"
    with h5py.File(path, "w") as f:
        f["other"] = params
    with pytest.raises(ValueError, match="no 'params' dataset.*other"):
        load_params_h5(path)


@pytest.fixture(scope="module")
def synth_sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("enc")
    save_participant(synthetic_speech(n_trials=12, seed=4), d / "speech.h5")
    cfg = SimulationConfig(speech=str(d / "speech.h5"), layout="strip", seed=3)
    res = simulate(cfg, verbose="warning")
    write_simulation(res, d / "p.h5")
    return res, d / "p.h5"


def test_cli_encode_reports_roles_and_ground_truth(synth_sim, tmp_path):
    res, path = synth_sim
    out = tmp_path / "enc.json"
    assert main(["encode", "--data", str(path), "--features", "mel", "--json", str(out), "--folds", "3", "-q"]) == 0
    rep = json.loads(out.read_text())
    assert len(rep["electrodes"]) == 48
    assert "negative" in rep["lag_convention"]
    assert rep["ground_truth"]["role_recovery"] >= 0.9
    assert rep["electrodes"][0]["true_role"] == res.truth.role[0]
    # params without the speech encoder's output: a clear error (exit status 2)
    assert main(["encode", "--data", str(path), "--features", "params", "--json", str(out), "-q"]) == 2


def test_recovers_leading_and_lagging_electrodes_from_real_prompts(tmp_path):
    """Done-when check on real speech (the full participant is measured in the README/note)."""
    from edgensd.data.speech import SpeechDataConfig, build_speech_participant

    sp, _ = build_speech_participant(SpeechDataConfig(max_prompts=10, n_test=2))  # installed by install.sh
    save_participant(sp, tmp_path / "speech.h5")
    cfg = SimulationConfig(speech=str(tmp_path / "speech.h5"), layout="ld8x8", seed=21, trial_gap_s=0.8)
    sim = simulate(cfg, verbose="warning")
    p = sim.participant
    feats, names = encoding_features(p, "mel")
    res = fit_encoding(p.ecog, feats, p.start, p.end, EncodingConfig(n_folds=4), names)
    score = compare_with_truth(res, sim.truth)
    assert score["n_info"] >= 15
    assert score["role_recovery"] >= 0.9, score
    assert score["lag_error_ms_median"] < 30.0
    assert score["false_info"] <= 2
