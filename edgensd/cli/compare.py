"""Compare evaluated decoders side by side: markdown table + PNG (PCC, per-parameter r, MACs, parameters,
measured look-ahead, training time, floor and ridge baselines).

Below the table: each model's paired per-trial PCC difference against a reference model (default the
best one), with a bootstrap 95 % interval over trials.

Example:
  edgensd compare --evals runs/*/eval.json --out runs/compare --reference best-noncausal
"""

from __future__ import annotations

import argparse

COMMAND = ("compare",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edgensd compare``."""
    p.add_argument(
        "--evals", nargs="+", required=True, metavar="JSON", help="evaluation JSONs (edgensd eval decoder --json)"
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="output directory (compare.md, compare.png, compare.json)"
    )
    p.add_argument(
        "--occlusions", nargs="*", default=None, metavar="JSON", help="occlusion.json files to add their verdicts"
    )
    p.add_argument(
        "--reference",
        default="best",
        help="model the paired per-trial PCC differences are taken against: 'best' (default), "
        "'best-noncausal' or a model name as in the table",
    )


def run(args: argparse.Namespace) -> int:
    """Write the comparison and print the markdown table."""
    from edgensd.cli._args import check_input_file, check_output_dir
    from edgensd.decoding.compare import compare

    for f in args.evals:
        check_input_file(f, "--evals")
    for f in args.occlusions or []:
        check_input_file(f, "--occlusions")
    check_output_dir(args.out, "--out")
    res = compare(args.evals, args.out, args.occlusions, args.reference)
    print(res["markdown"])
    return 0
