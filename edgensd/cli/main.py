"""Entry point of the ``edgensd`` command: discovers subcommand modules and dispatches."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import edgensd
from edgensd.log import logger, set_log_level


class CommandError(Exception):
    """An error the CLI reports as one clear line (exit status 2), without a traceback."""


COMMAND_PACKAGES = ("edgensd.cli", "edgensd.export.commands", "edgensd.firmware_bridge.commands")
"""Packages whose modules define subcommands (``COMMAND`` + ``run``): the core CLI, the export toolchain's
and the serial bridge's. A module must import heavy dependencies (torch, onnx, ...) inside ``run`` only, so
that ``edgensd --help`` and the torch-free runtime commands start without them."""


def _command_modules() -> list:
    mods = []
    for pkg_name in COMMAND_PACKAGES:
        try:
            pkg = importlib.import_module(pkg_name)
        except ModuleNotFoundError as exc:
            if exc.name != pkg_name:  # the package exists but imports something missing: a real error
                raise
            continue
        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name in ("main",) or info.name.startswith("_"):
                continue
            mod = importlib.import_module(f"{pkg_name}.{info.name}")
            if hasattr(mod, "COMMAND") and hasattr(mod, "run"):
                mods.append(mod)
    return sorted(mods, key=lambda m: m.COMMAND)


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser (every discovered subcommand)."""
    parser = argparse.ArgumentParser(
        prog="edgensd",
        description="Neural speech decoding from ECoG for edge devices.",
    )
    parser.add_argument("--version", action="version", version=f"edgensd {edgensd.__version__}")
    common = argparse.ArgumentParser(add_help=False)
    grp = common.add_mutually_exclusive_group()
    grp.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    grp.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress bars")

    subparsers: dict[tuple[str, ...], argparse._SubParsersAction] = {(): parser.add_subparsers(dest="cmd0")}
    groups: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    for mod in _command_modules():
        words = tuple(mod.COMMAND)
        for depth in range(len(words) - 1):
            prefix = words[: depth + 1]
            if prefix not in groups:
                sub = subparsers[prefix[:-1]].add_parser(prefix[-1], help=f"{prefix[-1]} commands")
                groups[prefix] = sub
                subparsers[prefix] = sub.add_subparsers(dest=f"cmd{depth + 1}")
        doc = (mod.__doc__ or "").strip()
        summary = doc.splitlines()[0] if doc else ""
        p = subparsers[words[:-1]].add_parser(
            words[-1],
            help=summary,
            description=doc,
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``edgensd`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 2
    set_log_level("debug" if args.verbose else "warning" if args.quiet else "info")
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130
    except (CommandError, FileNotFoundError, ValueError, KeyError, OSError) as exc:
        if args.verbose:
            logger.exception("failed")
        logger.error(str(exc) if not isinstance(exc, KeyError) else exc.args[0])
        return 2


if __name__ == "__main__":
    sys.exit(main())
