"""Data on disk: participant HDF5 files (reference layout) and the real-speech gatherer.

:mod:`edgensd.data.participant` reads and writes participant files; :mod:`edgensd.data.speech` builds the
speech-only participant from the Asterisk "Allison" prompts (``edgensd data speech``).
"""

from edgensd.data.participant import (
    FRAME_TOLERANCE,
    N_TEST_DEFAULT,
    OPTIONAL_KEYS,
    REQUIRED_KEYS,
    Participant,
    load_participant,
    save_participant,
    trial_split,
)

__all__ = [
    "FRAME_TOLERANCE",
    "N_TEST_DEFAULT",
    "OPTIONAL_KEYS",
    "REQUIRED_KEYS",
    "Participant",
    "load_participant",
    "save_participant",
    "trial_split",
]
