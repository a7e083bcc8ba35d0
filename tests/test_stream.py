"""The live path end to end: a device simulator on a socket or a pseudo-terminal → serial reader → features →
decoder step → C synthesizer. Frames mode equals the offline decode of the same frames exactly; raw mode
computes the streaming features the decoder was trained on; a feature or channel mismatch is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest
from edgensd.firmware_bridge.simulator import DeviceSimulator, SimulatorConfig, SimulatorLink
from export_setup import EDGE_TINY, edge_bundle

from edgensd.cli.main import main
from edgensd.data.participant import load_participant, save_participant
from edgensd.neural.highgamma import HighGammaStats, StreamingHighGamma
from edgensd.runtime.bundle import load_bundle
from edgensd.runtime.pipeline import DecodePipeline
from edgensd.runtime.stream import FeatureMismatch, StreamConfig, run_stream

FRAME_US = 8000


@pytest.fixture(scope="module")
def streaming_bundle(tmp_path_factory):
    """A tiny edge decoder trained on STREAMING high-gamma features, and its bundle."""
    from edgensd.data.speech import SpeechDataConfig, build_speech_participant
    from edgensd.demo import demo_dir
    from edgensd.neural.simulate import SimulationConfig, simulate, write_simulation

    d = tmp_path_factory.mktemp("stream")
    sp, _ = build_speech_participant(SpeechDataConfig(max_prompts=8, n_test=2))
    save_participant(sp, d / "speech.h5")
    res = simulate(SimulationConfig(speech=str(d / "speech.h5"), layout="ld8x8", seed=3, trial_gap_s=0.8,
                                    pipeline="streaming"), verbose="warning")
    write_simulation(res, d / "p.h5")
    assert main(["train", "decoder", "-q", "--data", str(d / "p.h5"), "--speech-model",
                 str(demo_dir() / "speech_model"), "--arch", "edge", "--out", str(d / "edge"), "--max-minutes",
                 "0.03", "--batch-size", "4", "--decoder-config", json.dumps(EDGE_TINY)]) == 0
    assert main(["export", "bundle", "-q", "--model", str(d / "edge"), "--out", str(d / "bundle")]) == 0
    return d


def _start_later(link: SimulatorLink, delay: float = 0.3) -> threading.Timer:
    """Start the device after the host has opened the port, so no packet falls before the connection."""
    t = threading.Timer(delay, link.start)
    t.start()
    return t


def test_frames_mode_over_a_socket_equals_the_offline_decode(streaming_bundle, tmp_path):
    p = load_participant(streaming_bundle / "p.h5")
    n = 250
    dev = DeviceSimulator(SimulatorConfig(n_channels=64, send_raw=False, send_hg=True, hg_format="float32",
                                          hg_scale=1.0), hg=p.ecog)
    got = []
    link = SimulatorLink(dev, "socket", speed=4.0)  # binds the server; started after the host connects
    timer = _start_later(link)
    try:
        s = run_stream(link.url, streaming_bundle / "bundle", StreamConfig(duration_s=n / 125), wav=tmp_path / "a.wav",
                       json_path=tmp_path / "s.json", on_frame=lambda *a: got.append(a))
    finally:
        timer.join()
        link.stop()
    assert s["frames_out"] == n and s["gap_frames"] == 0 and s["packets_bad_crc"] == 0 and s["mode"] == "frames"
    # The device clock runs from the link's start; frames due before the host connected never reach it, so
    # the stream starts at some device frame i0 and then every frame arrives, in order.
    idx = np.array([g[0] for g in got]) // FRAME_US
    i0 = int(idx[0])
    assert s["first_device_time_us"] == i0 * FRAME_US
    np.testing.assert_array_equal(idx, i0 + np.arange(n))
    np.testing.assert_array_equal(np.stack([g[1] for g in got]), p.ecog[i0 : i0 + n])
    ref_raw, _, ref_audio = DecodePipeline(load_bundle(streaming_bundle / "bundle")).decode(p.ecog[i0 : i0 + n])
    np.testing.assert_allclose(np.stack([g[2] for g in got]), ref_raw, atol=1e-6)
    # a frame's 128 samples are those before its centre (the synthesizer's overlap-add): the live audio is
    # the offline render one frame later, after a fade-in block
    live = np.concatenate([g[3] for g in got])
    np.testing.assert_allclose(live[128:], ref_audio[:-128], atol=1e-6)
    saved = json.loads((tmp_path / "s.json").read_text())
    for stage in ("queue", "decoder", "synth", "end_to_end"):
        assert saved["latency_ms"][stage]["n"] == n and saved["latency_ms"][stage]["p99"] > 0
    assert saved["latency_ms"]["features"]["n"] == 0  # frames mode computes no features
    import soundfile as sf

    audio, fs = sf.read(tmp_path / "a.wav", dtype="float32")
    assert fs == 16000 and audio.shape == (n * 128,)


def test_raw_mode_over_a_pty_computes_the_trained_features(streaming_bundle):
    p = load_participant(streaming_bundle / "p.h5")
    n_raw = 2000  # 2 s at 1 kHz
    dev = DeviceSimulator(SimulatorConfig(n_channels=64, raw_rate_hz=p.raw_fs, send_raw=True, send_hg=False,
                                          raw_format="float32", raw_scale_uv=1.0), raw=p.raw_signal)
    link = SimulatorLink(dev, "pty", speed=4.0)
    got = []
    timer = _start_later(link)
    try:
        s = run_stream(link.url, streaming_bundle / "bundle", StreamConfig(duration_s=1.5),
                       on_frame=lambda *a: got.append(a))
    finally:
        timer.join()
        link.stop()
    n = s["frames_out"]
    assert n == 188 and s["gap_frames"] == 0 and s["mode"] == "raw"
    # reference: the streaming pipeline with the bundle's statistics, run here on the file's raw signal from
    # the first sample the host received
    s0 = round(s["first_device_time_us"] * p.raw_fs / 1e6)
    bundle = load_bundle(streaming_bundle / "bundle")
    stats = HighGammaStats.from_dict(bundle.features["highgamma_stats"])
    ref = StreamingHighGamma(p.raw_fs, 64, stats=stats).process(p.raw_signal[s0 : s0 + n_raw])
    feats = np.stack([g[1] for g in got])
    np.testing.assert_allclose(feats, ref[:n], atol=1e-3)  # float32 raw on the wire, float64 here
    if s0 == 0:  # then they are also the file's own features
        np.testing.assert_allclose(feats, p.ecog[:n], atol=1e-3)
    assert s["latency_ms"]["features"]["n"] == n


def test_raw_mode_refuses_a_decoder_trained_on_offline_features(tmp_path_factory):
    d = edge_bundle(tmp_path_factory)  # trained on the offline pipeline
    p = load_participant(d / "p.h5")
    dev = DeviceSimulator(SimulatorConfig(n_channels=64, send_raw=True, send_hg=False), raw=p.raw_signal[:500])
    link = SimulatorLink(dev, "socket", speed=4.0)
    timer = _start_later(link, 0.1)
    try:
        with pytest.raises(FeatureMismatch, match="trained on 'offline' high-gamma features"):
            run_stream(link.url, d / "bundle_cli", StreamConfig(duration_s=1.0))
    finally:
        timer.join()
        link.stop()


def test_a_device_with_another_channel_count_is_refused(streaming_bundle):
    dev = DeviceSimulator(SimulatorConfig(n_channels=16, send_raw=False, send_hg=True))
    link = SimulatorLink(dev, "socket", speed=4.0)
    timer = _start_later(link, 0.1)
    try:
        with pytest.raises(ValueError, match="device sends 16 channels but the bundle's decoder takes 64"):
            run_stream(link.url, streaming_bundle / "bundle", StreamConfig(duration_s=1.0))
    finally:
        timer.join()
        link.stop()


def test_no_device_is_a_clear_timeout(streaming_bundle):
    with pytest.raises(TimeoutError, match="no data from"):
        run_stream("socket://127.0.0.1:9", streaming_bundle / "bundle", StreamConfig(connect_timeout_s=0.5))


def test_stream_command_line(streaming_bundle, tmp_path):
    p = load_participant(streaming_bundle / "p.h5")
    dev = DeviceSimulator(SimulatorConfig(n_channels=64, send_raw=False, send_hg=True, hg_format="float32",
                                          hg_scale=1.0), hg=p.ecog[:200])
    link = SimulatorLink(dev, "socket", speed=2.0)
    link.start()
    try:
        res = subprocess.run([sys.executable, "-m", "edgensd", "stream", "--port", link.url, "--bundle",
                              str(streaming_bundle / "bundle"), "--duration", "1", "--json", str(tmp_path / "s.json"),
                              "--wav", str(tmp_path / "o.wav"), "--backend", "onnx", "--precision", "fp32"],
                             capture_output=True, text=True, timeout=120)
    finally:
        link.stop()
    assert res.returncode == 0, res.stderr
    assert "s decoded (125 frames, frames mode)" in res.stdout and "p99" in res.stdout
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["frames_out"] == 125 and s["config"]["precision"] == "fp32"


def test_live_demo_streams_a_session_end_to_end(streaming_bundle, tmp_path):
    from edgensd.demo import run_live_demo

    res = run_live_demo(tmp_path / "demo", bundle=streaming_bundle / "bundle", session=streaming_bundle / "p.h5",
                        speed=4.0)
    p = load_participant(streaming_bundle / "p.h5")
    assert res["frames_out"] == p.n_frames and res["gap_frames"] == 0 and res["lost_packets"] == 0
    assert res["device_lost_before_connect"] == 0  # the device starts once the host has the port open
    assert len(res["trials"]) == p.n_trials and -1 <= res["pcc_mean"] <= 1
    for f in ("decoded.wav", "original.wav", "spectrograms.png", "stream.json", "demo.json"):
        assert (tmp_path / "demo" / f).is_file()
    import soundfile as sf

    assert sf.info(tmp_path / "demo" / "decoded.wav").frames == p.n_frames * 128
    with pytest.raises(FileNotFoundError, match="live demo's bundle is missing"):
        run_live_demo(tmp_path / "x", bundle=tmp_path / "nope", session=streaming_bundle / "p.h5")


def test_faulty_stream_accepts_no_corrupt_frame_and_reports_the_true_gaps(streaming_bundle, tmp_path):
    """device-sim (a subprocess) drops and corrupts packets; the stream records every frame it received in
    its device slot: valid slots equal the file, invalid slots are exactly the truth file's gaps."""
    p = load_participant(streaming_bundle / "p.h5")
    truth_path, rec = tmp_path / "truth.json", tmp_path / "rec.h5"
    sim = subprocess.Popen([sys.executable, "-m", "edgensd", "-q", "device-sim", "--data",
                            str(streaming_bundle / "p.h5"), "--mode", "frames", "--format", "float32", "--link",
                            "pty", "--pace", "fast", "--duration", "6", "--corrupt", "0.03", "--drop", "0.03",
                            "--seed", "4", "--truth", str(truth_path)], stdout=subprocess.PIPE, text=True)
    try:
        port = sim.stdout.readline().strip()
        s = run_stream(port, streaming_bundle / "bundle", StreamConfig(idle_exit_s=1.5, gap_policy="zeros"),
                       record=rec)
        sim.wait(timeout=60)
    finally:
        sim.kill()
        sim.stdout.close()
    truth = json.loads(truth_path.read_text())
    gaps = [(g[0], g[1]) if isinstance(g, list) else (g["start"], g["stop"]) for g in truth["gaps"]]
    gap_frames = {f for a, b in gaps for f in range(a, b)}
    assert gap_frames, "the faults should have cost some frames"
    assert s["gap_frames"] == len(gap_frames)  # every lost frame reported, none more
    assert s["frames_out"] == 6 * 125  # the stream never stopped: every slot decoded (gaps filled)
    import h5py

    with h5py.File(rec, "r") as f:
        ecog, valid = f["ecog_alldataset"][:], f["valid"][:].astype(bool)
    assert ecog.shape[0] == 6 * 125
    assert {int(i) for i in np.flatnonzero(~valid)} == gap_frames
    np.testing.assert_array_equal(ecog[valid], p.ecog[: 6 * 125][valid])  # no corrupted frame accepted


def test_a_device_that_stops_for_2_s_is_ridden_out_and_the_blind_time_reported(streaming_bundle):
    p = load_participant(streaming_bundle / "p.h5")
    dev = DeviceSimulator(SimulatorConfig(n_channels=64, send_raw=False, send_hg=True, hg_format="float32",
                                          hg_scale=1.0), hg=p.ecog, repeat=False)
    link = SimulatorLink(dev, "socket", speed=1.0, wait_for_host=True).start()
    pauser = threading.Timer(1.5, link.pause, args=(2.0,))
    pauser.start()
    try:
        s = run_stream(link.url, streaming_bundle / "bundle", StreamConfig(duration_s=5.0, idle_exit_s=6.0))
    finally:
        pauser.join()
        link.stop()
    assert s["stop_reason"] == "decoded 5 s"  # it went on after the silence, on its own
    assert s["blind_periods"] == 1 and 1.5 <= s["blind_s"] <= 3.0
    assert s["stalls"] >= 1


def test_stream_config_names_the_bad_setting():
    with pytest.raises(ValueError, match=r"gap_policy must be one of \['hold', 'zeros', 'none'\], got 'nan'"):
        StreamConfig(gap_policy="nan")
    with pytest.raises(ValueError, match="backend must be one of"):
        StreamConfig(backend="tvm")
    with pytest.raises(ValueError, match="duration_s must be > 0 s or None"):
        StreamConfig(duration_s=0)
    with pytest.raises(ValueError, match="stall_timeout_s must be > 0 s"):
        StreamConfig(stall_timeout_s=-1)
    assert StreamConfig.from_dict(StreamConfig(precision="fp32").to_dict()).precision == "fp32"
