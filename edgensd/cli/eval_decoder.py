"""Evaluate a trained ECoG decoder on the held-out trials, with the floor and ridge baselines.

Writes JSON with pcc_mean, pcc_median, n_trials, per_param (r of each decoded parameter vs the encoder's
reference), stoi_mean (frame renderer audio, standard STOI), macs_per_frame, n_params, lookahead_frames
(measured), the floor (training-mean spectrum) and ridge (lagged neural frames) baselines on the same
trials, and the speech model's ceiling; --wav-dir adds WAVs (original, decoded), --plots spectrogram PNGs.

Example:
  edgensd eval decoder --model runs/edge --data sim/p0.h5 --json runs/edge/eval.json --plots runs/edge/plots
"""

from __future__ import annotations

import argparse

from edgensd.cli._args import check_model_dir, check_neural_file, check_output_dir, check_output_file, nonneg_int

COMMAND = ("eval", "decoder")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edgensd eval decoder``."""
    p.add_argument("--model", required=True, metavar="DIR", help="trained decoder directory (edgensd train decoder)")
    p.add_argument("--data", required=True, metavar="FILE", help="participant HDF5 file")
    p.add_argument("--json", required=True, metavar="OUT", help="output JSON file")
    p.add_argument(
        "--wav-dir", default=None, metavar="DIR", help="write WAVs of the first --max-wavs held-out trials here"
    )
    p.add_argument("--plots", default=None, metavar="DIR", help="write spectrogram PNGs here")
    p.add_argument("--max-wavs", type=nonneg_int, default=10, help="trials to write as WAV")
    p.add_argument(
        "--speech-model", default=None, metavar="DIR", help="speech model directory (default: the training one)"
    )
    p.add_argument(
        "--cache-dir", default=None, metavar="DIR", help="reference/ridge cache directory (default: --model)"
    )
    p.add_argument("--no-stoi", action="store_true", help="skip rendering audio for STOI")
    p.add_argument("--threads", type=nonneg_int, default=0, help="torch threads (0: torch default)")


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the headline figures."""
    check_model_dir(args.model, "--model")
    check_neural_file(args.data, "--data")
    check_output_file(args.json, "--json")
    for flag, value in (("--wav-dir", args.wav_dir), ("--plots", args.plots)):
        if value is not None:
            check_output_dir(value, flag)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from edgensd.decoding.evaluate import evaluate_decoder

    r = evaluate_decoder(
        args.model,
        args.data,
        args.json,
        args.wav_dir,
        args.plots,
        speech_model=args.speech_model,
        cache_dir=args.cache_dir,
        max_wavs=args.max_wavs,
        stoi=not args.no_stoi,
    )
    stoi = "-" if r["stoi_mean"] is None else f"{r['stoi_mean']:.3f}"
    print(
        f"{r['name']}: pcc_mean {r['pcc_mean']:.4f}  pcc_median {r['pcc_median']:.4f}  n_trials {r['n_trials']}"
        f"  floor {r['floor_pcc_mean']:.4f}  ridge {r['ridge_pcc_mean']:.4f}  stoi {stoi}"
        f"  macs/frame {r['macs_per_frame']:,.0f}  look-ahead {r['lookahead_frames']}"
    )
    return 0
