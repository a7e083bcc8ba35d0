"""Entry point of the ``edgensd`` command: discovers subcommand modules and dispatches."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import edgensd
from edgensd.cli._args import CommandError
from edgensd.log import logger, set_log_level

__all__ = ["CommandError", "build_parser", "main"]


# Where a missing module comes from, for the one-line error of a command that needs it.
_EXTRA_OF_MODULE = {
    "torch": "the PyTorch CPU build: pip install torch==2.13.0 (or run `bash scripts/install.sh`)",
    "onnx": "the export extra: pip install 'edgensd[export]'",
    "onnxruntime": "the runtime extra: pip install 'edgensd[runtime]'",
    "serial": "the bridge extra: pip install 'edgensd[bridge]'",
    "matplotlib": "the training extra: pip install 'edgensd[training]'",
    "pystoi": "the training extra: pip install 'edgensd[training]'",
    "mne": "the neural extra: pip install 'edgensd[neural]'",
    "pynwb": "the neural extra: pip install 'edgensd[neural]'",
    "ray": "the cohort extra: pip install 'edgensd[cohort]'",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and appends each option's default when it has a useful one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and default not in (None, False, True, "", argparse.SUPPRESS)
            and "default" not in text
        ):
            text += " (default: %(default)s)"
        return text


def _summary(doc: str) -> str:
    """The first paragraph of a module docstring, on one line (the command's one-line help)."""
    para = doc.strip().split("\n\n", 1)[0] if doc else ""
    return " ".join(para.split())


def _verbosity_options(parser: argparse.ArgumentParser, *, default) -> None:
    grp = parser.add_mutually_exclusive_group()
    grp.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging")
    grp.add_argument("-q", "--quiet", action="store_true", default=default,
                     help="warnings and errors only, no progress bars")


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
    """Build the full argument parser (every discovered subcommand).

    ``-v/--verbose`` and ``-q/--quiet`` are accepted before or after the subcommand; a command group given
    without its subcommand (``edgensd eval``) prints the group's help.
    """
    parser = argparse.ArgumentParser(
        prog="edgensd",
        description="Neural speech decoding from ECoG for edge devices.",
        epilog="Run `edgensd COMMAND --help` for a command's options; -v/-q go before or after COMMAND.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgensd {edgensd.__version__}")
    _verbosity_options(parser, default=False)
    parser.set_defaults(_group=parser)
    # After the subcommand the flags only set what was given, so they never reset the ones given before it.
    common = argparse.ArgumentParser(add_help=False)
    _verbosity_options(common, default=argparse.SUPPRESS)

    subparsers: dict[tuple[str, ...], argparse._SubParsersAction] = {
        (): parser.add_subparsers(dest="cmd0", metavar="COMMAND", title="commands")
    }
    for mod in _command_modules():
        words = tuple(mod.COMMAND)
        for depth in range(len(words) - 1):
            prefix = words[: depth + 1]
            if prefix not in subparsers:
                group = subparsers[prefix[:-1]].add_parser(
                    prefix[-1],
                    help=f"{prefix[-1]} commands (edgensd {' '.join(prefix)} --help lists them)",
                    description=f"edgensd {' '.join(prefix)}: see each subcommand's --help.",
                    parents=[common],
                    formatter_class=HelpFormatter,
                )
                group.set_defaults(_group=group)
                subparsers[prefix] = group.add_subparsers(dest=f"cmd{depth + 1}", metavar="SUBCOMMAND",
                                                          title="subcommands")
        doc = (mod.__doc__ or "").strip()
        p = subparsers[words[:-1]].add_parser(
            words[-1],
            help=_summary(doc),
            description=doc,
            parents=[common],
            formatter_class=HelpFormatter,
        )
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _missing_module_message(exc: ModuleNotFoundError) -> str:
    top = (exc.name or "").split(".")[0]
    hint = _EXTRA_OF_MODULE.get(top)
    return f"this command needs the Python module {top!r}, which is not installed; install {hint}" if hint \
        else str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``edgensd`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose and args.quiet:
        parser.error("-v/--verbose and -q/--quiet cannot be used together")
    if not hasattr(args, "_run"):
        args._group.print_help()
        return 2
    set_log_level("debug" if args.verbose else "warning" if args.quiet else "info")
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130
    except ModuleNotFoundError as exc:
        if args.verbose:
            logger.exception("failed")
        logger.error(_missing_module_message(exc))
        return 2
    except (CommandError, FileNotFoundError, ValueError, KeyError, OSError, ImportError) as exc:
        if args.verbose:
            logger.exception("failed")
        logger.error(str(exc) if not isinstance(exc, KeyError) else exc.args[0])
        return 2


if __name__ == "__main__":
    sys.exit(main())
