"""Bundles of a briefly trained edge decoder: calibration, the manifest, atomic writing, the format hook,
verification on load, the decode pipeline against torch and against ``eval decoder``, and the CLI."""

from __future__ import annotations

import importlib.machinery
import json
import shutil
import sys
import types

import h5py
import numpy as np
import onnx
import pytest
import torch
from edgensd.export import bundle as bundle_mod
from edgensd.export.bundle import BundleConfig, write_bundle
from edgensd.export.calibrate import calibrate
from edgensd.export.onnx_export import read_specs
from export_setup import edge_bundle

from edgensd.cli.main import main
from edgensd.data.participant import load_participant, trial_split
from edgensd.decoders import get_decoder, save_decoder
from edgensd.decoding.train import DecoderTrainConfig, load_trained_decoder
from edgensd.params import raw_to_physical
from edgensd.runtime.backend import BackendUnavailable, StepBackend, TensorSpec
from edgensd.runtime.bundle import BUNDLE_FORMAT_VERSION, BundleError, load_bundle, sha256_file
from edgensd.runtime.pipeline import DecodePipeline, make_backend

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The trained model and its bundle, exported through the CLI."""
    return edge_bundle(tmp_path_factory)


def _model_dir(setup, dst, decoder, **train_kw):
    """A trained-model folder holding another decoder (same participant, speech model and provenance)."""
    shutil.copytree(setup / "edge", dst, ignore=shutil.ignore_patterns("checkpoint.pt"))
    save_decoder(decoder, dst)
    cfg = DecoderTrainConfig.load(dst / "train_config.json")
    cfg.arch, cfg.causal = decoder.arch, decoder.causal
    for k, v in train_kw.items():
        setattr(cfg, k, v)
    cfg.save(dst / "train_config.json")
    info = json.loads((dst / "decoder_info.json").read_text())
    info.update(arch=decoder.arch, causal=decoder.causal)
    (dst / "decoder_info.json").write_text(json.dumps(info))
    return dst


def _segments_frames(p, trials, exclude, context):
    """Frames of the training segments, counted independently of the exporter."""
    total = 0
    for i in trials:
        lo, hi = max(p.start[i] - context, 0), min(p.end[i] + context, p.n_frames)
        for j in exclude:
            if p.end[j] <= p.start[i]:
                lo = max(lo, p.end[j])
            elif p.start[j] >= p.end[i]:
                hi = min(hi, p.start[j])
        total += int(hi - lo)
    return total


# ------------------------------------------------------------------------------------------ calibration
def test_calibration_streams_the_training_trials(setup):
    td = load_trained_decoder(setup / "edge")
    cal = calibrate(setup / "edge", trained=td)
    p = load_participant(setup / "p.h5")
    train_idx, test_idx = trial_split(p)
    assert cal.trials == train_idx.tolist() and not set(cal.trials) & set(test_idx.tolist())
    assert cal.n_frames == _segments_frames(p, train_idx, test_idx, td.train_config.context_frames)
    assert len(cal.samples) == cal.n_frames
    shapes = [tuple(s.shape) for s in td.decoder.init_state(1)]
    assert [a.shape for a in cal.samples[0]] == [(1, 64), *shapes]
    assert all(a.dtype == np.float32 for a in cal.samples[5])
    assert all(not a.any() for a in cal.samples[0][1:])  # the first frame of a segment has the zero state
    assert any(a.any() for a in cal.samples[10][1:])
    rng = cal.ranges()
    assert rng["x"] == (float(min(s[0].min() for s in cal.samples)), float(max(s[0].max() for s in cal.samples)))
    few = calibrate(setup / "edge", max_samples=7, trained=td)
    assert len(few.samples) == 7 and few.n_frames == cal.n_frames
    np.testing.assert_array_equal(few.samples[0][0], cal.samples[0][0])
    np.testing.assert_array_equal(few.samples[-1][1], cal.samples[-1][1])


def _fewer(f):
    """Keep the first 60 electrodes (features, raw signal, positions)."""
    for key in ("ecog_alldataset", "raw_signal", "electrode_positions"):
        if key in f:
            x = f[key][:60] if key == "electrode_positions" else f[key][:, :60]
            del f[key]
            f[key] = x


def _rewrite(src, dst, fn):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        fn(f)
    return dst


def test_calibration_refuses_other_files(setup, tmp_path):

    def nan(f):
        f["ecog_alldataset"][10, 5] = np.nan

    def pipeline(f):
        f.attrs["highgamma_config"] = json.dumps({"band_hz": [60, 140]})

    with pytest.raises(ValueError, match="has 60 electrodes but the model takes n_electrodes=64"):
        calibrate(setup / "edge", _rewrite(setup / "p.h5", tmp_path / "few.h5", _fewer))
    with pytest.raises(ValueError, match="NaN/inf"):
        calibrate(setup / "edge", _rewrite(setup / "p.h5", tmp_path / "nan.h5", nan))
    with pytest.raises(ValueError, match="another high-gamma pipeline"):
        calibrate(setup / "edge", _rewrite(setup / "p.h5", tmp_path / "hg.h5", pipeline))
    with pytest.raises(FileNotFoundError, match="calibration data file not found"):
        calibrate(setup / "edge", tmp_path / "none.h5")
    with pytest.raises(ValueError, match="max_samples"):
        calibrate(setup / "edge", max_samples=0)


# ------------------------------------------------------------------------------------------ the bundle
def test_bundle_files_and_manifest(setup):
    b = setup / "bundle_cli"
    man = json.loads((b / "manifest.json").read_text())
    assert man["format"] == "edgensd-bundle" and man["format_version"] == BUNDLE_FORMAT_VERSION
    names = {"decoder_fp32.onnx", "decoder_int8.onnx", "synth.edsynth", "features.json", "params.json",
             "bundle_config.json"}
    assert set(man["files"]) == names and {p.name for p in b.iterdir()} == names | {"manifest.json"}
    for name, rec in man["files"].items():
        assert rec == {"sha256": sha256_file(b / name), "bytes": (b / name).stat().st_size}
    for m in man["models"]:  # the manifest's specs are the graph's own
        x, y, s_in, s_out = read_specs(onnx.load(str(b / m["file"])))
        assert m["x"] == x.to_dict() and m["y"] == y.to_dict()
        assert m["state_in"] == [s.to_dict() for s in s_in] and m["state_out"] == [s.to_dict() for s in s_out]
    td = load_trained_decoder(setup / "edge")
    assert man["model"]["config"] == td.decoder.config.to_dict() and man["model"]["n_electrodes"] == 64
    assert man["model"]["state_names"] == td.decoder.state_names()
    assert man["lookahead_frames"] == {"declared": 0, "measured": 0}
    assert man["macs_per_frame"] > 0 and man["frame_rate_hz"] == 125.0
    assert man["versions"]["torch"] == torch.__version__ and man["versions"]["onnxruntime"]
    p = load_participant(setup / "p.h5")
    tr, te = trial_split(p)
    assert man["calibration"]["trials"] == tr.tolist()
    assert man["calibration"]["n_frames"] == _segments_frames(p, tr, te, td.train_config.context_frames)
    synth = man["files"]["synth.edsynth"]["bytes"]
    for bud, m in zip(man["budget"], man["models"], strict=True):
        assert bud["flash_bytes"] == man["files"][m["file"]]["bytes"] + synth
        per = 1 if m["precision"] == "int8" else 4
        assert bud["state_bytes"] == per * sum(int(np.prod(s.shape)) for s in td.decoder.init_state(1))
    assert BundleConfig.load(b / "bundle_config.json") == BundleConfig()
    feats = json.loads((b / "features.json").read_text())
    assert feats["highgamma_config"] == td.info["participant"]["highgamma_config"]
    sim = load_participant(setup / "p.h5", load_extras=True).extras
    np.testing.assert_allclose(feats["highgamma_stats"]["mean"], sim["sim_highgamma_mean"])
    np.testing.assert_allclose(feats["highgamma_stats"]["std"], sim["sim_highgamma_std"])
    params = json.loads((b / "params.json").read_text())
    assert params["voice_range"] == td.info["voice_range"] and len(params["lower"]) == 18


def _copy_bundle(setup, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(setup / "bundle_cli", dst)
    return dst


def _edit_manifest(b, fn):
    man = json.loads((b / "manifest.json").read_text())
    fn(man)
    (b / "manifest.json").write_text(json.dumps(man))


def test_load_bundle_refuses_tampering(setup, tmp_path):
    b = _copy_bundle(setup, tmp_path)
    assert load_bundle(b).n_electrodes == 64
    data = bytearray((b / "decoder_int8.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (b / "decoder_int8.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"decoder_int8\.onnx does not match its sha256"):
        load_bundle(b)
    b = _copy_bundle(setup, tmp_path / "2")
    (b / "synth.edsynth").write_bytes((b / "synth.edsynth").read_bytes()[:-4])
    with pytest.raises(BundleError, match=r"synth\.edsynth has \d+ bytes, the manifest says"):
        load_bundle(b)
    b = _copy_bundle(setup, tmp_path / "3")
    (b / "params.json").unlink()
    with pytest.raises(BundleError, match=r"params\.json is missing"):
        load_bundle(b)
    b = _copy_bundle(setup, tmp_path / "4")
    (b / "notes.txt").write_text("x")
    with pytest.raises(BundleError, match=r"does not list: \['notes.txt'\]"):
        load_bundle(b)
    b = _copy_bundle(setup, tmp_path / "5")
    _edit_manifest(b, lambda m: m.update(format_version=BUNDLE_FORMAT_VERSION + 1))
    with pytest.raises(BundleError, match="manifest.json: format_version 2 is newer"):
        load_bundle(b)
    _edit_manifest(b, lambda m: m.update(format_version="1"))
    with pytest.raises(BundleError, match="format_version must be a positive int"):
        load_bundle(b)
    _edit_manifest(b, lambda m: m.update(format_version=1, format="other"))
    with pytest.raises(BundleError, match="format is 'other'"):
        load_bundle(b)
    _edit_manifest(b, lambda m: m.update(format="edgensd-bundle", files={"../x": {"sha256": "0", "bytes": 1}}))
    with pytest.raises(BundleError, match="not a plain file name"):
        load_bundle(b)
    (b / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="cannot read the bundle manifest"):
        load_bundle(b)
    (b / "manifest.json").unlink()
    with pytest.raises(BundleError, match="holds no manifest.json"):
        load_bundle(b)
    with pytest.raises(BundleError, match="bundle folder not found"):
        load_bundle(tmp_path / "nothing")
    b = _copy_bundle(setup, tmp_path / "6")
    with pytest.raises(BundleError, match="holds no tflite int8 decoder \\(it holds: onnx/fp32, onnx/int8\\)"):
        make_backend(load_bundle(b), "tflite", "int8")
    with pytest.raises(ValueError, match="backend must be one of"):
        make_backend(load_bundle(b), "tvm", "int8")


def test_write_is_atomic_and_checks_first(setup, tmp_path, monkeypatch):
    def boom(ctx):
        (ctx.folder / "decoder_fp32.onnx").write_bytes(b"half")
        raise RuntimeError("converter crashed")

    monkeypatch.setitem(bundle_mod._FORMATS, "onnx", ((), boom))
    with pytest.raises(RuntimeError, match="converter crashed"):
        write_bundle(setup / "edge", tmp_path / "b", BundleConfig(quantize="none"))
    assert list(tmp_path.iterdir()) == []  # neither the bundle nor its temporary folder
    monkeypatch.undo()
    (tmp_path / "exists").mkdir()
    with pytest.raises(ValueError, match="already exists"):
        write_bundle(setup / "edge", tmp_path / "exists")
    monkeypatch.setitem(bundle_mod._FORMATS, "tflite", (("edgensd_no_such_converter",), boom))
    with pytest.raises(ValueError, match="format 'tflite' needs edgensd_no_such_converter"):
        write_bundle(setup / "edge", tmp_path / "b", BundleConfig(formats=("onnx", "tflite")))
    monkeypatch.undo()
    with pytest.raises(ValueError, match="unknown format 'tvm'"):
        write_bundle(setup / "edge", tmp_path / "b", BundleConfig(formats=("tvm",)))
    with pytest.raises(ValueError, match="quantize must be one of"):
        BundleConfig(quantize="int4")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_bundle(setup / "edge", tmp_path / "no" / "b")
    nc = _model_dir(setup, tmp_path / "nc", get_decoder("lstm", n_electrodes=64, causal=False, hidden_size=8))
    with pytest.raises(ValueError, match="non-causal 'lstm' decoder"):
        write_bundle(nc, tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists", "nc"]


def test_other_formats_register_through_the_hook(setup, tmp_path, monkeypatch):
    """Stand-ins with the agreed API of export/litert.py and export/tflm.py (written by another engineer)."""
    calls = {}

    def specs(model_bytes):
        q = model_bytes.startswith(b"int8")
        dt = "int8" if q else "float32"
        sc = dict(scale=0.1, zero_point=0) if q else {}
        return (TensorSpec("x", (1, 64), dt, **sc), TensorSpec("y", (1, 18), dt, **sc), [], [])

    def quantize_int8(fp32, samples):
        calls["n_samples"] = len(samples)
        calls["sample_arity"] = len(samples[0])
        return b"int8" + fp32

    litert = types.ModuleType("edgensd.export.litert")
    litert.__spec__ = importlib.machinery.ModuleSpec("edgensd.export.litert", None)
    litert.convert_fp32 = lambda step, example: b"fp32 tflite"
    litert.quantize_int8 = quantize_int8
    litert.io_specs = specs
    litert.strip_tensor_names = lambda model: model + b" stripped"
    tflm = types.ModuleType("edgensd.export.tflm")
    tflm.__spec__ = importlib.machinery.ModuleSpec("edgensd.export.tflm", None)
    tflm.arena_size = lambda model: 4096
    tflm.write_c_header = lambda model, path, symbol, arena: path.write_text(f"// {symbol} {arena} {len(model)}\n")
    monkeypatch.setitem(sys.modules, "edgensd.export.litert", litert)
    monkeypatch.setitem(sys.modules, "edgensd.export.tflm", tflm)
    import edgensd.export as export_pkg  # a real submodule imported earlier is also a package attribute

    monkeypatch.setattr(export_pkg, "litert", litert, raising=False)
    monkeypatch.setattr(export_pkg, "tflm", tflm, raising=False)
    assert bundle_mod.available_formats() == ["onnx", "tflite", "tflm"]
    out = write_bundle(setup / "edge", tmp_path / "b",
                       BundleConfig(formats=("onnx", "tflite", "tflm"), max_calib_samples=50))
    b = load_bundle(out)
    assert [(m.format, m.precision, m.file) for m in b.models] == [
        ("onnx", "fp32", "decoder_fp32.onnx"), ("onnx", "int8", "decoder_int8.onnx"),
        ("tflite", "fp32", "decoder_fp32.tflite"), ("tflite", "int8", "decoder_int8.tflite"),
        ("tflm", "int8", "decoder_int8.tflite")]
    assert (out / "decoder_int8.tflite").read_bytes() == b"int8fp32 tflite stripped"
    assert (out / "decoder_int8_tflm.h").read_text() == f"// eds_decoder_int8 4096 {len(b'int8fp32 tflite stripped')}\n"
    assert calls == {"n_samples": 50, "sample_arity": 1 + len(b.models[0].state_in)}
    assert b.model("tflm", "int8").extra["arena_bytes"] == 4096
    assert b.manifest["budget"][-1]["arena_bytes"] == 4096

    # the runtime side: make_backend imports edgensd.runtime.backend_<name> by name, checks the specs
    class FakeTFLite(StepBackend):
        name = "tflite"

        def __init__(self, model_path):
            self.model_path = model_path
            self.x_spec, self.y_spec, self.state_in_specs, self.state_out_specs = specs(model_path.read_bytes())

        def run_raw(self, x, states):
            return np.zeros(self.y_spec.shape, np.int8), []

    fake = types.ModuleType("edgensd.runtime.backend_tflite")
    fake.TFLiteBackend = FakeTFLite
    monkeypatch.setitem(sys.modules, "edgensd.runtime.backend_tflite", fake)
    be = make_backend(b, "tflite", "int8")
    assert isinstance(be, FakeTFLite) and be.model_path == out / "decoder_int8.tflite"
    np.testing.assert_array_equal(be.step(np.zeros(64, np.float32)), np.zeros(18, np.float32))

    class WrongSpecs(FakeTFLite):
        def __init__(self, model_path):
            super().__init__(model_path)
            self.x_spec = TensorSpec("x", (1, 63), self.x_spec.dtype, self.x_spec.scale, self.x_spec.zero_point)

    fake.TFLiteBackend = WrongSpecs
    with pytest.raises(BundleError, match="differ from those in the bundle manifest"):
        make_backend(b, "tflite", "int8")
    monkeypatch.setitem(sys.modules, "edgensd.runtime.backend_tflm", None)
    with pytest.raises(BackendUnavailable, match="backend_tflm"):
        make_backend(b, "tflm", "int8")


# ------------------------------------------------------------------------------------------ runtime
def test_pipeline_matches_torch_and_eval_decoder(setup):
    from edgensd.csynth import CSynth
    from edgensd.decoding.evaluate import evaluate_decoder
    from edgensd.runtime.decode import decode_file

    b = load_bundle(setup / "bundle_cli")
    td = load_trained_decoder(setup / "edge")
    p = load_participant(setup / "p.h5")
    x = p.ecog[:300]
    with torch.no_grad():
        ref = td.decoder(torch.from_numpy(x)[None])[0].numpy()
    pipe = DecodePipeline(b, "onnx", "fp32")
    raw, phys, audio = pipe.decode(x)
    assert np.abs(raw - ref).max() < 1e-4
    np.testing.assert_allclose(phys, raw_to_physical(raw, b.voice), rtol=1e-6)
    want = CSynth(b.synth_path).render(raw_to_physical(ref, b.voice).astype(np.float32))
    assert audio.shape == (300 * 128,) and np.abs(audio - want).max() < 1e-3
    # the runtime's PCC is the one 'eval decoder' reports (torch synthesizer), trial by trial
    ev = evaluate_decoder(setup / "edge", setup / "p.h5", stoi=False)
    fp = decode_file(setup / "bundle_cli", setup / "p.h5", setup / "dec_fp32", precision="fp32", plots=False)
    i8 = decode_file(setup / "bundle_cli", setup / "p.h5", setup / "dec_int8", precision="int8", plots=False)
    for a, c in zip(ev["per_trial"], fp["per_trial"], strict=True):
        assert a["trial"] == c["trial"] and abs(a["pcc"] - c["pcc"]) < 1e-4
    assert abs(i8["pcc_mean"] - fp["pcc_mean"]) <= 0.02  # 0.01 is the target measured on a full-size model


def test_pipeline_look_ahead_and_bad_frames(setup, tmp_path):
    torch.manual_seed(1)
    dec = get_decoder("edge", n_electrodes=64, lookahead_frames=2, channels=8, dilations=(1,), gru_hidden=8).eval()
    md = _model_dir(setup, tmp_path / "la", dec)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "old.txt").write_text("replaced only once the new bundle is complete")
    out = write_bundle(md, tmp_path / "b", BundleConfig(quantize="none"), overwrite=True)
    b = load_bundle(out)
    assert not (out / "old.txt").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["b", "la"]
    assert [m.file for m in b.models] == ["decoder_fp32.onnx"] and b.manifest["calibration"] is None
    assert b.lookahead_frames == 2 and b.manifest["lookahead_frames"]["measured"] == 2
    x = load_participant(setup / "p.h5").ecog[:80]
    with torch.no_grad():
        ref = dec(torch.from_numpy(x)[None])[0].numpy()
    pipe = DecodePipeline(b, "onnx", "fp32")
    raw, _, audio = pipe.decode(x)
    assert raw.shape == (80, 18) and audio.shape == (80 * 128,) and np.abs(raw - ref).max() < 1e-4
    pipe.reset()
    got = [pipe.push(f) for f in x[:4]]
    assert [g[0].shape[0] for g in got] == [0, 0, 1, 1] and got[2][1].shape == (128,)
    bad = x.copy()
    bad[7, 3] = np.inf
    with pytest.raises(ValueError, match="frame 7 holds NaN/inf"):
        pipe.decode(bad)
    with pytest.raises(ValueError, match=r"frames must have shape \(n_frames, 64\)"):
        pipe.decode(x[:, :10])
    with pytest.raises(ValueError, match="frame must hold 64 electrodes"):
        pipe.push(x[0, :10])
    with pytest.raises(BundleError, match="holds no onnx int8 decoder"):
        DecodePipeline(b, "onnx", "int8")


# ------------------------------------------------------------------------------------------ CLI
def test_decode_cli_outputs_and_errors(setup, tmp_path, edgensd_log):
    out = tmp_path / "dec"
    assert main(["decode", "-q", "--bundle", str(setup / "bundle_cli"), "--data", str(setup / "p.h5"), "--out",
                 str(out), "--max-wavs", "1"]) == 0
    res = json.loads((out / "decode.json").read_text())
    p = load_participant(setup / "p.h5")
    test_idx = trial_split(p)[1].tolist()
    assert [t["trial"] for t in res["per_trial"]] == test_idx and res["precision"] == "int8"
    assert np.isfinite(res["pcc_mean"]) and res["step_us"]["median"] > 0
    first = test_idx[0]
    assert sorted(f.name for f in out.iterdir()) == sorted(
        ["decode.json", f"trial{first:04d}_original.wav", f"trial{first:04d}_decoded.wav",
         *[f"trial{i:04d}.png" for i in test_idx]])


    few = _rewrite(setup / "p.h5", tmp_path / "few.h5", _fewer)
    assert main(["decode", "--bundle", str(setup / "bundle_cli"), "--data", str(few), "--out", str(out)]) == 2
    assert main(["decode", "--bundle", str(tmp_path), "--data", str(setup / "p.h5"), "--out", str(out)]) == 2
    assert main(["decode", "--bundle", str(setup / "bundle_cli"), "--data", str(setup / "p.h5"), "--out",
                 str(out / "decode.json")]) == 2
    assert main(["decode", "--bundle", str(setup / "bundle_cli"), "--data", str(setup / "p.h5"), "--out",
                 str(out), "--backend", "tflm"]) == 2
    msgs = [r.getMessage() for r in edgensd_log if r.levelname == "ERROR"]
    assert "has 60 electrodes but the model takes n_electrodes=64" in msgs[0]
    assert "holds no manifest.json" in msgs[1]
    assert "is not a folder" in msgs[2]
    assert "holds no tflm int8 decoder" in msgs[3]


def test_export_bundle_cli_errors(setup, tmp_path, edgensd_log, monkeypatch):
    base = ["export", "bundle", "--model", str(setup / "edge")]
    assert main([*base, "--out", str(setup / "bundle_cli")]) == 2
    req, writer = bundle_mod._FORMATS["tflm"]
    monkeypatch.setitem(bundle_mod._FORMATS, "tflm", (("edgensd_no_such_converter",), writer))
    assert main([*base, "--out", str(tmp_path / "b"), "--formats", "onnx,tflm"]) == 2
    monkeypatch.undo()
    assert main(["export", "bundle", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "b")]) == 2
    assert main([*base, "--out", str(tmp_path / "b"), "--calib", str(tmp_path / "none.h5")]) == 2
    msgs = [r.getMessage() for r in edgensd_log if r.levelname == "ERROR"]
    assert "already exists" in msgs[0]
    assert "format 'tflm' needs" in msgs[1]
    assert "decoder model directory not found" in msgs[2]
    assert "calibration file not found" in msgs[3]
    assert list(tmp_path.iterdir()) == []


def test_check_cli_reports_every_runtime(setup, tmp_path):
    js, md = tmp_path / "check.json", tmp_path / "check.md"
    assert main(["check", "-q", "--bundle", str(setup / "bundle_cli"), "--data", str(setup / "p.h5"), "--json",
                 str(js), "--markdown", str(md), "--max-delta-pcc", "0.5"]) == 0
    rep = json.loads(js.read_text())
    assert [e["runtime"] for e in rep["runtimes"]] == ["torch fp32", "onnx fp32", "onnx int8"]
    assert rep["float_reference"] == "torch fp32" and rep["passed"] and rep["skipped"] == {}
    by = {e["runtime"]: e for e in rep["runtimes"]}
    assert by["torch fp32"]["delta_pcc_vs_float"] == 0 and by["torch fp32"]["max_abs_diff_raw_vs_float"] == 0
    assert by["onnx fp32"]["max_abs_diff_raw_vs_float"] < 1e-4 and abs(by["onnx fp32"]["delta_pcc_vs_float"]) < 1e-4
    i8 = by["onnx int8"]
    assert i8["delta_pcc_vs_float"] == pytest.approx(by["torch fp32"]["pcc_mean"] - i8["pcc_mean"])
    assert i8["file_bytes"] == (setup / "bundle_cli" / "decoder_int8.onnx").stat().st_size
    assert set(i8["per_param_vs_float"]) == set(json.loads((setup / "bundle_cli" / "params.json").read_text())
                                                 ["param_names"])
    assert isinstance(i8["float_ops"], list) and "Gemm" not in i8["float_ops"]
    assert "| onnx int8 |" in md.read_text() and "**PASSED**" in md.read_text()


def test_check_thresholds(setup, tmp_path, edgensd_log):
    from edgensd.export.check import threshold_failures

    rts = [{"runtime": "onnx fp32", "precision": "fp32", "delta_pcc_vs_float": 0.5},
           {"runtime": "onnx int8", "precision": "int8", "delta_pcc_vs_float": 0.012},
           {"runtime": "tflm int8", "precision": "int8", "delta_pcc_vs_float": 0.009}]
    assert threshold_failures(rts, 0.01, "torch fp32") == [
        "onnx int8 loses 0.0120 PCC vs torch fp32 (threshold --max-delta-pcc 0.01)"]
    assert threshold_failures(rts, 0.02, "torch fp32") == []
    base = ["check", "--bundle", str(setup / "bundle_cli"), "--data", str(setup / "p.h5")]
    assert main([*base, "--json", str(tmp_path)]) == 2
    assert main([*base, "--json", str(tmp_path / "c.json"), "--max-delta-pcc", "-1"]) == 2
    msgs = [r.getMessage() for r in edgensd_log if r.levelname == "ERROR"]
    assert "is a folder" in msgs[0] and "max_delta_pcc must be >= 0" in msgs[1]
