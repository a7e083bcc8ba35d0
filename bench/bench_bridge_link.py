"""Loss and gap accounting of the serial bridge end to end: ``edgensd device-sim`` plays a participant file over
a pty (or socket) while the host reader reads it; compares what arrived with the device's truth file.

Usage::

    python bench/bench_bridge_link.py --data P.h5 [--mode raw] [--duration 60] [--pace realtime]
                                      [--corrupt 0.001 --drop 0.001 --seed 0] [--link pty] [--json OUT]

Reports: samples (and 8 ms frames) the device played, the host received as data, and lost; the reader's gap
fills merged into ranges against the truth's dropped + corrupted + lost-offline packet ranges (those between
the first and the last packet the host received: holes at the very ends cannot be seen by any host); whether
every received value equals the file's sample quantized to the format; the reader's counters; and the
spread of the arrival delay (host arrival time minus device time, relative to its minimum).

Run with ``OMP_NUM_THREADS=1``; note what else the machine was running.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if out and out[-1][1] == lo:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--mode", default="raw", choices=("raw", "frames"))
    ap.add_argument("--format", default="int16", choices=("int16", "int24", "float32"))
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--pace", default="realtime", choices=("realtime", "fast"))
    ap.add_argument("--link", default="pty")
    ap.add_argument("--corrupt", type=float, default=0.0)
    ap.add_argument("--drop", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    from edgensd.firmware_bridge import protocol as P
    from edgensd.firmware_bridge.playback import PlaybackConfig, load_source, quantized
    from edgensd.firmware_bridge.reader import ReaderConfig, SerialReader

    from edgensd.data.participant import load_participant

    truth_path = Path(tempfile.mkdtemp()) / "truth.json"
    cmd = [sys.executable, "-m", "edgensd", "device-sim", "--data", a.data, "--link", a.link, "--mode", a.mode,
           "--pace", a.pace, "--format", a.format, "--duration", str(a.duration), "--corrupt", str(a.corrupt),
           "--drop", str(a.drop), "--seed", str(a.seed), "--truth", str(truth_path), "-q"]
    kind = P.PacketType.RAW if a.mode == "raw" else P.PacketType.HIGH_GAMMA
    t0 = time.monotonic()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        url = proc.stdout.readline().strip()
        blocks = []
        cfg = ReaderConfig(url=url, gap_policy="zeros", max_fill_s=10.0, stall_timeout_s=2.0)
        with SerialReader(cfg) as r:
            while proc.poll() is None:
                b = r.get(timeout=0.05)
                if b is not None:
                    blocks.append(b)
            time.sleep(0.2)
            blocks += r.drain()
            counters = r.counters
        rc = proc.wait()
    wall_s = time.monotonic() - t0
    truth = json.loads(truth_path.read_text())
    rate = truth["rate_hz"]
    data = [b for b in blocks if b.kind == kind and not b.filled]
    fills = [b for b in blocks if b.kind == kind and b.filled]
    idx = [np.rint(b.device_time_us * rate / 1e6).astype(np.int64) for b in data]
    got = np.concatenate(idx)
    played = truth["samples_played"]
    first, last = int(idx[0][0]), int(idx[-1][-1]) + 1
    reader_gaps = _merge([(int(np.rint(b.device_time_us[0] * rate / 1e6)),
                           int(np.rint(b.device_time_us[-1] * rate / 1e6)) + 1) for b in fills])
    truth_gaps = [tuple(g) for g in truth["gaps"] if g[0] >= first and g[1] <= last]
    edge_gaps = [tuple(g) for g in truth["gaps"] if g[1] <= first or g[0] >= last]
    # values: received samples against the file's, quantized to the format
    p = load_participant(a.data, require_neural=a.mode == "frames")
    pcfg = PlaybackConfig(data=a.data, mode=a.mode, fmt=a.format, duration_s=a.duration)
    want = quantized(load_source(pcfg), pcfg)
    values = np.concatenate([b.values for b in data])
    max_err = float(np.max(np.abs(values - want[got])))
    src = p.raw_signal if a.mode == "raw" else p.ecog
    scale = truth["scale"]
    clipped = int(np.sum(np.abs(src[:played]) > 32767 * scale)) if a.format == "int16" else 0
    delay = np.concatenate([b.host_time_s - b.device_time_us / 1e6 for b in data])
    delay -= delay.min()
    per_frame = rate / 125.0
    result = {
        "command": " ".join(cmd[2:]),
        "exit_status": rc,
        "wall_s": round(wall_s, 2),
        "samples_played": played,
        "samples_received": int(got.size),
        "samples_lost": int(played - got.size),
        "frames_played": round(played / per_frame, 3),
        "frames_lost": round((played - got.size) / per_frame, 3),
        "duplicate_or_misplaced_samples": int(got.size - np.unique(got).size),
        "data_packet_fates": truth["data_packet_fates"],
        "reader_gaps": len(reader_gaps),
        "truth_gaps_between_first_and_last_received": len(truth_gaps),
        "truth_gaps_at_the_ends": edge_gaps,
        "gaps_equal": reader_gaps == truth_gaps,
        "max_abs_error_vs_quantized_file": max_err,
        "source_samples_beyond_int16_range": clipped,
        "arrival_delay_spread_ms": {"p50": round(float(np.percentile(delay, 50)) * 1e3, 2),
                                    "p99": round(float(np.percentile(delay, 99)) * 1e3, 2),
                                    "max": round(float(delay.max()) * 1e3, 2)},
        "reader_counters": vars(counters),
        "machine": f"{platform.machine()} {platform.python_version()}",
    }
    print(json.dumps(result, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
