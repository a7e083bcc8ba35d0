"""Export a synthesizer's learned parts for the C synthesizer (a versioned .edsynth file, optionally a C header).

The file (format version 1: magic, version, sizes, float32 little-endian payload, CRC-32) is what
csrc/edsynth.h loads with eds_weights_load (float32) or eds_fx_weights_load (fixed point); the header embeds
the same bytes as a const array for firmware. Both are checked by the C core before they are written.

Example: edgensd export synth --model runs/speech --out synth.edsynth --header synth.h
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgensd.log import logger
from edgensd.speech.synth_export import EDSYNTH_SUFFIX, load_synth_source, write_c_header, write_synth_file

COMMAND = ("export", "synth")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``edgensd export synth``."""
    parser.add_argument(
        "--model",
        required=True,
        metavar="DIR_OR_FILE",
        help="trained speech model directory (holding synth_weights.npz), a synth_weights .npz or a .edsynth file",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help=f"synth file to write (suffix {EDSYNTH_SUFFIX})")
    parser.add_argument("--header", default=None, metavar="FILE", help="also write a C header embedding the file")
    parser.add_argument(
        "--symbol", default=None, metavar="NAME", help="C array name in the header (default: eds_ + header stem)"
    )


def run(args: argparse.Namespace) -> int:
    """Export; returns 0 on success (errors are raised as ValueError/FileNotFoundError with one clear line)."""
    out = Path(args.out)
    if out.suffix != EDSYNTH_SUFFIX:
        raise ValueError(f"--out must end in {EDSYNTH_SUFFIX}, got {out}")
    if args.header is not None and Path(args.header).suffix != ".h":
        raise ValueError(f"--header must end in .h, got {args.header}")
    weights, _, source = load_synth_source(args.model)
    write_synth_file(weights, out)
    if args.header is not None:
        write_c_header(out.read_bytes(), args.header, symbol=args.symbol, source=Path(source).name)
    logger.info("exported %s -> %s%s", source, out, f" and {args.header}" if args.header else "")
    return 0
