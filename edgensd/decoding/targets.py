"""Training and evaluation targets of stage 2: trial segments, the frozen encoder's reference parameters and
the true spectrograms, cached on disk.

Every trial ``i`` (neural frames ``start:end``) is taken as a *segment* of frames
``[max(start - context, 0), min(end + context, n_frames))`` of the recording, so a causal decoder has warmed
up before the trial begins and a non-causal one sees what follows it. For each segment this module holds

* ``spec`` — normalized-dB STFT of the true audio, float32 (n, 256) (DESIGN.md conventions);
* ``mel`` — normalized-dB mel spectrogram, float32 (n, 128);
* ``params`` — the frozen speech encoder's reference parameters from the true audio, physical units,
  float32 (n, 18) (the encoder sees :data:`edgensd.speech.features.CONTEXT` extra frames on each side).

Computing them takes about a minute for the full Allison set (pitch tracking dominates), so
:func:`load_references` caches them in ``reference_<key>.npz``, where the key hashes the audio, the trial
onsets/offsets, the speech model's weights and the context.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np

from edgensd.data.participant import Participant
from edgensd.log import logger, progress_enabled
from edgensd.params import ALPHA, F0, LOUD, N_PARAMS, VoiceRange
from edgensd.runtime.bundle import sha256_file as file_sha256

#: Default frames of context on each side of a trial (64 frames = 512 ms).
CONTEXT_FRAMES = 64
#: Bump when the cached content changes.
_CACHE_VERSION = 1

__all__ = [
    "CONTEXT_FRAMES",
    "References",
    "Segments",
    "build_segments",
    "check_neural",
    "compute_references",
    "data_key",
    "file_sha256",
    "load_references",
    "param_position",
]



def data_key(p: Participant) -> str:
    """Hash (16 hex digits) of what the targets and decoders depend on: audio, trials, neural features."""
    h = hashlib.sha256()
    for arr in (p.audio, p.start, p.end, p.ecog if p.ecog is not None else np.zeros(0)):
        a = np.ascontiguousarray(arr)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    if p.test_trials is not None:
        h.update(np.ascontiguousarray(p.test_trials, np.int64).tobytes())
    return h.hexdigest()[:16]


def check_neural(p: Participant, n_electrodes: int | None = None) -> None:
    """Refuse a participant without neural data, with NaN/inf features or the wrong electrode count.

    Parameters
    ----------
    p : Participant
    n_electrodes : int, optional
        The model's electrode count; the file must have as many.

    Raises
    ------
    ValueError
        Naming the file, the electrodes with NaN/inf, or both electrode counts.
    """
    where = str(p.path) if p.path is not None else "participant"
    if p.ecog is None:
        raise ValueError(f"{where} holds no neural data ('ecog_alldataset'): decoders need a participant file")
    bad = ~np.isfinite(p.ecog)
    if bad.any():
        cols = np.flatnonzero(bad.any(axis=0))
        raise ValueError(
            f"{where}: the neural features hold {int(bad.sum())} NaN/inf values (electrodes "
            f"{cols[:10].tolist()}{' ...' if cols.size > 10 else ''}); decoders need finite high-gamma features"
        )
    if n_electrodes is not None and p.ecog.shape[1] != n_electrodes:
        raise ValueError(
            f"{where} has {p.ecog.shape[1]} electrodes but the model was trained on n_electrodes={n_electrodes}; "
            "evaluate a model on a participant file with the same electrodes"
        )


def param_position(params: np.ndarray, voice: VoiceRange) -> np.ndarray:
    """Position of each physical parameter within its range, in [0, 1] (f0 on a log scale).

    This is ``sigmoid(raw)`` for the raw value that :func:`edgensd.params.raw_to_physical` maps to
    ``params``, so a decoder's ``sigmoid(raw)`` compares with it directly.

    Parameters
    ----------
    params : ndarray, shape (..., 18)
        Physical parameters.
    voice : VoiceRange

    Returns
    -------
    ndarray, float32, shape (..., 18)
    """
    params = np.asarray(params, np.float64)
    lo, hi = voice.bounds()
    s = (params - lo) / (hi - lo)
    f0 = np.clip(params[..., F0], lo[F0], hi[F0])
    s[..., F0] = (np.log(f0) - np.log(lo[F0])) / (np.log(hi[F0]) - np.log(lo[F0]))
    return np.clip(s, 0.0, 1.0).astype(np.float32)


@dataclasses.dataclass
class References:
    """Targets of every trial's segment, concatenated (see the module docstring).

    Attributes
    ----------
    lo, hi : ndarray of int64, shape (n_trials,)
        Segment of each trial, frames ``[lo, hi)`` of the recording.
    offsets : ndarray of int64, shape (n_trials + 1,)
        Rows of trial ``i`` in the arrays below: ``offsets[i]:offsets[i + 1]``.
    spec : ndarray, float32, shape (N, 256)
    mel : ndarray, float32, shape (N, 128)
    params : ndarray, float32, shape (N, 18)
        Reference parameters, physical units.
    context : int
        Context frames requested on each side.
    key : str
        Cache key.
    """

    lo: np.ndarray
    hi: np.ndarray
    offsets: np.ndarray
    spec: np.ndarray
    mel: np.ndarray
    params: np.ndarray
    context: int
    key: str = ""

    def rows(self, i: int) -> slice:
        """Rows of trial ``i``'s segment."""
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))


def _segment_bounds(p: Participant, context: int) -> tuple[np.ndarray, np.ndarray]:
    lo = np.maximum(p.start - context, 0)
    hi = np.minimum(p.end + context, p.n_frames)
    return lo.astype(np.int64), hi.astype(np.int64)


def compute_references(p: Participant, speech_model, context: int = CONTEXT_FRAMES) -> References:
    """Run the frozen encoder on every trial's segment; compute the true spectrograms.

    Parameters
    ----------
    p : Participant
    speech_model : edgensd.speech.model.SpeechModel
        The frozen stage-1 model (eval mode is set here).
    context : int
        Frames of context on each side of each trial.

    Returns
    -------
    References
    """
    import torch
    from tqdm import tqdm

    from edgensd.speech.features import CONTEXT, audio_features

    voice = speech_model.config.voice
    lo, hi = _segment_bounds(p, context)
    specs, mels, params = [], [], []
    speech_model.eval()
    for i in tqdm(range(p.n_trials), desc="reference params", unit="trial", disable=not progress_enabled()):
        s, e = p.trial_frames(i)
        audio = p.trial_audio(i, before=int(s - lo[i]) + CONTEXT, after=int(hi[i] - e) + CONTEXT)
        feats = audio_features(audio, voice)
        x = torch.from_numpy(feats.encoder_input(voice)).unsqueeze(0)
        with torch.no_grad():
            prm = speech_model.encoder(x)[0].numpy()
        sl = slice(CONTEXT, feats.n_frames - CONTEXT)
        n = int(hi[i] - lo[i])
        if sl.stop - sl.start != n:  # pragma: no cover - guarded by the frame conventions
            raise RuntimeError(f"trial {i}: {sl.stop - sl.start} reference frames, expected {n}")
        specs.append(feats.spec[sl].astype(np.float32))
        mels.append(feats.mel[sl].astype(np.float32))
        params.append(prm[sl].astype(np.float32))
    offsets = np.concatenate([[0], np.cumsum(hi - lo)]).astype(np.int64)
    return References(
        lo=lo, hi=hi, offsets=offsets, spec=np.concatenate(specs), mel=np.concatenate(mels),
        params=np.concatenate(params), context=int(context),
    )


def load_references(
    p: Participant,
    speech_model,
    speech_model_dir: str | os.PathLike,
    context: int = CONTEXT_FRAMES,
    cache_dir: str | os.PathLike | None = None,
) -> References:
    """Reference targets of every trial, from the cache when it matches, else computed and cached.

    Parameters
    ----------
    p : Participant
    speech_model : SpeechModel
        Loaded from ``speech_model_dir``.
    speech_model_dir : path
        Its directory (its ``model.pt`` bytes enter the cache key).
    context : int
        Frames of context on each side of each trial.
    cache_dir : path, optional
        Where ``reference_<key>.npz`` lives (None: no caching).

    Returns
    -------
    References
    """
    from edgensd.speech.model import MODEL_FILE

    h = hashlib.sha256()
    h.update(data_key(p).encode())
    h.update(file_sha256(Path(speech_model_dir) / MODEL_FILE).encode())
    h.update(f"context={int(context)};v={_CACHE_VERSION}".encode())
    key = h.hexdigest()[:16]
    path = Path(cache_dir) / f"reference_{key}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path) as z:
                refs = References(**{k: z[k] for k in ("lo", "hi", "offsets", "spec", "mel", "params")},
                                  context=int(z["context"]), key=key)
            logger.info("reference parameters from cache %s", path)
            return refs
        except Exception as exc:  # a damaged cache is recomputed
            logger.warning("cache %s unreadable (%s); recomputing", path, exc)
    refs = compute_references(p, speech_model, context)
    refs.key = key
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, lo=refs.lo, hi=refs.hi, offsets=refs.offsets, spec=refs.spec, mel=refs.mel,
                 params=refs.params, context=refs.context)
        os.replace(tmp, path)
        logger.info("cached reference parameters in %s", path)
    return refs


@dataclasses.dataclass
class Segments:
    """Concatenated segments of some trials (neural frames + targets), for training or evaluation.

    Attributes
    ----------
    trials : ndarray of int64, shape (n_seg,)
        Trial of each segment.
    offsets : ndarray of int64, shape (n_seg + 1,)
        Rows of segment ``k``: ``offsets[k]:offsets[k + 1]``.
    first : ndarray of int64, shape (n_seg,)
        Row (within the segment) of the trial's onset.
    length : ndarray of int64, shape (n_seg,)
        Frames of the trial itself (``end - start``); the trial is rows ``first:first + length``.
    neural : ndarray, float32, shape (N, n_electrodes)
        High-gamma features.
    spec, mel, params : ndarray, float32
        As in :class:`References`.
    """

    trials: np.ndarray
    offsets: np.ndarray
    first: np.ndarray
    length: np.ndarray
    neural: np.ndarray
    spec: np.ndarray
    mel: np.ndarray
    params: np.ndarray

    def __len__(self) -> int:
        return int(self.trials.shape[0])

    def rows(self, k: int) -> slice:
        """Rows of segment ``k``."""
        return slice(int(self.offsets[k]), int(self.offsets[k + 1]))

    def trial_rows(self, k: int) -> slice:
        """Rows of segment ``k``'s trial (without context), as absolute rows of the arrays."""
        a = int(self.offsets[k] + self.first[k])
        return slice(a, a + int(self.length[k]))


def build_segments(
    p: Participant, refs: References, trials: np.ndarray, exclude: np.ndarray | None = None
) -> Segments:
    """Cut the segments of ``trials`` (neural frames + reference targets).

    Parameters
    ----------
    p : Participant
    refs : References
    trials : ndarray of int
        Trials to take.
    exclude : ndarray of int, optional
        Trials whose frames no segment may include (the held-out trials, when building training data):
        a segment's context is shortened where it would reach into one of them.

    Returns
    -------
    Segments
    """
    ex = [(int(p.start[j]), int(p.end[j])) for j in (exclude if exclude is not None else [])]
    neural, spec, mel, params, first, length = [], [], [], [], [], []
    for i in trials:
        i = int(i)
        s, e = p.trial_frames(i)
        lo, hi = int(refs.lo[i]), int(refs.hi[i])
        for a, b in ex:
            if b <= s:
                lo = max(lo, b)
            elif a >= e:
                hi = min(hi, a)
            elif a < e and b > s and (a, b) != (s, e):
                raise ValueError(f"trial {i} overlaps held-out trial frames [{a}, {b}); check the trial split")
        r0 = int(refs.offsets[i]) + (lo - int(refs.lo[i]))
        n = hi - lo
        neural.append(np.asarray(p.ecog[lo:hi], np.float32))
        spec.append(refs.spec[r0 : r0 + n])
        mel.append(refs.mel[r0 : r0 + n])
        params.append(refs.params[r0 : r0 + n])
        first.append(s - lo)
        length.append(e - s)
    n_el = p.ecog.shape[1]
    offsets = np.concatenate([[0], np.cumsum([a.shape[0] for a in neural])]).astype(np.int64)
    cat = (lambda xs, d: np.concatenate(xs) if xs else np.zeros((0, d), np.float32))  # noqa: E731
    return Segments(
        trials=np.asarray(trials, np.int64), offsets=offsets, first=np.asarray(first, np.int64),
        length=np.asarray(length, np.int64), neural=cat(neural, n_el), spec=cat(spec, 256), mel=cat(mel, 128),
        params=cat(params, N_PARAMS),
    )


def param_loss_weights(params: np.ndarray, voice: VoiceRange, loud_ref: tuple[float, float]) -> np.ndarray:
    """Per-frame weights of the parameter loss, float32 (N, 18).

    f0 counts in proportion to the reference voicing α; the formant frequencies and amplitudes, the voicing
    and the unvoiced formant count in proportion to the frame's activity (reference loudness between the
    ``loud_ref`` (low, high) dB levels mapped onto 0..1); loudness counts everywhere.
    """
    n = params.shape[0]
    w = np.ones((n, N_PARAMS), np.float32)
    lo, hi = loud_ref
    act = np.clip((params[:, LOUD] - lo) / max(hi - lo, 1e-3), 0.05, 1.0).astype(np.float32)
    w *= act[:, None]
    w[:, LOUD] = 1.0
    w[:, F0] = np.clip(params[:, ALPHA], 0.0, 1.0) * act
    return w
