"""Put a faulty wire between a device and a host: a byte proxy that flips bits, deletes and inserts bytes.

Knows nothing of the protocol. The host connects to the proxy (the first line of stdout, alone: a socket
URL or a /dev/pts/N path); for each host connection the proxy opens --upstream (a socket URL such as
`edgensd device-sim --link socket://...` prints, or a serial device / pty path) and damages the device's
bytes at the given rates (per byte, seeded). Runs until Ctrl-C/SIGTERM, then writes --log: every fault
with its byte offset.

Example:
  edgensd device-sim --data p.h5 --link socket://127.0.0.1:5555 &
  edgensd faulty-link --upstream socket://127.0.0.1:5555 --listen pty --flip 1e-4 --log faults.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading

from edgensd.cli._args import check_output_file, nonneg_int, probability

COMMAND = ("faulty-link",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgensd faulty-link``."""
    parser.add_argument("--upstream", required=True, metavar="URL|PATH",
                        help="the device side: socket://HOST:PORT or a serial device / pty path")
    parser.add_argument("--listen", default="socket://127.0.0.1:0", metavar="pty|socket://HOST:PORT",
                        help="where the host connects (PORT 0: any free port)")
    parser.add_argument("--flip", type=probability, default=0.0, metavar="RATE", help="per byte: flip one bit")
    parser.add_argument("--delete", type=probability, default=0.0, metavar="RATE", help="per byte: delete it")
    parser.add_argument("--insert", type=probability, default=0.0, metavar="RATE",
                        help="per byte: insert a random byte")
    parser.add_argument("--both-ways", action="store_true", help="damage host -> device bytes too")
    parser.add_argument("--seed", type=nonneg_int, default=0, help="seed of the faults")
    parser.add_argument("--log", default=None, metavar="OUT.json", help="write every fault on exit")


def run(args: argparse.Namespace) -> int:
    """Serve until a signal; returns 0."""
    import errno

    from edgensd.firmware_bridge.faulty_link import FaultyLink, FaultyLinkConfig

    from edgensd.log import logger

    if args.log is not None:
        check_output_file(args.log, "--log")
    try:
        cfg = FaultyLinkConfig(flip_rate=args.flip, delete_rate=args.delete, insert_rate=args.insert,
                               seed=args.seed, both_ways=args.both_ways, listen=args.listen)
    except ValueError as exc:
        raise ValueError(f"--listen: {exc}") from None
    try:
        proxy = FaultyLink(args.upstream, cfg)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ValueError(f"--listen: {args.listen} is in use; pass another port, or port 0 for any free "
                             "one") from None
        raise ValueError(f"--listen: cannot listen on {args.listen}: {exc.strerror or exc}") from None
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        proxy.start()
        print(proxy.url, flush=True)
        logger.info("faulty-link: %s -> %s (flip %g, delete %g, insert %g per byte)", args.upstream, proxy.url,
                    args.flip, args.delete, args.insert)
        while not stop.wait(0.1):
            pass
    finally:
        proxy.stop()
        for s, h in old.items():
            signal.signal(s, h)
    log = proxy.log()
    if args.log is not None:
        tmp = f"{args.log}.tmp"
        with open(tmp, "w") as f:
            json.dump(log, f, indent=1)
        os.replace(tmp, args.log)
    logger.info("faulty-link: %d connections, %d bytes in, %d faults", log["connections"], log["bytes_in"]["down"],
                len(log["faults"]))
    return 0
