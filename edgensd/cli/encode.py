"""Fit cross-validated ridge TRF encoding models (speech features -> each electrode's high-gamma).

Reports per electrode the held-out correlation (folds are blocks of whole trials), the lag of peak TRF
energy in ms (negative = neural activity LEADS the acoustics, positive = it follows them) and a role:
leading, lagging or none (held-out r below --min-r). For a simulated participant the report also scores
the recovered roles against the simulator's ground truth.

Example:
  edgensd encode --data sim/p0.h5 --features mel --json sim/p0.encoding.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

COMMAND = ("encode",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgensd encode``."""
    from edgensd.neural.encoding import FEATURE_KINDS, EncodingConfig

    d = EncodingConfig()
    parser.add_argument("--data", required=True, metavar="FILE", help="participant file with ecog_alldataset")
    parser.add_argument(
        "--features", required=True, choices=FEATURE_KINDS, help="speech features to start from"
    )
    parser.add_argument("--json", required=True, metavar="OUT", help="report to write")
    parser.add_argument(
        "--params-h5",
        default=None,
        metavar="FILE",
        help="for --features params: HDF5 file with a 'params' dataset (n_frames, 18) (speech encoder)",
    )
    parser.add_argument(
        "--folds", type=int, default=d.n_folds, help=f"cross-validation folds (default {d.n_folds})"
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
    from edgensd.data.participant import load_participant
    from edgensd.log import logger
    from edgensd.neural.encoding import (
        PARAMS_MISSING,
        EncodingConfig,
        compare_with_truth,
        encoding_features,
        fit_encoding,
        load_params_h5,
    )
    from edgensd.neural.simulate import GroundTruth

    t0 = time.perf_counter()
    cfg = EncodingConfig(
        features=args.features,
        n_folds=args.folds,
        min_r=args.min_r,
        lag_min_ms=args.lag_min_ms,
        lag_max_ms=args.lag_max_ms,
        n_mel_bands=args.mel_bands,
    )
    params = None
    if cfg.features == "params":
        if args.params_h5 is None:
            raise ValueError(PARAMS_MISSING)
        params = load_params_h5(args.params_h5)
    elif args.params_h5 is not None:
        logger.warning("--params-h5 is ignored with --features %s", cfg.features)
    p = load_participant(args.data, load_extras=True)
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
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
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
