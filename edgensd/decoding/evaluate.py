"""Evaluate a trained ECoG decoder on the held-out trials, with the baselines on the same trials.

For each held-out trial the decoder runs over the trial's segment (the trial with ``context_frames`` of
neural context on each side, as in training; a causal decoder starts from the zero state at the segment's
start), its raw outputs go through :func:`edgensd.params.raw_to_physical` and the frozen synthesizer
(deterministic), and the decoded normalized-dB spectrogram of the trial's own frames is compared with the
STFT of the true audio (:func:`edgensd.metrics.pcc`, frames × 256 bins).

Reported on the same trials (DESIGN.md, "Reporting accuracy honestly"): the floor (training-mean spectrum),
ridge regression from lagged neural frames (causal and non-causal lags, :mod:`edgensd.decoding.baselines`),
and the ceiling of the speech model itself (its encoder's reference parameters through the synthesizer).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from edgensd.data.participant import load_participant, trial_split
from edgensd.decoding.baselines import CAUSAL_LAGS, NONCAUSAL_LAGS, floor_spectrum, load_ridge
from edgensd.decoding.targets import Segments, build_segments, check_neural, data_key, load_references
from edgensd.decoding.train import _check_voice, load_trained_decoder
from edgensd.log import logger, progress_enabled
from edgensd.metrics import pcc, summarize
from edgensd.params import PARAM_NAMES, VoiceRange, raw_to_physical
from edgensd.spectrogram import power_to_norm

__all__ = [
    "STOI_DESCRIPTION", "decode_segment", "evaluate_decoder", "load_eval_setup", "params_to_spec", "prepare_cache",
    "streaming_parity",
]

STOI_DESCRIPTION = (
    "STOI (Taal et al. 2011; pystoi, extended=False) of audio rendered frame by frame from the decoded "
    "parameters by edgensd.speech.render.render_audio (the numpy frame renderer with the speech model's "
    "synth weights, noise seed 0, no background), against the original trial audio"
)


def decode_segment(decoder, neural: np.ndarray) -> np.ndarray:
    """Run a decoder (eval mode, no gradients) on one segment.

    Parameters
    ----------
    decoder : Decoder
    neural : ndarray, shape (n, n_electrodes)

    Returns
    -------
    ndarray, float32, shape (n, 18)
        Raw outputs.
    """
    with torch.no_grad():
        return decoder(torch.from_numpy(np.ascontiguousarray(neural, np.float32))[None])[0].numpy()


def streaming_parity(decoder, neural: np.ndarray, seed: int = 0) -> dict:
    """Check a causal decoder's streaming forms against its whole-sequence output on real features.

    Parameters
    ----------
    decoder : Decoder
        Causal, eval mode.
    neural : ndarray, shape (n, n_electrodes)
        One segment of features.
    seed : int
        Seed of the random chunk sizes (1 to 17 frames).

    Returns
    -------
    dict
        ``frame_by_frame_max_abs_diff`` (``step`` with carried state) and ``random_chunks_max_abs_diff``
        (:meth:`~edgensd.decoders.Decoder.stream`), both against ``forward`` on the whole segment (raw outputs),
        and ``n_frames``.
    """
    x = torch.from_numpy(np.ascontiguousarray(neural, np.float32))[None]
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        whole = decoder(x)
        state = decoder.init_state(1)
        steps = []
        for t in range(x.shape[1]):
            y, state = decoder.step(x[:, t], state)
            steps.append(y)
        look = decoder.lookahead_frames
        by_frame = torch.stack(steps, 1)[:, look:]
        cuts = np.cumsum(rng.integers(1, 18, size=x.shape[1]))
        cuts = [0, *[int(c) for c in cuts if c < x.shape[1]], x.shape[1]]
        chunks = torch.cat(list(decoder.stream([x[:, a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)])), 1)
    n = by_frame.shape[1]
    return {
        "frame_by_frame_max_abs_diff": float((by_frame - whole[:, :n]).abs().max()),
        "random_chunks_max_abs_diff": float((chunks - whole).abs().max()),
        "n_frames": int(x.shape[1]),
    }


def params_to_spec(synth, params: np.ndarray) -> np.ndarray:
    """Physical parameters (n, 18) → normalized-dB spectrogram (n, 256) through the synthesizer."""
    with torch.no_grad():
        power = synth(torch.from_numpy(np.ascontiguousarray(params, np.float32)))
    return power_to_norm(power.numpy())


def load_eval_setup(model_dir, data, speech_model=None, cache_dir=None) -> dict:
    """Load and cross-check everything an evaluation needs.

    Returns
    -------
    dict
        ``trained`` (:class:`~edgensd.decoding.train.TrainedDecoder`), ``speech`` (SpeechModel),
        ``speech_dir``, ``participant``, ``train_idx``, ``test_idx``, ``refs``, ``train_seg``, ``test_seg``,
        ``voice``, ``cache_dir``.

    Raises
    ------
    FileNotFoundError
        Missing model directory, speech model or data file.
    ValueError
        Electrode count differs from the model's, NaN/inf in the features, an empty test split, or a speech
        model (or participant) of another voice range than the decoder was trained with.
    """
    from edgensd.speech.model import load_speech_model

    td = load_trained_decoder(model_dir)
    speech_dir = Path(speech_model if speech_model is not None else td.train_config.speech_model)
    sm = load_speech_model(speech_dir)
    voice = sm.config.voice
    trained_voice = VoiceRange.from_dict(td.info["voice_range"])
    if not voice.same_as(trained_voice):
        raise ValueError(
            f"speech model {speech_dir} has voice range {voice.name!r} {voice.f0_hz} Hz but the decoder in "
            f"{model_dir} was trained with {trained_voice.name!r} {trained_voice.f0_hz} Hz: use the speech model "
            "of the participant the decoder was trained on"
        )
    data = Path(data)
    p = load_participant(data)
    check_neural(p, td.decoder.n_electrodes)
    _check_voice(p, voice, data, speech_dir)
    train_idx, test_idx = trial_split(p)
    if len(test_idx) == 0:
        raise ValueError(f"{data} has an empty test split ('test_trials' names no trial): nothing to evaluate on")
    if len(train_idx) < 2:
        raise ValueError(f"{data} has {len(train_idx)} training trials; the baselines need at least 2")
    cache = Path(cache_dir) if cache_dir is not None else Path(model_dir)
    refs = load_references(p, sm, speech_dir, td.train_config.context_frames, cache)
    return {
        "trained": td, "speech": sm, "speech_dir": speech_dir, "participant": p, "train_idx": train_idx,
        "test_idx": test_idx, "refs": refs, "voice": voice, "cache_dir": cache,
        "train_seg": build_segments(p, refs, train_idx, exclude=test_idx),
        "test_seg": build_segments(p, refs, test_idx),
    }


def _ridge_key(p, context: int) -> str:
    return f"{data_key(p)};ctx={int(context)}"


def prepare_cache(
    data: str | os.PathLike,
    speech_model: str | os.PathLike,
    cache_dir: str | os.PathLike,
    context: int | None = None,
) -> None:
    """Fill a cache directory before several trainings / evaluations share it (no races, no repeats).

    Computes the reference targets (:func:`edgensd.decoding.targets.load_references`) and both ridge
    baselines of a participant file.

    Parameters
    ----------
    data : path
        Participant file.
    speech_model : path
        Speech model directory.
    cache_dir : path
    context : int, optional
        Context frames (default: :class:`~edgensd.decoding.train.DecoderTrainConfig`'s).
    """
    from edgensd.decoding.train import DecoderTrainConfig
    from edgensd.speech.model import load_speech_model

    context = DecoderTrainConfig().context_frames if context is None else int(context)
    sm = load_speech_model(speech_model)
    p = load_participant(data)
    check_neural(p)
    _check_voice(p, sm.config.voice, data, speech_model)
    train_idx, test_idx = trial_split(p)
    refs = load_references(p, sm, speech_model, context, cache_dir)
    seg = build_segments(p, refs, train_idx, exclude=test_idx)
    for lags in (CAUSAL_LAGS, NONCAUSAL_LAGS):
        load_ridge(seg, lags, _ridge_key(p, context), cache_dir)


def _per_param_r(dec: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    out = {}
    for j, name in enumerate(PARAM_NAMES):
        out[name] = pcc(dec[:, j], ref[:, j])
    return out


def _stoi(clean: np.ndarray, test: np.ndarray) -> float:
    from pystoi import stoi

    n = min(len(clean), len(test))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pystoi warns (and returns 1e-5) on very short or silent audio
        return float(stoi(clean[:n], test[:n], 16000, extended=False))


def evaluate_decoder(
    model_dir: str | os.PathLike,
    data: str | os.PathLike,
    json_path: str | os.PathLike | None = None,
    wav_dir: str | os.PathLike | None = None,
    plots_dir: str | os.PathLike | None = None,
    speech_model: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    max_wavs: int = 10,
    stoi: bool = True,
) -> dict:
    """Score a trained decoder on the held-out trials.

    Parameters
    ----------
    model_dir : path
        Written by :func:`edgensd.decoding.train.train_decoder`.
    data : path
        Participant file (its held-out trials: ``test_trials`` or the last 50).
    json_path : path, optional
        Write the results here as JSON.
    wav_dir : path, optional
        WAVs of the first ``max_wavs`` held-out trials: original audio and the frame renderer's audio of the
        decoded parameters.
    plots_dir : path, optional
        PNGs of original vs decoded (and ridge) spectrograms of the first 6 held-out trials.
    speech_model : path, optional
        Speech model directory (default: the one the decoder was trained with).
    cache_dir : path, optional
        Where reference targets and ridge fits are cached (default: ``model_dir``).
    max_wavs : int
    stoi : bool
        Compute STOI (renders every held-out trial; a few seconds per 50 trials).

    Returns
    -------
    dict
        ``pcc_mean``, ``pcc_median``, ``pcc_std``, ``n_trials``, ``per_trial``, ``per_param`` (Pearson r of
        each decoded parameter vs the encoder's reference over the held-out trials' frames),
        ``stoi_mean`` / ``stoi`` (rendering and variant), ``macs_per_frame``, ``n_params``,
        ``lookahead_frames`` (measured), ``baselines`` (``floor_pcc_mean``, ``ridge_causal_pcc_mean``,
        ``ridge_noncausal_pcc_mean``, ``ridge_pcc_mean`` (the one matching the model's causality), their
        lags and penalties), ``floor_pcc_mean`` and ``ridge_pcc_mean`` repeated at the top level,
        ``ceiling_pcc_mean`` (speech-model resynthesis), ``streaming_parity`` (causal models: step-by-step
        and random-chunk outputs vs the whole segment on the first held-out trial, :func:`streaming_parity`),
        training time and provenance.
    """
    from tqdm import tqdm

    from edgensd.decoders import macs_per_frame, measure_lookahead, n_params

    t0 = time.time()
    st = load_eval_setup(model_dir, data, speech_model, cache_dir)
    td, sm, p, voice = st["trained"], st["speech"], st["participant"], st["voice"]
    dec = td.decoder.eval()
    synth = sm.synth.eval()
    tr_seg, te_seg = st["train_seg"], st["test_seg"]
    floor = floor_spectrum(tr_seg)
    key = _ridge_key(p, td.train_config.context_frames)
    ridge_c = load_ridge(tr_seg, CAUSAL_LAGS, key, st["cache_dir"])
    ridge_nc = load_ridge(tr_seg, NONCAUSAL_LAGS, key, st["cache_dir"])

    per, dec_params, ref_params, outputs = [], [], [], []
    r_floor, r_rc, r_rnc, r_ceil = [], [], [], []
    for k in tqdm(range(len(te_seg)), desc="eval decoder", unit="trial", disable=not progress_enabled()):
        rows = te_seg.rows(k)
        tr = slice(int(te_seg.first[k]), int(te_seg.first[k] + te_seg.length[k]))
        neural = te_seg.neural[rows]
        phys = raw_to_physical(decode_segment(dec, neural), voice)[tr]
        true = te_seg.spec[rows][tr]
        ref = te_seg.params[rows][tr]
        pred = params_to_spec(synth, phys)
        r = pcc(pred, true)
        r_floor.append(pcc(np.broadcast_to(floor, true.shape), true))
        r_rc.append(pcc(ridge_c.predict(neural)[tr], true))
        r_rnc.append(pcc(ridge_nc.predict(neural)[tr], true))
        r_ceil.append(pcc(params_to_spec(synth, ref), true))
        i = int(te_seg.trials[k])
        per.append({"trial": i, "label": p.labels[i], "pcc": r, "n_frames": int(true.shape[0])})
        dec_params.append(phys)
        ref_params.append(ref)
        outputs.append((i, phys, ref, pred, true))
    dec_all, ref_all = np.concatenate(dec_params), np.concatenate(ref_params)
    causal = bool(dec.causal)
    s = summarize([u["pcc"] for u in per])
    n_probe = 128
    look = measure_lookahead(dec, n_frames=n_probe)
    parity = streaming_parity(dec, te_seg.neural[te_seg.rows(0)]) if causal else None
    res = {
        "model": str(model_dir),
        "arch": td.train_config.arch,
        "causal": causal,
        "name": f"{td.train_config.arch} ({'causal' if causal else 'non-causal'})",
        "data": str(data),
        "data_key": data_key(p),
        "same_data_as_training": data_key(p) == td.info.get("data_key"),
        "speech_model": str(st["speech_dir"]),
        "n_trials": len(per),
        "pcc_mean": s["mean"],
        "pcc_median": s["median"],
        "pcc_std": s["std"],
        "per_param": _per_param_r(dec_all, ref_all),
        "per_param_note": "Pearson r over all frames of the held-out trials, decoded vs the frozen encoder's "
                          "reference parameters (physical units)",
        "macs_per_frame": float(macs_per_frame(dec)),
        "n_params": int(n_params(dec)),
        "lookahead_frames": int(look),
        "lookahead_unbounded": bool(look >= n_probe - 1),
        "lookahead_note": f"measured by perturbing input frames (measure_lookahead, {n_probe}-frame probe); "
                          f">= {n_probe - 1} means unbounded (bidirectional recurrence)",
        "declared_lookahead_frames": int(dec.lookahead_frames) if causal else None,
        "streaming_parity": parity,
        "train_seconds": td.info.get("train_seconds"),
        "train_steps": td.info.get("train_steps"),
        "train_done": td.info.get("done"),
        "floor_pcc_mean": summarize(r_floor)["mean"],
        "ridge_pcc_mean": summarize(r_rc if causal else r_rnc)["mean"],
        "ceiling_pcc_mean": summarize(r_ceil)["mean"],
        "baselines": {
            "floor_pcc_mean": summarize(r_floor)["mean"],
            "floor": "the training trials' mean normalized-dB spectrum predicted for every frame",
            "ridge_causal_pcc_mean": summarize(r_rc)["mean"],
            "ridge_causal": ridge_c.describe(),
            "ridge_noncausal_pcc_mean": summarize(r_rnc)["mean"],
            "ridge_noncausal": ridge_nc.describe(),
            "ridge_pcc_mean": summarize(r_rc if causal else r_rnc)["mean"],
            "ridge": "causal lags" if causal else "non-causal lags",
            "ceiling_pcc_mean": summarize(r_ceil)["mean"],
            "ceiling": "the frozen encoder's reference parameters from the true audio through the synthesizer",
        },
        "per_trial": per,
        "context_frames": td.train_config.context_frames,
        "spectrogram": "deterministic synthesizer output of the decoded parameters vs the STFT of the original "
                       "audio (normalized dB, 256 bins), trial frames only",
    }
    if stoi:
        from edgensd.speech.render import render_audio

        weights = synth.export_weights()
        cache_path = Path(st["cache_dir"]) / f"reference_stoi_{st['refs'].key}.json"
        try:
            ref_cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
        except (OSError, json.JSONDecodeError):
            ref_cache = {}
        s_dec, s_ref = [], []
        for i, phys, ref, _, _ in outputs:
            audio = p.trial_audio(i)
            s_dec.append(_stoi(audio, render_audio(weights, phys)))
            if str(i) not in ref_cache:
                ref_cache[str(i)] = _stoi(audio, render_audio(weights, ref))
            s_ref.append(ref_cache[str(i)])
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps(ref_cache) + "\n")
        res["stoi_mean"] = summarize(s_dec)["mean"]
        res["stoi"] = {"variant": STOI_DESCRIPTION, "decoded_mean": summarize(s_dec)["mean"],
                       "reference_resynthesis_mean": summarize(s_ref)["mean"], "n_trials": len(s_dec)}
    else:
        res["stoi_mean"] = None
    if wav_dir is not None:
        _write_wavs(synth, p, outputs[: max(0, int(max_wavs))], Path(wav_dir))
        res["wav_dir"] = str(wav_dir)
    if plots_dir is not None:
        _plots(p, te_seg, outputs[:6], ridge_c if causal else ridge_nc, Path(plots_dir), res["name"])
        res["plots_dir"] = str(plots_dir)
    res["eval_seconds"] = round(time.time() - t0, 1)
    logger.info(
        "%s on %d held-out trials: PCC mean %.4f (median %.4f); floor %.4f, ridge %.4f (%s), ceiling %.4f; "
        "look-ahead %d frames", res["name"], res["n_trials"], res["pcc_mean"], res["pcc_median"],
        res["floor_pcc_mean"], res["ridge_pcc_mean"], res["baselines"]["ridge"], res["ceiling_pcc_mean"], look,
    )
    if json_path is not None:
        json_path = Path(json_path)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = json_path.with_suffix(json_path.suffix + ".tmp")
        tmp.write_text(json.dumps(res, indent=2) + "\n")
        os.replace(tmp, json_path)
    return res


def _write_wavs(synth, p, outputs, wav_dir: Path) -> None:
    from edgensd.audio import save_wav
    from edgensd.speech.render import render_audio

    wav_dir.mkdir(parents=True, exist_ok=True)
    weights = synth.export_weights()
    for i, phys, _, _, _ in outputs:
        audio = p.trial_audio(i)
        dec = render_audio(weights, phys)
        peak = max(float(np.abs(dec).max()), 1e-6)
        save_wav(wav_dir / f"trial{i:04d}_original.wav", np.clip(audio, -1, 1))
        save_wav(wav_dir / f"trial{i:04d}_decoded.wav", dec * min(1.0, 0.99 / peak))


def _plots(p, seg: Segments, outputs, ridge, plots_dir: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir.mkdir(parents=True, exist_ok=True)
    for i, _, _, pred, true in outputs:
        k = int(np.flatnonzero(seg.trials == i)[0])
        rows = seg.rows(k)
        tr = slice(int(seg.first[k]), int(seg.first[k] + seg.length[k]))
        rpred = ridge.predict(seg.neural[rows])[tr]
        fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
        panels = ((true, "original"), (pred, f"decoded: {name}, PCC {pcc(pred, true):.3f}"),
                  (rpred, f"ridge baseline, PCC {pcc(rpred, true):.3f}"))
        for ax, (s, title) in zip(axes, panels, strict=True):
            ax.imshow(s.T, origin="lower", aspect="auto", vmin=-1, vmax=1, extent=(0, s.shape[0] / 125, 0, 8000))
            ax.set_ylabel("Hz")
            ax.set_title(f"trial {i} ({p.labels[i][:40]}): {title}", fontsize=9)
        axes[-1].set_xlabel("s")
        fig.tight_layout()
        fig.savefig(plots_dir / f"trial{i:04d}.png", dpi=80)
        plt.close(fig)
