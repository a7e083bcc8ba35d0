"""Where the bytes of a bundle's int8 models go, and the smallest int8/fp32 ratio their format allows.

Usage::

    python bench/bench_int8_size.py --bundle BUNDLE [--json OUT]

For ``decoder_int8.onnx`` and ``decoder_int8.tflite`` (beside their fp32 twins) it splits the file into:

* weights: int8 constants fed to a matrix product (ONNX: ``DequantizeLinear`` of an int8 initializer; LiteRT:
  int8 constant tensors);
* biases: int32 constants (ONNX: ``DequantizeLinear`` of an int32 initializer; LiteRT: int32 constant tensors
  with quantization);
* quantization parameters: ONNX: the float scales and int8 zero points of the Q/DQ nodes, per channel
  (arrays) and per tensor (scalars); LiteRT: every tensor's ``scale`` (float32) and ``zero_point`` (int64)
  entries, 12 bytes each;
* other constants (shapes, slice bounds) and the rest: the graph itself (nodes or operators, tensors, names,
  framing).

``floor`` is weights + biases + per-channel quantization parameters over the fp32 file: what the int8 file
would weigh relative to fp32 with no graph at all, for the same per-channel choice. An int8/fp32 target below
it cannot be met by any graph rewrite, only by dropping per-channel scales (or by a model with more weights per
channel).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np


def onnx_breakdown(path: Path) -> dict:
    """Byte breakdown of an int8 QDQ ONNX model (see the module docstring)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    g = m.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    role: dict[str, str] = {}
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            a = inits[n.input[0]]
            role[n.input[0]] = "weights" if a.dtype == np.int8 else "biases" if a.dtype == np.int32 else "other"
        if n.op_type in ("DequantizeLinear", "QuantizeLinear"):
            for k in (1, 2):
                if len(n.input) > k and n.input[k] in inits and n.input[k] not in role:
                    a = inits[n.input[k]]
                    role[n.input[k]] = "qparams_per_channel" if a.size > 1 else "qparams_per_tensor"
    by = Counter()
    for name, a in inits.items():
        by[role.get(name, "other_constants")] += a.nbytes
    total = path.stat().st_size
    channels = sum(inits[n].size for n, r in role.items()
                   if r == "qparams_per_channel" and inits[n].dtype == np.float32)
    by["graph_and_framing"] = total - sum(by.values())
    return {"file": path.name, "bytes": total, "breakdown": dict(by), "per_channel_scales": int(channels),
            "nodes": len(g.node), "node_types": dict(Counter(n.op_type for n in g.node))}


def tflite_breakdown(path: Path) -> dict:
    """Byte breakdown of an int8 ``.tflite`` model (see the module docstring)."""
    from edgensd.runtime.backend_tflite import tflite_schema

    content = path.read_bytes()
    fb = tflite_schema()
    m = fb.ModelT.InitFromPackedBuf(content, 0)
    by = Counter()
    entries = {"per_channel": 0, "per_tensor": 0}
    n_tensors = n_ops = 0
    for sg in m.subgraphs:
        n_tensors += len(sg.tensors)
        n_ops += len(sg.operators or [])
        for t in sg.tensors:
            q = t.quantization
            n_q = 0 if q is None or q.scale is None else len(q.scale)
            if n_q:
                entries["per_channel" if n_q > 1 else "per_tensor"] += n_q
            buf = m.buffers[t.buffer] if t.buffer < len(m.buffers) else None
            size = 0 if buf is None or buf.data is None else len(buf.data)
            if not size:
                continue
            if t.type == fb.TensorType.INT8:
                by["weights"] += size
            elif t.type == fb.TensorType.INT32 and n_q:
                by["biases"] += size
            else:
                by["other_constants"] += size
    # QuantizationParameters: scale [float32] and zero_point [int64] per entry
    by["qparams_per_channel"] = 12 * entries["per_channel"]
    by["qparams_per_tensor"] = 12 * entries["per_tensor"]
    by["graph_and_framing"] = len(content) - sum(by.values())
    return {"file": path.name, "bytes": len(content), "breakdown": dict(by),
            "per_channel_scales": entries["per_channel"], "tensors": n_tensors, "operators": n_ops}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True, help="bundle folder (edgensd export bundle)")
    ap.add_argument("--json", default=None, help="write the figures here too")
    args = ap.parse_args()
    bundle = Path(args.bundle)
    if not bundle.is_dir():
        raise SystemExit(f"--bundle {bundle}: not a folder")
    report = {}
    for fmt, name, fn in (("onnx", "decoder_int8.onnx", onnx_breakdown), ("tflite", "decoder_int8.tflite",
                                                                          tflite_breakdown)):
        q, f = bundle / name, bundle / name.replace("int8", "fp32")
        if not (q.is_file() and f.is_file()):
            print(f"{fmt}: {name} or its fp32 twin is missing, skipped")
            continue
        r = fn(q)
        fp32 = f.stat().st_size
        b = r["breakdown"]
        floor = b.get("weights", 0) + b.get("biases", 0) + b.get("qparams_per_channel", 0)
        r.update(fp32_bytes=fp32, ratio=r["bytes"] / fp32, floor_ratio=floor / fp32)
        report[fmt] = r
        print(f"{fmt}: {r['bytes']:,} B int8 / {fp32:,} B fp32 = {100 * r['ratio']:.1f} % "
              f"(floor with per-channel quantization {100 * r['floor_ratio']:.1f} %)")
        for k, v in sorted(b.items(), key=lambda kv: -kv[1]):
            print(f"    {k:22s} {v:8,} B  {100 * v / fp32:5.1f} % of fp32")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
