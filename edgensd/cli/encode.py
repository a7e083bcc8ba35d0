"""Fit cross-validated ridge TRF encoding models (speech features -> each electrode's high-gamma).

Reports per electrode the held-out correlation (folds are blocks of whole trials), the lag of peak TRF
energy in ms (negative = neural activity LEADS the acoustics, positive = it follows them) and a role:
leading, lagging or none (held-out r below --min-r). For a simulated participant the report also scores
the recovered roles against the simulator's ground truth.

Example:
  edgensd encode --data sim/p0.h5 --features mel --json sim/p0.encoding.json
  edgensd encode --data sim/p0.h5 --features params --speech-model runs/speech --json sim/p0.params.json

With --features params the 18 speech parameters of every frame come from a trained speech model
(--speech-model, the participant's audio is encoded here) or from an HDF5 file (--params-h5).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

COMMAND = ("encode",)


def _folds(text: str) -> int:
    from edgensd.cli._args import positive_int

    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 2, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgensd encode``."""
    from edgensd.neural.encoding import FEATURE_KINDS, EncodingConfig

    d = EncodingConfig()
    parser.add_argument("--data", required=True, metavar="FILE", help="participant file with ecog_alldataset")
    parser.add_argument(
        "--features", required=True, choices=FEATURE_KINDS, help="speech features to start from"
    )
    parser.add_argument("--json", required=True, metavar="OUT", help="report to write")
    src = parser.add_mutually_exclusive_group()
    src.add_argument(
        "--speech-model",
        default=None,
        metavar="DIR",
        help="for --features params: trained speech model (edgensd train speech) that encodes the audio",
    )
    src.add_argument(
        "--params-h5",
        default=None,
        metavar="FILE",
        help="for --features params: HDF5 file with a 'params' dataset (n_frames, 18), physical units",
    )
    parser.add_argument(
        "--folds", type=_folds, default=d.n_folds, help=f"cross-validation folds, >= 2 (default {d.n_folds})"
    )
    parser.add_argument(
        "--min-r", type=float, default=d.min_r, help=f"r below this = no information (default {d.min_r})"
    )
    parser.add_argument("--lag-min-ms", type=float, default=d.lag_min_ms, help=f"default {d.lag_min_ms:g}")
    parser.add_argument("--lag-max-ms", type=float, default=d.lag_max_ms, help=f"default {d.lag_max_ms:g}")
    parser.add_argument(
        "--mel-bands", type=int, default=d.n_mel_bands, help=f"mel band groups (default {d.n_mel_bands})"
    )


def run(args: argparse.Namespace) -> int:
    """Fit the models and write the JSON report."""
    from edgensd.cli._args import CommandError, check_input_file, check_neural_file, check_output_file
    from edgensd.data.participant import load_participant
    from edgensd.log import logger
    from edgensd.neural.encoding import (
        EncodingConfig,
        compare_with_truth,
        encoding_features,
        fit_encoding,
        load_params_h5,
    )
    from edgensd.neural.simulate import GroundTruth

    t0 = time.perf_counter()
    check_neural_file(args.data, "--data")
    out = check_output_file(args.json, "--json")
    if args.features == "params" and args.speech_model is None and args.params_h5 is None:
        raise CommandError(
            "--features params needs the 18 speech parameters of every frame: pass --speech-model DIR (a "
            "trained speech model; the participant's audio is encoded with it) or --params-h5 FILE"
        )
    for flag, value in (("--speech-model", args.speech_model), ("--params-h5", args.params_h5)):
        if value is not None and args.features != "params":
            logger.warning("%s is ignored with --features %s", flag, args.features)
    if args.params_h5 is not None:
        check_input_file(args.params_h5, "--params-h5")
    if args.speech_model is not None and not Path(args.speech_model).is_dir():
        raise CommandError(f"--speech-model: no such model folder: {args.speech_model}")
    cfg = EncodingConfig(
        features=args.features,
        n_folds=args.folds,
        min_r=args.min_r,
        lag_min_ms=args.lag_min_ms,
        lag_max_ms=args.lag_max_ms,
        n_mel_bands=args.mel_bands,
    )
    p = load_participant(args.data, load_extras=True)
    params = None
    if cfg.features == "params" and args.params_h5 is not None:
        params = load_params_h5(args.params_h5)
    elif cfg.features == "params":
        from edgensd.speech.evaluate import encode_recording
        from edgensd.speech.model import load_speech_model

        logger.info("encoding %.1f min of audio with the speech model %s", p.duration_s / 60, args.speech_model)
        params = encode_recording(load_speech_model(args.speech_model), p.audio, p.n_frames)
    feats, names = encoding_features(p, cfg.features, params=params, n_mel_bands=cfg.n_mel_bands)
    res = fit_encoding(p.ecog, feats, p.start, p.end, cfg, names)
    report = {"data": str(args.data), **res.to_dict()}
    if "sim_role" in p.extras:
        truth = GroundTruth.from_extras(p.extras)
        report["ground_truth"] = compare_with_truth(res, truth)
        for i, el in enumerate(report["electrodes"]):
            el["true_role"] = str(truth.role[i])
            el["true_lag_ms"] = float(truth.lag_ms[i])
        g = report["ground_truth"]
        logger.info(
            "role recovered for %d of %d electrodes carrying speech information (%.1f%%); "
            "median lag error %.1f ms",
            g["n_correct"],
            g["n_info"],
            100 * g["role_recovery"],
            g["lag_error_ms_median"],
        )
    report["seconds"] = round(time.perf_counter() - t0, 2)
    out.write_text(json.dumps(report, indent=2) + "\n")
    s = report["summary"]
    logger.info(
        "encoding: %d leading, %d lagging, %d without speech information (median r %s); wrote %s",
        s["n_leading"],
        s["n_lagging"],
        s["n_none"],
        s["median_r"],
        out,
    )
    return 0
