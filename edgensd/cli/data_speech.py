"""Gather real speech (the Asterisk prompts of one voice) into one speech-only participant file.

Decodes the G.722 prompts of the Debian package asterisk-core-sounds-<voice>-g722, labels them with the
transcripts of asterisk-core-sounds-<voice> and writes OUT/speech.h5 (one trial per prompt, 16 kHz audio, no
neural data, 50 prompts spread over the list held out), OUT/README.txt (the voice's licence and attribution:
en "Recorded by Allison Smith", CC-BY-SA-3.0) and OUT/speech_data.json (how it was made). Non-speech prompts
(tones, sound effects, silence) are left out.

Voices: en (Allison Smith, US English, female), es (Allison Smith, Mexican Spanish), fr (June Wallack,
Canadian French, female), it (Carlo Flora, Italian, male; CC-BY-3.0), ru (IvrvoiceRU, Russian, female,
provided by Maxim Topal; CC-BY-3.0). The voice range stored in the file is the 'high' preset for en and
is estimated from the speaker's own training prompts for the others.

Example: edgensd data speech --out data/speech --max-prompts 20
         edgensd data speech --voice it --out data/speech_it
"""

from __future__ import annotations

import argparse

from edgensd.cli._args import check_output_dir, nonneg_float, nonneg_int, positive_int
from edgensd.data.speech import VOICES, SpeechDataConfig, gather_speech

COMMAND = ("data", "speech")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``edgensd data speech``."""
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    parser.add_argument(
        "--voice",
        default="en",
        choices=tuple(VOICES),
        help="speaker: " + ", ".join(f"{v.code} = {v.speaker.split(' (')[0]} ({v.language}, {v.sex})"
                                     for v in VOICES.values()),
    )
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
    parser.add_argument(
        "--n-test", type=nonneg_int, default=50, metavar="N", help="held-out trials (spread over the prompts)"
    )
    parser.add_argument(
        "--include-non-speech", action="store_true", help="keep tone, sound-effect and silence prompts"
    )
    parser.add_argument(
        "--sounds-dir", default=None, metavar="DIR",
        help="folder of *.g722 prompts (default: the voice's, /usr/share/asterisk/sounds/<folder>)",
    )
    parser.add_argument(
        "--transcripts", default=None, metavar="FILE",
        help="transcript file core-sounds-<voice>.txt(.gz) (default: the voice's, under /usr/share/doc)",
    )
    parser.add_argument(
        "--voice-range", default=None, choices=("low", "high", "estimate"),
        help="voice range stored in the file (default: 'high' for en, 'estimate' from the audio for the others)",
    )


def run(args: argparse.Namespace) -> int:
    """Gather the prompts; returns 0 on success."""
    check_output_dir(args.out, "--out")
    config = SpeechDataConfig(
        voice=args.voice,
        sounds_dir=None if args.sounds_dir is None else str(args.sounds_dir),
        transcript_path=None if args.transcripts is None else str(args.transcripts),
        voice_range=args.voice_range,
        max_prompts=args.max_prompts,
        gap_s=args.gap_s,
        include_non_speech=bool(args.include_non_speech),
        n_test=args.n_test,
    )
    gather_speech(args.out, config)
    return 0
