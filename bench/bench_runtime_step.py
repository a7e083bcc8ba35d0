"""Cost of one decoder step in the ONNX Runtime backend, fp32 and int8, with and without IOBinding.

Usage::

    OMP_NUM_THREADS=1 python bench/bench_runtime_step.py [--arch edge] [--electrodes 64] [--frames 2000]
                                                         [--repeats 5]

A randomly initialised causal decoder of the default size is exported (fp32, and int8 calibrated on 500
frames of random features); each graph decodes ``--frames`` frames one at a time with
:class:`edgensd.runtime.backend_onnx.ONNXBackend`: ``step`` (state kept in bound buffers, IOBinding) and
``session.run`` with the state passed in and out as numpy arrays (``run_raw``), interleaved, one warm-up,
median of ``--repeats``. Also prints the file sizes. Figures move with machine load; compare within a run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from edgensd.export.calibrate import stream_samples
from edgensd.export.onnx_export import onnx_fp32, onnx_int8
from edgensd.export.stepgraph import step_example_inputs, step_module

from edgensd.decoders import get_decoder, macs_per_frame
from edgensd.runtime.backend import dequantize, quantize
from edgensd.runtime.backend_onnx import ONNXBackend


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="edge")
    ap.add_argument("--electrodes", type=int, default=64)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dec = get_decoder(args.arch, n_electrodes=args.electrodes).eval()
    step, ex = step_module(dec), step_example_inputs(dec)
    x = np.random.default_rng(0).standard_normal((args.frames, args.electrodes)).astype(np.float32)
    fp32 = onnx_fp32(step, ex)
    samples, _ = stream_samples(step, ex, [x[:500]])
    int8 = onnx_int8(fp32, samples)
    print(f"{args.arch}, {args.electrodes} electrodes, {macs_per_frame(dec):,.0f} MACs/frame; "
          f"fp32 {len(fp32):,} B, int8 {len(int8):,} B ({len(int8) / len(fp32):.3f} of fp32)")
    with tempfile.TemporaryDirectory() as d:
        for name, data in (("fp32", fp32), ("int8", int8)):
            path = Path(d) / f"{name}.onnx"
            path.write_bytes(data)
            be = ONNXBackend(path)

            def bound(be=be):
                be.reset()
                be.run(x)

            def plain(be=be):
                state = be.zero_state()
                for f in x:
                    y, state = be.run_raw(quantize(f[None], be.x_spec), state)
                    dequantize(y, be.y_spec)

            times = {"IOBinding step": [], "session.run": []}
            bound()
            plain()
            for _ in range(args.repeats):
                for label, fn in (("IOBinding step", bound), ("session.run", plain)):
                    t = time.perf_counter()
                    fn()
                    times[label].append((time.perf_counter() - t) / len(x) * 1e6)
            print(f"{name}: " + ", ".join(f"{k} {statistics.median(v):.1f} us/frame" for k, v in times.items()))


if __name__ == "__main__":
    main()
