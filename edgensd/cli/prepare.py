"""Build a participant file from a raw neural recording, its speech audio and trial events.

Reads the recording (BrainVision/EDF/BDF/FIF via MNE with BIDS sidecars, NWB, NeuroScope grids), the
16 kHz speech audio (other rates are resampled) and a BIDS-style events.tsv (onset, duration in seconds;
the word in trial_type or value), checks that audio and neural data are on the same clock, computes
z-scored 70-150 Hz high-gamma at 125 frames/s (statistics from the training trials only) and writes the
participant HDF5 file in the reference layout.

Example:
  edgensd prepare --raw sub-01_task-words_ieeg.vhdr --audio sub-01_task-words_audio.wav \\
      --events sub-01_task-words_events.tsv --out sub-01.h5 --line-freq 60 --pipeline offline
"""

from __future__ import annotations

import argparse

from edgensd.cli._args import check_input_file, check_output_file, nonneg_int
from edgensd.log import logger

COMMAND = ("prepare",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``prepare`` options."""
    parser.add_argument(
        "--raw", required=True, metavar="REC", help="raw recording (.vhdr, .edf, .bdf, .fif, .nwb, .dat)"
    )
    parser.add_argument(
        "--audio", required=True, metavar="WAV", help="speech audio on the same clock (.wav, .flac, ...)"
    )
    parser.add_argument("--events", required=True, metavar="TSV", help="BIDS-style events.tsv (onset, duration, word)")
    parser.add_argument("--out", required=True, metavar="FILE.h5", help="participant HDF5 file to write")
    parser.add_argument(
        "--line-freq",
        type=float,
        choices=[50.0, 60.0],
        default=None,
        help="mains frequency in Hz (default: the recording's PowerLineFrequency sidecar, else 60)",
    )
    parser.add_argument(
        "--pipeline",
        choices=["offline", "streaming"],
        default="offline",
        help="high-gamma pipeline: zero-phase offline or causal streaming (default offline)",
    )
    parser.add_argument(
        "--picks",
        default=None,
        help="comma-separated channel names or types (default: all ecog, seeg and dbs channels)",
    )
    parser.add_argument(
        "--max-mismatch",
        type=float,
        default=None,
        help="largest allowed audio vs neural duration difference in seconds (default 0.05)",
    )
    parser.add_argument(
        "--interpolate-nans",
        type=float,
        default=None,
        metavar="SECONDS",
        help="linearly interpolate NaN/inf runs up to this length instead of failing",
    )
    parser.add_argument("--n-test", type=nonneg_int, default=None, metavar="N", help="held-out trials (last ones)")
    parser.add_argument("--label-column", default=None, help="events column with the word")
    parser.add_argument("--hemisphere", choices=["left", "right"], default=None, help="implant hemisphere")
    parser.add_argument("--no-raw", action="store_true", help="do not store the raw signal in the file")


def run(args: argparse.Namespace) -> int:
    """Run ``edgensd prepare``."""
    from edgensd.data.participant import save_participant
    from edgensd.neural.prepare import MAX_MISMATCH_S, prepare_participant

    check_input_file(args.raw, "--raw")
    check_input_file(args.audio, "--audio")
    check_input_file(args.events, "--events")
    check_output_file(args.out, "--out")
    picks = [p.strip() for p in args.picks.split(",") if p.strip()] if args.picks else None
    part, res = prepare_participant(
        args.raw,
        args.audio,
        args.events,
        line_freq=args.line_freq,
        pipeline=args.pipeline,
        picks=picks,
        max_mismatch_s=MAX_MISMATCH_S if args.max_mismatch is None else args.max_mismatch,
        interpolate_nans_s=args.interpolate_nans,
        n_test=args.n_test,
        label_column=args.label_column,
        hemisphere=args.hemisphere,
        keep_raw=not args.no_raw,
    )
    path = save_participant(part, args.out)
    logger.info(
        "wrote %s: %d trials, %d electrodes, %d frames, bad channels: %s",
        path,
        part.n_trials,
        part.n_electrodes,
        part.n_frames,
        [n for n, b in zip(part.extras["channel_names"], res.stats.bad, strict=True) if b] or "none",
    )
    return 0
