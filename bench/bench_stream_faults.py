"""What lost packets cost a live stream: the same session streamed clean and with faults, side by side.

Usage::

    python bench/bench_stream_faults.py --data sim/p0_stream.h5 --bundle edgensd/assets/demo/live/bundle
        [--seconds 60] [--corrupt 0.001] [--drop 0.001] [--seed 0] [--mode raw|frames] [--faulty-link]
        [--json OUT]

A simulated device (:mod:`edgensd.firmware_bridge.simulator`, ``--speed`` times real time) plays the first
``--seconds`` of a participant file over a pseudo-terminal, int16 raw samples (raw mode) or float32 frames,
into :func:`edgensd.runtime.stream.run_stream`, twice: clean, then with the device dropping and corrupting
packets (``--corrupt``/``--drop`` per packet), or, with ``--faulty-link``, with a protocol-blind wire between
the two ends flipping and deleting bytes at those rates per byte (:mod:`edgensd.firmware_bridge.faulty_link`).
For each run it reports the spectrogram PCC of every trial inside the streamed span (the C synthesizer's
spectrogram of the decoded parameters vs the original audio's, trial frames, as ``edgensd decode``), the gap
frames, and, for the faulty run, the PCC change next to the share of frames lost, and the change restricted to
the trials that lost no frame (which must be 0 up to the decoder state's recovery after a gap).
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

import numpy as np
from edgensd.firmware_bridge.simulator import DeviceSimulator, SimulatorConfig, SimulatorLink

from edgensd.data.participant import load_participant
from edgensd.metrics import pcc
from edgensd.params import raw_to_physical
from edgensd.runtime.bundle import load_bundle
from edgensd.runtime.decode import true_spectrogram
from edgensd.runtime.stream import StreamConfig, run_stream


def _stream(p, bundle, n_frames: int, mode: str, corrupt: float, drop: float, seed: int, faulty: bool,
            speed: float) -> dict:
    raw_mode = mode == "raw"
    dev = DeviceSimulator(
        SimulatorConfig(n_channels=p.n_electrodes, raw_rate_hz=float(p.raw_fs or 1000.0), send_raw=raw_mode,
                        send_hg=not raw_mode, raw_format="int16", hg_format="float32", hg_scale=1.0,
                        corrupt_rate=0.0 if faulty else corrupt, drop_rate=0.0 if faulty else drop, seed=seed),
        raw=np.asarray(p.raw_signal) if raw_mode else None, hg=None if raw_mode else p.ecog, repeat=False)
    link = SimulatorLink(dev, "pty", speed=speed, wait_for_host=True).start()
    url, proxy = link.url, None
    if faulty:
        from edgensd.firmware_bridge.faulty_link import FaultyLink, FaultyLinkConfig

        proxy = FaultyLink(link.url, FaultyLinkConfig(listen="pty", flip_rate=corrupt, delete_rate=drop,
                                                      seed=seed)).start()
        url = proxy.url
    got: dict[int, tuple[np.ndarray, bool]] = {}
    frame_us = 8000

    def keep(dev_t, _feat, raw, _audio, filled):
        # raw mode: frames count from the first sample; frames mode: the device time names the frame
        idx = len(got) if raw_mode else int(dev_t // frame_us)
        got[idx] = (raw, filled)

    stop = threading.Event()
    try:
        s = run_stream(url, bundle.path, StreamConfig(duration_s=n_frames / 125, idle_exit_s=3.0), on_frame=keep,
                       status=False, stop_event=stop)
    finally:
        link.stop()
        if proxy is not None:
            proxy.stop()
    raw = np.zeros((n_frames, 18), np.float32)
    lost = np.ones(n_frames, bool)
    for i, (r, filled) in got.items():
        if i < n_frames:
            raw[i], lost[i] = r, filled
    return {"summary": s, "raw": raw, "lost": lost}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--corrupt", type=float, default=0.001)
    ap.add_argument("--drop", type=float, default=0.001)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", default="raw", choices=("raw", "frames"))
    ap.add_argument("--faulty-link", action="store_true", help="faults on the wire (per byte), not in the device")
    ap.add_argument("--speed", type=float, default=2.0,
                    help="device seconds per wall second; the host must keep up (a queue overflow voids the run)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    p = load_participant(args.data)
    bundle = load_bundle(args.bundle)
    n = min(int(args.seconds * 125), p.n_frames)
    from edgensd.csynth import CSynth

    synth = CSynth(bundle.synth_path)
    trials = [i for i in range(p.n_trials) if p.end[i] <= n]
    runs = {}
    for name, faulty_args in (("clean", (0.0, 0.0)), ("faults", (args.corrupt, args.drop))):
        r = _stream(p, bundle, n, args.mode, *faulty_args, args.seed, args.faulty_link and name == "faults",
                    args.speed)
        if r["summary"]["queue_overflows"]:
            raise SystemExit(f"{name} run: the host fell behind ({r['summary']['queue_overflows']} blocks dropped "
                             "from the reader's queue); lower --speed")
        phys = raw_to_physical(r["raw"], bundle.voice).astype(np.float32)
        per = {i: pcc(synth.spectrogram(phys[p.start[i] : p.end[i]]), true_spectrogram(p, i)) for i in trials}
        runs[name] = {"pcc": per, "lost": r["lost"], "summary": r["summary"]}
    lost = runs["faults"]["lost"] & ~runs["clean"]["lost"]
    hit = [i for i in trials if lost[p.start[i] : p.end[i]].any()]
    d_all = float(np.mean([runs["faults"]["pcc"][i] - runs["clean"]["pcc"][i] for i in trials]))
    untouched = [i for i in trials if i not in hit]
    d_untouched = float(np.mean([runs["faults"]["pcc"][i] - runs["clean"]["pcc"][i] for i in untouched])) \
        if untouched else None
    out = {
        "data": args.data, "bundle": args.bundle, "mode": args.mode, "seconds": n / 125,
        "faults": {"where": "wire (faulty link, per byte)" if args.faulty_link else "device (per packet)",
                   "corrupt": args.corrupt, "drop": args.drop, "seed": args.seed},
        "n_trials": len(trials),
        "pcc_clean": float(np.mean(list(runs["clean"]["pcc"].values()))),
        "pcc_faults": float(np.mean(list(runs["faults"]["pcc"].values()))),
        "pcc_change": d_all,
        "frames_lost_share": float(lost.mean()),
        "trials_with_lost_frames": hit,
        "pcc_change_trials_without_lost_frames": d_untouched,
        "speed": args.speed,
        "gap_frames": {k: runs[k]["summary"]["gap_frames"] for k in runs},
        "queue_overflows": {k: runs[k]["summary"]["queue_overflows"] for k in runs},
        "packets_bad_crc": {k: runs[k]["summary"]["packets_bad_crc"] for k in runs},
        "frames_out": {k: runs[k]["summary"]["frames_out"] for k in runs},
        "stop_reason": {k: runs[k]["summary"]["stop_reason"] for k in runs},
    }
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
