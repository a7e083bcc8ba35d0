"""High-gamma features: synthetic ground truth, block-size invariance, real recordings."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import signal

from edgensd.neural.highgamma import (
    HighGammaConfig,
    HighGammaStats,
    StreamingHighGamma,
    apply_zscore,
    common_average_reference,
    compute_highgamma,
    detect_bad_channels,
    fit_zscore,
    highgamma_envelope,
    n_frames_for_samples,
    notch_frequencies,
    remove_line_noise,
)
from edgensd.neural.io import example_bids_path, example_grid_path, read_raw


def _am(fs, seconds=4.0, f_mod=2.0, depth=0.8, carrier=100.0, noise=0.02, seed=0, n_ch=2):
    t = np.arange(int(fs * seconds)) / fs
    mod = 1.0 + depth * np.sin(2 * np.pi * f_mod * t)
    rng = np.random.default_rng(seed)
    x = mod[:, None] * np.sin(2 * np.pi * carrier * t)[:, None] + noise * rng.standard_normal((t.size, n_ch))
    return t, mod, x


def _frame_values(fs, values, n_frames):
    """Sample a raw-rate series at frame times t/125 s (linear interpolation)."""
    return np.interp(np.arange(n_frames) / 125.0, np.arange(values.size) / fs, values)


def _corr(a, b):
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize("fs", [1000.0, 512.0])
def test_am_carrier_envelope_tracks_modulation(fs):
    _, mod, x = _am(fs)
    cfg = HighGammaConfig(line_freq=None, car=False)
    env = highgamma_envelope(x, fs, cfg)
    n = n_frames_for_samples(x.shape[0], fs)
    assert env.shape == (n, 2)
    truth = _frame_values(fs, mod, n)
    inner = slice(25, -25)  # edges of the zero-phase filters
    assert _corr(env[inner, 0], truth[inner]) > 0.995
    assert np.allclose(env[inner, 0], truth[inner], atol=0.05)  # unit amplitude kept, no delay
    st = highgamma_envelope(x, fs, HighGammaConfig(line_freq=None, car=False, pipeline="streaming"))
    assert st.shape == env.shape
    # streaming is causal: same amplitude, delayed by its group delay (2 frames = 16 ms)
    assert _corr(st[inner, 0], truth[inner]) > 0.95
    lag = 2
    assert _corr(st[25 + lag : -25, 0], truth[25 : -25 - lag]) > 0.99
    assert abs(np.mean(st[inner, 0]) - np.mean(truth[inner])) < 0.05


def test_frame_clock_alignment_offline():
    # a burst starting exactly at 1.000 s must rise at frame 125 (± 1) for integer and non-integer ratios
    for fs in (1000.0, 512.0, 625.0):
        t = np.arange(int(fs * 2.5)) / fs
        x = np.where(t >= 1.0, 1.0, 0.0) * np.sin(2 * np.pi * 110 * t)
        env = highgamma_envelope(x, fs, HighGammaConfig(line_freq=None, car=False))[:, 0]
        # zero-phase: the step instant (frame 125) sits at half amplitude, one frame either side is clear
        assert abs(env[125] - 0.5) < 0.1 and env[124] < 0.2 and env[126] > 0.8, (fs, env[123:128])
    assert n_frames_for_samples(1000, 1000.0) == 125
    assert n_frames_for_samples(1001, 1000.0) == 126
    assert n_frames_for_samples(512, 512.0) == 125  # last frame at 124/125 s
    assert n_frames_for_samples(2035, 2034.5) == 125 and n_frames_for_samples(2036, 2034.5) == 126


def test_line_noise_removed():
    fs = 1000.0
    rng = np.random.default_rng(3)
    clean = rng.standard_normal((8000, 3))
    t = np.arange(8000) / fs
    line = 20 * np.sin(2 * np.pi * 60 * t) + 8 * np.sin(2 * np.pi * 120 * t + 0.3)
    noisy = clean + line[:, None] * np.array([1.0, 0.5, 2.0])  # different amplitude per channel (no CAR help)
    cfg = HighGammaConfig(line_freq=60, car=False)
    assert notch_frequencies(fs, cfg) == [60.0, 120.0, 180.0]
    cleaned = remove_line_noise(noisy, fs, cfg)
    f, p_noisy = signal.welch(noisy[:, 2], fs, nperseg=2000)
    _, p_clean = signal.welch(cleaned[:, 2], fs, nperseg=2000)
    for f0 in (60, 120):
        i = np.argmin(np.abs(f - f0))
        assert 10 * np.log10(p_noisy[i] / p_clean[i]) > 30
    # the high-gamma envelope (120 Hz lies inside the band) is that of the clean signal
    for pipeline in ("offline", "streaming"):
        c = HighGammaConfig(line_freq=60, car=False, pipeline=pipeline)
        ref = highgamma_envelope(clean, fs, c)[50:-50]
        got = highgamma_envelope(noisy, fs, c)[50:-50]
        off = highgamma_envelope(noisy, fs, HighGammaConfig(line_freq=None, car=False, pipeline=pipeline))[50:-50]
        # (the streaming envelope can touch 0 where its low-pass rings, so compare against the median level)
        assert np.median(np.abs(got - ref)) < 0.1 * np.median(ref)
        assert np.median(off) > 3 * np.median(ref)  # without the notches the line dominates
    # wrong mains frequency argument is named
    with pytest.raises(ValueError, match=r"line_freq must be one of \[50\.0, 60\.0, None\]"):
        HighGammaConfig(line_freq=55)


@pytest.mark.parametrize("fs", [1000.0, 512.0, 625.0])
def test_streaming_block_size_invariance(fs):
    rng = np.random.default_rng(7)
    n = int(fs * 1.5) + 5
    x = rng.standard_normal((n, 5)) * 30 + 100.0  # DC offset too
    x[:, 1] += 40 * np.sin(2 * np.pi * 60 * np.arange(n) / fs)
    stats = HighGammaStats(
        mean=np.full(5, 2.0),
        std=np.full(5, 3.0),
        bad=np.array([0, 0, 0, 1, 0], bool),
        n_frames=1,
        config=HighGammaConfig(pipeline="streaming"),
        fs=fs,
    )
    whole = StreamingHighGamma(fs, 5, stats=stats).process(x)
    assert whole.shape == (n_frames_for_samples(n, fs), 5)
    assert np.all(whole[:, 3] == 0)
    sizes = {"1": lambda: 1, "7": lambda: 7, "128": lambda: 128, "random": lambda: int(rng.integers(1, 200))}
    for name, size in sizes.items():
        sp = StreamingHighGamma(fs, 5, stats=stats)
        out, i = [], 0
        while i < n:
            b = size()
            out.append(sp.process(x[i : i + b]))
            i += b
        out.append(sp.process(np.zeros((0, 5))))
        got = np.concatenate(out)
        assert got.shape == whole.shape, name
        assert np.max(np.abs(got - whole)) <= 1e-5, name
        assert sp.n_frames_out == whole.shape[0] and sp.n_samples_in == n
    # the offline helper with pipeline='streaming' is the same computation
    env = highgamma_envelope(x, fs, HighGammaConfig(pipeline="streaming"), bad=stats.bad)
    assert np.allclose(apply_zscore(env, stats), whole, atol=1e-5)


def test_streaming_errors():
    sp = StreamingHighGamma(1000.0, 2)
    with pytest.raises(ValueError, match=r"block must have shape \(n, 2\)"):
        sp.process(np.zeros((4, 3)))
    bad = np.zeros((10, 2))
    bad[4, 1] = np.nan
    sp.process(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="channel 1 at sample 9"):
        sp.process(bad)
    with pytest.raises(ValueError, match=r"fs=250 Hz is too low for the high-gamma band"):
        StreamingHighGamma(250.0, 2)
    with pytest.raises(ValueError, match=r"pipeline must be one of \['offline', 'streaming'\]"):
        HighGammaConfig(pipeline="causal")


def test_bad_channels_flat_noisy_popping_and_car_exclusion():
    fs = 1000.0
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4000, 8)) * 20
    x[:, 2] = 5.0  # flat
    x[:, 5] *= 20  # very noisy
    steps = np.zeros(4000)
    steps[rng.choice(4000, 12, replace=False)] = 2000.0
    x[:, 6] += np.cumsum(steps * rng.choice([-1, 1], 4000))  # popping: sudden jumps, 3 per second
    rep = detect_bad_channels(x, fs, ch_names=[f"c{i}" for i in range(8)])
    assert rep.reasons == {2: "flat", 5: "noisy", 6: "popping"}
    # CAR excludes them: the good channels' reference does not depend on the bad ones
    car1 = common_average_reference(x, bad=rep.bad)
    y = x.copy()
    y[:, [2, 5, 6]] += 1e4
    car2 = common_average_reference(y, bad=rep.bad)
    good = ~rep.bad
    assert np.allclose(car1[:, good], car2[:, good])
    assert np.allclose(car1[:, good].mean(axis=1), 0, atol=1e-9)
    # through compute_highgamma: detected, zeroed in the features, logged, stats carry the mask
    res = compute_highgamma(x, fs, HighGammaConfig(line_freq=60))
    assert res.stats.bad.tolist() == rep.bad.tolist()
    assert np.all(res.features[:, rep.bad] == 0)


def test_flat_channel_logged(caplog):
    import logging

    from edgensd.log import logger

    x = np.random.default_rng(0).standard_normal((2000, 4))
    x[:, 1] = 0.0
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="edgensd"):
            res = compute_highgamma(x, 1000.0)
    finally:
        logger.removeHandler(caplog.handler)
    assert res.stats.bad.tolist() == [False, True, False, False]
    assert "bad channel '#1': flat" in caplog.text


def test_zscore_uses_training_segments_only():
    fs = 1000.0
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6000, 3))
    cfg = HighGammaConfig(line_freq=60, detect_bad=False)
    train = [(50, 150), (200, 300)]
    res = compute_highgamma(x, fs, cfg, train_segments=train)
    sel = np.r_[50:150, 200:300]
    assert np.allclose(res.features[sel].mean(axis=0), 0, atol=1e-4)
    assert np.allclose(res.features[sel].std(axis=0), 1, atol=1e-3)
    # envelope values outside the training frames do not enter the statistics
    env = res.envelope.copy()
    env[400:] *= 10
    st2 = fit_zscore(env, cfg, fs, segments=train)
    assert np.array_equal(res.stats.mean, st2.mean) and np.array_equal(res.stats.std, st2.std)
    # nor does the raw signal outside them, beyond the reach of the zero-phase filters (the 60 Hz notch,
    # Q = 30, rings for ~0.2 s per e-fold; here the change is 2.6 s away)
    y = x.copy()
    y[5000:] *= 10
    res2 = compute_highgamma(y, fs, cfg, train_segments=train)
    assert np.allclose(res.stats.mean, res2.stats.mean, rtol=1e-4)
    assert np.allclose(res.stats.std, res2.stats.std, rtol=1e-4)
    # stats round-trip through a dict (saved with a model) and reproduce the features
    st = HighGammaStats.from_dict(res.stats.to_dict())
    again = compute_highgamma(x, fs, stats=st)
    assert np.allclose(again.features, res.features, atol=1e-5)
    with pytest.raises(ValueError, match=r"segments\[1\] = \(400, 9000\) frames is outside"):
        fit_zscore(res.envelope, cfg, fs, segments=[(0, 10), (400, 9000)])


def test_nan_run_is_named():
    x = np.zeros((3000, 3)) + np.random.default_rng(0).standard_normal((3000, 3))
    x[1200:1260, 2] = np.nan
    with pytest.raises(ValueError, match=r"channel 'c' samples 1200-1259 \(1\.200-1\.259 s\)"):
        compute_highgamma(x, 1000.0, ch_names=["a", "b", "c"])


def test_config_roundtrip(tmp_path):
    cfg = HighGammaConfig(pipeline="streaming", line_freq=50, band=(70, 140))
    p = cfg.save(tmp_path / "hg.json")
    assert HighGammaConfig.load(p) == cfg
    assert notch_frequencies(1000.0, cfg) == [50.0, 100.0, 150.0]


# ---------------------------------------------------------------------------------------- real data


def test_real_bids_offline_vs_streaming():
    rec = read_raw(example_bids_path()).pick(["dbs", "ecog"])
    cfg = HighGammaConfig(line_freq=60)
    t0 = time.perf_counter()
    off = compute_highgamma(rec, config=cfg)
    t1 = time.perf_counter()
    st = compute_highgamma(rec, config=HighGammaConfig(line_freq=60, pipeline="streaming"))
    t2 = time.perf_counter()
    assert off.features.shape == st.features.shape == (2376, 9)
    assert not off.stats.bad.any()
    a, b = off.envelope[50:-50], st.envelope[50:-50]
    r = [np.mean([_corr(a[: len(a) - k, c], b[k:, c]) for c in range(9)]) for k in range(6)]
    ecog_r0 = np.mean([_corr(a[:, c], b[:, c]) for c in range(3, 9)])
    print(
        f"\nreal BIDS (1 kHz, 9 ch, 19 s): streaming vs offline high-gamma, mean Pearson r per channel: "
        f"lag 0: {r[0]:.3f} (ECoG only {ecog_r0:.3f}); best at lag {int(np.argmax(r))} frames "
        f"({8 * int(np.argmax(r))} ms): {max(r):.3f}; offline {t1 - t0:.3f} s, streaming {t2 - t1:.3f} s"
    )
    assert int(np.argmax(r)) == 2 and max(r) > 0.8
    # streaming one block of 7 samples at a time gives the same features
    sp = StreamingHighGamma(rec.fs, rec.n_channels, stats=st.stats, groups=rec.ch_types)
    chunks = [sp.process(rec.data[i : i + 7]) for i in range(0, 4000, 7)]
    got = np.concatenate(chunks)
    assert np.max(np.abs(got - st.features[: got.shape[0]])) <= 1e-5


def test_real_grid_highgamma():
    rec = read_raw(example_grid_path())
    res = compute_highgamma(rec, config=HighGammaConfig(line_freq=50))
    assert res.features.shape == (600, 256)
    assert np.isfinite(res.features).all()
    assert res.stats.bad.sum() < 26  # a real grid: few bad channels, not a wholesale rejection
    slow = read_raw(example_grid_path("sample2"))
    with pytest.raises(ValueError, match=r"fs=125 Hz is too low .* fs > 316 Hz"):
        compute_highgamma(slow)


# ------------------------------------------------------------------------ blocked offline pipeline
#
# The offline pipeline works on blocks of channels and chunks of time (DEFAULT_BLOCK_SAMPLES) and takes the
# Hilbert transform with single-precision real FFTs. The two functions below are the previous whole-array
# float64 implementation, kept verbatim as the reference: bad-channel reports must be identical, envelopes
# equal to float32 rounding (max |difference| <= 2e-6 x the channel's RMS envelope; measured 6e-7).


def _reference_detect_bad_channels(data, fs, config=None, *, groups=None, marked=None):
    """Whole-array float64 bad-channel detection (the implementation before blocking)."""
    from edgensd.neural.highgamma import _bad_array, _groups_array

    cfg = config or HighGammaConfig()
    x = np.asarray(data).astype(np.float64)
    n_s, n_ch = x.shape
    g = _groups_array(groups, n_ch)
    marked = _bad_array(marked, n_ch)
    reasons = {int(i): "marked" for i in np.flatnonzero(marked)}
    d = np.diff(x, axis=0)
    med_d = np.median(d, axis=0)
    rsd = 1.4826 * np.median(np.abs(d - med_d), axis=0)
    zero = rsd == 0
    rsd[zero] = d[:, zero].std(axis=0) if n_s > 1 else 0.0
    pops = np.zeros(n_ch)
    duration = max(n_s / fs, 1e-9)
    for grp in np.unique(g):
        members = np.flatnonzero((g == grp) & ~marked)
        if members.size == 0:
            continue
        ref = np.median(rsd[members][rsd[members] > 0]) if np.any(rsd[members] > 0) else 0.0
        for i in members:
            if rsd[i] == 0 or (ref > 0 and rsd[i] < cfg.bad_flat_ratio * ref):
                reasons[int(i)] = "flat"
            elif ref > 0 and rsd[i] > cfg.bad_noisy_ratio * ref:
                reasons[int(i)] = "noisy"
        if ref > 0:
            dd = d[:, members] - med_d[members]
            dd = dd - np.median(dd, axis=1, keepdims=True) if members.size >= 3 else dd
            pops[members] = (np.abs(dd) > cfg.bad_pop_z * ref).sum(axis=0) / duration
            typical = np.median(pops[members])
            for i in members:
                if int(i) not in reasons and pops[i] > max(cfg.bad_pop_rate_hz, 5.0 * typical):
                    reasons[int(i)] = "popping"
    xmax, xmin = x.max(axis=0), x.min(axis=0)
    at_edge = ((x == xmax) | (x == xmin)).sum(axis=0)
    for i in range(n_ch):
        if int(i) not in reasons and xmax[i] > xmin[i] and at_edge[i] > max(4, cfg.bad_clip_fraction * n_s):
            reasons[int(i)] = "clipped"
    return reasons, rsd, pops


def _reference_offline_envelope(data, fs, config, *, bad=None, groups=None):
    """Whole-array float64 offline envelope: CAR, notches, band-pass, complex128 Hilbert, resample_poly."""
    from fractions import Fraction

    from scipy.fft import next_fast_len

    from edgensd.neural.highgamma import _bandpass_sos, _notch_sos, fs_fraction

    cfg = config
    x = np.asarray(data).astype(np.float64)
    if cfg.car:
        x = common_average_reference(x, bad=bad, groups=groups)
    notch = _notch_sos(fs, cfg)
    if notch is not None:
        x = signal.sosfiltfilt(notch, x, axis=0)
    x = signal.sosfiltfilt(_bandpass_sos(fs, cfg), x, axis=0)
    n = x.shape[0]
    amp = np.abs(signal.hilbert(x, N=next_fast_len(n), axis=0)[:n])
    ratio = Fraction(125) / fs_fraction(fs, cfg.max_fs_denominator)
    env = signal.resample_poly(amp, ratio.numerator, ratio.denominator, axis=0, padtype="line")
    return np.clip(env[: n_frames_for_samples(n, fs, cfg.max_fs_denominator)], 0.0, None).astype(np.float32)


def _messy_recording(n, n_ch, seed=0, dtype=np.float32):
    """Broadband noise with a common-mode random walk, a flat, a noisy and a popping channel, and
    common-mode transients (they exercise every branch of the popping check)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_ch)) * 10.0
    x += np.cumsum(rng.standard_normal((n, 1)), axis=0) * 2.0
    x[:, 4] *= 15.0  # noisy
    steps = np.zeros(n)
    steps[rng.choice(n, max(3, n // 400), replace=False)] = 600.0
    x[:, 6] += np.cumsum(steps * rng.choice([-1.0, 1.0], n))  # popping
    x[rng.choice(n, 20, replace=False)] += 400.0 * rng.uniform(0.8, 1.2, n_ch)  # common-mode transients
    t = np.arange(n) / 1000.0
    x += 30.0 * np.sin(2 * np.pi * 60.0 * t)[:, None]
    x[:, 1] = 3.0 + 0.001 * rng.standard_normal(n)  # flat
    return x.astype(dtype)


@pytest.mark.parametrize(
    ("fs", "n", "dtype"),
    [(1000.0, 20001, np.float32), (512.0, 12800, np.float64), (625.0, 9999, np.float32)],
)
def test_offline_matches_float64_reference(fs, n, dtype):
    n_ch = 12
    x = _messy_recording(n, n_ch, seed=int(fs), dtype=dtype)
    groups = np.array(["ecog"] * 9 + ["seeg"] * 3)
    cfg = HighGammaConfig(line_freq=60)
    reasons, rsd, pops = _reference_detect_bad_channels(x, fs, cfg, groups=groups)
    rep = detect_bad_channels(x, fs, cfg, groups=groups)
    assert rep.reasons == reasons and {1, 4, 6} <= set(reasons)
    assert np.array_equal(rep.pops_per_s, pops)
    assert np.allclose(rep.robust_sd, rsd, rtol=1e-12, atol=0)
    for car in (True, False):
        c = HighGammaConfig(line_freq=60, car=car)
        ref = _reference_offline_envelope(x, fs, c, bad=rep.bad, groups=groups)
        got = highgamma_envelope(x, fs, c, bad=rep.bad, groups=groups)
        assert got.shape == ref.shape and got.dtype == np.float32
        scale = np.sqrt(np.mean(ref.astype(np.float64) ** 2, axis=0))
        err = np.max(np.abs(got.astype(np.float64) - ref) / scale)
        assert err <= 2e-6, err


def test_offline_result_does_not_depend_on_block_size():
    fs, n, n_ch = 1000.0, 15001, 10
    x = _messy_recording(n, n_ch, seed=4)
    groups = np.array([0, 1] * 5)  # interleaved groups: non-contiguous members in the popping check
    cfg = HighGammaConfig(line_freq=60)
    whole = compute_highgamma(x, fs, cfg, groups=groups, block_samples=10**9)  # one block, one chunk
    for bs in (1, 7, 1000, 3 * n + 5, None):
        res = compute_highgamma(x, fs, cfg, groups=groups, block_samples=bs)
        assert res.bad_report.reasons == whole.bad_report.reasons, bs
        assert np.array_equal(res.bad_report.pops_per_s, whole.bad_report.pops_per_s), bs
        assert np.array_equal(res.bad_report.robust_sd, whole.bad_report.robust_sd), bs
        assert np.array_equal(res.envelope, whole.envelope), bs
        assert np.array_equal(res.features, whole.features), bs
    # the streaming pipeline through highgamma_envelope is fed in blocks of block_samples // n_channels
    st = HighGammaConfig(line_freq=60, pipeline="streaming")
    one = highgamma_envelope(x, fs, st, block_samples=10**9)
    for bs in (1, 333, 5000):
        assert np.max(np.abs(highgamma_envelope(x, fs, st, block_samples=bs) - one)) <= 1e-5, bs
    with pytest.raises(ValueError, match="block_samples must be a positive number of samples"):
        highgamma_envelope(x, fs, cfg, block_samples=0)


@pytest.mark.parametrize("n_ch", [2, 3, 4, 17])
def test_pop_count_screening_is_exact(n_ch):
    # differences sitting right at the threshold, around a per-sample median that moves: the screening
    # (bracketing the median by the quiet half of the channels) must give the plain count exactly
    rng = np.random.default_rng(n_ch)
    n = 6000
    x = np.cumsum(rng.standard_normal((n, n_ch)), axis=0)
    x[:, 0] *= 40.0  # a noisy channel: most rows become candidates
    for j in range(n_ch):
        at = rng.choice(n - 1, 40, replace=False) + 1
        x[at, j] += rng.choice([-1.0, 1.0], at.size) * rng.uniform(20.0, 30.0, at.size)
    x[rng.choice(n, 50, replace=False)] += rng.uniform(-60, 60, (50, 1))  # common-mode steps
    for marked in (None, np.arange(n_ch) == n_ch - 1):
        reasons, rsd, pops = _reference_detect_bad_channels(x, 1000.0, groups=None, marked=marked)
        for bs in (1, 50, 10**9):
            rep = detect_bad_channels(x, 1000.0, marked=marked, block_samples=bs)
            assert np.array_equal(rep.pops_per_s, pops), (bs, rep.pops_per_s, pops)
            assert rep.reasons == reasons


def test_offline_memory_is_bounded_by_the_block_size():
    import tracemalloc

    fs, n, n_ch = 1000.0, 120_000, 16
    x = _messy_recording(n, n_ch, seed=1)  # float32, 7.7 MB
    cfg = HighGammaConfig(line_freq=60)
    tracemalloc.start()
    try:
        res = compute_highgamma(x, fs, cfg, block_samples=1 << 17)
        _, peak_blocked = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        rep_bad = _reference_detect_bad_channels(x, fs, cfg)[0]
        ref = _reference_offline_envelope(x, fs, cfg, bad=res.stats.bad)
        _, peak_ref = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert set(rep_bad) == set(res.bad_report.reasons)
    assert np.allclose(res.envelope, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))
    # the whole-array float64 path holds several (n, n_ch) float64/complex128 copies (> 60 MB here); the
    # blocked one a few (n, 1) copies and the float32 outputs
    print(
        f"\noffline pipeline, 16 ch x 120 s: peak traced memory {peak_blocked / 1e6:.1f} MB blocked vs "
        f"{peak_ref / 1e6:.1f} MB whole-array float64"
    )
    assert peak_blocked < 15e6 and peak_blocked < peak_ref / 4
