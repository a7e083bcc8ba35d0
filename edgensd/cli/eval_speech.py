"""Evaluate a speech model: resynthesis PCC of the held-out utterances, with baselines.

Writes JSON with pcc_mean, pcc_median, n_utterances, per_utterance and baselines (the training mean
spectrum "floor" and a 30-coefficient cepstral envelope of the true spectrogram); --wav-dir adds WAVs
(original, frame renderer, Griffin-Lim) and STOI; --plots adds spectrogram PNGs.

Example: edgensd eval speech --model runs/speech --data data/speech/speech.h5 --json runs/speech/eval.json
"""

from __future__ import annotations

import argparse

COMMAND = ("eval", "speech")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="trained speech model directory")
    p.add_argument("--data", required=True, help="participant or speech-only HDF5 file")
    p.add_argument("--json", required=True, help="output JSON file")
    p.add_argument("--wav-dir", default=None, help="write WAVs of the first --max-wavs utterances here")
    p.add_argument("--plots", default=None, help="write spectrogram PNGs here")
    p.add_argument("--max-wavs", type=int, default=10, help="utterances to render as WAV (default 10)")


def run(args: argparse.Namespace) -> int:
    from edgensd.speech.evaluate import evaluate_speech

    res = evaluate_speech(args.model, args.data, args.json, args.wav_dir, args.plots, max_wavs=args.max_wavs)
    print(f"pcc_mean {res['pcc_mean']:.4f}  pcc_median {res['pcc_median']:.4f}  n_utterances {res['n_utterances']}"
          f"  floor {res['baselines']['floor_pcc_mean']:.4f}"
          f"  cepstral_envelope {res['baselines']['cepstral_envelope_pcc_mean']:.4f}")
    return 0
