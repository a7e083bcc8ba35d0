"""Argument helpers shared by the subcommands: argparse types that name the flag when a value is wrong, and
checks of input and output paths made before any long work starts."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = [
    "CommandError",
    "bounded_float",
    "check_input_file",
    "check_model_dir",
    "check_neural_file",
    "check_output_dir",
    "check_output_file",
    "nonneg_float",
    "nonneg_int",
    "positive_float",
    "positive_int",
    "probability",
]


class CommandError(Exception):
    """An error the CLI reports as one clear line (exit status 2), without a traceback."""


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0 (argparse prefixes the flag to the message)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


def probability(text: str) -> float:
    """argparse type: a probability in [0, 1] (a fault rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], got {text}")
    return value


def bounded_float(lo: float, hi: float):
    """argparse type factory: a number in ``[lo, hi]`` (the message names the range)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number in [{lo:g}, {hi:g}], got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be a number in [{lo:g}, {hi:g}], got {text}")
        return value

    parse.__name__ = f"number in [{lo:g}, {hi:g}]"
    return parse


def nonneg_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def nonneg_int(text: str) -> int:
    """argparse type: an int >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text}")
    return value


def check_input_file(path: str | os.PathLike, flag: str) -> Path:
    """An existing regular file, or a :class:`CommandError` naming ``flag``."""
    p = Path(path)
    if not p.exists():
        raise CommandError(f"{flag}: no such file: {p}")
    if not p.is_file():
        raise CommandError(f"{flag}: {p} is a folder, expected a file")
    return p


def check_model_dir(path: str | os.PathLike, flag: str) -> Path:
    """An existing model folder (as written by a training command), or a :class:`CommandError` naming ``flag``."""
    p = Path(path)
    if not p.exists():
        raise CommandError(f"{flag}: no such model folder: {p}")
    if not p.is_dir():
        raise CommandError(f"{flag}: {p} is a file; pass the model folder a training command wrote")
    return p


def check_neural_file(path: str | os.PathLike, flag: str = "--data") -> Path:
    """A participant file that holds neural data (``ecog_alldataset``), checked without loading it."""
    import h5py

    p = check_input_file(path, flag)
    try:
        with h5py.File(p, "r") as f:
            has_neural = "ecog_alldataset" in f
    except OSError as exc:
        raise CommandError(f"{flag}: {p} is not a readable HDF5 participant file ({exc})") from None
    if not has_neural:
        raise CommandError(
            f"{flag}: {p} is speech-only (no 'ecog_alldataset'); this command needs neural data: pass a "
            "participant file made by `edgensd simulate --speech FILE ...` or `edgensd prepare ...`"
        )
    return p


def _ensure_parent(path: Path, flag: str) -> None:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = exc.strerror or exc
        raise CommandError(f"{flag}: cannot create the folder {parent} for {path.name}: {msg}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CommandError(f"{flag}: the folder {parent} is not writable")


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """Make sure ``path`` can be written before the work starts (its folder is created if missing).

    Raises :class:`CommandError` naming ``flag`` when the path is a folder or its folder cannot be made or
    written.
    """
    p = Path(path)
    if p.is_dir():
        raise CommandError(f"{flag}: {p} is a folder, expected a file name")
    _ensure_parent(p, flag)
    return p


def check_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """Make sure ``path`` is (or can be made) a writable folder before the work starts; creates it."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CommandError(f"{flag}: {p} exists and is a file, not a folder; pass a folder path")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"{flag}: cannot create the folder {p}: {exc.strerror or exc}") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise CommandError(f"{flag}: the folder {p} is not writable")
    return p
