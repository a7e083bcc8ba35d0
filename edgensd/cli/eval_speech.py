"""Evaluate a speech model: resynthesis PCC of the held-out utterances, with baselines.

Writes JSON with pcc_mean, pcc_median, n_utterances, per_utterance and baselines (the training mean
spectrum "floor" and a 30-coefficient cepstral envelope of the true spectrogram); --wav-dir adds WAVs
(original, frame renderer, Griffin-Lim) and STOI; --plots adds spectrogram PNGs.

Example: edgensd eval speech --model runs/speech --data data/speech/speech.h5 --json runs/speech/eval.json
"""

from __future__ import annotations

import argparse

from edgensd.cli._args import check_input_file, check_model_dir, check_output_dir, check_output_file, nonneg_int

COMMAND = ("eval", "speech")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="DIR", help="trained speech model directory")
    p.add_argument("--data", required=True, metavar="FILE", help="participant or speech-only HDF5 file")
    p.add_argument("--json", required=True, metavar="OUT", help="output JSON file")
    p.add_argument("--wav-dir", default=None, metavar="DIR", help="write WAVs of the first --max-wavs utterances here")
    p.add_argument("--plots", default=None, metavar="DIR", help="write spectrogram PNGs here")
    p.add_argument("--max-wavs", type=nonneg_int, default=10, help="utterances to render as WAV")


def run(args: argparse.Namespace) -> int:
    check_model_dir(args.model, "--model")
    check_input_file(args.data, "--data")
    check_output_file(args.json, "--json")
    for flag, value in (("--wav-dir", args.wav_dir), ("--plots", args.plots)):
        if value is not None:
            check_output_dir(value, flag)
    from edgensd.speech.evaluate import evaluate_speech

    res = evaluate_speech(args.model, args.data, args.json, args.wav_dir, args.plots, max_wavs=args.max_wavs)
    print(
        f"pcc_mean {res['pcc_mean']:.4f}  pcc_median {res['pcc_median']:.4f}  n_utterances {res['n_utterances']}"
        f"  floor {res['baselines']['floor_pcc_mean']:.4f}"
        f"  cepstral_envelope {res['baselines']['cepstral_envelope_pcc_mean']:.4f}"
    )
    return 0
