"""Cohort sweeps: stage 1, stage 2 and evaluation over participants × architectures × causality as Ray tasks.

:mod:`~edgensd.sweep.config` holds :class:`~edgensd.sweep.config.SweepConfig` (saved as ``sweep_config.json``
in the output folder) and the task layout; :mod:`~edgensd.sweep.tasks` the task bodies (plain functions that
Ray runs in its workers); :mod:`~edgensd.sweep.runner` starts or joins Ray, submits what is not done yet and
logs one line per finished task; :mod:`~edgensd.sweep.report` writes ``results.json``, ``results.md`` and the
cohort box plots. The command is ``edgensd sweep``.

Importing this package needs neither Ray nor PyTorch; running a sweep needs both (the ``cohort`` and
``training`` extras).
"""

from edgensd.sweep.config import CAUSAL_CHOICES, SweepConfig, SweepConfigError

__all__ = ["CAUSAL_CHOICES", "SweepConfig", "SweepConfigError"]
