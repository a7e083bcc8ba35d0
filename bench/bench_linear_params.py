"""A linear decoder that speaks through the synthesizer, beside the ridge baseline that does not.

Usage::

    python bench/bench_linear_params.py --data P.h5 --speech-model SM_DIR [--cache-dir DIR] [--json OUT]

``eval decoder``'s ridge baseline regresses the 256-bin spectrogram straight from lagged high-gamma; a decoder
must instead produce the 18 parameters that the frozen synthesizer renders. This fits the same causal ridge
(lags t-24..t, step 2) to the parameters, in the decoders' raw space (the logit of each parameter's position in
its range, :func:`edgensd.decoding.targets.param_position`), renders the held-out trials through the synthesizer
and scores them as ``eval decoder`` does (PCC per trial over frames x 256 bins of normalized dB, mean over
trials). The penalty is chosen on the last 10 % of the training trials, as for the ridge baseline. Printed beside
it: ridge to the spectrogram and the speech model's ceiling, on the same trials.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edgensd.data.participant import load_participant, trial_split
from edgensd.decoding.baselines import ALPHA_GRID, CAUSAL_LAGS, fit_ridge, lagged
from edgensd.decoding.evaluate import params_to_spec
from edgensd.decoding.targets import CONTEXT_FRAMES, build_segments, load_references, param_position
from edgensd.metrics import pcc
from edgensd.params import raw_to_physical

EPS = 1e-3
"""Positions are clipped to [EPS, 1 - EPS] before the logit."""


def _design(seg, k: int) -> np.ndarray:
    return lagged(seg.neural[seg.rows(k)], CAUSAL_LAGS).astype(np.float64)


def _trial(seg, k: int) -> slice:
    return slice(int(seg.first[k]), int(seg.first[k] + seg.length[k]))


def _solve(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    c = xc.T @ xc
    w = np.linalg.solve(c + alpha * float(np.mean(np.diag(c))) * np.eye(c.shape[0]), xc.T @ (y - my))
    return w, my - mx @ w


def _logit_positions(params: np.ndarray, voice) -> np.ndarray:
    pos = np.clip(param_position(params, voice).astype(np.float64), EPS, 1 - EPS)
    return np.log(pos) - np.log1p(-pos)


def linear_params_pcc(seg_fit, seg_eval, synth, voice, alpha: float) -> list[float]:
    """Per-trial PCC on ``seg_eval`` of ridge (lagged frames -> raw parameters) fitted on ``seg_fit``."""
    x = np.concatenate([_design(seg_fit, k) for k in range(len(seg_fit))])
    w, b = _solve(x, _logit_positions(seg_fit.params, voice), alpha)
    out = []
    for k in range(len(seg_eval)):
        raw = (_design(seg_eval, k) @ w + b).astype(np.float32)
        phys = raw_to_physical(raw, voice)[_trial(seg_eval, k)]
        out.append(pcc(params_to_spec(synth, phys), seg_eval.spec[seg_eval.rows(k)][_trial(seg_eval, k)]))
    return out


def main() -> None:
    from edgensd.speech.model import load_speech_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="participant file")
    ap.add_argument("--speech-model", required=True, help="speech model folder")
    ap.add_argument("--cache-dir", default=None, help="reference-parameter cache (default: a temporary folder)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    for flag, path in (("--data", args.data), ("--speech-model", args.speech_model)):
        if not Path(path).exists():
            raise SystemExit(f"{flag} {path}: not found")
    t0 = time.time()
    sm = load_speech_model(args.speech_model)
    voice, synth = sm.config.voice, sm.synth.eval()
    p = load_participant(args.data)
    tr_idx, te_idx = trial_split(p)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        refs = load_references(p, sm, args.speech_model, CONTEXT_FRAMES, args.cache_dir or tmp)
    train = build_segments(p, refs, tr_idx, exclude=te_idx)
    test = build_segments(p, refs, te_idx)
    n_val = max(1, len(tr_idx) // 10)
    fit_part = build_segments(p, refs, tr_idx[:-n_val], exclude=te_idx)
    val_part = build_segments(p, refs, tr_idx[-n_val:], exclude=te_idx)
    val = {a: float(np.mean(linear_params_pcc(fit_part, val_part, synth, voice, a))) for a in ALPHA_GRID}
    alpha = max(val, key=val.get)
    lin = linear_params_pcc(train, test, synth, voice, alpha)
    ridge = fit_ridge(train, CAUSAL_LAGS)
    r_spec, ceil = [], []
    for k in range(len(test)):
        rows, tr = test.rows(k), _trial(test, k)
        true = test.spec[rows][tr]
        r_spec.append(pcc(ridge.predict(test.neural[rows])[tr], true))
        ceil.append(pcc(params_to_spec(synth, test.params[rows][tr]), true))
    res = {"trials": len(test), "alpha": alpha, "validation_pcc": val,
           "linear_params_pcc": float(np.mean(lin)), "ridge_spectrogram_pcc": float(np.mean(r_spec)),
           "ceiling_pcc": float(np.mean(ceil)), "seconds": time.time() - t0}
    print(f"{len(test)} held-out trials: causal ridge to the parameters, through the synthesizer "
          f"{res['linear_params_pcc']:.4f} (alpha {alpha:g}); causal ridge to the spectrogram "
          f"{res['ridge_spectrogram_pcc']:.4f}; speech-model ceiling {res['ceiling_pcc']:.4f} ({res['seconds']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
