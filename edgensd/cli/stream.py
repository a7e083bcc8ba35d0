"""Decode a live device stream into audio: serial link → features → decoder step → C synthesizer.

Reads a device (a serial port, a pseudo-terminal from `edgensd device-sim`, or a pyserial URL such as
socket://127.0.0.1:PORT) on its own thread; in raw mode computes causal high-gamma features with the
statistics the bundle was exported with (a bundle trained on other features is refused); runs the bundle's
decoder step (onnx, tflite or tflm backend) and the C synthesizer frame by frame; writes the audio as a WAV
that stays playable while it grows; prints a live status line on a terminal and a summary at the end
(packets, CRC failures, gap frames, reconnects, time blind, latency p50/p99/max per stage).

Example:
  edgensd stream --port /dev/pts/3 --bundle bundle/ --wav out.wav --json stats.json --duration 60
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgensd.cli._args import CommandError, check_output_file, positive_float

COMMAND = ("stream",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edgensd stream``."""
    p.add_argument("--port", required=True, metavar="DEV", help="serial device, pty path or pyserial URL")
    p.add_argument("--bundle", required=True, metavar="DIR", help="bundle folder (edgensd export bundle)")
    p.add_argument("--backend", default="onnx", choices=("onnx", "tflite", "tflm"), help="decoder runtime")
    p.add_argument("--precision", default="int8", choices=("int8", "fp32"), help="which decoder graph to run")
    p.add_argument("--wav", default=None, metavar="OUT", help="write the decoded 16 kHz audio here")
    p.add_argument("--json", default=None, metavar="STATS", help="write the summary here")
    p.add_argument("--record", default=None, metavar="FILE.h5", help="write what was received as a participant file")
    p.add_argument("--duration", type=positive_float, default=None, metavar="S",
                   help="stop after S seconds of decoded audio (default: when the stream goes idle)")
    p.add_argument("--idle-exit", type=positive_float, default=3.0, metavar="S",
                   help="stop when no data came for S seconds")
    p.add_argument("--fixed-point", action="store_true", help="render audio with the integer-only synthesizer")
    p.add_argument("--allow-feature-mismatch", action="store_true",
                   help="run a decoder trained on offline features on raw mode's streaming features")


def run(args: argparse.Namespace) -> int:
    """Stream until the duration, idle timeout or Ctrl-C; print the summary."""
    from edgensd.runtime.stream import StreamConfig, run_stream

    for flag, value in (("--wav", args.wav), ("--json", args.json), ("--record", args.record)):
        if value is not None:
            check_output_file(value, flag)
    if args.record is not None and Path(args.record).exists():
        raise CommandError(f"--record: {args.record} exists; a recording never replaces a file (choose a new name)")
    cfg = StreamConfig(backend=args.backend, precision=args.precision, duration_s=args.duration,
                       idle_exit_s=args.idle_exit, fixed_point=args.fixed_point,
                       allow_feature_mismatch=args.allow_feature_mismatch)
    s = run_stream(args.port, args.bundle, cfg, wav=args.wav, record=args.record, json_path=args.json)
    e2e = s["latency_ms"]["end_to_end"]
    print(f"{s['seconds_out']:.2f} s decoded ({s['frames_out']} frames, {s['mode']} mode), stopped: "
          f"{s['stop_reason']}; packets ok {s['packets_ok']}, bad CRC {s['packets_bad_crc']}, gap frames "
          f"{s['gap_frames']}, duplicates {s['duplicates']}, resyncs {s['resyncs']}, reconnects {s['reconnects']}, "
          f"blind {s['blind_s']:.2f} s; latency packet->audio p50 {e2e['p50']} ms, p99 {e2e['p99']} ms, "
          f"max {e2e['max']} ms")
    if args.json is None:
        print(json.dumps(s["latency_ms"], indent=1))
    return 0
