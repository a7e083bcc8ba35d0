"""Play a participant file as an ECoG device would, over a pseudo-terminal or a local socket.

Sends the file's raw signal (--mode raw) or its high-gamma frames (--mode frames) once from the start,
framed by the bridge protocol (firmware_bridge/PROTOCOL.md), then ends. The first line of stdout is the
port to open — a /dev/pts/N path (--link pty) or the socket URL — alone, so a script can read it; the
device clock starts when the first host connects. With --truth it writes what it sent, dropped, corrupted
and lost while no host was connected, and the sample range of every data packet (also on Ctrl-C/SIGTERM).

Example:
  edgensd device-sim --data sim/p0.h5 --mode raw --link pty --truth truth.json --drop 0.001
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from edgensd.cli._args import check_input_file, check_output_file, nonneg_int, positive_float, positive_int, probability

COMMAND = ("device-sim",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgensd device-sim``."""
    from edgensd.firmware_bridge.playback import FORMATS, MODES, PACES

    parser.add_argument("--data", required=True, metavar="FILE.h5", help="participant file to play")
    parser.add_argument("--link", default="pty", metavar="pty|socket://HOST:PORT",
                        help="a pseudo-terminal, or a TCP server on HOST:PORT (PORT 0: any free port)")
    parser.add_argument("--mode", default="frames", choices=MODES,
                        help="raw: the file's raw signal (needs raw_signal); frames: its 125 Hz high-gamma frames")
    parser.add_argument("--pace", default="realtime", choices=PACES,
                        help="realtime: device time at wall-clock speed; fast: as fast as the host reads")
    parser.add_argument("--corrupt", type=probability, default=0.0, metavar="RATE",
                        help="probability per packet of one flipped bit")
    parser.add_argument("--drop", type=probability, default=0.0, metavar="RATE",
                        help="probability per packet of not sending it")
    parser.add_argument("--seed", type=nonneg_int, default=0, help="seed of the faults")
    parser.add_argument("--truth", default=None, metavar="OUT.json", help="write what happened to every packet")
    parser.add_argument("--duration", type=positive_float, default=None, metavar="S",
                        help="play only the first S seconds (default: the whole file)")
    parser.add_argument("--format", default="int16", choices=FORMATS, help="sample format of the data packets")
    parser.add_argument("--raw-scale", type=positive_float, default=0.195, metavar="UV",
                        help="µV per count of int16/int24 raw samples")
    parser.add_argument("--packet-samples", type=positive_int, default=None, metavar="N",
                        help="samples per channel in one data packet, 1..255 (default: one packet per 8 ms frame)")


def _write_json(path, obj: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    """Play the file; returns 0 when played to the end, 128 + signal number when stopped by a signal."""
    from edgensd.firmware_bridge.playback import PlaybackConfig, load_source, open_playback, truth_report

    from edgensd.log import logger

    check_input_file(args.data, "--data")
    if args.truth is not None:
        check_output_file(args.truth, "--truth")
    cfg = PlaybackConfig(data=str(args.data), link=args.link, mode=args.mode, pace=args.pace, corrupt=args.corrupt,
                         drop=args.drop, seed=args.seed, duration_s=args.duration, fmt=args.format,
                         raw_scale_uv=args.raw_scale, packet_samples=args.packet_samples)
    source = load_source(cfg)
    link = open_playback(cfg, source)
    caught: list[int] = []

    def _on_signal(signum, _frame) -> None:
        caught.append(signum)
        link.request_stop()  # the play loop sees it within one packet

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        link.start()
        print(link.url, flush=True)
        logger.info("device-sim: playing %s (%s, %d channels, %.1f s at %g Hz, %s) on %s; waiting for a host",
                    source.path, args.mode, source.n_channels, source.duration_s, source.rate_hz, args.format,
                    link.url)
        while not link.wait(0.1):
            pass
    finally:
        link.stop()
        for s, h in old.items():
            signal.signal(s, h)
    name = signal.Signals(caught[0]).name if caught else None
    report = truth_report(cfg, source, link, interrupted=name)
    if args.truth is not None:
        _write_json(args.truth, report)
    f = report["data_packet_fates"]
    logger.info("device-sim: %s; %d of %d samples played; data packets sent %d, corrupted %d, dropped %d, "
                "lost offline %d%s", "interrupted by " + name if name else "done", report["samples_played"],
                report["samples_in_source"], f["sent"], f["corrupted"], f["dropped"], f["lost_offline"],
                f"; truth in {args.truth}" if args.truth else "")
    sys.stdout.flush()
    return 128 + caught[0] if caught else 0
