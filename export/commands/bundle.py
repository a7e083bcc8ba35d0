"""Export a trained causal decoder as a self-contained deployable bundle folder.

The bundle holds the decoder step graph (decoder_fp32.onnx, and decoder_int8.onnx calibrated on the
training trials), the synthesizer file for the C synthesizer, the feature settings, the voice range and
parameter map, and manifest.json (tensor specs, checksums, versions, MACs, look-ahead, calibration,
flash/RAM budget). It is written to a temporary folder and renamed into place when complete.

Example:
  edgensd export bundle --model runs/edge --out runs/edge_bundle --quantize int8
"""

from __future__ import annotations

import argparse
from pathlib import Path

COMMAND = ("export", "bundle")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edgensd export bundle``."""
    p.add_argument("--model", required=True, metavar="DIR", help="trained causal decoder (edgensd train decoder)")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle folder to create (must not exist)")
    p.add_argument("--formats", default="onnx", metavar="LIST",
                   help="comma-separated decoder formats: onnx (tflite, tflm once their converters are "
                        "installed); default onnx")
    p.add_argument("--calib", default=None, metavar="FILE.h5",
                   help="participant file whose training trials calibrate int8 (default: the training file)")
    p.add_argument("--quantize", choices=["int8", "none"], default="int8",
                   help="int8: also write calibrated int8 graphs (default); none: fp32 only")
    p.add_argument("--max-calib-samples", type=int, default=8192, metavar="N",
                   help="calibration frames kept, evenly spaced over all training frames (0: all; default 8192)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out once the new bundle is done")


def run(args: argparse.Namespace) -> int:
    """Check the options, then export."""
    from edgensd.export.bundle import BundleConfig, check_formats, write_bundle

    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    cfg = BundleConfig(formats=formats, quantize=args.quantize, calib=args.calib or "",
                       max_calib_samples=args.max_calib_samples)
    check_formats(cfg.formats)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise ValueError(f"--out {out} already exists; choose a new folder or pass --overwrite")
    if not Path(args.model).is_dir():
        raise FileNotFoundError(f"--model {args.model}: decoder model directory not found")
    write_bundle(args.model, out, cfg, overwrite=args.overwrite)
    print(f"wrote bundle {out}")
    return 0
