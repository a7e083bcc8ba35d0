"""Evaluate a speech model: resynthesis of held-out utterances (spectrogram PCC), with baselines, WAVs
and plots."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from edgensd.data.participant import _cut, load_participant, trial_split
from edgensd.log import logger, progress_enabled
from edgensd.metrics import cepstral_envelope, pcc, summarize
from edgensd.params import N_PARAMS
from edgensd.spectrogram import HOP, power_spectrogram, power_to_norm
from edgensd.speech.features import CONTEXT, audio_features
from edgensd.speech.model import SpeechModel, load_speech_model


def encode_audio(model: SpeechModel, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the encoder and the synthesizer (deterministic) on one audio segment.

    Returns
    -------
    params : ndarray (n_frames, 18), physical units
    spec_pred : ndarray (n_frames, 256), normalized dB
    spec_true : ndarray (n_frames, 256), normalized dB
    """
    feats = audio_features(audio, model.config.voice)
    x = torch.from_numpy(feats.encoder_input(model.config.voice)).unsqueeze(0)
    with torch.no_grad():
        params, power = model(x)
    return params[0].numpy(), power_to_norm(power[0].numpy()), feats.spec


def encode_recording(model: SpeechModel, audio: np.ndarray, n_frames: int, chunk_frames: int = 2500) -> np.ndarray:
    """Speech parameters of every frame of a whole recording, encoded in chunks with context on each side.

    Parameters
    ----------
    model : SpeechModel
        A trained stage-1 model.
    audio : ndarray, float32, shape (n_samples,)
        16 kHz audio of the recording (frame ``t`` covers samples ``128 t`` to ``128 (t + 1)``).
    n_frames : int
        Frames to return (the neural frame count of the recording).
    chunk_frames : int
        Frames encoded per call (20 s by default); each chunk sees ``CONTEXT`` frames on both sides, as in
        training, so the result does not depend on the chunk size beyond float rounding at the seams.

    Returns
    -------
    ndarray, float32, shape (n_frames, 18)
        Physical units (:mod:`edgensd.params`).
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    audio = np.asarray(audio, np.float32)
    out = np.zeros((n_frames, N_PARAMS), np.float32)
    for a in range(0, n_frames, chunk_frames):
        b = min(a + chunk_frames, n_frames)
        seg = _cut(audio, (a - CONTEXT) * HOP, (b + CONTEXT) * HOP)
        feats = audio_features(seg, model.config.voice)
        x = torch.from_numpy(feats.encoder_input(model.config.voice)).unsqueeze(0)
        with torch.no_grad():
            prm = model.encoder(x)[0].numpy()
        out[a:b] = prm[CONTEXT : CONTEXT + (b - a)]
    return out


def evaluate_speech(
    model_dir: str | Path,
    data: str | Path,
    json_path: str | Path | None = None,
    wav_dir: str | Path | None = None,
    plots_dir: str | Path | None = None,
    max_wavs: int = 10,
) -> dict:
    """Resynthesize the held-out utterances and score them.

    Parameters
    ----------
    model_dir : path
        A trained speech model directory.
    data : path
        The participant (or speech-only) file it was trained on.
    json_path : path, optional
        Where to write the results as JSON.
    wav_dir : path, optional
        Write, for the first ``max_wavs`` utterances, the original audio, the frame renderer's audio from the
        encoded parameters and Griffin-Lim audio from the synthesized spectrogram; adds STOI to the results.
    plots_dir : path, optional
        Write PNGs of original vs resynthesized spectrograms with the f0/formant tracks.

    Returns
    -------
    dict
        ``pcc_mean``, ``pcc_median``, ``n_utterances``, ``per_utterance`` (trial, label, pcc, n_frames),
        ``baselines`` (``floor_pcc_mean``: the training mean spectrum for every frame;
        ``cepstral_envelope_pcc_mean``: the true spectrogram's 30-coefficient cepstral envelope).
    """
    from tqdm import tqdm

    t0 = time.time()
    model = load_speech_model(model_dir)
    p = load_participant(data, require_neural=False)
    if p.voice_range is not None and not p.voice_range.same_as(model.config.voice):
        raise ValueError(
            f"{data} has voice range {p.voice_range.name!r} which differs from the model's "
            f"({model.config.voice.name!r}); evaluate a model on the participant it was trained for"
        )
    train_idx, test_idx = trial_split(p)
    if len(test_idx) == 0:
        raise ValueError(f"{data} has an empty test split")
    # floor: the mean training spectrum (normalized dB) predicted for every frame
    mean_spec = np.mean(
        np.concatenate([power_to_norm(power_spectrogram(p.trial_audio(int(i)))) for i in train_idx]), axis=0
    )
    per, floor, ceps, stois = [], [], [], []
    results_audio = []
    for j, i in enumerate(tqdm(test_idx, desc="eval speech", unit="utt", disable=not progress_enabled())):
        audio = p.trial_audio(int(i), before=CONTEXT, after=CONTEXT)
        params, pred, true = encode_audio(model, audio)
        sl = slice(CONTEXT, pred.shape[0] - CONTEXT)
        r = pcc(pred[sl], true[sl])
        per.append({"trial": int(i), "label": p.labels[int(i)], "pcc": r, "n_frames": int(sl.stop - sl.start)})
        floor.append(pcc(np.broadcast_to(mean_spec, true[sl].shape) + 0.0 * true[sl], true[sl]))
        ceps.append(pcc(cepstral_envelope(true[sl]), true[sl]))
        if wav_dir is not None and j < max_wavs:
            results_audio.append((int(i), audio, params, pred))
    res = {
        "model": str(model_dir),
        "data": str(data),
        "pcc_mean": summarize([u["pcc"] for u in per])["mean"],
        "pcc_median": summarize([u["pcc"] for u in per])["median"],
        "pcc_std": summarize([u["pcc"] for u in per])["std"],
        "n_utterances": len(per),
        "per_utterance": per,
        "baselines": {
            "floor_pcc_mean": summarize(floor)["mean"],
            "cepstral_envelope_pcc_mean": summarize(ceps)["mean"],
        },
        "spectrogram": "deterministic synthesizer output vs STFT of the original (normalized dB, 256 bins)",
    }
    if wav_dir is not None:
        stois = _write_wavs(model, results_audio, Path(wav_dir))
        res["stoi"] = stois
    if plots_dir is not None:
        _plots(model, p, test_idx[: min(6, len(test_idx))], Path(plots_dir))
    res["eval_seconds"] = round(time.time() - t0, 1)
    logger.info(
        "speech resynthesis on %d held-out utterances: PCC mean %.4f (median %.4f); floor %.4f, cepstral "
        "envelope %.4f", res["n_utterances"], res["pcc_mean"], res["pcc_median"],
        res["baselines"]["floor_pcc_mean"], res["baselines"]["cepstral_envelope_pcc_mean"],
    )
    if json_path is not None:
        json_path = Path(json_path)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = json_path.with_suffix(json_path.suffix + ".tmp")
        tmp.write_text(json.dumps(res, indent=2) + "\n")
        tmp.replace(json_path)
    return res


def _write_wavs(model: SpeechModel, items: list, wav_dir: Path) -> dict:
    from pystoi import stoi

    from edgensd.audio import save_wav
    from edgensd.speech.griffinlim import griffin_lim
    from edgensd.speech.render import render_audio

    wav_dir.mkdir(parents=True, exist_ok=True)
    weights = model.synth.export_weights()
    s_render, s_gl = [], []
    for trial, audio, params, pred in items:
        rendered = render_audio(weights, params)
        gl = griffin_lim(pred)
        n = min(len(audio), len(rendered), len(gl))
        peak = max(np.abs(rendered).max(), np.abs(gl).max(), 1e-6)
        scale = min(1.0, 0.99 / peak)
        save_wav(wav_dir / f"trial{trial:04d}_original.wav", np.clip(audio, -1, 1))
        save_wav(wav_dir / f"trial{trial:04d}_render.wav", rendered * scale)
        save_wav(wav_dir / f"trial{trial:04d}_griffinlim.wav", gl * scale)
        s_render.append(stoi_or_nan(stoi, audio[:n], rendered[:n]))
        s_gl.append(stoi_or_nan(stoi, audio[:n], gl[:n]))
    return {
        "variant": "STOI (Taal et al. 2011, pystoi, not extended) vs the original audio",
        "frame_renderer_mean": summarize(s_render)["mean"],
        "griffin_lim_mean": summarize(s_gl)["mean"],
        "n_utterances": summarize(s_render)["n"],
        "n_too_short": int(np.sum(~np.isfinite(s_render))),
    }


def stoi_or_nan(stoi, ref: np.ndarray, deg: np.ndarray) -> float:
    """STOI, or NaN for an utterance too short for it (pystoi then warns and returns 1e-5)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(stoi(ref, deg, 16000, extended=False))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return float("nan")
    return value


def _plots(model: SpeechModel, p, trials, plots_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgensd.params import F0, FORMANT_F

    plots_dir.mkdir(parents=True, exist_ok=True)
    for i in trials:
        audio = p.trial_audio(int(i), before=CONTEXT, after=CONTEXT)
        params, pred, true = encode_audio(model, audio)
        fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
        for ax, s, title in ((axes[0], true, "original"), (axes[1], pred, "resynthesized")):
            ax.imshow(s.T, origin="lower", aspect="auto", vmin=-1, vmax=1, extent=(0, s.shape[0] / 125, 0, 8000))
            ax.set_ylabel("Hz")
            ax.set_title(f"trial {int(i)} ({p.labels[int(i)][:40]}): {title}")
        tt = np.arange(params.shape[0]) / 125
        axes[1].plot(tt, params[:, FORMANT_F], "w-", lw=0.6)
        axes[1].plot(tt, params[:, F0] * 10, "r-", lw=0.8, label="10 × f0")
        axes[1].legend(loc="upper right", fontsize=7)
        axes[1].set_xlabel("s")
        fig.tight_layout()
        fig.savefig(plots_dir / f"trial{int(i):04d}.png", dpi=80)
        plt.close(fig)
