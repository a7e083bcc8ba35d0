"""The demo: resynthesis of real utterances with the speech model that ships with the package.

The bundle in ``edgensd/assets/demo/`` holds a speech model trained (stage 1) on the Allison prompts and a
few held-out prompts as 16-bit WAV (CC-BY-SA-3.0, "Recorded by Allison Smith"). For each utterance the demo
encodes the audio into the 18 speech parameters, synthesizes the spectrogram, scores it (PCC against the
original, with the cepstral-envelope reference), renders audio frame by frame and writes WAVs.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

import numpy as np

from edgensd.log import logger

DEMO_ASSETS = "assets/demo"


def demo_dir() -> Path:
    """Folder of the shipped demo bundle."""
    return Path(str(resources.files("edgensd").joinpath(DEMO_ASSETS)))


def run_demo(out_dir: str | Path) -> dict:
    """Run the resynthesis demo and write WAVs and ``demo.json`` into ``out_dir``.

    Returns
    -------
    dict
        Per-utterance and mean PCC, cepstral-envelope reference, STOI of the rendered audio, timings.
    """
    from pystoi import stoi

    from edgensd.audio import load_audio, save_wav
    from edgensd.metrics import cepstral_envelope, pcc, summarize
    from edgensd.speech.evaluate import encode_audio, stoi_or_nan
    from edgensd.speech.model import load_speech_model
    from edgensd.speech.render import FrameRenderer

    src = demo_dir()
    model_dir = src / "speech_model"
    if not (model_dir / "model.pt").is_file():
        raise FileNotFoundError(f"the demo bundle is missing from {src}; reinstall edgensd")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_speech_model(model_dir)
    weights = model.synth.export_weights()
    rows = []
    for wav in sorted(src.glob("*.wav")):
        audio = load_audio(wav)
        t0 = time.perf_counter()
        params, pred, true = encode_audio(model, audio)
        t_enc = time.perf_counter() - t0
        renderer = FrameRenderer(weights, seed=0)
        t0 = time.perf_counter()
        blocks = [renderer.push(p) for p in params] + [renderer.push(params[-1])]
        t_render = time.perf_counter() - t0
        rendered = np.concatenate(blocks[1:])[: audio.size]
        peak = max(float(np.abs(rendered).max()), 1e-6)
        save_wav(out_dir / f"{wav.stem}_original.wav", audio)
        save_wav(out_dir / f"{wav.stem}_resynth.wav", rendered * min(1.0, 0.99 / peak))
        row = {
            "utterance": wav.stem,
            "seconds": round(audio.size / 16000, 2),
            "pcc": pcc(pred, true),
            "cepstral_envelope_pcc": pcc(cepstral_envelope(true), true),
            "stoi_render": stoi_or_nan(stoi, audio, rendered),
            "render_ms_per_frame": 1000 * t_render / len(blocks),
            "encode_s": t_enc,
        }
        rows.append(row)
        logger.info("%-28s PCC %.3f (cepstral envelope %.3f)  STOI %.2f", wav.stem, row["pcc"],
                    row["cepstral_envelope_pcc"], row["stoi_render"])
    if not rows:
        raise FileNotFoundError(f"no demo utterances (*.wav) in {src}")
    res = {
        "pcc_mean": summarize([r["pcc"] for r in rows])["mean"],
        "cepstral_envelope_pcc_mean": summarize([r["cepstral_envelope_pcc"] for r in rows])["mean"],
        "stoi_render_mean": summarize([r["stoi_render"] for r in rows])["mean"],
        "renderer": "numpy frame renderer (edgensd.speech.render), 128 samples per 8 ms frame",
        "utterances": rows,
        "out_dir": str(out_dir),
    }
    (out_dir / "demo.json").write_text(json.dumps(res, indent=2) + "\n")
    return res
