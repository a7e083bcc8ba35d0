"""LiteRT / TFLite Micro export report for the default-size causal decoders, side by side, on one core.

For each of ``edge`` and causal ``lstm`` (default configs, ``--electrodes`` electrodes, seeded random
weights: the figures describe the export path, not a trained model) it measures:

* file sizes of the float32 and full-int8 ``.tflite`` step graphs (int8 / fp32 ratio), and of the int8
  one without intermediate tensor names (:func:`edgensd.export.tflm.strip_tensor_names`);
* the TFLite Micro tensor arena (smallest that allocates, :func:`edgensd.export.tflm.arena_size`);
* LiteRT fp32 vs the torch step graph, max |diff| in raw parameter units over a closed-loop stream;
* LiteRT int8 vs the torch step graph (float), max |diff| in raw parameter units and in output LSBs,
  calibrated on the first ``--calib`` frames and measured on all ``--frames`` (the last ones unseen);
* TFLite Micro int8 vs LiteRT int8 (builtin and reference kernels): open loop (same input and state each
  frame; max over y, then over the states) and closed loop (y), in LSBs;
* LiteRT int8 with the XNNPACK delegate vs its builtin kernels (closed loop, LSBs);
* per-frame step time (``StepBackend.step``: quantize, invoke, dequantize) of each backend, and of the
  torch step graph, median over the stream after a warm-up.

Usage: python bench/bench_step_backends.py [--electrodes 64] [--frames 1000] [--calib 500] [--json out.json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, before numpy/torch start their pools

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from edgensd.export.litert import convert_fp32, quantize_int8, step_samples  # noqa: E402
from edgensd.export.stepgraph import step_example_inputs, step_module  # noqa: E402
from edgensd.export.tflm import arena_size, strip_tensor_names  # noqa: E402

from edgensd.decoders import get_decoder  # noqa: E402
from edgensd.runtime.backend import quantize  # noqa: E402
from edgensd.runtime.backend_tflite import TFLiteBackend  # noqa: E402
from edgensd.runtime.backend_tflm import TFLMBackend  # noqa: E402


def random_walk(n_frames: int, n_el: int, seed: int) -> np.ndarray:
    """Z-scored random-walk frames (slowly varying, like high-gamma envelopes), shape (n_frames, n_el)."""
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(0.0, 0.3, (n_frames, n_el)), axis=0)
    x = (x - x.mean(0)) / x.std(0)
    return x.astype(np.float32)


def timed_steps(fn, frames) -> float:
    """Median seconds of ``fn(frame)`` over the frames, after 20 warm-up calls."""
    for f in frames[:20]:
        fn(f)
    times = []
    for f in frames:
        t0 = time.perf_counter()
        fn(f)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(arch: str, n_el: int, n_frames: int, n_calib: int, out_dir: Path, seed: int) -> dict:
    torch.manual_seed(seed)
    dec = get_decoder(arch, n_electrodes=n_el, causal=True).eval()
    step, ex = step_module(dec), step_example_inputs(dec)
    frames = random_walk(n_frames, n_el, seed)
    t0 = time.perf_counter()
    fp32 = convert_fp32(step, ex)
    t_convert = time.perf_counter() - t0
    t0 = time.perf_counter()
    int8 = quantize_int8(fp32, step_samples(step, ex, frames[:n_calib]))
    t_quant = time.perf_counter() - t0
    p32, p8 = out_dir / f"{arch}_fp32.tflite", out_dir / f"{arch}_int8.tflite"
    p32.write_bytes(fp32)
    p8.write_bytes(int8)
    arena = arena_size(int8)

    state = list(ex[1:])
    ref = []
    with torch.no_grad():
        for f in frames:
            y, *state = step(torch.from_numpy(f[None]), *state)
            ref.append(y[0].numpy())
    ref = np.asarray(ref)
    lite32, lite8, tflm8 = TFLiteBackend(p32), TFLiteBackend(p8), TFLMBackend(p8, arena_size=arena)
    y32, y8, ym = lite32.run(frames), lite8.run(frames), tflm8.run(frames)
    lsb = lite8.y_spec.scale

    lite8r = TFLiteBackend(p8, kernels="reference")
    open_loop = {}
    for name, lite in (("builtin", lite8), ("reference", lite8r)):
        worst = [0, 0]
        st = lite.zero_state()
        for f in frames:
            xq = quantize(f[None], lite.x_spec)
            ya, st_next = lite.run_raw(xq, st)
            yb, sb = tflm8.run_raw(xq, st)
            worst[0] = max(worst[0], int(np.abs(ya.astype(int) - yb.astype(int)).max()))
            for p, q in zip(st_next, sb, strict=True):
                worst[1] = max(worst[1], int(np.abs(p.astype(int) - q.astype(int)).max()))
            st = st_next
        open_loop[name] = worst
    yr = lite8r.run(frames)

    torch_state = [list(ex[1:])]

    def torch_step(f):
        with torch.no_grad():
            _, *torch_state[0] = step(torch.from_numpy(f[None]), *torch_state[0])

    times = {}
    lite8x = TFLiteBackend(p8, kernels="xnnpack")
    xnn_vs_builtin = float(np.abs(lite8x.run(frames) - y8).max() / lsb)
    for name, fn in [("torch", torch_step), ("tflite_fp32", lite32.step), ("tflite_int8", lite8.step),
                     ("tflite_int8_reference", lite8r.step), ("tflite_int8_xnnpack", lite8x.step),
                     ("tflm_int8", tflm8.step)]:
        times[name] = timed_steps(fn, frames)
    return {
        "arch": arch,
        "params": sum(p.numel() for p in dec.parameters()),
        "fp32_bytes": len(fp32),
        "int8_bytes": len(int8),
        "int8_over_fp32": len(int8) / len(fp32),
        "int8_names_stripped_bytes": len(strip_tensor_names(int8)),
        "tflm_arena_bytes": arena,
        "fp32_vs_torch_max_abs": float(np.abs(y32 - ref).max()),
        "int8_vs_float_max_abs": float(np.abs(y8 - ref).max()),
        "int8_vs_float_max_abs_calibrated_frames": float(np.abs(y8 - ref)[:n_calib].max()),
        "y_lsb": lsb,
        "y_range": [float(ref.min()), float(ref.max())],
        "int8_vs_float_max_lsb": float(np.abs(y8 - ref).max() / lsb),
        "tflm_vs_litert_builtin_open_loop_max_lsb_y_state": open_loop["builtin"],
        "tflm_vs_litert_reference_open_loop_max_lsb_y_state": open_loop["reference"],
        "xnnpack_vs_builtin_closed_loop_max_lsb": xnn_vs_builtin,
        "tflm_vs_litert_builtin_closed_loop_max_lsb": float(np.round(np.abs(ym - y8).max() / lsb, 3)),
        "tflm_vs_litert_reference_closed_loop_max_lsb": float(np.round(np.abs(ym - yr).max() / lsb, 3)),
        "step_us": {k: v * 1e6 for k, v in times.items()},
        "convert_s": t_convert,
        "quantize_s": t_quant,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--electrodes", type=int, default=64)
    ap.add_argument("--frames", type=int, default=1000, help="closed-loop stream length (8 ms frames)")
    ap.add_argument("--calib", type=int, default=500, help="first frames used for int8 calibration")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not 0 < args.calib <= args.frames:
        ap.error(f"--calib must be in 1..--frames ({args.frames}), got {args.calib}")
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("edge", "lstm"):
            rows.append(measure(arch, args.electrodes, args.frames, args.calib, Path(tmp), args.seed))
    print(f"\n{args.electrodes} electrodes, {args.frames} frames, calibration on the first {args.calib}; one core\n")
    print("| | " + " | ".join(r["arch"] for r in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    keys = [k for k in rows[0] if k not in ("arch", "step_us")]
    for k in keys:
        print(f"| {k} | " + " | ".join(_fmt(r[k]) for r in rows) + " |")
    for k in rows[0]["step_us"]:
        print(f"| step µs {k} | " + " | ".join(f"{r['step_us'][k]:.1f}" for r in rows) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


if __name__ == "__main__":
    main()
