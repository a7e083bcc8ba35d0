"""Simulate a participant's ECoG from real speech (raw signal, high-gamma features and ground truth).

Real speech (a speech-only participant file from `edgensd data speech`) drives a spatio-temporal encoding
model: sensorimotor and inferior-frontal electrodes lead the acoustics by 50-200 ms, auditory electrodes
follow by 50-150 ms, some electrodes carry no speech information, and high-gamma rises 1.5-4x during
speech. The raw signal (1/f background, alpha/beta, mains hum, common-mode noise, bad channels) is turned
into 125 Hz features by the project's offline high-gamma pipeline. Writes FILE.h5 (participant file with
raw signal, features, positions and `sim_*` ground truth), FILE.simulation.json (the SimulationConfig) and
FILE.simulation_report.json (timings, measured speech/silence ratios, bad channels).

Simulator knobs (edgensd/neural/simulator_knobs.md): --nonlinearity linear|mild|strong picks a preset
(linear, the default, is the base model unchanged); the knob flags override single values of it:
saturating tuning, onset transients of posterior auditory electrodes, gain drift across trials, and
sensorimotor drive from articulator proxies computed from the acoustics.

Example:
  edgensd data speech --out data/
  edgensd simulate --speech data/speech.h5 --layout ld8x8 --hemisphere left --seed 0 --out sim/p0.h5
  edgensd simulate --speech data/speech.h5 --layout hb128 --nonlinearity strong --gain-drift-sd 0 --out sim/p1.h5
"""

from __future__ import annotations

import argparse

from edgensd.cli._args import (
    bounded_float,
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
    add_knob_arguments(parser)


def add_knob_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator-knob options (shared with ``edgensd simulate-cohort``'s help)."""
    from edgensd.neural.knobs import NONLINEARITIES, PRESET_KNOBS

    g = parser.add_argument_group(
        "simulator knobs",
        "a preset, and single knobs that override it (sources: edgensd/neural/simulator_knobs.md)",
    )
    g.add_argument(
        "--nonlinearity",
        default="linear",
        choices=NONLINEARITIES,
        help="knob preset: linear (the base model: every knob off), mild or strong (every knob on)",
    )

    def knob(flag: str, field: str, lo: float, hi: float, metavar: str, text: str) -> None:
        presets = ", ".join(f"{n} {getattr(k, field):g}" for n, k in PRESET_KNOBS.items())
        g.add_argument(flag, type=bounded_float(lo, hi), default=None, metavar=metavar,
                       help=f"{text}; in [{lo:g}, {hi:g}] (default: the preset's: {presets})")

    knob("--saturation-c50", "saturation_c50", 0.0, 10.0, "C",
         "Naka-Rushton semi-saturation of the drive, in mean speech drives; 0 = linear")
    knob("--saturation-exponent", "saturation_exponent", 1.0, 4.0, "N", "Naka-Rushton exponent")
    knob("--onset-fraction", "onset_fraction", 0.0, 1.0, "F",
         "fraction of speech auditory electrodes (most posterior) with onset transients")
    knob("--onset-silence", "onset_silence_s", 0.05, 5.0, "S", "silence before a speech onset that evokes one, s")
    knob("--gain-drift-sd", "gain_drift_sd", 0.0, 1.0, "SD", "SD of each electrode's log gain across trials")
    knob("--gain-drift-trials", "gain_drift_trials", 1.0, 10000.0, "N", "correlation length of the drift, trials")
    knob("--articulatory-weight", "articulatory_weight", 0.0, 1.0, "W",
         "share of sensorimotor drive from articulator proxies (computed from the acoustics)")


def knob_config(args: argparse.Namespace) -> dict:
    """The SimulationConfig knob fields from parsed options."""
    return {
        "nonlinearity": args.nonlinearity,
        "saturation_c50": args.saturation_c50,
        "saturation_exponent": args.saturation_exponent,
        "onset_fraction": args.onset_fraction,
        "onset_silence_s": args.onset_silence,
        "gain_drift_sd": args.gain_drift_sd,
        "gain_drift_trials": args.gain_drift_trials,
        "articulatory_weight": args.articulatory_weight,
    }


def run(args: argparse.Namespace) -> int:
    """Run the simulation and write its files."""
    from edgensd.log import logger
    from edgensd.neural.simulate import SimulationConfig, report_path_for, simulate, write_report, write_simulation

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
        **knob_config(args),
    )
    res = simulate(cfg)
    path, cfg_path = write_simulation(res, args.out)
    write_report(res, path)
    logger.info("wrote %s, %s and %s", path, cfg_path, report_path_for(path))
    return 0
