"""Trial segments of a participant file, cut the way stage-2 training and evaluation cut them (torch-free).

A trial ``i`` (neural frames ``start:end``) is decoded over its *segment*, frames
``[max(start - context, 0), min(end + context, n_frames))``, starting from the zero state, so a causal
decoder has warmed up when the trial begins (:mod:`edgensd.decoding.targets` documents the same rule).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = ["Segment", "check_electrodes", "trial_segments"]


@dataclasses.dataclass(frozen=True)
class Segment:
    """One trial's segment.

    Attributes
    ----------
    trial : int
        Trial index in the file.
    lo, hi : int
        Segment frames ``lo:hi`` of the recording (125 Hz frames).
    first : int
        Offset of the trial's first frame within the segment.
    length : int
        Frames of the trial itself.
    """

    trial: int
    lo: int
    hi: int
    first: int
    length: int

    @property
    def trial_slice(self) -> slice:
        """The trial's frames as a slice of the segment."""
        return slice(self.first, self.first + self.length)


def trial_segments(p, trials: Sequence[int], context: int, exclude: Sequence[int] = ()) -> list[Segment]:
    """Segments of ``trials``, their context cut short where it would reach into an ``exclude`` trial.

    Parameters
    ----------
    p : edgensd.data.participant.Participant
    trials : sequence of int
    context : int
        Frames of context on each side (the model's training ``context_frames``).
    exclude : sequence of int
        Trials whose frames no segment may include (the held-out trials when cutting training data).

    Returns
    -------
    list of Segment
    """
    if int(context) < 0:
        raise ValueError(f"context must be >= 0 frames, got {context}")
    ex = [(int(p.start[j]), int(p.end[j])) for j in exclude]
    out = []
    for i in trials:
        i = int(i)
        s, e = p.trial_frames(i)
        lo, hi = max(s - int(context), 0), min(e + int(context), p.n_frames)
        for a, b in ex:
            if (a, b) == (s, e):
                continue
            if b <= s:
                lo = max(lo, b)
            elif a >= e:
                hi = min(hi, a)
            else:
                raise ValueError(f"trial {i} overlaps held-out trial frames [{a}, {b}); check the trial split")
        out.append(Segment(i, lo, hi, s - lo, e - s))
    return out


def check_electrodes(p, n_electrodes: int, what: str) -> None:
    """Refuse a participant file without neural data, with NaN/inf features or another electrode count.

    Parameters
    ----------
    p : Participant
    n_electrodes : int
        The model's electrode count.
    what : str
        What the file is used for (named in the error), e.g. ``"calibration"``.
    """
    where = str(p.path) if p.path is not None else "participant"
    if p.ecog is None:
        raise ValueError(f"{where} ({what}) holds no neural data ('ecog_alldataset'); a participant file is needed")
    if p.ecog.shape[1] != n_electrodes:
        raise ValueError(f"{where} ({what}) has {p.ecog.shape[1]} electrodes but the model takes "
                         f"n_electrodes={n_electrodes}; use a participant file with the model's electrodes")
    bad = ~np.isfinite(p.ecog)
    if bad.any():
        cols = np.flatnonzero(bad.any(axis=0))
        raise ValueError(f"{where} ({what}): the neural features hold {int(bad.sum())} NaN/inf values (electrodes "
                         f"{cols[:10].tolist()}); the decoder needs finite high-gamma features")
