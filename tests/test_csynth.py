"""Tests of the C synthesizer: parity with the PyTorch synthesizer (deterministic) and the numpy frame renderer,
the fixed-point path, bad input, synth files and their export, and the C-only test program (plain, sanitizer
and no-FPU builds).

Parity runs on (a) smooth random trajectories and (b) parameters fitted to a real utterance (an Allison
prompt), through a synthesizer whose learned weights are perturbed away from their initial values. Set
``EDGENSD_SYNTH_MODEL=DIR`` to run the same checks on a trained speech model instead: its synthesizer and its
encoder's parameters of the utterance.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from script_loader import load_script

from edgensd import _csynth
from edgensd.cli.main import main as cli_main
from edgensd.csynth import CSynth, fit_params_to_audio, perturbed_synthesizer, smooth_random_params, speech_prompt
from edgensd.params import ALPHA, F0, LOUD, N_PARAMS
from edgensd.spectrogram import HOP, power_spectrogram
from edgensd.speech import synth_export
from edgensd.speech.render import FrameRenderer, lowbias32, white_noise
from edgensd.speech.synth import Synthesizer, estimate_background
from edgensd.speech.synth_export import (
    FILE_BYTES,
    read_synth_file,
    synth_file_bytes,
    write_c_header,
    write_synth_file,
)
from edgensd.speech.synth_weights import SynthWeights

REPO = Path(__file__).resolve().parent.parent
CSRC = REPO / "csrc"
MODEL_ENV = "EDGENSD_SYNTH_MODEL"
SPEC_TOL = 1e-3  # normalized-dB units, max abs (issue 5)
AUDIO_TOL = 1e-4  # max abs (issue 5)
SEED = 12345


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def utterance() -> np.ndarray:
    return speech_prompt("activated")


@pytest.fixture(scope="module")
def speech_model():
    model_dir = os.environ.get(MODEL_ENV)
    if not model_dir:
        return None
    from edgensd.speech.model import load_speech_model

    return load_speech_model(model_dir)


@pytest.fixture(scope="module")
def synth(speech_model, utterance) -> Synthesizer:
    if speech_model is not None:
        return speech_model.synth
    return perturbed_synthesizer(seed=1, background=estimate_background(power_spectrogram(utterance)))


@pytest.fixture(scope="module")
def weights(synth) -> SynthWeights:
    return synth.export_weights()


@pytest.fixture(scope="module")
def trajectories(synth, speech_model, utterance) -> dict[str, np.ndarray]:
    if speech_model is not None:
        from edgensd.speech.evaluate import encode_audio

        real = encode_audio(speech_model, utterance)[0]
    else:
        real = fit_params_to_audio(utterance, synth, n_steps=25)
    return {"random": smooth_random_params(synth.config.voice, 300, seed=2), "real": real.astype(np.float32)}


@pytest.fixture(scope="module")
def synth_file(weights, tmp_path_factory) -> Path:
    return write_synth_file(weights, tmp_path_factory.mktemp("synth") / "voice.edsynth")


def _torch_norm(synth: Synthesizer, params: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return synth.spectrogram_norm(torch.as_tensor(params), deterministic=True).numpy()


# ---- conventions shared with the numpy code -------------------------------------------------------------


def test_generated_tables_are_up_to_date():
    gen = load_script(CSRC / "gen_tables.py")
    assert gen.generate() == (CSRC / "edsynth_tables.c").read_text(), "run python csrc/gen_tables.py"


def test_noise_hash_and_white_noise_are_bit_identical():
    x = np.random.default_rng(0).integers(0, 2**32, 10_000, dtype=np.uint64).astype(np.uint32)
    assert np.array_equal(_csynth.lowbias32(x), lowbias32(x))
    for seed, frame in [(0, 0), (1, 1), (SEED, 977), (0xFFFFFFFF, 2**24 + 5), (7, 2**32 - 1)]:
        assert np.array_equal(_csynth.white_noise(seed, frame), white_noise(seed, frame)), (seed, frame)


def test_fft_matches_numpy():
    x = np.random.default_rng(1).standard_normal(256).astype(np.float32)
    spec = np.fft.rfft(x.astype(np.float64))
    assert np.max(np.abs(_csynth.rfft256(x) - spec)) < 1e-5 * np.max(np.abs(spec))
    assert np.max(np.abs(_csynth.irfft256(spec.astype(np.complex64)) - x)) < 1e-6
    with pytest.raises(ValueError, match="256"):
        _csynth.rfft256(np.zeros(100, np.float32))


# ---- parity --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["random", "real"])
def test_spectrogram_matches_torch_deterministic(kind, synth, weights, trajectories):
    params = trajectories[kind]
    cs = CSynth(weights)
    ref = _torch_norm(synth, params)
    out = cs.spectrogram(params)
    diff = float(np.max(np.abs(out - ref)))
    print(f"spectrogram parity ({kind}, {params.shape[0]} frames): max |diff| = {diff:.2e} normalized dB")
    assert diff <= SPEC_TOL
    assert cs.n_clamped == 0
    with torch.no_grad():
        ref_power = synth(torch.as_tensor(params)).numpy()
    np.testing.assert_allclose(cs.spectrogram(params, power=True), ref_power, rtol=1e-4)
    np.testing.assert_array_equal(cs.spectrogram_frame(params[7]), out[7])


def test_spectrogram_matches_torch_at_initial_weights():
    synth = Synthesizer()
    params = smooth_random_params(synth.config.voice, 80, seed=5)
    assert np.max(np.abs(CSynth(synth.export_weights()).spectrogram(params) - _torch_norm(synth, params))) <= SPEC_TOL


@pytest.mark.parametrize("kind", ["random", "real"])
@pytest.mark.parametrize("include_background", [False, True])
def test_audio_matches_numpy_renderer(kind, include_background, weights, trajectories):
    params = trajectories[kind]
    ref = FrameRenderer(weights, seed=SEED, include_background=include_background).render(params)
    out = CSynth(weights, seed=SEED, include_background=include_background).render(params)
    assert out.shape == ref.shape == (params.shape[0] * HOP,)
    diff = float(np.max(np.abs(out - ref)))
    print(f"audio parity ({kind}, background={include_background}): max |diff| = {diff:.2e}, "
          f"peak {np.max(np.abs(ref)):.3f}")
    assert diff <= AUDIO_TOL
    assert np.max(np.abs(ref)) > 0.01  # not trivially silent


def test_streaming_frames_match_push_and_render_alignment(weights, trajectories):
    params = trajectories["real"][:60]
    fr = FrameRenderer(weights, seed=3)
    cs = CSynth(weights, seed=3)
    for t, p in enumerate(params):
        np.testing.assert_allclose(cs.render_frame(p), fr.push(p), atol=AUDIO_TOL, err_msg=f"frame {t}")
    assert cs.frame_index == fr.frame_index == 60
    # render() continues from the current state, as FrameRenderer.render does
    np.testing.assert_allclose(cs.render(params[:10]), fr.render(params[:10]), atol=AUDIO_TOL)
    cs.reset()
    assert cs.frame_index == 0 and cs.n_clamped == 0
    whole = cs.render(params)
    cs.reset()
    pushed = np.concatenate([cs.render_frame(p) for p in [*params, params[-1]]])
    np.testing.assert_array_equal(whole, pushed[HOP:])
    assert cs.render(np.zeros((0, N_PARAMS), np.float32)).shape == (0,)


def test_harmonic_amplitudes_and_noise_gains_match(weights, trajectories):
    engine = CSynth(weights)._engine
    fr = FrameRenderer(weights)
    for p in trajectories["real"][::10]:
        amp = fr.harmonic_amplitudes(p)
        np.testing.assert_allclose(engine.harmonic_amplitudes(p), amp, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(engine.noise_gain(p), fr.noise_gain(p), rtol=1e-5, atol=1e-8)
        # fixed point: relative to the frame's largest amplitude, with one Q20 step of resolution
        assert np.max(np.abs(engine.fx_harmonic_amplitudes(p) - amp)) <= 1e-3 * np.max(amp) + 2.0**-19


# ---- fixed point ----------------------------------------------------------------------------------------


def _snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((test - ref).astype(np.float64) ** 2)))


@pytest.mark.parametrize("kind", ["random", "real"])
def test_fixed_point_snr_against_float(kind, weights, trajectories):
    params = trajectories[kind]
    ref = CSynth(weights, seed=SEED).render(params)
    fx = CSynth(weights, seed=SEED, fixed_point=True)
    out = fx.render(params)
    snr = _snr_db(ref, out)
    print(f"fixed-point SNR vs float32 ({kind}): {snr:.1f} dB, saturated {fx.n_saturated}")
    assert snr >= 40.0
    assert fx.n_saturated == 0


# ---- bad input ------------------------------------------------------------------------------------------


def _bad_frames(voice, good: np.ndarray) -> np.ndarray:
    lo, hi = voice.bounds()
    rows = []
    for k in range(8):
        p = good[k].copy()
        if k == 0:
            p[[F0, LOUD]] = np.nan
        elif k == 1:
            p[LOUD], p[3] = np.inf, -np.inf
        elif k == 2:
            p[F0] = 0.0  # f0 of 0
        elif k == 3:
            p[:] = 0.0
        elif k == 4:
            p[ALPHA], p[16], p[17] = 1e30, -1e30, 7.0
        elif k == 5:
            p[LOUD] = lo[LOUD]  # silence (in range)
        elif k == 6:
            p[:] = np.nan
        else:
            p[:] = hi * 10
        rows.append(p)
    return np.asarray(rows, np.float32)


def test_bad_parameters_are_clamped_counted_and_never_nan(weights, trajectories):
    good = trajectories["real"]
    bad = _bad_frames(weights.voice, good[40:])
    params = np.concatenate([good[:40], bad, good[48:80], bad[::-1]])
    fr = FrameRenderer(weights, seed=SEED)
    ref = fr.render(params)
    for fixed in (False, True):
        cs = CSynth(weights, seed=SEED, fixed_point=fixed)
        out = cs.render(params)
        assert np.all(np.isfinite(out))
        assert cs.n_clamped == fr.n_clamped > 0, fixed
        if not fixed:
            assert np.max(np.abs(out - ref)) <= AUDIO_TOL
    cs = CSynth(weights)
    spec = cs.spectrogram(bad)
    assert np.all(np.isfinite(spec)) and spec.min() >= -1.0 and spec.max() <= 1.0
    lo, hi = weights.voice.bounds()
    assert cs.n_clamped == int(np.sum(~np.isfinite(bad) | (bad < lo) | (bad > hi)))


def test_f0_zero_and_silence(weights, trajectories):
    p = trajectories["real"][50].copy()
    lo, _ = weights.voice.bounds()
    at_floor = p.copy()
    at_floor[F0] = lo[F0]
    zero = p.copy()
    zero[F0] = 0.0
    a = CSynth(weights, seed=1).render(np.tile(zero, (20, 1)))
    b = CSynth(weights, seed=1).render(np.tile(at_floor, (20, 1)))
    np.testing.assert_array_equal(a, b)  # f0 = 0 is clamped to the lowest f0
    silent = p.copy()
    silent[LOUD] = lo[LOUD]
    for fixed in (False, True):
        out = CSynth(weights, fixed_point=fixed).render(np.tile(silent, (30, 1)))
        assert np.all(np.isfinite(out)) and np.max(np.abs(out)) < 1e-2


def test_arguments_are_checked(weights):
    cs = CSynth(weights)
    with pytest.raises(ValueError, match=r"params must have shape \(n_frames, 18\)"):
        cs.render(np.zeros((4, 17), np.float32))
    with pytest.raises(ValueError, match=r"params must have shape \(18,\)"):
        cs.render_frame(np.zeros(19, np.float32))
    with pytest.raises(ValueError, match=r"params must have shape \(n_frames, 18\)"):
        cs.spectrogram(np.zeros(18, np.float32))
    with pytest.raises(TypeError, match="seed must be an int"):
        CSynth(weights, seed=1.5)
    assert CSynth(weights, seed=-1).seed == 0xFFFFFFFF


# ---- synth files ----------------------------------------------------------------------------------------


def test_synth_file_round_trip_and_sources(weights, synth_file, trajectories, tmp_path):
    data = synth_file.read_bytes()
    assert len(data) == FILE_BYTES == 2400
    back = read_synth_file(synth_file)
    assert back.voice.same_as(weights.voice) and back.voice.name == weights.voice.name
    for key in ("shape_tables", "bw0_hz", "bw_slope", "gain_v_db", "gain_n_db", "background"):
        np.testing.assert_array_equal(getattr(back, key), getattr(weights, key))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    weights.save_npz(model_dir / synth_export.SYNTH_WEIGHTS_FILE)
    params = trajectories["random"][:40]
    expected = CSynth(weights, seed=4).render(params)
    for source in (synth_file, str(synth_file), model_dir / synth_export.SYNTH_WEIGHTS_FILE, model_dir):
        cs = CSynth(source, seed=4)
        assert cs.image == data
        np.testing.assert_array_equal(cs.render(params), expected)


def test_model_directory_file_name_matches_the_speech_model():
    from edgensd.speech import model

    assert synth_export.SYNTH_WEIGHTS_FILE == model.SYNTH_WEIGHTS_FILE


def _fixed_crc(data: bytearray) -> bytes:
    data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])) & 0xFFFFFFFF)
    return bytes(data)


def _corrupt(data: bytes, how: str) -> bytes:
    d = bytearray(data)
    if how == "magic":
        d[:8] = b"NOTSYNTH"
    elif how == "version":
        d[8:12] = struct.pack("<I", 2)
        return _fixed_crc(d)
    elif how == "truncated":
        return bytes(d[:-10])
    elif how == "padded":
        return bytes(d) + b"\0\0\0\0"
    elif how == "short":
        return bytes(d[:30])
    elif how == "checksum":
        d[500] ^= 0x01
    elif how == "layout":
        d[24:28] = struct.pack("<I", 32)
        return _fixed_crc(d)
    elif how == "nan":
        d[64 + 4 * 40 : 64 + 4 * 41] = struct.pack("<f", float("nan"))
        return _fixed_crc(d)
    elif how == "harmonics":
        d[36:40] = struct.pack("<I", 5)
        return _fixed_crc(d)
    return bytes(d)


REFUSALS = {
    "magic": ("MAGIC", "wrong magic: not an edgensd synth file"),
    "version": ("VERSION", "format version 2, this edgensd reads version 1"),
    "truncated": ("SIZE", "2390 bytes where its header declares 2400"),
    "padded": ("SIZE", "2404 bytes where its header declares 2400"),
    "short": ("SHORT", "shorter than a synth file header"),
    "checksum": ("CHECKSUM", "CRC-32 mismatch"),
    "layout": ("LAYOUT", "dimensions differ"),
    "nan": ("VALUE", r"value shape_tables\[0\]\[4\] is NaN/inf"),
    "harmonics": ("HARMONICS", "n_harmonics inconsistent"),
}


@pytest.mark.parametrize("how", sorted(REFUSALS))
def test_bad_synth_files_are_refused(how, synth_file, tmp_path):
    status_name, message = REFUSALS[how]
    bad = _corrupt(synth_file.read_bytes(), how)
    status, _ = _csynth.check_file(np.frombuffer(bad, np.uint8))
    assert status == _csynth.STATUS[status_name]
    path = tmp_path / f"{how}.edsynth"
    path.write_bytes(bad)
    for load in (CSynth, read_synth_file):
        with pytest.raises(ValueError, match=message) as info:
            load(path)
        assert str(path) in str(info.value)
    with pytest.raises(ValueError, match="synth file image refused"):
        _csynth.Engine(np.frombuffer(bad, np.uint8))


def test_missing_sources_and_empty_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="synth weights not found"):
        CSynth(tmp_path / "nope.edsynth")
    with pytest.raises(FileNotFoundError, match="holds no synth_weights.npz"):
        CSynth(tmp_path)
    (tmp_path / "empty.edsynth").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.edsynth: the file is shorter"):
        CSynth(tmp_path / "empty.edsynth")


def test_export_refuses_weights_the_c_core_would_refuse(weights):
    bad = SynthWeights(**{**weights.__dict__, "background": -np.abs(weights.background)})
    with pytest.raises(ValueError, match=r"value background\[0\]"):
        synth_file_bytes(bad)
    bad = SynthWeights(**{**weights.__dict__, "gain_v_db": np.full(24, 10.0, np.float32)})
    with pytest.raises(ValueError, match=r"value gain_v_db\[0\].*sum \|gain\| <= 120 dB"):
        synth_file_bytes(bad)
    bad = SynthWeights(**{**weights.__dict__, "bw0_hz": np.ones(5, np.float32)})
    with pytest.raises(ValueError, match=r"bw0_hz must have shape \(6,\), got \(5,\)"):
        synth_file_bytes(bad)


def test_cli_export_synth(weights, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    weights.save_npz(model_dir / synth_export.SYNTH_WEIGHTS_FILE)
    out, header = tmp_path / "v.edsynth", tmp_path / "v.h"
    argv = ["export", "synth", "-q", "--model", str(model_dir), "--out", str(out), "--header", str(header)]
    assert cli_main(argv) == 0
    assert out.read_bytes() == synth_file_bytes(weights)
    text = header.read_text()
    assert "static const uint8_t eds_v[2400]" in text and "#define EDS_V_BYTES 2400u" in text
    assert cli_main(["export", "synth", "-q", "--model", str(out), "--out", str(tmp_path / "x.bin")]) == 2
    assert cli_main(["export", "synth", "-q", "--model", str(header), "--out", str(tmp_path / "y.edsynth")]) == 2


# ---- the C-only test program ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def c_test_inputs(weights, synth_file, trajectories, tmp_path_factory):
    d = tmp_path_factory.mktemp("ctest")
    params = trajectories["real"]
    params.astype("<f4").tofile(d / "params.f32")
    FrameRenderer(weights, seed=SEED).render(params).astype("<f4").tofile(d / "expected.f32")
    header = write_c_header(synth_file.read_bytes(), d / "voice.h", symbol="eds_voice")
    return d, header


def _c_flags() -> dict[str, list[str]]:
    """The NAME := value lines of csrc/tests/flags.mk (the Makefile includes the same file)."""
    flags = {}
    for line in (CSRC / "tests" / "flags.mk").read_text().splitlines():
        if ":=" in line and not line.lstrip().startswith("#"):
            name, value = line.split(":=", 1)
            flags[name.strip()] = value.split()
    return flags


def _run(cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.parametrize("target", ["test", "test-sanitize", "test-fixed-only"])
def test_c_test_program(target, c_test_inputs, synth_file):
    """The C-only test program (as csrc/tests/Makefile builds it): strict C99 with -Werror, with address and
    undefined-behaviour sanitizers, and the fixed-point-only core built without FPU registers (x86-64)."""
    cc = shutil.which(os.environ.get("CC", "gcc"))
    assert cc is not None, "a C compiler (gcc) is needed: apt-get install gcc"
    d, header = c_test_inputs
    flags = _c_flags()
    strict = [*flags["STRICT"], f"-I{CSRC}"]
    core = [CSRC / name for name in ("edsynth.c", "edsynth_file.c", "edsynth_fixed.c", "edsynth_tables.c")]
    harness = CSRC / "tests" / "test_edsynth.c"
    embed = [f'-DEDS_TEST_HEADER="{header}"', "-DEDS_TEST_HEADER_SYMBOL=eds_voice"]
    exe = d / target
    args = [synth_file, d / "params.f32", d / "expected.f32", str(SEED)]
    if target == "test":
        _run([cc, *strict, "-O2", *embed, harness, *core, "-lm", "-o", exe])
    elif target == "test-sanitize":
        _run([cc, *strict, "-O1", "-g", *flags["SANITIZE"], *embed, harness, *core, "-lm", "-o", exe])
    else:
        no_fpu = flags["NO_FPU_X86_64"] if os.uname().machine in ("x86_64", "amd64") else []
        objs = []
        for src in core:
            obj = d / f"fixed_only_{src.stem}.o"
            _run([cc, *strict, "-O2", "-DEDSYNTH_FIXED_ONLY", *no_fpu, "-c", src, "-o", obj])
            objs.append(obj)
        _run([cc, *strict, "-O2", "-DEDSYNTH_FIXED_ONLY", *embed, harness, *objs, "-lm", "-o", exe])
        args = args[:1]
    out = _run([exe, *args]).stdout
    print(out)
    assert "FAIL" not in out and ", 0 failed" in out
    if target != "test-fixed-only":
        assert "audio parity vs numpy reference" in out
