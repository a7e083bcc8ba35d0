"""TFLite Micro against ai-edge-litert on a bundle's int8 graph, on real held-out frames, in output LSBs.

Usage::

    python bench/bench_tflm_vs_litert.py --bundle BUNDLE --data FILE.h5 [--max-frames 3000] [--json OUT]

The bundle's ``decoder_int8.tflite`` runs in LiteRT (reference kernels, and the builtin optimized ones) and in
the TFLite Micro interpreter (the firmware's kernels) over the held-out trials' frames of a participant file:

* open loop: at every frame both get the same int8 input and the same int8 state (LiteRT's, carried), and the
  outputs and new states are compared in quantization steps (LSB);
* closed loop: each runtime carries its own state over the whole stream; the largest output difference in LSB.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edgensd.data.participant import load_participant, trial_split
from edgensd.runtime.backend import quantize
from edgensd.runtime.backend_tflite import TFLiteBackend
from edgensd.runtime.backend_tflm import TFLMBackend
from edgensd.runtime.bundle import load_bundle


def _lsb(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max()) if a.size else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--max-frames", type=int, default=3000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    b = load_bundle(args.bundle)
    entry = b.model("tflm", "int8")
    p = load_participant(args.data)
    _, test = trial_split(p)
    frames = np.concatenate([p.ecog[p.start[i] : p.end[i]] for i in test])[: args.max_frames].astype(np.float32)
    tflm = TFLMBackend(entry.path)
    out = {"bundle": args.bundle, "data": args.data, "frames": int(len(frames))}
    for kernels in ("reference", "builtin"):
        lite = TFLiteBackend(entry.path, kernels=kernels)
        state = lite.zero_state()
        open_y = open_s = 0
        for f in frames:  # open loop: same input and state for both
            x = quantize(f.reshape(lite.x_spec.shape), lite.x_spec)
            y_l, s_l = lite.run_raw(x, state)
            y_m, s_m = tflm.run_raw(x, state)
            open_y = max(open_y, _lsb(y_l, y_m))
            open_s = max(open_s, max(_lsb(a, c) for a, c in zip(s_l, s_m, strict=True)))
            state = s_l
        s_l, s_m, closed = lite.zero_state(), tflm.zero_state(), 0
        for f in frames:  # closed loop: each carries its own state
            x = quantize(f.reshape(lite.x_spec.shape), lite.x_spec)
            y_l, s_l = lite.run_raw(x, s_l)
            y_m, s_m = tflm.run_raw(x, s_m)
            closed = max(closed, _lsb(y_l, y_m))
        out[kernels] = {"open_loop_y_lsb": open_y, "open_loop_state_lsb": open_s, "closed_loop_y_lsb": closed}
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
