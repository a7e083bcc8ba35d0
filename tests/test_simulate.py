"""Speech-driven ECoG simulator: reproducibility, realism checks, ground truth, errors, CLI."""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
import pytest
from scipy import signal

from edgensd.cli.main import main
from edgensd.data.participant import load_participant, save_participant
from edgensd.log import logger
from edgensd.neural.layouts import LAYOUT_NAMES, make_layout
from edgensd.neural.simulate import (
    PRESETS,
    SimulationConfig,
    acoustic_features,
    config_path_for,
    generate_raw,
    highgamma_amplitude,
    load_ground_truth,
    make_electrode_model,
    simulate,
    speech_drive,
    synthetic_speech,
    write_simulation,
)


@pytest.fixture(scope="module")
def synth_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("speech") / "synth.h5"
    save_participant(synthetic_speech(n_trials=10, seed=0), path)
    return path


@pytest.fixture(scope="module")
def real_sim(tmp_path_factory):
    """A 64-electrode participant simulated from 8 real Allison prompts, re-spaced with 1 s gaps."""
    from edgensd.data.speech import SpeechDataConfig, build_speech_participant

    sp, _ = build_speech_participant(SpeechDataConfig(max_prompts=8, n_test=2))  # installed by install.sh
    d = tmp_path_factory.mktemp("real")
    save_participant(sp, d / "speech.h5")
    cfg = SimulationConfig(speech=str(d / "speech.h5"), layout="ld8x8", seed=11, trial_gap_s=1.0)
    res = simulate(cfg, verbose="warning")
    write_simulation(res, d / "p.h5")
    return res, d / "p.h5"


def _h5_contents(path):
    out = {}
    with h5py.File(path, "r") as f:
        for k, v in f.attrs.items():
            out["@" + k] = v
        for k in f.keys():
            ds = f[k]
            out[k] = ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) else ds[()]
    return out


def _assert_same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        va, vb = np.asarray(a[k]), np.asarray(b[k])
        assert va.shape == vb.shape, k
        assert np.array_equal(va, vb), k


def test_same_seed_gives_identical_files_and_other_seed_differs(synth_file, tmp_path):
    cfg = SimulationConfig(speech=str(synth_file), layout="strip", seed=5)
    write_simulation(simulate(cfg, verbose="warning"), tmp_path / "a.h5")
    write_simulation(simulate(cfg, verbose="warning"), tmp_path / "b.h5")
    _assert_same(_h5_contents(tmp_path / "a.h5"), _h5_contents(tmp_path / "b.h5"))
    cfg2 = SimulationConfig(speech=str(synth_file), layout="strip", seed=6)
    write_simulation(simulate(cfg2, verbose="warning"), tmp_path / "c.h5")
    a, c = _h5_contents(tmp_path / "a.h5"), _h5_contents(tmp_path / "c.h5")
    assert not np.array_equal(a["ecog_alldataset"], c["ecog_alldataset"])
    np.testing.assert_array_equal(a["wave_re_alldataset"], c["wave_re_alldataset"])  # same speech
    assert SimulationConfig.load(config_path_for(tmp_path / "a.h5")) == cfg


def test_raw_does_not_depend_on_chunk_size():
    lay = make_layout("strip")
    model = make_electrode_model(lay, np.random.default_rng(0), PRESETS["standard"])
    assert set(model.bad_kind[model.bad]) == {"flat", "noisy"}  # 2 bad channels for 48 electrodes
    n_frames = 500
    amp = np.full((n_frames, lay.n_electrodes), 3.0, np.float32)
    drive = np.zeros_like(amp)
    n_raw = (n_frames - 1) * 8 + 1
    a = generate_raw(amp, drive, model, n_raw, 1000.0, 60.0, np.random.SeedSequence(3), chunk_s=0.37)
    b = generate_raw(amp, drive, model, n_raw, 1000.0, 60.0, np.random.SeedSequence(3), chunk_s=10.0)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == (n_raw, 48)


def test_raw_does_not_depend_on_chunk_size_with_every_bad_kind():
    # two noisy channels (each its own noise stream), a popping one, flat ones, beta desynchronization
    lay = make_layout("ld8x8")
    model = make_electrode_model(lay, np.random.default_rng(0), PRESETS["hard"])
    kinds = list(model.bad_kind[model.bad])
    assert kinds.count("noisy") == 2 and "popping" in kinds and "flat" in kinds
    assert np.any(model.beta_erd > 0)
    rng = np.random.default_rng(1)
    n_frames = 700
    amp = rng.uniform(2.0, 6.0, (n_frames, lay.n_electrodes)).astype(np.float32)
    drive = rng.uniform(0.0, 1.5, (n_frames, lay.n_electrodes)).astype(np.float32)
    n_raw = (n_frames - 1) * 8 + 1
    runs = [
        generate_raw(amp, drive, model, n_raw, 1000.0, 60.0, np.random.SeedSequence(5), chunk_s=c)
        for c in (0.113, 1.0, 60.0)
    ]
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0], other)


def test_real_prompts_participant_file(real_sim):
    res, path = real_sim
    p = load_participant(path, load_extras=True)
    n = p.n_frames
    assert p.ecog.shape == (n, 64) and p.raw_signal.shape[1] == 64 and p.raw_fs == 1000.0
    assert p.grid_shape == (8, 8) and p.hemisphere == "left" and p.density == "low"
    assert p.electrode_positions.shape == (64, 3)
    assert p.n_trials == 8 and len(p.test_trials) == 2
    truth = load_ground_truth(path)
    np.testing.assert_array_equal(truth.role, res.truth.role)
    # z-scored features; bad channels are detected and zeroed by the pipeline
    assert np.array_equal(truth.bad, truth.bad_detected)
    assert np.all(p.ecog[:, truth.bad] == 0)
    good = ~truth.bad
    assert abs(float(p.ecog[:, good].mean())) < 0.2 and 0.7 < float(p.ecog[:, good].std()) < 1.3
    # roles and lags follow the regions
    lead = truth.role == "leading"
    lag = truth.role == "lagging"
    assert lead.sum() >= 10 and lag.sum() >= 3 and (truth.role == "none").sum() >= 10
    assert np.all((truth.lag_ms[lead] <= -50) & (truth.lag_ms[lead] >= -200))
    assert np.all((truth.lag_ms[lag] >= 50) & (truth.lag_ms[lag] <= 150))
    assert set(truth.region[lag]) == {"auditory"}
    assert set(truth.region[lead]) <= {"sensorimotor", "ifg"}
    # tuning differs between electrodes but varies smoothly: neighbours are more alike than far pairs
    tun = truth.tuning[lead]
    pos = truth.sheet_positions_mm[lead]
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    c = np.corrcoef(tun)
    near = (d > 0) & (d <= 11)
    far = d >= 40
    assert c[near].mean() > c[far].mean()
    assert np.unique(tun.round(6), axis=0).shape[0] == tun.shape[0]


def test_speech_raises_highgamma_1p5_to_4x(real_sim):
    res, _ = real_sim
    t = res.truth
    info = t.carries_info
    r = t.ratio_measured
    assert np.all((r[info] >= 1.5) & (r[info] <= 4.0)), r[info]
    assert np.all(np.abs(r[info] - t.ratio_target[info]) < 0.3 * t.ratio_target[info])
    none = (t.role == "none") & ~t.bad
    assert np.all((r[none] > 0.85) & (r[none] < 1.25)), r[none]


def test_raw_spectrum_background_line_noise_and_alpha(real_sim):
    res, _ = real_sim
    raw = res.participant.raw_signal
    t = res.truth
    good = ~t.bad
    x = raw[:, good] - raw[:, good].mean(axis=1, keepdims=True)  # CAR removes the common-mode noise
    f, pxx = signal.welch(x, fs=1000.0, nperseg=4096, axis=0)
    sel = ((f >= 2) & (f <= 6)) | ((f >= 30) & (f <= 50))
    slopes = np.array([np.polyfit(np.log10(f[sel]), np.log10(pxx[sel, i]), 1)[0] for i in range(x.shape[1])])
    assert np.all((-slopes >= 1.8) & (-slopes <= 3.1)), slopes  # 30 s of data: estimates within ~0.2
    assert np.all(np.abs(-slopes - t.aperiodic_exponent[good]) < 0.4)
    f_raw, p_raw = signal.welch(raw[:, good], fs=1000.0, nperseg=4096, axis=0)
    i60, i55 = np.argmin(np.abs(f_raw - 60)), np.argmin(np.abs(f_raw - 55))
    i120, i115 = np.argmin(np.abs(f_raw - 120)), np.argmin(np.abs(f_raw - 115))
    assert np.all(p_raw[i60] > 30 * p_raw[i55]) and np.all(p_raw[i120] > 5 * p_raw[i115])
    # the alpha resonance stands above the aperiodic fit at its peak
    for j, i in enumerate(np.flatnonzero(good)[:10]):
        fit = np.polyfit(np.log10(f[sel]), np.log10(pxx[sel, j]), 1)
        k = np.argmin(np.abs(f - t.alpha_hz[i]))
        assert np.log10(pxx[k, j]) > np.polyval(fit, np.log10(f[k])) + 0.2


def test_calibration_without_silence_warns_not_fails():
    p = synthetic_speech(n_trials=3, seed=1, gap_s=0.1)
    feats = acoustic_features(p.audio)
    model = make_electrode_model(make_layout("strip"), np.random.default_rng(0), PRESETS["easy"])
    drive = speech_drive(feats.activations, model, feats.is_speech)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        amp, gain = highgamma_amplitude(drive, model, np.random.default_rng(1), PRESETS["easy"], feats.is_speech)
    finally:
        logger.removeHandler(handler)
    assert np.all(gain[model.role != "none"] == 1.5) and amp.shape == drive.shape
    assert any("trial_gap_s" in r.getMessage() for r in records)


def test_bad_inputs(tmp_path, synth_file):
    with pytest.raises(ValueError) as exc:
        SimulationConfig(speech=str(synth_file), layout="grid")
    for name in LAYOUT_NAMES:
        assert name in str(exc.value)
    with pytest.raises(ValueError, match="difficulty"):
        SimulationConfig(difficulty="extreme")
    with pytest.raises(ValueError, match="raw_fs"):
        SimulationConfig(raw_fs=250.0)
    with pytest.raises(ValueError, match="n_bad"):
        simulate(SimulationConfig(speech=str(synth_file), layout="strip", n_bad=100), verbose="warning")
    with pytest.raises(FileNotFoundError):
        simulate(SimulationConfig(speech=str(tmp_path / "nope.h5")))
    bad = tmp_path / "no_audio.h5"
    with h5py.File(bad, "w") as f:
        f["start_ind_re_valid_alldataset"] = np.array([0])
        f["end_ind_re_valid_alldataset"] = np.array([10])
        f["label_alldataset"] = np.array([b"x"])
    with pytest.raises(ValueError, match="wave_re_alldataset"):
        simulate(SimulationConfig(speech=str(bad)))


def test_cli_simulate(synth_file, tmp_path):
    out = tmp_path / "sub" / "p.h5"
    rc = main(
        [
            "simulate",
            "--speech",
            str(synth_file),
            "--layout",
            "seeg",
            "--hemisphere",
            "right",
            "--seed",
            "2",
            "--out",
            str(out),
            "--difficulty",
            "hard",
            "--line-freq",
            "50",
            "-q",
        ]
    )
    assert rc == 0 and out.is_file()
    cfg = SimulationConfig.load(config_path_for(out))
    assert (cfg.layout, cfg.hemisphere, cfg.difficulty, cfg.line_freq) == ("seeg", "right", "hard", 50.0)
    report = json.loads(out.with_name("p.simulation_report.json").read_text())
    assert report["truth_summary"]["n_electrodes"] == 64
    p = load_participant(out)
    assert p.hemisphere == "right" and p.density == "depth" and np.all(p.electrode_positions[:, 0] > 0)
    assert (
        main(
            [
                "simulate",
                "--speech",
                str(tmp_path / "missing.h5"),
                "--layout",
                "ld8x8",
                "--out",
                str(tmp_path / "x.h5"),
                "-q",
            ]
        )
        == 2
    )
    with pytest.raises(SystemExit):
        main(["simulate", "--speech", str(synth_file), "--layout", "grid", "--out", str(tmp_path / "x.h5")])


def test_streaming_pipeline_features_are_what_the_runtime_computes(synth_file):
    """--pipeline streaming stores the causal features a live raw stream gives, block by block, with the same
    raw signal as the offline file; the file carries the statistics the runtime needs."""
    from edgensd.neural.highgamma import HighGammaStats, StreamingHighGamma

    kw = {"speech": str(synth_file), "layout": "strip", "seed": 5}
    off = simulate(SimulationConfig(**kw), verbose="warning")
    st = simulate(SimulationConfig(**kw, pipeline="streaming"), verbose="warning")
    np.testing.assert_array_equal(off.participant.raw_signal, st.participant.raw_signal)
    stats = HighGammaStats.from_dict(json.loads(st.participant.attrs["highgamma_stats"]))
    assert stats.config.pipeline == "streaming"
    assert json.loads(st.participant.attrs["highgamma_config"])["pipeline"] == "streaming"
    live = StreamingHighGamma(st.participant.raw_fs, st.participant.n_electrodes, stats=stats)
    raw = st.participant.raw_signal
    blocks = [live.process(raw[a : a + 37]) for a in range(0, raw.shape[0], 37)]
    frames = np.concatenate(blocks)
    n = min(len(frames), st.participant.n_frames)
    assert n >= st.participant.n_frames - 1
    np.testing.assert_allclose(frames[:n], st.participant.ecog[:n], atol=1e-4)
    # the streaming features lag the zero-phase ones: they differ, frame for frame
    assert np.abs(off.participant.ecog[:n] - st.participant.ecog[:n]).mean() > 0.05
    with pytest.raises(ValueError, match="pipeline"):
        SimulationConfig(**kw, pipeline="zero-phase")
