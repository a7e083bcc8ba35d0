"""Decode a participant file's trials with a bundle (``edgensd decode``), torch-free.

Each trial is decoded over its segment (the trial with the model's training context on each side, from the
zero state, as ``edgensd eval decoder`` does) by :class:`~edgensd.runtime.pipeline.DecodePipeline`:
backend step → physical parameters → C synthesizer audio. The spectrogram PCC compares the C synthesizer's
deterministic spectrogram of the trial's decoded parameters (normalized dB, 256 bins) with the STFT of the
original audio, trial frames only (:func:`edgensd.metrics.pcc`), the measure of
:func:`edgensd.decoding.evaluate.evaluate_decoder`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from edgensd.log import logger
from edgensd.metrics import pcc, summarize
from edgensd.params import PARAM_NAMES

__all__ = ["TRIAL_CHOICES", "decode_file", "decode_trials", "true_spectrogram"]

TRIAL_CHOICES = ("test", "train", "all")
#: Audio frames of context around a trial for its true STFT (the 511-sample window reaches 2 frames out).
_STFT_CONTEXT = 2


def true_spectrogram(p, trial: int) -> np.ndarray:
    """Normalized-dB STFT (n_frames, 256) of a trial's original audio, one row per trial frame.

    The centred STFT of frame ``t`` reads samples around ``128 t``; the audio 2 frames either side of the
    trial is included so the first and last frames see the recording, not zero padding.
    """
    from edgensd.spectrogram import spectrogram_norm

    s, e = p.trial_frames(trial)
    audio = p.trial_audio(trial, before=_STFT_CONTEXT, after=_STFT_CONTEXT)
    return spectrogram_norm(audio)[_STFT_CONTEXT : _STFT_CONTEXT + (e - s)]


def decode_trials(pipeline, p, trials, context: int) -> list[dict]:
    """Decode trials with a pipeline.

    Parameters
    ----------
    pipeline : DecodePipeline
    p : Participant
    trials : sequence of int
    context : int
        Frames of context around each trial.

    Returns
    -------
    list of dict
        Per trial: ``trial``, ``label``, ``raw`` / ``params`` (trial frames, (n, 18)), ``audio`` (trial samples),
        ``pred_spec`` / ``true_spec`` ((n, 256) normalized dB) and ``pcc``.
    """
    from edgensd.runtime.segments import trial_segments

    out = []
    for seg in trial_segments(p, trials, context):
        raw, phys, audio = pipeline.decode(p.ecog[seg.lo : seg.hi])
        tr = seg.trial_slice
        pred = pipeline.synth.spectrogram(phys[tr])
        true = true_spectrogram(p, seg.trial)
        out.append({"trial": seg.trial, "label": p.labels[seg.trial], "raw": raw[tr], "params": phys[tr],
                    "audio": audio[tr.start * 128 : tr.stop * 128], "pred_spec": pred, "true_spec": true,
                    "pcc": pcc(pred, true)})
    return out


def _plot(rec: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    for ax, (s, name) in zip(axes, ((rec["true_spec"], "original"),
                                    (rec["pred_spec"], f"decoded ({title}), PCC {rec['pcc']:.3f}")), strict=True):
        ax.imshow(s.T, origin="lower", aspect="auto", vmin=-1, vmax=1, extent=(0, s.shape[0] / 125, 0, 8000))
        ax.set_ylabel("Hz")
        ax.set_title(f"trial {rec['trial']} ({rec['label'][:40]}): {name}", fontsize=9)
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def decode_file(bundle: str | os.PathLike, data: str | os.PathLike, out_dir: str | os.PathLike,
                backend: str = "onnx", precision: str = "int8", trials: str = "test", plots: bool = True,
                max_wavs: int = 10) -> dict:
    """Decode a participant file's trials with a bundle; write WAVs, spectrogram PNGs and a JSON summary.

    Parameters
    ----------
    bundle : path
        Bundle folder (``edgensd export bundle``).
    data : path
        Participant file with the bundle's electrodes.
    out_dir : path
        Output folder (created): ``decode.json``, ``trialNNNN_original.wav`` / ``trialNNNN_decoded.wav``
        (first ``max_wavs`` trials) and ``trialNNNN.png`` (original vs decoded spectrogram) when ``plots``.
    backend : str
        ``onnx`` (``tflite``, ``tflm`` once installed).
    precision : str
        ``int8`` or ``fp32``.
    trials : str
        ``test`` (held-out trials of :func:`edgensd.data.participant.trial_split`), ``train`` or ``all``.
    plots : bool
        Write the PNGs (needs matplotlib).
    max_wavs : int

    Returns
    -------
    dict
        The JSON summary: ``pcc_mean`` / ``pcc_median`` / ``pcc_std``, ``per_trial`` (trial, label, pcc,
        n_frames), ``step_us`` (median and 99th percentile wall time of one decoder step), backend,
        precision, bundle and data.

    Raises
    ------
    BundleError, FileNotFoundError, ValueError
        A bad bundle, a missing file, an out_dir that is a file, another electrode count, NaN/inf features,
        an empty trial set, an unknown choice.
    BackendUnavailable
        The backend's runtime package is missing.
    """
    from edgensd.audio import save_wav
    from edgensd.data.participant import load_participant, trial_split
    from edgensd.runtime.bundle import load_bundle
    from edgensd.runtime.pipeline import DecodePipeline
    from edgensd.runtime.segments import check_electrodes

    if trials not in TRIAL_CHOICES:
        raise ValueError(f"trials must be one of {list(TRIAL_CHOICES)}, got {trials!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} exists and is not a folder")
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise ValueError("spectrogram PNGs need matplotlib (pip install matplotlib); or decode without plots"
                             ) from exc
    t0 = time.time()
    b = load_bundle(bundle)
    data = Path(data)
    if not data.is_file():
        raise FileNotFoundError(f"participant file not found: {data}")
    p = load_participant(data)
    check_electrodes(p, b.n_electrodes, "decode")
    train_idx, test_idx = trial_split(p) if trials != "all" else (None, None)
    idx = {"test": test_idx, "train": train_idx, "all": np.arange(p.n_trials)}[trials]
    if len(idx) == 0:
        raise ValueError(f"{data} has no {trials} trials to decode")
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe = DecodePipeline(b, backend, precision)
    recs = decode_trials(pipe, p, idx, b.context_frames)
    tag = f"{backend} {precision}"
    for k, rec in enumerate(recs):
        i = rec["trial"]
        if k < max_wavs:
            peak = max(float(np.abs(rec["audio"]).max()), 1e-6) if rec["audio"].size else 1.0
            save_wav(out_dir / f"trial{i:04d}_original.wav", np.clip(p.trial_audio(i), -1, 1))
            save_wav(out_dir / f"trial{i:04d}_decoded.wav", rec["audio"] * min(1.0, 0.99 / peak))
        if plots:
            _plot(rec, out_dir / f"trial{i:04d}.png", tag)
    s = summarize([r["pcc"] for r in recs])
    steps = np.asarray(pipe.step_seconds) * 1e6
    res = {
        "bundle": str(bundle), "data": str(data), "backend": backend, "precision": precision, "trials": trials,
        "n_trials": len(recs), "pcc_mean": s["mean"], "pcc_median": s["median"], "pcc_std": s["std"],
        "per_trial": [{"trial": r["trial"], "label": r["label"], "pcc": r["pcc"], "n_frames": int(len(r["raw"]))}
                      for r in recs],
        "param_names": list(PARAM_NAMES),
        "step_us": {"median": float(np.median(steps)), "p99": float(np.percentile(steps, 99)),
                    "n_steps": int(steps.size)},
        "spectrogram": "C synthesizer deterministic spectrogram of the decoded parameters vs the STFT of the "
                       "original audio (normalized dB, 256 bins), trial frames only; each trial decoded over its "
                       "segment with the model's training context, from the zero state",
        "seconds": round(time.time() - t0, 2),
    }
    tmp = out_dir / "decode.json.tmp"
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    os.replace(tmp, out_dir / "decode.json")
    logger.info("decoded %d %s trials with %s: PCC mean %.4f; step median %.0f us", len(recs), trials, tag,
                res["pcc_mean"], res["step_us"]["median"])
    return res
