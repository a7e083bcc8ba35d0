"""The learned parts of a trained synthesizer as plain arrays (no torch), and their file format."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np

from edgensd.params import VoiceRange

#: Version of the synth weights file format (``.npz``); bump on any layout change.
SYNTH_FORMAT_VERSION = 1


@dataclasses.dataclass
class SynthWeights:
    """The learned parts of a trained synthesizer, as plain float32 arrays.

    Attributes
    ----------
    voice : VoiceRange
    shape_tables : ndarray (7, SHAPE_N_KNOTS)
        ``-ln s`` at the shape knots; rows 0-5 voiced formants, row 6 the unvoiced formant.
    bw0_hz, bw_slope : ndarray (6,)
        Voiced bandwidth ``B_i = bw0_hz[i] + bw_slope[i] * F_i`` (Hz).
    gain_v_db, gain_n_db : ndarray (N_GAIN_TERMS,)
        Cosine-series coefficients (dB) of the voiced and noise gain curves.
    background : ndarray (256,)
        Background-noise power per STFT bin.
    """

    voice: VoiceRange
    shape_tables: np.ndarray
    bw0_hz: np.ndarray
    bw_slope: np.ndarray
    gain_v_db: np.ndarray
    gain_n_db: np.ndarray
    background: np.ndarray

    def save_npz(self, path: str | Path) -> Path:
        """Write to ``.npz`` with the voice range as JSON and the format version."""
        path = Path(path)
        np.savez(
            path,
            format_version=np.int32(SYNTH_FORMAT_VERSION),
            voice_json=np.array(json.dumps(self.voice.to_dict())),
            shape_tables=self.shape_tables,
            bw0_hz=self.bw0_hz,
            bw_slope=self.bw_slope,
            gain_v_db=self.gain_v_db,
            gain_n_db=self.gain_n_db,
            background=self.background,
        )
        return path

    @classmethod
    def load_npz(cls, path: str | Path) -> SynthWeights:
        """Read a file written by :meth:`save_npz`, checking its version."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"synth weights file not found: {path}")
        try:
            with open(path, "rb") as fh, np.load(fh) as z:
                version = int(z["format_version"])
                if version != SYNTH_FORMAT_VERSION:
                    raise ValueError(
                        f"{path}: synth weights format version {version}, this edgensd reads {SYNTH_FORMAT_VERSION}"
                    )
                return cls(
                    voice=VoiceRange.from_dict(json.loads(str(z["voice_json"]))),
                    **{k: z[k].astype(np.float32) for k in
                       ("shape_tables", "bw0_hz", "bw_slope", "gain_v_db", "gain_n_db", "background")},
                )
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            if isinstance(exc, ValueError) and "format version" in str(exc):
                raise
            raise ValueError(f"{path} is not a readable synth weights file: {exc}") from exc
