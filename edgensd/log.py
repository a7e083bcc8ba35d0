"""The package's single logger and verbosity control (mne-style ``verbose=``)."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

logger = logging.getLogger("edgensd")
if not logger.handlers:
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(levelname)s edgensd: %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def set_log_level(verbose: bool | str | int | None = None) -> int:
    """Set the package log level.

    Parameters
    ----------
    verbose : bool | str | int | None
        ``True`` → DEBUG, ``False`` → WARNING, ``None`` → INFO, a level name
        (``'debug'``, ``'info'``, ``'warning'``, ``'error'``) or a logging level number.

    Returns
    -------
    int
        The previous level, so callers can restore it.
    """
    old = logger.level
    if verbose is None:
        level = logging.INFO
    elif isinstance(verbose, bool):
        level = logging.DEBUG if verbose else logging.WARNING
    elif isinstance(verbose, str):
        if verbose.lower() not in _LEVELS:
            raise ValueError(f"verbose must be one of {sorted(_LEVELS)} or a bool/int, got {verbose!r}")
        level = _LEVELS[verbose.lower()]
    elif isinstance(verbose, int):
        level = verbose
    else:
        raise TypeError(f"verbose must be bool, str, int or None, got {type(verbose).__name__}")
    logger.setLevel(level)
    return old


def progress_enabled() -> bool:
    """Whether progress bars should be drawn (INFO or more verbose)."""
    return logger.getEffectiveLevel() <= logging.INFO


@contextlib.contextmanager
def use_log_level(verbose: bool | str | int | None) -> Iterator[None]:
    """Apply a function's ``verbose=`` argument for the duration of a ``with`` block.

    ``None`` keeps the current package level; other values as in :func:`set_log_level`.
    """
    if verbose is None:
        yield
        return
    old = set_log_level(verbose)
    try:
        yield
    finally:
        logger.setLevel(old)
