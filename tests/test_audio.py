"""Tests of edgensd.audio: every format, every conversion and every bad-input path."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgensd import audio as audio_mod
from edgensd.audio import SILENCE_PEAK, check_audio, decode_g722, load_audio, resample_audio, save_wav
from edgensd.log import logger

ALLISON = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
SR = 16000




def _messages(records, level=logging.INFO) -> list[str]:
    return [r.getMessage() for r in records if r.levelno == level]


def _tone(n=SR // 2, freq=440.0, sr=SR, amp=0.5) -> np.ndarray:
    t = np.arange(n) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spec) * sr / x.size)


# ------------------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize(
    ("name", "fmt", "subtype", "atol"),
    [
        ("a.wav", "WAV", "PCM_16", 1.0 / 32768),
        ("a.flac", "FLAC", "PCM_16", 1.0 / 32768),
        ("f.wav", "WAV", "FLOAT", 0.0),
    ],
)
def test_lossless_formats_round_trip(tmp_path, name, fmt, subtype, atol):
    x = _tone()
    sf.write(tmp_path / name, x, SR, format=fmt, subtype=subtype)
    y = load_audio(tmp_path / name)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=atol)


def test_ogg_vorbis_loads(tmp_path):
    x = _tone(SR)
    sf.write(tmp_path / "a.ogg", x, SR, format="OGG", subtype="VORBIS")
    y = load_audio(tmp_path / "a.ogg")
    assert y.dtype == np.float32 and abs(y.size - x.size) <= 2048
    assert abs(_peak_hz(y, SR) - 440.0) < 5.0


def test_real_g722_prompt_decodes_at_16k():
    path = ALLISON / "activated.g722"
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert y.size == 2 * path.stat().st_size  # 64 kbit/s G.722: one byte per two 16 kHz samples
    assert 0.05 < np.max(np.abs(y)) <= 1.0


def test_real_8k_wav_prompt_is_resampled_to_the_g722_length(edgensd_log):
    y = load_audio(ALLISON / "activated.wav")
    assert y.size == load_audio(ALLISON / "activated.g722").size
    assert any("resampled from 8000 Hz to 16000 Hz" in m for m in _messages(edgensd_log))


def test_g722_encode_decode_round_trip(tmp_path):
    import G722

    x = _tone(SR, freq=300.0, amp=0.3)
    data = G722.G722(SR, 64000).encode((x * 32767).astype(np.int16))
    (tmp_path / "tone.g722").write_bytes(bytes(data))
    y = load_audio(tmp_path / "tone.g722")
    assert y.size == x.size
    assert abs(_peak_hz(y, SR) - 300.0) < 3.0


def test_empty_g722_is_an_error(tmp_path):
    (tmp_path / "empty.g722").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.g722.*empty"):
        load_audio(tmp_path / "empty.g722")
    with pytest.raises(ValueError, match="empty"):
        decode_g722(b"")


# ------------------------------------------------------------------------------------------------ conversions


def test_other_rate_is_resampled_and_logged(tmp_path, edgensd_log):
    x = _tone(8000, freq=440.0, sr=8000)
    sf.write(tmp_path / "low.wav", x, 8000)
    y = load_audio(tmp_path / "low.wav")
    assert y.size == 2 * x.size
    assert abs(_peak_hz(y, SR) - 440.0) < 3.0
    assert any("low.wav" in m and "resampled from 8000 Hz to 16000 Hz" in m for m in _messages(edgensd_log))


def test_target_sr_downsamples(tmp_path):
    sf.write(tmp_path / "a.wav", _tone(SR), SR)
    y = load_audio(tmp_path / "a.wav", target_sr=8000)
    assert y.size == SR // 2 and y.dtype == np.float32
    with pytest.raises(ValueError, match="target_sr"):
        load_audio(tmp_path / "a.wav", target_sr=0)


def test_stereo_is_averaged_and_logged(tmp_path, edgensd_log):
    x = _tone()
    sf.write(tmp_path / "st.wav", np.stack([x, -0.5 * x], axis=1), SR, subtype="FLOAT")
    y = load_audio(tmp_path / "st.wav")
    np.testing.assert_allclose(y, 0.25 * x, atol=1e-6)
    assert any("st.wav" in m and "averaged 2 channels" in m for m in _messages(edgensd_log))


def test_float_samples_beyond_one_are_clipped_with_a_warning(tmp_path, edgensd_log):
    x = _tone(amp=0.5)
    x[100:103] = [1.5, -2.0, 1.25]
    sf.write(tmp_path / "loud.wav", x, SR, subtype="FLOAT")
    y = load_audio(tmp_path / "loud.wav")
    assert np.max(np.abs(y)) == pytest.approx(1.0)
    np.testing.assert_array_equal(y[100:103], [1.0, -1.0, 1.0])
    warnings = _messages(edgensd_log, logging.WARNING)
    assert any("loud.wav" in m and "clipped 3 samples" in m for m in warnings)


def test_resample_audio_identity_and_validation():
    x = _tone()
    np.testing.assert_array_equal(resample_audio(x, SR, SR), x)
    assert resample_audio(x, 48000, SR).size == -(-x.size // 3)  # ceil
    with pytest.raises(ValueError, match="sr_in"):
        resample_audio(x, -1, SR)


def test_verbose_argument_is_temporary(tmp_path, edgensd_log):
    sf.write(tmp_path / "low.wav", _tone(8000, sr=8000), 8000)
    load_audio(tmp_path / "low.wav", verbose="warning")
    assert not _messages(edgensd_log)
    assert logger.level == logging.DEBUG  # restored


# ------------------------------------------------------------------------------------------------ bad input


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_audio(tmp_path / "nope.wav")


def test_folder_is_not_a_file(tmp_path):
    (tmp_path / "dir.wav").mkdir()
    with pytest.raises(ValueError, match="dir.wav"):
        load_audio(tmp_path / "dir.wav")


def test_unsupported_suffix_lists_allowed(tmp_path):
    (tmp_path / "a.mp3").write_bytes(b"ID3")
    with pytest.raises(ValueError, match=r"a\.mp3.*'\.mp3'.*\.wav.*\.g722"):
        load_audio(tmp_path / "a.mp3")


def test_silent_file_is_an_error_unless_allowed(tmp_path):
    sf.write(tmp_path / "quiet.wav", np.zeros(SR, np.float32), SR)
    with pytest.raises(ValueError, match=r"quiet\.wav.*silent.*allow_silent"):
        load_audio(tmp_path / "quiet.wav")
    y = load_audio(tmp_path / "quiet.wav", allow_silent=True)
    assert y.shape == (SR,) and not y.any()


def test_real_silence_prompt_counts_as_silent():
    path = ALLISON / "silence" / "1.g722"
    with pytest.raises(ValueError, match="silent"):
        load_audio(path)
    assert np.max(np.abs(load_audio(path, allow_silent=True))) < SILENCE_PEAK


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_samples_name_file_and_count(tmp_path, bad):
    x = _tone()
    x[[5, 50, 500]] = bad
    sf.write(tmp_path / "nan.wav", x, SR, subtype="FLOAT")
    with pytest.raises(ValueError, match=rf"nan\.wav: 3 of {x.size} samples are NaN or inf"):
        load_audio(tmp_path / "nan.wav")


def test_truncated_wav_is_an_error(tmp_path):
    sf.write(tmp_path / "full.wav", _tone(SR), SR)
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.wav is truncated"):
        load_audio(tmp_path / "cut.wav")


@pytest.mark.parametrize(
    ("name", "fmt", "keep"), [("h.wav", "WAV", 30), ("c.flac", "FLAC", 0.5), ("z.ogg", "OGG", 30)]
)
def test_corrupt_files_are_value_errors_naming_the_file(tmp_path, name, fmt, keep):
    sf.write(tmp_path / ("src." + name), _tone(SR), SR, format=fmt)
    data = (tmp_path / ("src." + name)).read_bytes()
    n = keep if isinstance(keep, int) else int(len(data) * keep)
    (tmp_path / name).write_bytes(data[:n])
    with pytest.raises(ValueError, match=name.replace(".", r"\.")) as info:
        load_audio(tmp_path / name)
    assert "corrupt or truncated" in str(info.value) or "no samples" in str(info.value)


def test_garbage_file_chains_the_libsndfile_error(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 64)
    with pytest.raises(ValueError, match=r"junk\.wav is corrupt") as info:
        load_audio(tmp_path / "junk.wav")
    assert isinstance(info.value.__cause__, RuntimeError)


# ------------------------------------------------------------------------------------------------ check_audio


def test_check_audio_accepts_and_converts():
    y = check_audio(_tone().astype(np.float64), SR)
    assert y.dtype == np.float32


@pytest.mark.parametrize(
    ("audio", "sr", "pattern"),
    [
        (np.zeros(10, np.float32) + 0.1, 8000, "sample rate must be 16000"),
        (np.zeros((2, 10), np.float32), SR, r"1-D.*\(2, 10\)"),
        (np.zeros(0, np.float32), SR, "no samples"),
        (np.ones(10, np.int16), SR, "floating point"),
        (np.array([0.5, 1.5, -3.0], np.float32), SR, "2 samples lie beyond"),
        (np.array([0.5, np.nan], np.float32), SR, "1 of 2 samples are NaN"),
        (np.full(10, 1e-4, np.float32), SR, "silent"),
    ],
)
def test_check_audio_rejects(audio, sr, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        check_audio(audio, sr, name="probe")
    assert str(info.value).startswith("probe")


def test_check_audio_allow_silent():
    assert check_audio(np.zeros(4, np.float32), SR, allow_silent=True).shape == (4,)


# ------------------------------------------------------------------------------------------------ save_wav


def test_save_wav_float_is_bit_exact_and_creates_parents(tmp_path):
    x = _tone()
    out = save_wav(tmp_path / "sub" / "x.wav", x, subtype="FLOAT")
    assert out == tmp_path / "sub" / "x.wav"
    np.testing.assert_array_equal(load_audio(out), x)
    assert sf.info(out).samplerate == SR


def test_save_wav_refuses_bad_audio_and_keeps_the_old_file(tmp_path):
    good = save_wav(tmp_path / "x.wav", _tone())
    before = good.read_bytes()
    for bad, pattern in [
        (np.array([0.1, np.nan], np.float32), "NaN"),
        (np.array([0.1, 2.0], np.float32), "beyond"),
        (np.zeros((3, 2), np.float32), "1-D"),
        (np.zeros(3, np.int16), "floating point"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            save_wav(good, bad)
    with pytest.raises(ValueError, match="subtype"):
        save_wav(good, _tone(), subtype="MP3")
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wav"]


def test_save_wav_crash_midway_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    good = save_wav(tmp_path / "x.wav", _tone())
    before = good.read_bytes()

    def broken_write(file, data, *args, **kwargs):
        Path(file).write_bytes(b"RIFF half")
        raise OSError("disk full")

    monkeypatch.setattr(sf, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        save_wav(good, 0.5 * _tone())
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wav"]


def test_module_exports():
    for name in audio_mod.__all__:
        assert hasattr(audio_mod, name)
