"""Train the speech encoder with the synthesizer in the loop (stage 1) on a participant's own speech.

Checkpoints every two minutes and on Ctrl-C / SIGTERM; the output directory then always holds a usable
model. Running the same command again on the same --out resumes, up to --max-minutes in total.

Example: edgensd train speech --data data/speech/speech.h5 --out runs/speech --max-minutes 30
"""

from __future__ import annotations

import argparse

from edgensd.cli._args import check_input_file, check_output_dir, nonneg_int, positive_float

COMMAND = ("train", "speech")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", required=True, metavar="FILE", help="participant or speech-only HDF5 file (edgensd data speech)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (resumes if it holds a checkpoint)")
    p.add_argument(
        "--max-minutes", type=positive_float, default=30.0, metavar="M", help="training time budget in minutes (total)"
    )
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed")
    p.add_argument("--threads", type=nonneg_int, default=0, help="torch threads (0: torch default)")


def run(args: argparse.Namespace) -> int:
    check_input_file(args.data, "--data")
    check_output_dir(args.out, "--out")
    from edgensd.speech.train import SpeechTrainConfig, train_speech

    cfg = SpeechTrainConfig(max_minutes=args.max_minutes, seed=args.seed, n_threads=args.threads)
    train_speech(args.data, args.out, cfg)
    return 0
