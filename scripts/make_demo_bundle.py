"""Build the demo assets shipped in ``edgensd/assets/demo/``.

Usage::

    python scripts/make_demo_bundle.py --model runs/speech --data data/speech/speech.h5 [--n 4]
    python scripts/make_demo_bundle.py --live --decoder runs/edge_stream --data sim/p0_stream.h5 [--n 3]

``--live`` builds ``edgensd/assets/demo/live/``: the bundle of a causal decoder trained on streaming
high-gamma features (``edgensd export bundle``, all formats) and a short session cut from the participant
file: ``n`` held-out trials with ``--context-s`` of recording on each side, joined in their silent context
(raw signal, streaming features, audio, trial marks). A join is a discontinuity of the raw signal in
silence; the demo's causal filters ring for a few frames there.

Copies the model's ``model.pt``, ``speech_model.json`` and ``synth_weights.npz`` into
``edgensd/assets/demo/speech_model/`` and writes ``n`` held-out utterances (spread over the test split) as
16-bit WAV with an attribution file. The bundle's data derive from the Allison prompts: CC-BY-SA-3.0.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from edgensd.audio import save_wav
from edgensd.data.participant import load_participant, trial_split
from edgensd.speech.features import CONTEXT

ATTRIBUTION = """Demo utterances: prompts from the Debian package asterisk-core-sounds-en-g722,
"Recorded by Allison Smith", licensed CC-BY-SA-3.0 (https://creativecommons.org/licenses/by-sa/3.0/).
The speech model in speech_model/ was trained on the other prompts of the same set and is distributed
under the same licence. Each WAV carries {ctx} frames (128 ms) of context on both sides of the prompt.
"""


LIVE_ATTRIBUTION = """Live demo session: electrocorticography simulated by edgensd (`edgensd simulate --pipeline
streaming`) from prompts of the Debian package asterisk-core-sounds-en-g722, "Recorded by Allison Smith",
licensed CC-BY-SA-3.0 (https://creativecommons.org/licenses/by-sa/3.0/); the session's audio is those
prompts, and the decoder in bundle/ was trained on the other trials of the same simulated participant. Both
are distributed under the same licence.
"""


def cut_session(p, trials, context_frames: int):
    """Join trials with their context into one short participant (raw signal, features, audio, marks)."""
    from edgensd.data.participant import Participant

    fs = float(p.raw_fs)
    pieces = {"ecog": [], "audio": [], "raw": []}
    start, end, pos = [], [], 0
    for i in trials:
        s, e = p.trial_frames(int(i))
        lo, hi = max(s - context_frames, 0), min(e + context_frames, p.n_frames)
        pieces["ecog"].append(p.ecog[lo:hi])
        pieces["audio"].append(p.audio[lo * 128 : hi * 128])
        pieces["raw"].append(np.asarray(p.raw_signal[round(lo * fs / 125) : round(hi * fs / 125)], np.float32))
        start.append(pos + s - lo)
        end.append(pos + e - lo)
        pos += hi - lo
    keep = ("highgamma_config", "highgamma_stats", "layout", "simulated", "simulator", "line_freq")
    return Participant(
        ecog=np.concatenate(pieces["ecog"]).astype(np.float32), audio=np.concatenate(pieces["audio"]),
        start=np.array(start), end=np.array(end), labels=[p.labels[int(i)] for i in trials],
        raw_signal=np.concatenate(pieces["raw"]), raw_fs=fs, electrode_positions=p.electrode_positions,
        grid_shape=p.grid_shape, hemisphere=p.hemisphere, density=p.density, voice_range=p.voice_range,
        test_trials=np.arange(len(trials)), attrs={k: p.attrs[k] for k in keep if k in p.attrs},
    )


def build_live(decoder: str, data: str, n: int, context_s: float) -> None:
    """Export the decoder's bundle and cut the session into edgensd/assets/demo/live/."""
    from edgensd.cli.main import main as cli
    from edgensd.data.participant import save_participant

    dest = Path(__file__).resolve().parents[1] / "edgensd" / "assets" / "demo" / "live"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if cli(["export", "bundle", "-q", "--model", decoder, "--out", str(dest / "bundle"), "--formats",
            "onnx,tflite,tflm"]) != 0:
        raise SystemExit("export failed")
    p = load_participant(data)
    _, test = trial_split(p)
    lengths = p.end[test] - p.start[test]
    picks = np.sort(test[np.argsort(np.abs(lengths - np.median(lengths)))[:n]])  # typical-length trials
    session = cut_session(p, picks, round(context_s * 125))
    save_participant(session, dest / "session.h5")
    (dest / "ATTRIBUTION.txt").write_text(LIVE_ATTRIBUTION)
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    print(f"live demo assets in {dest}: {size / 1e6:.2f} MB; session {session.n_frames / 125:.1f} s, "
          f"trials {picks.tolist()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="trained speech model (stage-1 demo assets)")
    ap.add_argument("--data", required=True, help="speech file (stage 1) or participant file (--live)")
    ap.add_argument("--n", type=int, default=None, help="utterances / trials (default 4 / 3)")
    ap.add_argument("--live", action="store_true", help="build the live demo's bundle and session")
    ap.add_argument("--decoder", help="trained causal decoder on streaming features (--live)")
    ap.add_argument("--context-s", type=float, default=0.6, help="recording kept around each trial (--live)")
    args = ap.parse_args()
    if args.live:
        if not args.decoder:
            ap.error("--live needs --decoder")
        build_live(args.decoder, args.data, args.n or 3, args.context_s)
        return
    if not args.model:
        ap.error("--model is required (or --live)")
    args.n = args.n or 4
    dest = Path(__file__).resolve().parents[1] / "edgensd" / "assets" / "demo"
    if (dest / "speech_model").exists():
        shutil.rmtree(dest / "speech_model")
    (dest / "speech_model").mkdir(parents=True)
    for name in ("model.pt", "speech_model.json", "synth_weights.npz"):
        shutil.copy2(Path(args.model) / name, dest / "speech_model" / name)
    p = load_participant(args.data, require_neural=False)
    _, test = trial_split(p)
    picks = test[np.linspace(0, len(test) - 1, args.n).round().astype(int)]
    for i in picks:
        name = (p.prompt_names[int(i)] if p.prompt_names else f"trial{int(i)}").replace("/", "_")
        save_wav(dest / f"{name}.wav", p.trial_audio(int(i), before=CONTEXT, after=CONTEXT))
    (dest / "ATTRIBUTION.txt").write_text(ATTRIBUTION.format(ctx=CONTEXT))
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    print(f"demo bundle in {dest}: {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
