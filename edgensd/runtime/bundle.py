"""Deployable bundles: load one and verify it (torch-free).

A bundle is a folder written by ``edgensd export bundle`` (:mod:`edgensd.export.bundle`):

====================  ==================================================================================
file                  holds
====================  ==================================================================================
``manifest.json``     format version, model config, tool versions, the sha256 and size of every other
                      file, each decoder graph's tensors (:class:`~edgensd.runtime.backend.TensorSpec`),
                      frame rate, look-ahead, MACs per frame, calibration summary, flash/RAM budget
``decoder_fp32.onnx`` the step graph in float32 (and ``decoder_int8.onnx``, int8 in and out; other formats
                      register their own files)
``synth.edsynth``     the speech model's synthesizer for the C synthesizer
``features.json``     the high-gamma pipeline settings and normalisation statistics the decoder expects
``params.json``       the voice range and the raw → physical parameter map
====================  ==================================================================================

:func:`load_bundle` checks the format name and version and every file's checksum, and refuses a newer
format, a missing, changed or unlisted file, with an error that names it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from edgensd.params import VoiceRange
from edgensd.runtime.backend import TensorSpec

__all__ = ["BUNDLE_FORMAT", "BUNDLE_FORMAT_VERSION", "MANIFEST_FILE", "Bundle", "BundleError", "ModelEntry",
           "load_bundle", "sha256_file"]

BUNDLE_FORMAT = "edgensd-bundle"
"""Value of ``manifest["format"]``."""
BUNDLE_FORMAT_VERSION = 1
"""Version this code writes and the newest it reads."""
MANIFEST_FILE = "manifest.json"


class BundleError(ValueError):
    """A bundle is missing, damaged, tampered with or of an unsupported version (the message names the file)."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One decoder graph of a bundle.

    Attributes
    ----------
    file : str
        File name in the bundle.
    path : Path
    format : str
        ``"onnx"``, ``"tflite"`` or ``"tflm"``.
    precision : str
        ``"fp32"`` or ``"int8"``.
    x, y : TensorSpec
    state_in, state_out : tuple of TensorSpec
    extra : dict
        Format-specific facts (e.g. a TFLM arena size).
    """

    file: str
    path: Path
    format: str
    precision: str
    x: TensorSpec
    y: TensorSpec
    state_in: tuple[TensorSpec, ...]
    state_out: tuple[TensorSpec, ...]
    extra: dict

    @property
    def state_bytes(self) -> int:
        """Bytes of carried state (input side) in the graph's dtypes."""
        return sum(_nbytes(s) for s in self.state_in)


def _nbytes(spec: TensorSpec) -> int:
    n = 1
    for s in spec.shape:
        n *= int(s)
    return n * (1 if spec.dtype == "int8" else 4)


@dataclasses.dataclass
class Bundle:
    """A loaded, verified bundle.

    Attributes
    ----------
    path : Path
    manifest : dict
    models : list of ModelEntry
    voice : VoiceRange
        The voice range of the speech model the decoder was trained against.
    synth_path : Path
    features : dict
        ``features.json``.
    """

    path: Path
    manifest: dict
    models: list[ModelEntry]
    voice: VoiceRange
    synth_path: Path
    features: dict

    @property
    def n_electrodes(self) -> int:
        """Electrodes per input frame."""
        return int(self.manifest["model"]["n_electrodes"])

    @property
    def lookahead_frames(self) -> int:
        """Declared look-ahead of the decoder (output frame t needs input frames <= t + this)."""
        return int(self.manifest["lookahead_frames"]["declared"])

    @property
    def context_frames(self) -> int:
        """Frames of context around each trial the decoder was trained and evaluated with."""
        return int(self.manifest["model"]["context_frames"])

    def model(self, fmt: str, precision: str) -> ModelEntry:
        """The decoder graph of one format and precision (the error lists those the bundle holds)."""
        for m in self.models:
            if m.format == fmt and m.precision == precision:
                return m
        have = ", ".join(f"{m.format}/{m.precision}" for m in self.models) or "none"
        raise BundleError(f"bundle {self.path} holds no {fmt} {precision} decoder (it holds: {have})")


def _read_json(path: Path, what: str) -> dict:
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: cannot read the {what} ({type(exc).__name__}: {exc})") from exc
    if not isinstance(d, dict):
        raise BundleError(f"{path}: the {what} must be a JSON object, got {type(d).__name__}")
    return d


def _spec(d, where: str) -> TensorSpec:
    try:
        return TensorSpec.from_dict(d)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{where}: bad tensor spec {d!r} ({exc})") from exc


def load_bundle(path: str | os.PathLike, verify: bool = True) -> Bundle:
    """Load a bundle folder and verify it.

    Parameters
    ----------
    path : path
        The bundle folder.
    verify : bool
        Check every file's sha256 (a few ms for a small bundle); the format and the file list are always
        checked.

    Returns
    -------
    Bundle

    Raises
    ------
    BundleError
        No folder or manifest, another format, a newer format version, a file missing, changed (size or
        sha256) or not listed in the manifest, or a malformed entry; the message names the file.
    """
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"bundle folder not found: {path}")
    mpath = path / MANIFEST_FILE
    if not mpath.is_file():
        raise BundleError(f"{path} holds no {MANIFEST_FILE}: is it a bundle written by 'edgensd export bundle'?")
    man = _read_json(mpath, "bundle manifest")
    if man.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{mpath}: format is {man.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    version = man.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BundleError(f"{mpath}: format_version must be a positive int, got {version!r}")
    if version > BUNDLE_FORMAT_VERSION:
        raise BundleError(f"{mpath}: format_version {version} is newer than this edgensd reads (up to "
                          f"{BUNDLE_FORMAT_VERSION}); upgrade edgensd to load this bundle")
    files = man.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{mpath}: 'files' must map each file name to its sha256 and size")
    for name, rec in files.items():
        if Path(name).name != name or name in (".", "..", MANIFEST_FILE):
            raise BundleError(f"{mpath}: file entry {name!r} is not a plain file name in the bundle")
        f = path / name
        if not f.is_file():
            raise BundleError(f"bundle file {f} is missing (listed in {MANIFEST_FILE})")
        if not isinstance(rec, dict) or "sha256" not in rec or "bytes" not in rec:
            raise BundleError(f"{mpath}: entry of {name!r} must hold 'sha256' and 'bytes'")
        if f.stat().st_size != rec["bytes"]:
            raise BundleError(f"bundle file {f} has {f.stat().st_size} bytes, the manifest says {rec['bytes']}: "
                              "the file was changed or truncated")
        if verify and sha256_file(f) != rec["sha256"]:
            raise BundleError(f"bundle file {f} does not match its sha256 in {MANIFEST_FILE}: the file was changed")
    extra = sorted(p.name for p in path.iterdir() if p.name not in files and p.name != MANIFEST_FILE)
    if extra:
        raise BundleError(f"bundle {path} holds files its manifest does not list: {extra}")
    try:
        models = []
        for k, m in enumerate(man["models"]):
            where = f"{mpath} models[{k}]"
            if m["file"] not in files:
                raise BundleError(f"{where}: file {m['file']!r} is not listed in 'files'")
            models.append(ModelEntry(
                file=m["file"], path=path / m["file"], format=str(m["format"]), precision=str(m["precision"]),
                x=_spec(m["x"], where), y=_spec(m["y"], where),
                state_in=tuple(_spec(s, where) for s in m["state_in"]),
                state_out=tuple(_spec(s, where) for s in m["state_out"]), extra=dict(m.get("extra", {}))))
        synth = man["synth"]["file"]
        feats = man["features"]["file"]
        params = man["params"]["file"]
        for name in (synth, feats, params):
            if name not in files:
                raise BundleError(f"{mpath}: {name!r} is not listed in 'files'")
        pj = _read_json(path / params, "parameter map")
        voice = VoiceRange.from_dict(pj["voice_range"])
        features = _read_json(path / feats, "feature settings")
        int(man["model"]["n_electrodes"])
        int(man["lookahead_frames"]["declared"])
    except KeyError as exc:
        raise BundleError(f"{mpath}: missing entry {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"{mpath}: malformed entry ({exc})") from exc
    return Bundle(path=path, manifest=man, models=models, voice=voice, synth_path=path / synth, features=features)
