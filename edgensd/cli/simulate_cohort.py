"""Simulate a cohort of participants from a spec: several speakers, grids, hemispheres and knob settings.

Reads a cohort spec (default: the shipped edgensd/assets/cohort/default.json: nine participants from four
speakers, LD 8x8 and HB 128 grids, both hemispheres, three at each simulator-knob preset), gathers each
voice's speech once into OUT/speech/<voice>/ and simulates every participant into OUT/<id>.h5 with its
OUT/<id>.simulation.json (layout, hemisphere, knobs, ...) and OUT/<id>.simulation_report.json. OUT/cohort.json
lists every finished participant (voice, speaker, sex, layout, density, hemisphere, knobs, size, time).

Resumable: a participant already built with the same configuration is not simulated again; files are
written atomically, so a killed run is simply started again. One log line per participant.

Example:
  edgensd simulate-cohort --out cohort/
  edgensd simulate-cohort --out quick/ --max-trials 20 --only p01,p05
"""

from __future__ import annotations

import argparse

from edgensd.cli._args import CommandError, check_input_file, check_output_dir, positive_int

COMMAND = ("simulate-cohort",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgensd simulate-cohort``."""
    parser.add_argument("--out", required=True, metavar="DIR", help="cohort folder (created; reused to resume)")
    parser.add_argument(
        "--spec", default=None, metavar="FILE", help="cohort spec JSON (default: the shipped default.json)"
    )
    parser.add_argument(
        "--max-trials", type=positive_int, default=None, metavar="N",
        help="only the first N prompts of each voice (a quick cohort; default all)",
    )
    parser.add_argument(
        "--only", default=None, metavar="IDS", help="comma-separated participant ids to build (default all)"
    )


def run(args: argparse.Namespace) -> int:
    """Build the cohort."""
    from edgensd.neural.cohort import build_cohort, load_spec

    if args.spec is not None:
        check_input_file(args.spec, "--spec")
    spec = load_spec(args.spec)
    only = None
    if args.only is not None:
        only = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = sorted(set(only) - {p.id for p in spec.participants})
        if not only or unknown:
            raise CommandError(f"--only: unknown participant ids {unknown or [args.only]}; the spec has "
                               f"{[p.id for p in spec.participants]}")
    check_output_dir(args.out, "--out")
    build_cohort(args.out, spec, max_trials=args.max_trials, only=only)
    return 0
