"""Pieces shared by the training loops (stage 1 speech, stage 2 decoders): signals, checkpoints.

A loop runs inside ``with StopFlag() as stop:``, calls :func:`checkpoint_if_due` after every step (which
turns SIGINT/SIGTERM into a written checkpoint and a resume hint), writes files with
:func:`atomic_torch_save` and reads them back with :func:`load_checkpoint`.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import torch

from edgensd.log import logger

__all__ = ["StopFlag", "atomic_torch_save", "checkpoint_if_due", "load_checkpoint"]


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks, so a checkpoint is written before exiting."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def checkpoint_if_due(stop: StopFlag, checkpoint, ckpt_path: Path, step: int, last_ckpt: float,
                      every_s: float) -> float:
    """End-of-step bookkeeping shared by the training loops.

    After a signal: write the checkpoint, log how to resume and raise KeyboardInterrupt. Otherwise write
    it when ``every_s`` seconds have passed since ``last_ckpt``. ``checkpoint(done)`` writes it; returns the
    (possibly updated) time of the last checkpoint.
    """
    if stop.signum is not None:
        checkpoint(done=False)
        logger.warning("stopped by signal %d at step %d; checkpoint written to %s (run the same "
                       "command again to resume)", stop.signum, step, ckpt_path)
        raise KeyboardInterrupt
    if time.time() - last_ckpt > every_s:
        checkpoint(done=False)
        return time.time()
    return last_ckpt


def atomic_torch_save(obj: dict, path: Path) -> None:
    """``torch.save`` to a temporary file then rename: ``path`` always holds a complete file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """Read a training checkpoint; a damaged file raises a ValueError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise ValueError(
            f"checkpoint {path} is corrupted ({type(exc).__name__}: {exc}); delete it to start over"
        ) from exc
