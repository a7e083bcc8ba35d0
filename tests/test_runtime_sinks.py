"""Stream sinks: the WAV is valid after every header update and equals soundfile's reading; latency
percentiles equal numpy's on the same samples."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from edgensd.runtime.sinks import LatencyRecorder, StreamingWavWriter


def test_wav_is_readable_while_being_written_and_after_close(tmp_path):
    rng = np.random.default_rng(0)
    blocks = [0.5 * rng.standard_normal(128).astype(np.float32).clip(-1, 1) for _ in range(10)]
    path = tmp_path / "live.wav"
    w = StreamingWavWriter(path, 16000, update_every=4)
    for b in blocks[:8]:
        w.write(b)
    # an interruption now (no close): the file holds the 8 blocks the last header update covered
    data, fs = sf.read(path, dtype="float32")
    assert fs == 16000 and data.shape == (8 * 128,)
    np.testing.assert_allclose(data, np.concatenate(blocks[:8]), atol=1 / 32767)
    for b in blocks[8:]:
        w.write(b)
    w.write(np.array([1.5, -2.0], np.float32))
    w.close()
    w.close()
    data, _ = sf.read(path, dtype="float32")
    assert data.shape == (10 * 128 + 2,) and w.n_clipped == 2
    assert data[-2] == pytest.approx(32767 / 32768) and data[-1] == -1.0
    with pytest.raises(ValueError, match="closed"):
        w.write(blocks[0])


def test_wav_refuses_nan_and_bad_settings(tmp_path):
    with StreamingWavWriter(tmp_path / "a.wav") as w:
        with pytest.raises(ValueError, match="NaN or inf"):
            w.write(np.array([0.0, np.nan], np.float32))
    with pytest.raises(ValueError, match="sample_rate"):
        StreamingWavWriter(tmp_path / "b.wav", 0)
    with pytest.raises(ValueError, match="update_every"):
        StreamingWavWriter(tmp_path / "c.wav", update_every=0)


def test_latency_percentiles():
    rng = np.random.default_rng(1)
    rec = LatencyRecorder(["read", "decoder", "end_to_end"])
    v = rng.exponential(0.002, 1000)
    for x in v:
        rec.add("decoder", x)
    s = rec.summary()
    assert s["decoder"]["n"] == 1000 and s["read"]["n"] == 0 and s["read"]["p99"] is None
    assert s["decoder"]["p50"] == pytest.approx(np.percentile(v * 1e3, 50), abs=1e-4)
    assert s["decoder"]["p99"] == pytest.approx(np.percentile(v * 1e3, 99), abs=1e-4)
    assert s["decoder"]["max"] == pytest.approx(v.max() * 1e3, abs=1e-4)
    with pytest.raises(ValueError, match="stage must be one of"):
        rec.add("synth", 0.001)
    with pytest.raises(ValueError, match="distinct"):
        LatencyRecorder(["a", "a"])
