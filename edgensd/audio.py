"""Reading, checking and writing audio in the project's convention: 16 kHz mono float32 in [-1, 1].

:func:`load_audio` reads ``.wav``, ``.flac``, ``.ogg`` and ``.aiff`` files (through soundfile/libsndfile)
and headerless ``.g722`` files (G.722 at 64 kbit/s, decoded to 16 kHz with the ``G722`` package), and
converts what can be converted safely, logging each conversion:

=================================  =======================================================================
input                              what happens
=================================  =======================================================================
other sample rate                  resampled to ``target_sr`` (:func:`scipy.signal.resample_poly`, info log)
several channels                   averaged to mono, ``mean`` over channels (info log)
float samples beyond [-1, 1]       clipped to [-1, 1] (warning log with the number of samples)
NaN / inf samples                  :class:`ValueError` naming the file and how many samples
silence only                       :class:`ValueError` naming the file, unless ``allow_silent=True``
no samples                         :class:`ValueError` naming the file
truncated / corrupt file           :class:`ValueError` naming the file (libsndfile's error is chained)
missing file                       :class:`FileNotFoundError` naming the file
=================================  =======================================================================

"Silence only" means a peak absolute amplitude below :data:`SILENCE_PEAK` (1e-3, i.e. -60 dBFS); the
"silence" prompts of the Asterisk sound set (G.722 coding noise, peak 4e-4) count as silent.

Raw G.722 has no header, so a corrupt ``.g722`` file cannot be told from a valid one except when it is
empty; a WAV file whose header declares more samples than the file holds is reported as truncated
(libsndfile alone would silently return the first part).
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import uuid
from pathlib import Path

import numpy as np

from edgensd.log import logger, use_log_level
from edgensd.spectrogram import SAMPLE_RATE

#: Peak absolute amplitude below which a signal counts as silent (-60 dBFS).
SILENCE_PEAK = 1e-3

#: File name suffixes :func:`load_audio` accepts (lower case).
AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".g722")

#: Bit rate (bit/s) of the G.722 files this module decodes (the Asterisk prompts use 64 kbit/s).
G722_BITRATE = 64000

__all__ = [
    "AUDIO_SUFFIXES",
    "SILENCE_PEAK",
    "check_audio",
    "decode_g722",
    "load_audio",
    "resample_audio",
    "save_wav",
]




def _tmp_path(path: Path) -> Path:
    """A fresh hidden name beside ``path`` for an atomic write (created with the process umask)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


def resample_audio(audio: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Resample audio with a polyphase filter (:func:`scipy.signal.resample_poly`).

    Parameters
    ----------
    audio : ndarray, shape (n_samples,)
        Mono audio at ``sr_in`` Hz.
    sr_in, sr_out : int
        Input and output sample rates in Hz (positive integers).

    Returns
    -------
    ndarray, float32, shape (ceil(n_samples * sr_out / sr_in),)
        The resampled audio; not clipped (a full-scale input may overshoot [-1, 1] slightly).
    """
    from scipy.signal import resample_poly

    for name, sr in (("sr_in", sr_in), ("sr_out", sr_out)):
        if int(sr) != sr or sr <= 0:
            raise ValueError(f"{name} must be a positive integer sample rate in Hz, got {sr!r}")
    sr_in, sr_out = int(sr_in), int(sr_out)
    x = np.asarray(audio, dtype=np.float32)
    if sr_in == sr_out:
        return x.copy()
    g = math.gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)


def check_audio(
    audio: np.ndarray,
    sr: int,
    *,
    name: str = "audio",
    allow_silent: bool = False,
) -> np.ndarray:
    """Validate a signal against the project convention and return it as float32.

    Parameters
    ----------
    audio : array_like, shape (n_samples,)
        Mono audio, floating point in [-1, 1].
    sr : int
        Its sample rate in Hz; must be 16000 (:data:`edgensd.spectrogram.SAMPLE_RATE`).
    name : str
        What to call the signal in error messages (a file name, say).
    allow_silent : bool
        Accept a signal whose peak is below :data:`SILENCE_PEAK` (otherwise a ValueError).

    Returns
    -------
    ndarray, float32, shape (n_samples,)

    Raises
    ------
    ValueError
        Wrong sample rate, not 1-D, empty, not floating point, NaN/inf samples (with their count), samples
        beyond [-1, 1] (with their count), or silence only.
    """
    if sr != SAMPLE_RATE:
        raise ValueError(
            f"{name}: sample rate must be {SAMPLE_RATE} Hz, got {sr!r}; "
            "resample with edgensd.audio.resample_audio or load_audio(target_sr=16000)"
        )
    arr = np.asarray(audio)
    if arr.ndim != 1:
        raise ValueError(f"{name}: audio must be 1-D (mono, shape (n_samples,)), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: audio holds no samples")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name}: audio must be floating point in [-1, 1], got dtype {arr.dtype}")
    finite = np.isfinite(arr)
    if not finite.all():
        n_bad = int(arr.size - np.count_nonzero(finite))
        raise ValueError(f"{name}: {n_bad} of {arr.size} samples are NaN or inf")
    peak = float(np.max(np.abs(arr)))
    if peak > 1.0:
        n_over = int(np.count_nonzero(np.abs(arr) > 1.0))
        raise ValueError(
            f"{name}: {n_over} samples lie beyond [-1, 1] (peak {peak:.3g}); scale or np.clip the signal"
        )
    if not allow_silent and peak < SILENCE_PEAK:
        raise ValueError(
            f"{name}: audio is silent (peak {peak:.2e} < {SILENCE_PEAK:g}, i.e. below -60 dBFS); "
            "pass allow_silent=True to accept it"
        )
    return arr.astype(np.float32, copy=False)


def decode_g722(data: bytes, *, name: str = "G.722 data") -> np.ndarray:
    """Decode raw 64 kbit/s G.722 to 16 kHz float32 audio.

    Parameters
    ----------
    data : bytes
        The codewords, one byte per two output samples (no header).
    name : str
        What to call the data in error messages.

    Returns
    -------
    ndarray, float32, shape (2 * len(data),)
        Samples in [-1, 1) (int16 output divided by 32768).
    """
    import G722

    if len(data) == 0:
        raise ValueError(f"{name}: G.722 file is empty")
    pcm = np.asarray(G722.G722(SAMPLE_RATE, G722_BITRATE).decode(bytes(data)), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


def _wav_truncation(path: Path) -> tuple[int, int] | None:
    """``(declared, present)`` data-chunk bytes of a RIFF/WAVE file whose data chunk is cut short, else None.

    Unknown sizes (0 or 0xFFFFFFFF, written by streaming writers) are not judged.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                present = size - pos - 8
                if csize in (0, 0xFFFFFFFF) or csize <= present:
                    return None
                return csize, present
            pos += 8 + csize + (csize & 1)
    return None


def load_audio(
    path: str | os.PathLike,
    *,
    target_sr: int = SAMPLE_RATE,
    allow_silent: bool = False,
    verbose: bool | str | int | None = None,
) -> np.ndarray:
    """Read an audio file as mono float32 in [-1, 1] at ``target_sr``.

    Parameters
    ----------
    path : str or path-like
        A ``.wav``, ``.flac``, ``.ogg``, ``.aiff`` or raw ``.g722`` (64 kbit/s, 16 kHz) file.
    target_sr : int
        Output sample rate in Hz (default 16000); other rates are resampled (logged at info level).
    allow_silent : bool
        Accept a file that holds only silence (peak below :data:`SILENCE_PEAK`).
    verbose : bool | str | int | None
        Log level for this call (see :func:`edgensd.log.set_log_level`); ``None`` keeps the current one.

    Returns
    -------
    ndarray, float32, shape (n_samples,)
        ``n_samples`` is the file's length converted to ``target_sr``.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Unsupported suffix, truncated or corrupt file, no samples, NaN/inf samples, or silence only (see
        the module docstring for what is converted instead).
    """
    with use_log_level(verbose):
        path = Path(path)
        if int(target_sr) != target_sr or target_sr <= 0:
            raise ValueError(f"target_sr must be a positive integer sample rate in Hz, got {target_sr!r}")
        if not path.exists():
            raise FileNotFoundError(f"audio file not found: {path}")
        if not path.is_file():
            raise ValueError(f"audio path {path} is not a file")
        suffix = path.suffix.lower()
        if suffix not in AUDIO_SUFFIXES:
            raise ValueError(
                f"audio file {path}: unsupported suffix {path.suffix!r}; "
                f"allowed suffixes are {list(AUDIO_SUFFIXES)}"
            )
        if suffix == ".g722":
            audio = decode_g722(path.read_bytes(), name=f"audio file {path}")
            sr = SAMPLE_RATE
        else:
            audio, sr = _read_soundfile(path)
        if audio.size == 0:
            raise ValueError(f"audio file {path} holds no samples (truncated or empty?)")
        if sr != target_sr:
            logger.info("audio file %s: resampled from %d Hz to %d Hz", path, sr, target_sr)
            audio = resample_audio(audio, sr, int(target_sr))
            over = np.abs(audio) > 1.0
            if over.any():
                logger.debug("audio file %s: clipped %d resampling overshoots", path, int(over.sum()))
                audio = np.clip(audio, -1.0, 1.0)
        return check_audio(audio, SAMPLE_RATE, name=f"audio file {path}", allow_silent=allow_silent)


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    """Read with libsndfile, check truncation and non-finite values, downmix, clip; returns (mono, sr)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.SoundFileError) as exc:  # LibsndfileError is a RuntimeError subclass
        raise ValueError(f"audio file {path} is corrupt or truncated: {exc}") from exc
    if info.format in ("WAV", "WAVEX"):
        cut = _wav_truncation(path)
        if cut is not None:
            raise ValueError(
                f"audio file {path} is truncated: its header declares {cut[0]} bytes of samples, "
                f"the file holds {cut[1]}"
            )
    finite = np.isfinite(data)
    if not finite.all():
        n_bad = int(data.size - np.count_nonzero(finite))
        raise ValueError(f"audio file {path}: {n_bad} of {data.size} samples are NaN or inf")
    if data.shape[1] > 1:
        logger.info("audio file %s: averaged %d channels to mono", path, data.shape[1])
        mono = data.mean(axis=1, dtype=np.float32)
    else:
        mono = data[:, 0]
    over = np.abs(mono) > 1.0
    if over.any():
        logger.warning(
            "audio file %s: clipped %d samples beyond [-1, 1] (peak %.3g)",
            path,
            int(over.sum()),
            float(np.max(np.abs(mono))),
        )
        mono = np.clip(mono, -1.0, 1.0)
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)


def save_wav(
    path: str | os.PathLike,
    audio: np.ndarray,
    sr: int = SAMPLE_RATE,
    *,
    subtype: str = "PCM_16",
) -> Path:
    """Write mono audio to a WAV file atomically (temporary file in the same folder, then ``os.replace``).

    Parameters
    ----------
    path : str or path-like
        Destination; parent folders are created. An existing file is replaced only once the new one is
        complete.
    audio : array_like, shape (n_samples,)
        Mono floating-point audio in [-1, 1]; silence is allowed.
    sr : int
        Sample rate in Hz (any positive integer; the project convention is 16000).
    subtype : str
        ``'PCM_16'`` (default), ``'PCM_24'`` or ``'FLOAT'`` (bit-exact float32).

    Returns
    -------
    Path
        The written file.
    """
    import soundfile as sf

    path = Path(path)
    allowed = ("PCM_16", "PCM_24", "FLOAT")
    if subtype not in allowed:
        raise ValueError(f"subtype must be one of {list(allowed)}, got {subtype!r}")
    if int(sr) != sr or sr <= 0:
        raise ValueError(f"sr must be a positive integer sample rate in Hz, got {sr!r}")
    arr = np.asarray(audio)
    name = f"audio for {path}"
    if arr.ndim != 1:
        raise ValueError(f"{name}: audio must be 1-D (mono, shape (n_samples,)), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name}: audio must be floating point in [-1, 1], got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: {int(np.sum(~np.isfinite(arr)))} samples are NaN or inf")
    if arr.size and np.max(np.abs(arr)) > 1.0:
        raise ValueError(
            f"{name}: {int(np.sum(np.abs(arr) > 1.0))} samples lie beyond [-1, 1]; "
            "scale or np.clip the signal"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        sf.write(tmp, arr.astype(np.float32), int(sr), format="WAV", subtype=subtype)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
