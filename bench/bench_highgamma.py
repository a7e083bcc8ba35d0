"""Cost of the high-gamma pipelines: offline time + peak memory, streaming time per block, and their agreement.

Usage::

    python bench/bench_highgamma.py [--channels 64 128] [--minutes 27] [--blocks 1 8 128]
                                    [--baseline-rev REV] [--json OUT]

Offline
    :func:`edgensd.neural.highgamma.compute_highgamma` (bad-channel detection, CAR, notches, 70–150 Hz
    Hilbert amplitude, 125 Hz frames, z-scoring) on a synthetic float32 recording at 1 kHz (broadband noise,
    a common-mode random walk, 60 Hz mains, one noisy and one popping channel), each configuration in a
    fresh Python process. ``peak RSS`` is that process's maximum resident set size (``ru_maxrss``);
    ``input`` is the recording's own size and ``peak - before`` the growth over the resident size just
    before the pipeline started. ``--baseline-rev REV`` runs the same measurement with
    ``edgensd/neural/highgamma.py`` as it was at git revision REV (e.g. the whole-array float64
    implementation), side by side.

Streaming
    :class:`edgensd.neural.highgamma.StreamingHighGamma` with z-score statistics, fed blocks of 1, 8 and 128
    samples (1 kHz): mean µs per ``process`` call and the real-time factor (block duration / processing
    time; > 1 keeps up with the amplifier).

Agreement
    Streaming vs offline high-gamma envelope on the real BIDS recording shipped with py_neuromodulation
    (1 kHz, 9 ECoG/DBS channels, 19 s): mean over channels of Pearson r at lag 0 and at the best lag
    (streaming delayed by 0–5 frames of 8 ms), 50 frames trimmed at each end.

Run with ``OMP_NUM_THREADS=1`` for single-core figures; note what else the machine was running.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _revs import import_file, source_at  # bench/ is sys.path[0] when run as a script

FS = 1000.0


def _rss_mb() -> float:
    """Current resident set size of this process, MB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB (``ru_maxrss`` is in kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def synthetic_recording(n_samples: int, n_channels: int, seed: int = 0) -> np.ndarray:
    """A float32 (n_samples, n_channels) recording in µV at 1 kHz, generated in chunks (little extra memory).

    Broadband noise (10 µV), a shared random walk (common mode), 60 Hz mains (30 µV), channel 1 noisy
    (x15), channel 2 popping (600 µV steps, ~1/s).
    """
    rng = np.random.default_rng(seed)
    x = np.empty((n_samples, n_channels), dtype=np.float32)
    walk = 0.0
    level2 = 0.0
    step = 100_000
    for a in range(0, n_samples, step):
        n = min(step, n_samples - a)
        c = rng.standard_normal((n, n_channels), dtype=np.float32) * 10.0
        cm = walk + np.cumsum(rng.standard_normal(n)) * 2.0
        walk = float(cm[-1])
        t = np.arange(a, a + n) / FS
        c += (cm + 30.0 * np.sin(2 * np.pi * 60.0 * t)).astype(np.float32)[:, None]
        if n_channels > 2:
            c[:, 1] *= 15.0
            jumps = np.zeros(n)
            at = rng.random(n) < 1.0 / FS
            jumps[at] = 600.0 * rng.choice([-1.0, 1.0], int(at.sum()))
            lv = level2 + np.cumsum(jumps)
            level2 = float(lv[-1])
            c[:, 2] += lv.astype(np.float32)
        x[a : a + n] = c
    return x


def _load_highgamma(module_path: str | None):
    if module_path is None:
        from edgensd.neural import highgamma

        return highgamma
    return import_file(module_path, "highgamma_baseline")


def offline_child(n_channels: int, minutes: float, module_path: str | None) -> dict:
    """Run the offline pipeline once in this process; return timings and memory (called in a subprocess)."""
    hg = _load_highgamma(module_path)
    n = int(round(minutes * 60 * FS))
    x = synthetic_recording(n, n_channels)
    before = _rss_mb()
    cfg = hg.HighGammaConfig(line_freq=60.0)
    t0 = time.perf_counter()
    rep = hg.detect_bad_channels(x, FS, cfg)
    t1 = time.perf_counter()
    env = hg.highgamma_envelope(x, FS, cfg, bad=rep.bad)
    t2 = time.perf_counter()
    stats = hg.fit_zscore(env, cfg, FS, segments=[(0, env.shape[0])], bad=rep.bad)
    feats = hg.apply_zscore(env, stats)
    t3 = time.perf_counter()
    return {
        "channels": n_channels,
        "minutes": minutes,
        "samples": n,
        "frames": int(feats.shape[0]),
        "detect_s": t1 - t0,
        "envelope_s": t2 - t1,
        "zscore_s": t3 - t2,
        "total_s": t3 - t0,
        "input_mb": x.nbytes / 1e6,
        "rss_before_mb": before,
        "peak_rss_mb": _peak_rss_mb(),
        "bad": sorted(int(i) for i in np.flatnonzero(rep.bad)),
    }


def run_offline(n_channels: int, minutes: float, module_path: str | None = None) -> dict:
    """:func:`offline_child` in a fresh interpreter (so peak RSS belongs to this configuration alone)."""
    cmd = [sys.executable, __file__, "--_child", str(n_channels), str(minutes)]
    if module_path:
        cmd += ["--_module", module_path]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if out.returncode != 0:
        return {"channels": n_channels, "minutes": minutes, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_streaming(n_channels: int, block: int, seconds: float = 4.0) -> dict:
    """Mean time of one :meth:`StreamingHighGamma.process` call on ``block``-sample blocks."""
    from edgensd.neural.highgamma import HighGammaConfig, HighGammaStats, StreamingHighGamma

    cfg = HighGammaConfig(pipeline="streaming", line_freq=60.0)
    stats = HighGammaStats(
        mean=np.ones(n_channels),
        std=np.ones(n_channels),
        bad=np.zeros(n_channels, bool),
        n_frames=1,
        config=cfg,
        fs=FS,
    )
    n_blocks = max(200, int(seconds * FS) // block)
    x = synthetic_recording((n_blocks + 10) * block, n_channels, seed=1).astype(np.float64)
    sp = StreamingHighGamma(FS, n_channels, stats=stats)
    for i in range(10):  # warm-up (and the filters' first-sample initialisation)
        sp.process(x[i * block : (i + 1) * block])
    blocks = [x[(i + 10) * block : (i + 11) * block] for i in range(n_blocks)]
    t0 = time.perf_counter()
    for b in blocks:
        sp.process(b)
    dt = (time.perf_counter() - t0) / n_blocks
    return {
        "channels": n_channels,
        "block": block,
        "us_per_block": dt * 1e6,
        "us_per_sample": dt * 1e6 / block,
        "realtime_factor": (block / FS) / dt,
    }


def real_recording_agreement(max_lag: int = 5) -> dict:
    """Streaming vs offline envelope on the real py_neuromodulation recording (mean Pearson r per lag)."""
    from edgensd.neural.highgamma import HighGammaConfig, compute_highgamma
    from edgensd.neural.io import example_bids_path, read_raw

    try:
        rec = read_raw(example_bids_path()).pick(["dbs", "ecog"])
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        return {"error": str(exc)}
    off = compute_highgamma(rec, config=HighGammaConfig(line_freq=60))
    st = compute_highgamma(rec, config=HighGammaConfig(line_freq=60, pipeline="streaming"))
    a, b = off.envelope[50:-50].astype(np.float64), st.envelope[50:-50].astype(np.float64)
    rs = []
    for k in range(max_lag + 1):
        rs.append(float(np.mean([np.corrcoef(a[: len(a) - k, c], b[k:, c])[0, 1] for c in range(a.shape[1])])))
    best = int(np.argmax(rs))
    return {
        "recording": str(example_bids_path().name),
        "channels": int(rec.n_channels),
        "seconds": rec.data.shape[0] / rec.fs,
        "r_by_lag": rs,
        "r_lag0": rs[0],
        "best_lag_frames": best,
        "best_lag_ms": best * 8.0,
        "r_best": rs[best],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--minutes", type=float, nargs="+", default=[27.0], help="recording lengths (27 ≈ Allison)")
    ap.add_argument("--blocks", type=int, nargs="+", default=[1, 8, 128], help="streaming block sizes, samples")
    ap.add_argument("--baseline-rev", default=None, help="also run highgamma.py from this git revision")
    ap.add_argument("--no-real", action="store_true", help="skip the real-recording agreement")
    ap.add_argument("--json", default=None, help="write all results to this JSON file")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--_module", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._child:
        res = offline_child(int(args._child[0]), float(args._child[1]), args._module)
        print(json.dumps(res))
        return 0

    print(
        f"# {platform.node()} · {platform.processor() or platform.machine()} · {os.cpu_count()} CPUs · "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} · load avg "
        + " ".join(f"{v:.2f}" for v in os.getloadavg())
    )
    impls = [("current", None)]
    tmp = None
    if args.baseline_rev:
        tmp = source_at(args.baseline_rev, "edgensd/neural/highgamma.py")
        impls.append((args.baseline_rev, tmp))
    offline = []
    try:
        for minutes in args.minutes:
            for n_ch in args.channels:
                for name, path in impls:
                    r = run_offline(n_ch, minutes, path)
                    r["impl"] = name
                    offline.append(r)
    finally:
        if tmp:
            os.unlink(tmp)

    print("\n## offline pipeline (bad channels + CAR + notches + Hilbert 70-150 Hz + 125 Hz + z-score), 1 kHz")
    hdr = (
        f"{'impl':>10} {'ch':>4} {'min':>5} {'detect s':>9} {'envelope s':>11} {'total s':>8} {'x realtime':>10} "
        f"{'input MB':>9} {'peak RSS MB':>12} {'peak-before MB':>15}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in offline:
        if "error" in r:
            print(f"{r['impl']:>10} {r['channels']:>4} {r['minutes']:>5g}  failed: {r['error']}")
            continue
        print(
            f"{r['impl']:>10} {r['channels']:>4} {r['minutes']:>5g} {r['detect_s']:>9.1f} {r['envelope_s']:>11.1f} "
            f"{r['total_s']:>8.1f} {r['minutes'] * 60 / r['total_s']:>10.0f} {r['input_mb']:>9.0f} "
            f"{r['peak_rss_mb']:>12.0f} {r['peak_rss_mb'] - r['rss_before_mb']:>15.0f}"
        )

    streaming = [bench_streaming(n_ch, b) for n_ch in args.channels for b in args.blocks]
    print("\n## streaming pipeline (StreamingHighGamma.process, z-scored), 1 kHz")
    hdr = f"{'ch':>4} {'block':>6} {'µs/block':>10} {'µs/sample':>10} {'real-time factor':>17}"
    print(hdr)
    print("-" * len(hdr))
    for r in streaming:
        print(
            f"{r['channels']:>4} {r['block']:>6} {r['us_per_block']:>10.0f} {r['us_per_sample']:>10.1f} "
            f"{r['realtime_factor']:>17.1f}"
        )

    agreement = None
    if not args.no_real:
        agreement = real_recording_agreement()
        print("\n## streaming vs offline envelope, real recording (py_neuromodulation BIDS, 1 kHz)")
        if "error" in agreement:
            print(f"skipped: {agreement['error']}")
        else:
            print(
                f"{agreement['recording']}: {agreement['channels']} ch, {agreement['seconds']:.1f} s; mean Pearson r "
                f"lag 0: {agreement['r_lag0']:.3f}; best lag {agreement['best_lag_frames']} frames "
                f"({agreement['best_lag_ms']:.0f} ms): {agreement['r_best']:.3f}"
            )
            print("r by lag (frames 0..5): " + " ".join(f"{v:.3f}" for v in agreement["r_by_lag"]))

    if args.json:
        Path(args.json).write_text(
            json.dumps({"offline": offline, "streaming": streaming, "agreement": agreement}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
