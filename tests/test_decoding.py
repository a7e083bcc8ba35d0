"""Stage 2 end to end on a tiny participant: training, resume, evaluation, occlusion, compare, bad input."""

from __future__ import annotations

import dataclasses
import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from edgensd.cli.main import main  # noqa: E402
from edgensd.data.participant import load_participant, save_participant  # noqa: E402
from edgensd.decoding import train as train_mod  # noqa: E402
from edgensd.decoding.baselines import CAUSAL_LAGS, fit_ridge, floor_spectrum, lagged  # noqa: E402
from edgensd.decoding.compare import compare  # noqa: E402
from edgensd.decoding.evaluate import evaluate_decoder  # noqa: E402
from edgensd.decoding.occlusion import compare_with_truth  # noqa: E402
from edgensd.decoding.recipes import recipe_decoder, recipe_train  # noqa: E402
from edgensd.decoding.targets import Segments, param_position  # noqa: E402
from edgensd.decoding.train import DecoderTrainConfig, load_trained_decoder, train_decoder  # noqa: E402
from edgensd.params import PARAM_NAMES, VoiceRange, raw_to_physical  # noqa: E402

torch.set_num_threads(1)

EDGE_SMALL = {"channels": 8, "dilations": [1, 2], "gru_hidden": 8}


def _cfg(**kw) -> DecoderTrainConfig:
    base = dict(arch="edge", max_minutes=0.04, batch_size=4, crop_frames=48, warmup_frames=8, context_frames=24,
                decoder=dict(EDGE_SMALL), checkpoint_every_s=1000.0)
    base.update(kw)
    return DecoderTrainConfig(**base)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 64-electrode participant simulated from 6 real prompts (2 held out) and a tiny speech model."""
    from edgensd.data.speech import SpeechDataConfig, build_speech_participant
    from edgensd.neural.simulate import SimulationConfig, simulate, write_simulation
    from edgensd.speech.model import SpeechModelConfig
    from edgensd.speech.train import SpeechTrainConfig, train_speech

    sp, _ = build_speech_participant(SpeechDataConfig(max_prompts=6, n_test=2))  # installed by install.sh
    d = tmp_path_factory.mktemp("decoding")
    save_participant(sp, d / "speech.h5")
    res = simulate(SimulationConfig(speech=str(d / "speech.h5"), layout="ld8x8", seed=3, trial_gap_s=0.8),
                   verbose="warning")
    write_simulation(res, d / "p.h5")
    train_speech(d / "speech.h5", d / "sm",
                 SpeechTrainConfig(max_minutes=0.03, model=SpeechModelConfig(hidden=16, n_blocks=1)))
    # the model everything below evaluates, trained through the CLI
    rc = main(["train", "decoder", "-q", "--data", str(d / "p.h5"), "--speech-model", str(d / "sm"), "--arch",
               "edge", "--causal", "--out", str(d / "edge"), "--max-minutes", "0.04", "--batch-size", "4",
               "--decoder-config", json.dumps(EDGE_SMALL)])
    assert rc == 0
    return d


def test_train_writes_model_config_and_provenance(setup):
    d = setup
    td = load_trained_decoder(d / "edge")
    assert td.decoder.causal and td.decoder.n_electrodes == 64 and not td.decoder.training
    # --recipe auto filled in small-data for edge: its dropout joins the explicit --decoder-config, which wins
    assert td.train_config.arch == "edge" and td.train_config.decoder == recipe_decoder("small-data", EDGE_SMALL)
    assert td.train_config.weight_decay == recipe_train("small-data")["weight_decay"]
    info = td.info
    assert info["done"] and info["train_steps"] >= 1 and info["train_seconds"] > 0
    assert VoiceRange.from_dict(info["voice_range"]).same_as(VoiceRange.preset("high"))
    hg = info["participant"]["highgamma_config"]
    assert isinstance(hg, dict) and hg  # the simulated file records its high-gamma pipeline
    assert info["grid_method"] == "positions" and len(info["data_key"]) == 16
    assert list(d.joinpath("edge").glob("reference_*.npz"))  # reference parameters cached
    again = DecoderTrainConfig.load(d / "edge" / "train_config.json")
    assert again == td.train_config


def test_resume_after_interruption(setup, tmp_path, monkeypatch):
    d = setup
    shutil.copy(next((d / "edge").glob("reference_*.npz")), tmp_path)  # skip recomputing the references

    class StopAfter(train_mod.StopFlag):
        """Reports SIGTERM from the third check of the flag on (after the third step)."""

        def __enter__(self):
            self.checks = 0
            return self

        def __exit__(self, *exc):
            return None

        @property
        def signum(self):
            self.checks += 1
            return 15 if self.checks >= 3 else None

        @signum.setter
        def signum(self, value):
            pass

    monkeypatch.setattr(train_mod, "StopFlag", StopAfter)
    with pytest.raises(KeyboardInterrupt):
        train_decoder(d / "p.h5", d / "sm", tmp_path, _cfg(max_minutes=1.0))
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 3 and not ck["done"]
    assert json.loads((tmp_path / "decoder_info.json").read_text())["done"] is False
    load_trained_decoder(tmp_path)  # the interrupted directory holds a usable model
    monkeypatch.undo()
    # resume: same directory, continues from step 3 up to the (shorter) total budget
    train_decoder(d / "p.h5", d / "sm", tmp_path, _cfg(max_minutes=ck["elapsed_s"] / 60 + 0.01))
    ck2 = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ck2["done"] and ck2["step"] > 3 and ck2["elapsed_s"] > ck["elapsed_s"]
    # a checkpoint of another architecture is refused
    with pytest.raises(ValueError, match="holds a checkpoint of 'edge'"):
        train_decoder(d / "p.h5", d / "sm", tmp_path, _cfg(arch="lstm", decoder={"hidden_size": 8}))


def _frames(p, seg, k):
    """Recording frames [a, b) of segment k."""
    a = int(p.start[int(seg.trials[k])]) - int(seg.first[k])
    return a, a + int(seg.offsets[k + 1] - seg.offsets[k])


def test_validation_split_early_stopping_and_model_selection(setup, tmp_path, monkeypatch):
    d = setup
    shutil.copy(next((d / "edge").glob("reference_*.npz")), tmp_path)
    seen = []

    class Recorded(train_mod._Crops):
        def __init__(self, seg, *a, **kw):
            seen.append(seg)
            super().__init__(seg, *a, **kw)

    monkeypatch.setattr(train_mod, "_Crops", Recorded)
    # lr = 0 forces a plateau: the second validation cannot improve on the first, patience 1 stops there
    cfg = _cfg(max_minutes=5.0, val_fraction=0.3, val_every_s=1e-9, patience=1, lr=0.0)
    train_decoder(d / "p.h5", d / "sm", tmp_path, cfg)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    sel = ck["selection"]
    assert ck["done"] and ck["step"] == 2 and ck["elapsed_s"] < 60  # stopped long before the 5-minute budget
    assert sel["early_stopping"]["stopped"] and sel["early_stopping"]["best_step"] == 1 and sel["val_evals"] == 2
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    vals = [r for r in log if "val_pcc" in r]
    assert [r["step"] for r in vals] == [1, 2] and vals[0]["val_pcc"] == vals[1]["val_pcc"]
    assert -1 <= vals[0]["val_pcc"] <= 1 and vals[1]["bad_evals"] == 1
    info = json.loads((tmp_path / "decoder_info.json").read_text())
    assert info["validation"]["early_stopped"] and info["validation"]["best_step"] == 1
    assert info["saved_weights"] == "best validation raw weights"
    # the trials: validation ⊂ training, disjoint from the test trials and from the gradient-step segments
    p = load_participant(d / "p.h5")
    train_idx, test_idx = train_mod.trial_split(p)
    val = set(info["val_trials"])
    assert len(val) == 1 and val <= set(train_idx.tolist()) and not val & set(test_idx.tolist())
    fit = seen[0]
    assert set(fit.trials.tolist()) == set(train_idx.tolist()) - val
    held = [(int(p.start[i]), int(p.end[i])) for i in [*val, *test_idx.tolist()]]
    for k in range(len(fit)):
        a, b = _frames(p, fit, k)
        assert all(b <= s or a >= e for s, e in held)  # no frame of a held-out trial, context included
    # the saved model is the best-validation one and scores what validation said
    from edgensd.decoding.selection import validation_pcc
    from edgensd.decoding.targets import build_segments, load_references
    from edgensd.speech.model import load_speech_model

    sm = load_speech_model(d / "sm")
    refs = load_references(p, sm, d / "sm", cfg.context_frames, tmp_path)
    vseg = build_segments(p, refs, np.array(sorted(val)), exclude=test_idx)
    dec = load_trained_decoder(tmp_path).decoder
    assert validation_pcc(dec, sm.synth.eval(), sm.config.voice, vseg) == pytest.approx(vals[0]["val_pcc"], abs=1e-5)
    # ... and validation scores as eval decoder does (here on the test trials)
    tseg = build_segments(p, refs, test_idx)
    ev = evaluate_decoder(tmp_path, d / "p.h5", stoi=False)
    assert validation_pcc(dec, sm.synth.eval(), sm.config.voice, tseg) == pytest.approx(ev["pcc_mean"], abs=1e-5)
    # resuming a run that stopped early trains no further, even with a larger budget
    train_decoder(d / "p.h5", d / "sm", tmp_path, _cfg(max_minutes=6.0))
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 2


def test_resume_keeps_ema_best_and_early_stopping_state(setup, tmp_path, monkeypatch, edgensd_log):
    d = setup
    shutil.copy(next((d / "edge").glob("reference_*.npz")), tmp_path)
    calls = {"n": 0}

    class StopAfter(train_mod.StopFlag):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        @property
        def signum(self):
            calls["n"] += 1
            return 15 if calls["n"] >= 4 else None

        @signum.setter
        def signum(self, value):
            pass

    monkeypatch.setattr(train_mod, "StopFlag", StopAfter)
    cfg = _cfg(max_minutes=1.0, val_fraction=0.3, val_every_s=1e-9, patience=50, ema_decay=0.9,
               aug_dropout=0.1, aug_jitter=2, aug_noise=0.1, aug_gain=0.1)
    with pytest.raises(KeyboardInterrupt):
        train_decoder(d / "p.h5", d / "sm", tmp_path, cfg)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    sel = ck["selection"]
    assert ck["step"] == 4 and not ck["done"]
    assert sel["ema"]["n_updates"] == 4 and sel["val_evals"] == 4 and sel["best"] is not None
    saved = torch.load(tmp_path / "decoder_weights.pt", weights_only=True)
    assert all(torch.equal(saved[k], sel["best"][k]) for k in saved)  # the saved model is the best one
    assert not all(torch.equal(sel["ema"]["model"][k], ck["model"][k]) for k in ck["model"])  # EMA ≠ raw
    monkeypatch.undo()
    train_decoder(d / "p.h5", d / "sm", tmp_path, _cfg(max_minutes=ck["elapsed_s"] / 60 + 0.01))
    ck2 = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    sel2 = ck2["selection"]
    assert ck2["done"] and ck2["step"] > 4
    assert sel2["ema"]["n_updates"] == ck2["step"]  # the average carried on, not restarted
    assert sel2["val_evals"] >= ck2["step"] and sel2["early_stopping"]["best"] >= sel["early_stopping"]["best"]
    cfg2 = DecoderTrainConfig.load(tmp_path / "train_config.json")  # the recipe survives the resume
    assert (cfg2.ema_decay, cfg2.val_fraction, cfg2.aug_jitter) == (0.9, 0.3, 2)
    # ... and the resume said which of the asked-for settings it ignored (the budget it takes; those it keeps)
    warned = [r.getMessage() for r in edgensd_log if r.levelname == "WARNING" and "ignored:" in r.getMessage()]
    assert len(warned) == 1 and "max_minutes" not in warned[0]
    for field, asked, kept in (("ema_decay", 0.0, 0.9), ("val_fraction", 0.0, 0.3), ("aug_jitter", 0, 2),
                               ("patience", 10, 50)):
        assert f"{field}={asked!r} (checkpoint: {kept!r})" in warned[0]
    info = json.loads((tmp_path / "decoder_info.json").read_text())
    assert info["saved_weights"] == "best validation EMA weights"
    assert info["validation"]["best_pcc"] == pytest.approx(sel2["early_stopping"]["best"])


def test_recipe_flags_on_the_command_line(setup, tmp_path, capsys, caplog):
    d = setup
    base = ["train", "decoder", "-q", "--data", str(d / "p.h5"), "--speech-model", str(d / "sm"), "--arch", "edge",
            "--out", str(tmp_path / "m")]
    for flag, value in (("--val-fraction", "1"), ("--ema-decay", "1.0"), ("--aug-dropout", "-0.1"),
                        ("--aug-noise", "-1"), ("--patience", "-2"), ("--val-every", "0")):
        with pytest.raises(SystemExit) as exc:
            main([*base, flag, value])
        assert exc.value.code == 2 and f"argument {flag}: must be" in capsys.readouterr().err
    assert main([*base, "--aug-jitter", "80"]) == 2  # checked against the crop length by the config
    assert "--aug-jitter must be an integer in [0, crop_frames // 2 = 80), got 80" in caplog.text
    assert not (tmp_path / "m" / "checkpoint.pt").exists()
    shutil.copy(next((d / "edge").glob("reference_*.npz")), tmp_path)
    rc = main([*base[:-1], str(tmp_path), "--max-minutes", "0.01", "--batch-size", "2", "--val-fraction", "0.25",
               "--patience", "3", "--ema-decay", "0.99", "--aug-dropout", "0.2", "--aug-jitter", "3", "--aug-noise",
               "0.05", "--aug-gain", "0.1", "--weight-pcc", "0.5", "--weight-mel", "0.25", "--weight-decay", "0.02",
               "--spec-loss", "rmse", "--decoder-config", json.dumps(EDGE_SMALL)])
    assert rc == 0
    cfg = DecoderTrainConfig.load(tmp_path / "train_config.json")
    got = (cfg.val_fraction, cfg.patience, cfg.ema_decay, cfg.aug_dropout, cfg.aug_jitter, cfg.aug_noise,
           cfg.aug_gain, cfg.weight_pcc, cfg.weight_mel, cfg.weight_lin, cfg.weight_decay, cfg.spec_loss)
    assert got == (0.25, 3, 0.99, 0.2, 3, 0.05, 0.1, 0.5, 0.25, 1.0, 0.02, "rmse")
    steps = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in steps if "loss" in r]
    assert steps and all(-1.0 <= r["pcc"] <= 1.0 for r in steps)  # the correlation term is logged
    assert steps[-1]["step"] == torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"]  # the last one too
    with pytest.raises(SystemExit) as exc:
        main([*base, "--weight-pcc", "-1"])
    assert exc.value.code == 2 and "argument --weight-pcc: must be" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*base, "--spec-loss", "l2"])
    assert exc.value.code == 2 and "argument --spec-loss: invalid choice: 'l2'" in capsys.readouterr().err


def test_named_recipe_fills_in_only_the_flags_not_given(setup, tmp_path, monkeypatch):
    from edgensd.decoding import train as train_mod

    got = []
    monkeypatch.setattr(train_mod, "train_decoder", lambda data, sm, out, cfg: got.append(cfg) or out)
    d = setup
    base = ["train", "decoder", "-q", "--data", str(d / "p.h5"), "--speech-model", str(d / "sm"), "--arch", "edge",
            "--out", str(tmp_path / "m")]
    assert main([*base, "--recipe", "small-data", "--aug-noise", "0", "--lr", "5e-4",
                 "--decoder-config", '{"channels": 8}']) == 0
    cfg = got[-1]
    assert (cfg.weight_decay, cfg.aug_dropout, cfg.aug_noise, cfg.aug_gain, cfg.spec_loss, cfg.weight_pcc, cfg.lr) == (
        0.05, 0.1, 0.0, 0.2, "rmse", 1.0, 5e-4)  # --aug-noise 0 was given: the recipe's 0.3 does not replace it
    assert cfg.decoder == {"dropout": 0.3, "channels": 8} and cfg.val_fraction == 0 and cfg.ema_decay == 0
    assert main([*base, "--recipe", "small-data", "--decoder-config", '{"dropout": 0.1}']) == 0
    assert got[-1].decoder == {"dropout": 0.1} and got[-1].aug_noise == 0.3
    assert main([*base, "--recipe", "small-data", "--weight-pcc", "0"]) == 0  # an explicit 0 switches the term off
    assert got[-1].weight_pcc == 0.0 and got[-1].spec_loss == "rmse"
    assert main([*base, "--recipe", "none"]) == 0
    assert got[-1] == DecoderTrainConfig(arch="edge", causal=True, max_minutes=30.0, n_threads=0)
    assert main(base) == 0  # the default, --recipe auto, is small-data for edge ...
    assert (got[-1].weight_decay, got[-1].aug_noise, got[-1].spec_loss, got[-1].weight_pcc, got[-1].decoder) == (
        0.05, 0.3, "rmse", 1.0, {"dropout": 0.3})
    lstm = [*base[:-3], "lstm", *base[-2:]]
    assert main(lstm) == 0  # ... and none for the others
    assert got[-1] == DecoderTrainConfig(arch="lstm", causal=True, max_minutes=30.0, n_threads=0)
    assert main([*lstm, "--recipe", "small-data"]) == 0
    assert got[-1].weight_pcc == 1.0 and got[-1].decoder == {"dropout": 0.3}


def test_eval_json_wavs_and_plots(setup, tmp_path):
    d = setup
    out = tmp_path / "eval.json"
    rc = main(["eval", "decoder", "-q", "--model", str(d / "edge"), "--data", str(d / "p.h5"), "--json", str(out),
               "--wav-dir", str(tmp_path / "wav"), "--plots", str(tmp_path / "plots")])
    assert rc == 0
    r = json.loads(out.read_text())
    for key in ("pcc_mean", "pcc_median", "n_trials", "per_param", "stoi_mean", "macs_per_frame", "n_params",
                "lookahead_frames", "floor_pcc_mean", "ridge_pcc_mean", "baselines", "train_seconds"):
        assert key in r, key
    assert r["n_trials"] == 2 and len(r["per_trial"]) == 2
    assert set(r["per_param"]) == set(PARAM_NAMES)
    assert -1 <= r["pcc_mean"] <= 1 and 0 < r["floor_pcc_mean"] < 1
    assert r["lookahead_frames"] == 0 and r["causal"] and r["macs_per_frame"] > 0 and r["n_params"] > 0
    sp = r["streaming_parity"]
    assert sp["frame_by_frame_max_abs_diff"] <= 1e-5 and sp["random_chunks_max_abs_diff"] <= 1e-5
    assert "extended=False" in r["stoi"]["variant"] and "render" in r["stoi"]["variant"]
    assert "t-24..t" in r["baselines"]["ridge_causal"] and r["baselines"]["ridge"] == "causal lags"
    assert len(list((tmp_path / "wav").glob("*_original.wav"))) == 2
    assert len(list((tmp_path / "wav").glob("*_decoded.wav"))) == 2
    assert len(list((tmp_path / "plots").glob("*.png"))) == 2
    # the same model evaluated again from the cache gives the same figures
    r2 = evaluate_decoder(d / "edge", d / "p.h5", stoi=False)
    assert r2["pcc_mean"] == pytest.approx(r["pcc_mean"]) and r2["stoi_mean"] is None


def test_occlusion_json_and_png(setup, tmp_path):
    d = setup
    rc = main(["occlusion", "-q", "--model", str(d / "edge"), "--data", str(d / "p.h5"), "--out", str(tmp_path),
               "--max-trials", "1"])
    assert rc == 0
    r = json.loads((tmp_path / "occlusion.json").read_text())
    assert len(r["drop"]) == 64 and r["n_trials"] == 1
    gt = r["ground_truth"]
    assert set(gt["roles"]) == {"leading", "lagging", "none"}
    assert 0 <= gt["auc_leading_vs_lagging"] <= 1 and isinstance(gt["leading_above_lagging"], bool)
    assert (tmp_path / "occlusion.png").stat().st_size > 1000


def test_compare_with_truth_ranks_leading_electrodes():
    truth = type("T", (), {})()
    truth.role = np.array(["leading"] * 3 + ["lagging"] * 3 + ["none"] * 2)
    truth.bad = np.zeros(8, bool)
    truth.bad_detected = np.zeros(8, bool)
    truth.bad_detected[0] = True
    drop = np.array([-1.0, 0.3, 0.2, 0.1, 0.0, -0.1, 0.0, 0.0])
    res = compare_with_truth(drop, truth)
    assert res["excluded_bad"] == [0] and res["roles"]["leading"]["n"] == 2
    assert res["auc_leading_vs_lagging"] == 1.0 and res["leading_above_lagging"]
    res = compare_with_truth(-drop, truth)
    assert res["auc_leading_vs_lagging"] == 0.0 and not res["leading_above_lagging"]


def test_compare_table_and_png(setup, tmp_path):
    d = setup
    r = evaluate_decoder(d / "edge", d / "p.h5", stoi=False)
    paths = []
    for name in ("edge (causal)", "other model"):
        p = tmp_path / f"{name.split()[0]}.json"
        p.write_text(json.dumps({**r, "name": name}))
        paths.append(str(p))
    rc = main(["compare", "-q", "--evals", *paths, "--out", str(tmp_path / "cmp")])
    assert rc == 0
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| edge (causal) |" in md and "| other model |" in md and "floor" in md and "ridge" in md
    assert "MACs/frame" in md and "look-ahead" in md and "training (min)" in md and "f0_hz" in md
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 1000
    assert "Paired per-trial PCC difference against" in md and "| other model | +0.000 | [+0.000, +0.000] |" in md
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["paired"]["reference"] == "edge (causal)"
    occ = tmp_path / "occlusion.json"
    roles = {"leading": {"n": 3, "mean_drop": 0.004}, "lagging": {"n": 2, "mean_drop": -0.001}, "none": {"n": 0}}
    occ.write_text(json.dumps({"name": "edge (causal)", "n_trials": 7, "ground_truth": {
        "roles": roles, "auc_leading_vs_lagging": 0.83, "leading_above_lagging": True}}))
    md = compare(paths, tmp_path / "cmp4", occlusions=[occ])["markdown"]
    assert "| edge (causal) | 7 | +0.0040 (3) | -0.0010 (2) | - | 0.83 |" in md and "True (0.83)" in md
    with pytest.raises(ValueError, match="reference must be one of .*'best-noncausal'.* got 'nope'"):
        compare(paths, tmp_path / "cmp3", reference="nope")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"pcc_mean": 0.5}))
    with pytest.raises(ValueError, match="keys .* are missing"):
        compare([bad], tmp_path / "cmp2")
    assert main(["compare", "-q", "--evals", str(tmp_path / "nope.json"), "--out", str(tmp_path)]) == 2


def _rewrite(src, dst, fn):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        fn(f)
    return dst


def test_bad_inputs(setup, tmp_path):
    d = setup
    model = d / "edge"
    # electrode count differs from the model's
    p = load_participant(d / "p.h5")
    fewer = dataclasses.replace(p, ecog=p.ecog[:, :60].copy(), raw_signal=None, raw_fs=None,
                                electrode_positions=p.electrode_positions[:60], path=None)
    save_participant(fewer, tmp_path / "fewer.h5")
    with pytest.raises(ValueError, match="60 electrodes but the model was trained on n_electrodes=64"):
        evaluate_decoder(model, tmp_path / "fewer.h5")
    # NaN in the features
    def put_nan(f):
        x = f["ecog_alldataset"][()]
        x[10, 5] = np.nan
        f["ecog_alldataset"][...] = x

    nan_file = _rewrite(d / "p.h5", tmp_path / "nan.h5", put_nan)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_decoder(model, nan_file)
    with pytest.raises(ValueError, match="NaN"):
        train_decoder(nan_file, d / "sm", tmp_path / "m_nan", _cfg())
    # an empty test split
    def no_test(f):
        del f["test_trials"]
        f.create_dataset("test_trials", data=np.zeros(0, np.int64))

    empty = _rewrite(d / "p.h5", tmp_path / "empty.h5", no_test)
    with pytest.raises(ValueError, match="empty test split"):
        evaluate_decoder(model, empty)
    # a speech model of another participant's voice range
    other = tmp_path / "sm_low"
    shutil.copytree(d / "sm", other)
    cfg = json.loads((other / "speech_model.json").read_text())
    cfg["voice"] = VoiceRange.preset("low").to_dict()
    (other / "speech_model.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="voice range"):
        evaluate_decoder(model, d / "p.h5", speech_model=other)
    with pytest.raises(ValueError, match="voice range"):
        train_decoder(d / "p.h5", other, tmp_path / "m_low", _cfg())
    # missing model directory / speech model, bad architecture choices
    with pytest.raises(FileNotFoundError, match="decoder model directory not found"):
        evaluate_decoder(tmp_path / "missing", d / "p.h5")
    with pytest.raises(FileNotFoundError, match="holds no decoder_config.json"):
        evaluate_decoder(tmp_path, d / "p.h5")
    with pytest.raises(FileNotFoundError, match="speech model directory not found"):
        train_decoder(d / "p.h5", tmp_path / "no_sm", tmp_path / "m", _cfg())
    with pytest.raises(ValueError, match="arch must be one of"):
        train_decoder(d / "p.h5", d / "sm", tmp_path / "m", _cfg(arch="transformer"))
    with pytest.raises(ValueError, match="only as a causal model"):
        train_decoder(d / "p.h5", d / "sm", tmp_path / "m", _cfg(causal=False))
    # the CLI reports these as one line and exit status 2
    assert main(["eval", "decoder", "-q", "--model", str(tmp_path / "missing"), "--data", str(d / "p.h5"),
                 "--json", str(tmp_path / "x.json")]) == 2
    assert main(["occlusion", "-q", "--model", str(model), "--data", str(tmp_path / "fewer.h5"), "--out",
                 str(tmp_path / "o")]) == 2


def test_ridge_baseline_and_floor_on_synthetic_segments():
    rng = np.random.default_rng(0)
    n_seg, n, e = 12, 120, 6
    neural = rng.standard_normal((n_seg * n, e)).astype(np.float32)
    w = rng.standard_normal((e * len(CAUSAL_LAGS), 256)).astype(np.float32) * 0.1
    spec = np.concatenate([lagged(neural[k * n : (k + 1) * n], CAUSAL_LAGS) @ w for k in range(n_seg)])
    spec += 0.05 * rng.standard_normal(spec.shape).astype(np.float32)
    seg = Segments(trials=np.arange(n_seg), offsets=np.arange(n_seg + 1) * n, first=np.full(n_seg, 20),
                   length=np.full(n_seg, 80), neural=neural, spec=spec.astype(np.float32),
                   mel=np.zeros((n_seg * n, 128), np.float32), params=np.zeros((n_seg * n, 18), np.float32))
    model = fit_ridge(seg, CAUSAL_LAGS)
    pred = model.predict(neural[:n])
    assert np.corrcoef(pred.ravel(), spec[:n].ravel())[0, 1] > 0.95
    assert model.causal and "t-24..t" in model.describe()
    assert floor_spectrum(seg).shape == (256,)
    # lag conventions: lag 2 puts frame t-2 in row t, lag -2 frame t+2
    x = np.arange(10, dtype=np.float32)[:, None]
    z = lagged(x, (2, -2))
    assert z[5, 0] == 3 and z[5, 1] == 7 and z[0, 0] == 0 and z[9, 1] == 0


def test_param_position_is_sigmoid_of_raw():
    voice = VoiceRange.preset("high")
    raw = np.random.default_rng(1).standard_normal((50, 18)).astype(np.float32)
    pos = param_position(raw_to_physical(raw, voice), voice)
    np.testing.assert_allclose(pos, 1 / (1 + np.exp(-raw)), atol=2e-4)


def test_paired_differences_against_reference():
    from edgensd.decoding.compare import paired_differences

    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.8, 40)  # shared per-trial difficulty
    gap = 0.01 + 0.005 * rng.standard_normal(40)

    def ev(name, causal, pcc, trials=range(40)):
        return {"name": name, "causal": causal, "pcc_mean": float(np.mean(pcc)),
                "per_trial": [{"trial": int(t), "pcc": float(p)} for t, p in zip(trials, pcc, strict=True)]}

    evals = [ev("a (causal)", True, base - gap), ev("b (non-causal)", False, base), ev("c (causal)", True, base + 0.1)]
    res = paired_differences(evals, "best-noncausal", n_boot=2000)
    assert res["reference"] == "b (non-causal)" and res["skipped"] == []
    a, c = res["rows"]
    assert a["name"] == "a (causal)" and a["n_trials"] == 40
    assert a["mean_diff"] == pytest.approx(-gap.mean(), abs=1e-12)
    # the shared difficulty cancels: the interval is that of the gap alone, well away from 0
    lo, hi = a["ci95"]
    assert lo < a["mean_diff"] < hi < 0 and hi - lo < 0.01
    assert a["frac_trials_better"] == pytest.approx(np.mean(-gap > 0))
    assert c["mean_diff"] == pytest.approx(0.1) and c["frac_trials_better"] == 1.0
    assert paired_differences(evals)["reference"] == "c (causal)"  # best overall
    # only shared trials are paired; a model without per-trial results is skipped, not an error
    part = ev("d (causal)", True, base[:10] + 0.2, trials=range(30, 40))
    res = paired_differences([*evals, part, {"name": "old", "pcc_mean": 0.1}], "b (non-causal)", n_boot=200)
    d = next(r for r in res["rows"] if r["name"] == "d (causal)")
    assert d["n_trials"] == 10 and d["mean_diff"] == pytest.approx(np.mean(base[:10] + 0.2 - base[30:40]))
    assert res["skipped"] == ["old"]
    with pytest.raises(ValueError, match="no evaluation is of a non-causal model"):
        paired_differences([evals[0], evals[2]], "best-noncausal")
    with pytest.raises(ValueError, match="n_boot must be an integer >= 100"):
        paired_differences(evals, n_boot=10)


def test_compare_tells_apart_runs_of_one_architecture(tmp_path):
    """Two recipes of one architecture share the eval's name; the table and the reference use the model folder."""
    from edgensd.decoding.compare import REQUIRED_KEYS, load_evals, paired_differences

    def write(folder, model, pcc):
        d = {k: 0 for k in REQUIRED_KEYS} | {"per_param": {}, "name": "edge (causal)", "causal": True,
                                              "model": model, "pcc_mean": float(np.mean(pcc)),
                                              "per_trial": [{"trial": i, "pcc": p} for i, p in enumerate(pcc)]}
        (tmp_path / folder).mkdir()
        path = tmp_path / folder / "eval.json"
        path.write_text(json.dumps(d))
        return path

    a = write("a", "runs/edge_base", [0.5, 0.6, 0.7])
    b = write("b", "runs/edge_aug", [0.6, 0.7, 0.8])
    c = write("c", "runs/edge_aug", [0.6, 0.7, 0.9])  # the same model evaluated again: the JSON path tells
    names = [d["name"] for d in load_evals([a, b, c])]
    assert names[0] == "edge (causal) [runs/edge_base]"
    assert names[1] == f"edge (causal) [runs/edge_aug] ({b})" and names[2] == f"edge (causal) [runs/edge_aug] ({c})"
    assert len(set(names)) == 3
    res = paired_differences(load_evals([a, b]), "edge (causal) [runs/edge_base]", n_boot=200)
    assert [r["name"] for r in res["rows"]] == ["edge (causal) [runs/edge_aug]"]
    assert res["rows"][0]["mean_diff"] == pytest.approx(0.1)
    # distinct names stay as they are
    assert [d["name"] for d in load_evals([a])] == ["edge (causal)"]
