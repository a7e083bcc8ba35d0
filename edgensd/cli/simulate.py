"""Simulate a participant's ECoG from real speech (raw signal, high-gamma features and ground truth).

Real speech (a speech-only participant file from `edgensd data speech`) drives a spatio-temporal encoding
model: sensorimotor and inferior-frontal electrodes lead the acoustics by 50-200 ms, auditory electrodes
follow by 50-150 ms, some electrodes carry no speech information, and high-gamma rises 1.5-4x during
speech. The raw signal (1/f background, alpha/beta, mains hum, common-mode noise, bad channels) is turned
into 125 Hz features by the project's offline high-gamma pipeline. Writes FILE.h5 (participant file with
raw signal, features, positions and `sim_*` ground truth), FILE.simulation.json (the SimulationConfig) and
FILE.simulation_report.json (timings, measured speech/silence ratios, bad channels).

Example:
  edgensd data speech --out data/
  edgensd simulate --speech data/speech.h5 --layout ld8x8 --hemisphere left --seed 0 --out sim/p0.h5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgensd.cli._args import (
    check_input_file,
    check_output_file,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
)

COMMAND = ("simulate",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgensd simulate``."""
    from edgensd.neural.layouts import HEMISPHERES, LAYOUT_NAMES
    from edgensd.neural.simulate import DIFFICULTIES

    parser.add_argument(
        "--speech", required=True, metavar="PATH", help="speech-only participant file (speech.h5)"
    )
    parser.add_argument("--layout", required=True, choices=LAYOUT_NAMES, help="electrode layout")
    parser.add_argument("--hemisphere", default="left", choices=HEMISPHERES, help="hemisphere (default left)")
    parser.add_argument("--seed", type=nonneg_int, default=0, help="random seed")
    parser.add_argument("--out", required=True, metavar="FILE.h5", help="participant file to write")
    parser.add_argument(
        "--raw-fs", type=positive_float, default=1000.0, metavar="HZ", help="raw sampling rate"
    )
    parser.add_argument("--difficulty", default="standard", choices=DIFFICULTIES, help="default standard")
    parser.add_argument(
        "--line-freq", type=float, default=60.0, choices=(50.0, 60.0), help="mains Hz (default 60)"
    )
    parser.add_argument(
        "--pipeline",
        default="offline",
        choices=("offline", "streaming"),
        help="high-gamma pipeline of the stored features: zero-phase offline, or the causal streaming one the "
        "runtime computes from raw samples (train on it to deploy on it)",
    )
    parser.add_argument("--max-trials", type=positive_int, default=None, metavar="N", help="only the first N trials")
    parser.add_argument(
        "--trial-gap",
        type=nonneg_float,
        default=None,
        metavar="S",
        help="re-space trials with at least S s of silence before each (default: keep the speech timeline)",
    )
    parser.add_argument(
        "--n-bad", type=nonneg_int, default=None, metavar="N", help="bad channels (default: by difficulty)"
    )
    parser.add_argument(
        "--no-placement-jitter", action="store_true", help="place grids exactly at the default spot"
    )


def run(args: argparse.Namespace) -> int:
    """Run the simulation and write its files."""
    from edgensd.log import logger
    from edgensd.neural.simulate import SimulationConfig, config_path_for, simulate, write_simulation

    check_input_file(args.speech, "--speech")
    check_output_file(args.out, "--out")
    cfg = SimulationConfig(
        speech=str(args.speech),
        layout=args.layout,
        hemisphere=args.hemisphere,
        seed=args.seed,
        raw_fs=args.raw_fs,
        difficulty=args.difficulty,
        line_freq=args.line_freq,
        max_trials=args.max_trials,
        trial_gap_s=args.trial_gap,
        n_bad=args.n_bad,
        placement_jitter=not args.no_placement_jitter,
        pipeline=args.pipeline,
    )
    res = simulate(cfg)
    path, cfg_path = write_simulation(res, args.out)
    report_path = Path(path).with_name(Path(path).stem + ".simulation_report.json")
    report = {
        "participant_file": str(path),
        "config_file": str(cfg_path),
        "timings_s": {k: round(v, 3) for k, v in res.timings_s.items()},
        "truth_summary": res.truth.summary(),
        "hg_ratio_measured": [None if v != v else round(float(v), 4) for v in res.truth.ratio_measured],
    }
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    assert config_path_for(path) == cfg_path
    logger.info("wrote %s, %s and %s", path, cfg_path, report_path)
    return 0
