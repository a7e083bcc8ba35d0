"""The demos that ship with the package.

:func:`run_live_demo` (``edgensd demo``) runs the whole device path, torch-free: a simulated device plays a
short recorded session (raw ECoG at 1 kHz, simulated from real speech) over a pseudo-terminal as a serial
port; the host reads it (:mod:`edgensd.firmware_bridge.reader`), computes streaming high-gamma features,
runs the shipped int8 decoder bundle step by step and renders audio with the C synthesizer
(:func:`edgensd.runtime.stream.run_stream`). It writes the decoded and original audio, original vs decoded
spectrograms and a summary (PCC per trial, latency p50/p99, packets lost). The assets are in
``edgensd/assets/demo/live/`` (built by ``scripts/make_demo_bundle.py --live``).

:func:`run_demo` (``edgensd demo --resynthesis``) resynthesizes real utterances with the shipped speech model
(stage 1: encoder + synthesizer; needs torch): the bundle in ``edgensd/assets/demo/`` holds a speech model
trained on the Allison prompts and a few held-out prompts as 16-bit WAV (CC-BY-SA-3.0, "Recorded by Allison
Smith"). For each utterance it encodes the audio into the 18 speech parameters, synthesizes the spectrogram,
scores it (PCC against the original, with the cepstral-envelope reference), renders audio frame by frame and
writes WAVs.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

import numpy as np

from edgensd.log import logger

DEMO_ASSETS = "assets/demo"
LIVE_ASSETS = "assets/demo/live"


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


def live_assets() -> tuple[Path, Path]:
    """The shipped live-demo bundle folder and session file."""
    root = Path(str(resources.files("edgensd").joinpath(LIVE_ASSETS)))
    return root / "bundle", root / "session.h5"


def run_live_demo(out_dir: str | Path, *, bundle: str | Path | None = None, session: str | Path | None = None,
                  backend: str = "onnx", precision: str = "int8", speed: float = 1.0,
                  raw_format: str = "int16") -> dict:
    """Stream a recorded session through the whole device path and score the decoded speech.

    Parameters
    ----------
    out_dir : path
        Output folder (created): ``decoded.wav``, ``original.wav``, ``spectrograms.png``, ``stream.json``
        (the stream summary) and ``demo.json``.
    bundle, session : path, optional
        A bundle and a participant file with a raw signal (default: the shipped ones).
    backend, precision : str
        Decoder runtime and graph (see :class:`edgensd.runtime.stream.StreamConfig`).
    speed : float
        Device seconds per wall-clock second (1: real time).
    raw_format : {'int16', 'int24', 'float32'}
        Sample format on the wire (int16 at 0.195 µV per count, as many ECoG front ends send).

    Returns
    -------
    dict
        ``pcc_mean`` and per-trial PCC (decoded vs original spectrogram, trial frames), the stream summary's
        health counters and ``latency_ms``, the files written.
    """
    from edgensd.audio import save_wav
    from edgensd.data.participant import load_participant
    from edgensd.firmware_bridge.simulator import DeviceSimulator, SimulatorConfig, SimulatorLink
    from edgensd.metrics import pcc, summarize
    from edgensd.params import raw_to_physical
    from edgensd.runtime.bundle import load_bundle
    from edgensd.runtime.decode import true_spectrogram
    from edgensd.runtime.stream import StreamConfig, run_stream
    from edgensd.spectrogram import spectrogram_norm

    default_bundle, default_session = live_assets()
    bundle = Path(bundle) if bundle is not None else default_bundle
    session = Path(session) if session is not None else default_session
    for path, what in ((bundle, "bundle"), (session, "session")):
        if not path.exists():
            raise FileNotFoundError(f"the live demo's {what} is missing: {path} (reinstall edgensd, or build it with "
                                    "scripts/make_demo_bundle.py --live)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    p = load_participant(session)
    if p.raw_signal is None:
        raise ValueError(f"{session} holds no raw signal (raw_signal + raw_fs): the live demo streams raw samples")
    b = load_bundle(bundle)
    device = DeviceSimulator(SimulatorConfig(n_channels=p.n_electrodes, raw_rate_hz=float(p.raw_fs),
                                             send_raw=True, send_hg=False, raw_format=raw_format,
                                             raw_scale_uv=0.195 if raw_format != "float32" else 1.0),
                             raw=np.asarray(p.raw_signal), repeat=False)
    # the device's clock starts when the host has the port open, so the stream begins at the session's start
    link = SimulatorLink(device, "pty", speed=speed, wait_for_host=True).start()
    frames: dict[int, np.ndarray] = {}
    frame_us = 1e6 / 125.0

    def keep(dev_t, _feat, raw, _audio, _filled):
        frames[len(frames)] = raw  # frames arrive in device order from device frame 0

    n = p.n_frames
    logger.info("live demo: a simulated device plays %.1f s of %d-channel raw ECoG at %g Hz over %s", n / 125,
                p.n_electrodes, p.raw_fs, link.url)
    try:
        summary = run_stream(link.url, bundle, StreamConfig(backend=backend, precision=precision, duration_s=n / 125,
                                                            idle_exit_s=3.0),
                             wav=out_dir / "decoded.wav", json_path=out_dir / "stream.json", on_frame=keep,
                             status=False)
    finally:
        link.stop()
    if summary["first_device_time_us"] not in (None, 0) and summary["first_device_time_us"] > frame_us:
        logger.warning("the stream began %.3f s into the session", summary["first_device_time_us"] / 1e6)
    raw = np.stack([frames[i] for i in range(len(frames))]) if frames else np.zeros((0, 18), np.float32)
    phys = raw_to_physical(raw, b.voice).astype(np.float32)
    from edgensd.csynth import CSynth

    synth = CSynth(b.synth_path)
    rows = []
    for i in range(p.n_trials):
        s, e = p.trial_frames(i)
        if e > len(phys):
            continue
        rows.append({"trial": i, "label": p.labels[i], "pcc": pcc(synth.spectrogram(phys[s:e]), true_spectrogram(p, i)),
                     "n_frames": int(e - s)})
    save_wav(out_dir / "original.wav", p.audio)
    _plot_session(spectrogram_norm(p.audio)[: len(phys)], synth.spectrogram(phys) if len(phys) else None, p,
                  out_dir / "spectrograms.png")
    res = {
        "pcc_mean": summarize([r["pcc"] for r in rows])["mean"] if rows else None,
        "trials": rows,
        "seconds": round(len(phys) / 125, 3),
        "backend": backend,
        "precision": precision,
        "raw_format": raw_format,
        "latency_ms": summary["latency_ms"],
        "frames_out": summary["frames_out"],
        "gap_frames": summary["gap_frames"],
        "packets_ok": summary["packets_ok"],
        "packets_bad_crc": summary["packets_bad_crc"],
        "lost_packets": summary["lost_packets"],
        "device_lost_before_connect": len(device.truth.lost_offline),
        "bundle": str(bundle),
        "session": str(session),
        "out_dir": str(out_dir),
    }
    (out_dir / "demo.json").write_text(json.dumps(res, indent=2) + "\n")
    return res


def _plot_session(true: np.ndarray, pred: np.ndarray | None, p, path: Path) -> None:
    """Original vs decoded normalized-dB spectrograms of the whole session, trials marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(11, 5), sharex=True)
    for ax, spec, name in ((axes[0], true, "original"), (axes[1], pred, "decoded live (serial link, int8 decoder)")):
        if spec is not None and len(spec):
            ax.imshow(spec.T, origin="lower", aspect="auto", vmin=-1, vmax=1, extent=(0, len(spec) / 125, 0, 8000))
        for s, e in zip(p.start, p.end, strict=True):
            ax.axvspan(s / 125, e / 125, ymin=0.97, ymax=1.0, color="w")
        ax.set_ylabel("Hz")
        ax.set_title(name, fontsize=9)
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
