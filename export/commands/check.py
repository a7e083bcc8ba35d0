"""Check a bundle's runtimes against float on held-out trials; fail when int8 loses too much PCC.

Decodes the held-out trials with torch fp32 (when torch and the trained model are available) and every
decoder graph in the bundle (ONNX fp32 and int8; LiteRT and TFLM once installed), and reports per runtime
the spectrogram PCC, its loss against float, per-parameter RMSE and r against float, the largest raw-output
difference, the file size and the ops left in float. Exits with status 1 naming the failed threshold.

Example:
  edgensd check --bundle runs/edge_bundle --data sim/p0.h5 --json runs/check.json --markdown runs/check.md
"""

from __future__ import annotations

import argparse

COMMAND = ("check",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edgensd check``."""
    p.add_argument("--bundle", required=True, metavar="DIR", help="bundle folder (edgensd export bundle)")
    p.add_argument("--data", required=True, metavar="FILE.h5", help="participant file (its held-out trials)")
    p.add_argument("--json", required=True, metavar="OUT", help="JSON report to write")
    p.add_argument("--markdown", default=None, metavar="OUT", help="also write a markdown table")
    p.add_argument("--max-delta-pcc", type=float, default=0.01, metavar="D",
                   help="largest PCC an int8 runtime may lose against float (default 0.01)")
    p.add_argument("--model", default=None, metavar="DIR",
                   help="trained model folder for the torch reference (default: the bundle's recorded source)")


def run(args: argparse.Namespace) -> int:
    """Check, write the reports, print one line per runtime; 1 when a threshold fails."""
    from pathlib import Path

    from edgensd.export.check import check_bundle, write_reports

    from edgensd.log import logger

    for path in (args.json, args.markdown):
        if path is not None and Path(path).is_dir():
            raise ValueError(f"report path {path} is a folder; give a file name")
    res = check_bundle(args.bundle, args.data, args.max_delta_pcc, args.model)
    write_reports(res, args.json, args.markdown)
    for e in res.report["runtimes"]:
        print(f"{e['runtime']:12s} pcc_mean {e['pcc_mean']:.4f}  delta vs float {e['delta_pcc_vs_float']:+.4f}  "
              f"max abs raw diff {e['max_abs_diff_raw_vs_float']:.4g}")
    for f in res.failures:
        logger.error("check failed: %s", f)
    return 0 if res.report["passed"] else 1
