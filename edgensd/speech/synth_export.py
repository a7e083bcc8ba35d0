"""Export the learned parts of a synthesizer to the C synthesizer's binary file and to a C header.

The ``.edsynth`` file (format version :data:`EDSYNTH_VERSION`) is what ``csrc/edsynth.h`` loads with
``eds_weights_load`` (float) or ``eds_fx_weights_load`` (fixed point). All fields are little-endian:

======  =====  ===============================================================================
offset  bytes  field
======  =====  ===============================================================================
0       8      magic ``b"EDSYNTH\\0"``
8       4      format version (uint32)
12      4      header bytes (64)
16      4      payload bytes (583 float32 = 2332)
20      16     n_formants (6), n_knots (33), n_gain_terms (24), n_bins (256), uint32 each
36      4      n_harmonics ``K = ceil(8000 / f0_min)`` (:func:`edgensd.speech.dsp.max_harmonics`)
40      16     voice-range name, ASCII, NUL padded
56      8      reserved (zero)
64      2332   float32 payload: parameter bounds ``lo[18]``, ``hi[18]`` (:meth:`VoiceRange.bounds`), shape
               tables ``[7][33]``, ``bw0_hz[6]``, ``bw_slope[6]``, ``gain_v_db[24]``, ``gain_n_db[24]``,
               ``background[256]``
2396    4      CRC-32 (``zlib.crc32``) of bytes 0-2395
======  =====  ===============================================================================

The C core is the single judge of what it accepts: :func:`synth_file_bytes` lays the arrays out and then
asks the C check (``edgensd._csynth``) so an export never writes a file the device would refuse, and
:func:`describe_refusal` turns the C status into a message that names the file, the problem and, for a bad
value, the field.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from edgensd.log import logger
from edgensd.params import F0, N_FORMANTS, N_PARAMS, PARAM_NAMES, VoiceRange
from edgensd.spectrogram import N_BINS
from edgensd.speech import dsp
from edgensd.speech.synth_weights import SynthWeights

#: Magic bytes at the start of every ``.edsynth`` file.
EDSYNTH_MAGIC = b"EDSYNTH\0"
#: Format version written and read; bump on any layout change (and in csrc/edsynth.h).
EDSYNTH_VERSION = 1
#: Suffix of exported synth files.
EDSYNTH_SUFFIX = ".edsynth"
#: Name of the synth weights file inside a trained speech model directory (as edgensd.speech.model writes it).
SYNTH_WEIGHTS_FILE = "synth_weights.npz"

HEADER_BYTES = 64
_HEADER = struct.Struct("<8sIIIIIIII16s8x")
#: (name, shape) of the payload arrays, in file order.
PAYLOAD_LAYOUT: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("lo", (N_PARAMS,)),
    ("hi", (N_PARAMS,)),
    ("shape_tables", (N_FORMANTS + 1, dsp.SHAPE_N_KNOTS)),
    ("bw0_hz", (N_FORMANTS,)),
    ("bw_slope", (N_FORMANTS,)),
    ("gain_v_db", (dsp.N_GAIN_TERMS,)),
    ("gain_n_db", (dsp.N_GAIN_TERMS,)),
    ("background", (N_BINS,)),
)
PAYLOAD_FLOATS = sum(int(np.prod(s)) for _, s in PAYLOAD_LAYOUT)
FILE_BYTES = HEADER_BYTES + 4 * PAYLOAD_FLOATS + 4

_STATUS_TEXT = {
    -2: "the file is shorter than a synth file header (truncated?)",
    -3: "wrong magic: not an edgensd synth file (export one with `edgensd export synth`)",
    -5: "header sizes or dimensions differ from this build's (n_formants 6, n_knots 33, n_gain_terms 24, "
        "n_bins 256)",
}


def load_extension():
    """The compiled C synthesizer (``edgensd._csynth``), with a clear error when it was not built."""
    try:
        from edgensd import _csynth
    except ImportError as exc:  # pragma: no cover - the extension is part of every install
        raise ImportError(
            "the C synthesizer extension edgensd._csynth is not built; run `pip install -e .` in the repository"
        ) from exc
    return _csynth


def payload_field(index: int) -> str:
    """Name of payload float ``index`` (e.g. ``'shape_tables[2][5]'``, ``'hi[f0_hz]'``)."""
    start = 0
    for name, shape in PAYLOAD_LAYOUT:
        n = int(np.prod(shape))
        if start <= index < start + n:
            rel = index - start
            if name in ("lo", "hi"):
                return f"{name}[{PARAM_NAMES[rel]}]"
            return name + "".join(f"[{i}]" for i in np.unravel_index(rel, shape))
        start += n
    return f"payload[{index}]"


def describe_refusal(status: int, info: dict, name: str | os.PathLike) -> str:
    """One clear line for a refused synth file image.

    Parameters
    ----------
    status : int
        Negative status returned by the C check (``eds_file_check``).
    info : dict
        What the C check found (``version``, ``expected_bytes``, ``actual_bytes``, ``crc_stored``,
        ``crc_computed``, ``bad_index``).
    name : str or path-like
        The file (or what to call the image) in the message.
    """
    c = load_extension()
    s = c.STATUS
    if status == s["VERSION"]:
        what = f"synth file format version {info['version']}, this edgensd reads version {EDSYNTH_VERSION}"
    elif status == s["SIZE"]:
        what = (f"{info['actual_bytes']} bytes where its header declares {info['expected_bytes']} "
                "(truncated or padded)")
    elif status == s["CHECKSUM"]:
        what = (f"CRC-32 mismatch (stored {info['crc_stored']:#010x}, computed {info['crc_computed']:#010x}): "
                "the file is corrupted")
    elif status == s["VALUE"]:
        what = (f"value {payload_field(info['bad_index'])} is NaN/inf or outside what the synthesizer accepts "
                "(bounds lo < hi, loudness within +-100 dB, frequencies in (0, 8000) Hz, weights in [0, 1], "
                "shape tables >= 0, bw0_hz > 0, 0 <= bw_slope < 128, sum |gain| <= 120 dB, background >= 0)")
    elif status == s["HARMONICS"]:
        what = f"n_harmonics inconsistent with the lowest f0 or above the C build's limit ({c.MAX_HARMONICS})"
    else:
        what = _STATUS_TEXT.get(status, c.status_message(status))
    return f"synth file {name}: {what}"


def check_synth_bytes(data: bytes, name: str | os.PathLike = "<synth image>") -> None:
    """Raise ValueError (naming ``name`` and the problem) unless the C core accepts ``data``."""
    c = load_extension()
    status, info = c.check_file(np.frombuffer(bytes(data), np.uint8))
    if status != 0:
        raise ValueError(describe_refusal(status, info, name))


def synth_file_bytes(weights: SynthWeights) -> bytes:
    """Lay out ``weights`` as a ``.edsynth`` image and check it with the C core.

    Parameters
    ----------
    weights : SynthWeights
        Learned parts of a synthesizer (e.g. ``Synthesizer.export_weights()``).

    Returns
    -------
    bytes
        The file image, :data:`FILE_BYTES` long.

    Raises
    ------
    ValueError
        An array has the wrong shape, or a value is one the C synthesizer refuses (the message names it).
    """
    if not isinstance(weights, SynthWeights):
        raise TypeError(f"weights must be a SynthWeights, got {type(weights).__name__}")
    lo, hi = weights.voice.bounds()
    arrays = {"lo": lo, "hi": hi, **{k: getattr(weights, k) for k, _ in PAYLOAD_LAYOUT[2:]}}
    parts = []
    for key, shape in PAYLOAD_LAYOUT:
        arr = np.asarray(arrays[key], dtype=np.float32)
        if arr.shape != shape:
            raise ValueError(f"synth weights {key} must have shape {shape}, got {arr.shape}")
        parts.append(arr.astype("<f4").ravel())
    payload = np.concatenate(parts).tobytes()
    name = weights.voice.name.encode("ascii", "replace")[:16]
    header = _HEADER.pack(
        EDSYNTH_MAGIC, EDSYNTH_VERSION, HEADER_BYTES, len(payload), N_FORMANTS, dsp.SHAPE_N_KNOTS,
        dsp.N_GAIN_TERMS, N_BINS, dsp.max_harmonics(weights.voice.f0_hz[0]), name,
    )
    body = header + payload
    data = body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)
    check_synth_bytes(data, f"exported from voice {weights.voice.name!r}")
    return data


def write_synth_file(weights: SynthWeights, path: str | os.PathLike) -> Path:
    """Write ``weights`` as a ``.edsynth`` file (atomically); returns the path."""
    path = Path(path)
    data = synth_file_bytes(weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    logger.info("wrote synth file %s (%d bytes, voice %r, %d harmonics)", path, len(data), weights.voice.name,
                dsp.max_harmonics(weights.voice.f0_hz[0]))
    return path


def synth_weights_from_bytes(data: bytes, name: str | os.PathLike = "<synth image>") -> SynthWeights:
    """Decode a ``.edsynth`` image (checked by the C core first) back to :class:`SynthWeights`."""
    check_synth_bytes(data, name)
    values = np.frombuffer(bytes(data), dtype="<f4", count=PAYLOAD_FLOATS, offset=HEADER_BYTES).astype(np.float32)
    fields = {}
    start = 0
    for key, shape in PAYLOAD_LAYOUT:
        n = int(np.prod(shape))
        fields[key] = values[start : start + n].reshape(shape).copy()
        start += n
    lo, hi = fields.pop("lo"), fields.pop("hi")
    voice_name = _HEADER.unpack_from(bytes(data))[9].rstrip(b"\0").decode("ascii", "replace") or "custom"
    pair = lambda i: (float(lo[i]), float(hi[i]))  # noqa: E731
    voice = VoiceRange(
        name=voice_name,
        f0_hz=pair(F0),
        loudness_db=pair(1),
        formants_hz=tuple(pair(3 + i) for i in range(N_FORMANTS)),
        fu_hz=pair(15),
        bu_hz=pair(16),
    )
    lo_v, hi_v = voice.bounds()
    if not (np.array_equal(lo_v, lo) and np.array_equal(hi_v, hi)):
        raise ValueError(f"synth file {name}: parameter bounds of alpha/a1-a6/au must be [0, 1]")
    return SynthWeights(voice=voice, **fields)


def read_synth_file(path: str | os.PathLike) -> SynthWeights:
    """Read a ``.edsynth`` file written by :func:`write_synth_file`.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Wrong magic, version, size or checksum, or a refused value; the message names the file and problem.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"synth file not found: {path}")
    return synth_weights_from_bytes(path.read_bytes(), path)


def load_synth_source(source: str | os.PathLike | SynthWeights) -> tuple[SynthWeights, bytes, str]:
    """Resolve what the synth CLI/API accepts into (weights, checked file image, description).

    ``source`` is a :class:`SynthWeights`, a ``.edsynth`` file, a ``.npz`` weights file or a trained speech
    model directory holding ``synth_weights.npz``.
    """
    if isinstance(source, SynthWeights):
        return source, synth_file_bytes(source), f"voice {source.voice.name!r} weights"
    path = Path(source)
    if path.is_dir():
        npz = path / SYNTH_WEIGHTS_FILE
        if not npz.is_file():
            raise FileNotFoundError(f"{path} holds no {SYNTH_WEIGHTS_FILE}: is it a trained speech model directory?")
        path = npz
    if not path.exists():
        raise FileNotFoundError(f"synth weights not found: {path}")
    if path.suffix == ".npz":
        weights = SynthWeights.load_npz(path)
        return weights, synth_file_bytes(weights), str(path)
    data = path.read_bytes()
    return synth_weights_from_bytes(data, path), data, str(path)


def c_header_text(data: bytes, symbol: str = "eds_synth_file", source: str = "") -> str:
    """A C header embedding a ``.edsynth`` image as ``static const uint8_t symbol[]`` for firmware.

    The image keeps its checksum, so firmware loads it with the same call as a file::

        eds_weights_load(&w, symbol, SYMBOL_BYTES, NULL);      /* or eds_fx_weights_load */
    """
    if not symbol.isidentifier() or not symbol.isascii():
        raise ValueError(f"symbol must be a C identifier, got {symbol!r}")
    check_synth_bytes(data, source or symbol)
    upper = symbol.upper()
    crc = struct.unpack_from("<I", data, len(data) - 4)[0]
    k = struct.unpack_from("<I", data, 36)[0]
    voice = _HEADER.unpack_from(data)[9].rstrip(b"\0").decode("ascii", "replace")
    lines = [
        f"/* {symbol}.h -- GENERATED by `edgensd export synth`{' from ' + source if source else ''}.",
        f" * edgensd synth file, format version {EDSYNTH_VERSION}: voice {voice!r}, {k} harmonics, "
        f"{len(data)} bytes, CRC-32 {crc:#010x}.",
        f" * Load: eds_weights_load(&w, {symbol}, {upper}_BYTES, NULL) or eds_fx_weights_load (csrc/edsynth.h). */",
        f"#ifndef {upper}_H",
        f"#define {upper}_H",
        "#include <stdint.h>",
        f"#define {upper}_BYTES {len(data)}u",
        f"#define {upper}_VERSION {EDSYNTH_VERSION}u",
        f"#define {upper}_CRC32 {crc:#010x}u",
        f"static const uint8_t {symbol}[{len(data)}] = {{",
    ]
    for i in range(0, len(data), 16):
        lines.append("    " + ", ".join(f"0x{b:02x}" for b in data[i : i + 16]) + ",")
    lines += ["};", f"#endif /* {upper}_H */", ""]
    return "\n".join(lines)


def write_c_header(data: bytes, path: str | os.PathLike, symbol: str | None = None, source: str = "") -> Path:
    """Write :func:`c_header_text` to ``path``; the symbol defaults to ``eds_`` + the file stem."""
    path = Path(path)
    if symbol is None:
        stem = "".join(ch if ch.isalnum() else "_" for ch in path.stem)
        symbol = "eds_" + stem
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(c_header_text(data, symbol, source))
    logger.info("wrote C header %s (symbol %s)", path, symbol)
    return path
