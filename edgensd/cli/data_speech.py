"""Gather real speech (the Asterisk "Allison" prompts) into one speech-only participant file.

Decodes the G.722 prompts of the Debian package asterisk-core-sounds-en-g722, labels them with the
transcripts of asterisk-core-sounds-en and writes OUT/speech.h5 (one trial per prompt, 16 kHz audio, no
neural data, the last 50 prompts held out), OUT/README.txt (licence CC-BY-SA-3.0, "Recorded by Allison
Smith") and OUT/speech_data.json (how it was made). Non-speech prompts (tones, silence) are left out.

Example: edgensd data speech --out data/speech --max-prompts 20
"""

from __future__ import annotations

import argparse

from edgensd.cli._args import check_output_dir, nonneg_float, nonneg_int, positive_int
from edgensd.data.speech import ALLISON_DIR, TRANSCRIPT_PATH, SpeechDataConfig, gather_speech

COMMAND = ("data", "speech")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``edgensd data speech``."""
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    parser.add_argument(
        "--max-prompts",
        type=positive_int,
        default=None,
        metavar="N",
        help="keep only the first N prompts (sorted order; default all)",
    )
    parser.add_argument(
        "--gap-s", type=nonneg_float, default=0.25, metavar="S", help="silence before each prompt, s"
    )
    parser.add_argument("--n-test", type=nonneg_int, default=50, metavar="N", help="held-out trials (the last N)")
    parser.add_argument(
        "--include-non-speech", action="store_true", help="keep tone, sound-effect and silence prompts"
    )
    parser.add_argument(
        "--sounds-dir", default=str(ALLISON_DIR), metavar="DIR", help="folder of *.g722 prompts"
    )
    parser.add_argument(
        "--transcripts", default=str(TRANSCRIPT_PATH), metavar="FILE", help="core-sounds-en.txt(.gz)"
    )


def run(args: argparse.Namespace) -> int:
    """Gather the prompts; returns 0 on success."""
    check_output_dir(args.out, "--out")
    config = SpeechDataConfig(
        sounds_dir=str(args.sounds_dir),
        transcript_path=str(args.transcripts),
        max_prompts=args.max_prompts,
        gap_s=args.gap_s,
        include_non_speech=bool(args.include_non_speech),
        n_test=args.n_test,
    )
    gather_speech(args.out, config)
    return 0
