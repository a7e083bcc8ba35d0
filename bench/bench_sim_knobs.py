"""How linearly decodable each simulator-knob preset leaves a participant: time-lagged ridge from high-gamma to
the log-mel spectrogram, held-out trials, same speech, layout and seed for every preset.

No speech model is needed: the target is the 32-band log-mel spectrogram of the audio (normalized dB of
:mod:`edgensd.spectrogram`), so this measures the simulator, not a decoder. Prints one line per preset and a
markdown table: held-out PCC (per trial, Pearson r over frames x bands, mean over trials) of ridge with causal
lags (neural frames t-L..t for frame t, every second frame; L = 24 frames = 192 ms) and with symmetric lags
(t-L..t+L), and the floor (the training trials' mean spectrum for every frame).

Example (3.4 min here, one thread, machine shared with other jobs):
  python bench/bench_sim_knobs.py --speech data/speech/speech.h5 --max-trials 150 --out /tmp/knobs_bench

Measured at commit b80fd90 on the en speech (551 prompts; first 150, 14 held out), ld8x8, seed 7:
  preset   floor   ridge causal   ridge symmetric
  linear   0.587   0.825          0.846
  mild     0.587   0.821          0.837
  strong   0.587   0.785          0.797
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def log_mel(audio: np.ndarray, n_bands: int = 32) -> np.ndarray:
    """Normalized-dB log-mel (frames x n_bands) on the shared frame clock."""
    from edgensd.neural.simulate import iter_power_spectrogram
    from edgensd.spectrogram import mel_filterbank

    fb = mel_filterbank()
    groups = fb.reshape(n_bands, -1, fb.shape[1]).sum(axis=1)
    out = []
    for _, pw, _ in iter_power_spectrogram(audio):
        out.append(np.clip(10 * np.log10(np.maximum(pw @ groups.T, 1e-12)), -50, 22.5))
    return np.concatenate(out).astype(np.float32)


def lagged(x: np.ndarray, lags: list[int]) -> np.ndarray:
    """Columns of ``x`` shifted by each lag (frame t gets x[t - lag]); zero padded."""
    n, e = x.shape
    out = np.zeros((n, e * len(lags)), np.float32)
    for j, lag in enumerate(lags):
        if lag >= 0:
            out[lag:, j * e : (j + 1) * e] = x[: n - lag]
        else:
            out[:lag, j * e : (j + 1) * e] = x[-lag:]
    return out


def trial_pcc(pred: np.ndarray, true: np.ndarray) -> float:
    a, b = pred.ravel() - pred.mean(), true.ravel() - true.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b) + 1e-12))


def ridge_eval(p, y: np.ndarray, lags: list[int], alphas=(1e1, 1e2, 1e3, 1e4, 1e5)) -> float:
    """Fit on the training trials (alpha chosen on their last fifth), return the held-out mean trial PCC."""
    pad = max(abs(lag) for lag in lags)
    xs, ys = {}, {}
    for i in range(p.n_trials):
        a, b = int(p.start[i]), int(p.end[i])
        lo, hi = max(0, a - pad), min(p.n_frames, b + pad)
        xs[i] = lagged(p.ecog[lo:hi], lags)[a - lo : a - lo + (b - a)]
        ys[i] = y[a:b]
    test = set(int(i) for i in p.test_trials)
    train = [i for i in range(p.n_trials) if i not in test]
    n_val = max(1, len(train) // 5)
    fit_tr, val_tr = train[:-n_val], train[-n_val:]

    def solve(trials, alpha):
        x = np.concatenate([xs[i] for i in trials]).astype(np.float64)
        t = np.concatenate([ys[i] for i in trials]).astype(np.float64)
        xm, ym = x.mean(0), t.mean(0)
        xc = x - xm
        w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (t - ym))
        return w, xm, ym

    def score(model, trials):
        w, xm, ym = model
        return float(np.mean([trial_pcc((xs[i] - xm) @ w + ym, ys[i]) for i in trials]))

    best = max(alphas, key=lambda a: score(solve(fit_tr, a), val_tr))
    return score(solve(train, best), sorted(test))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speech", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--layout", default="ld8x8")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-trials", type=int, default=150)
    ap.add_argument("--lags", type=int, default=24, help="L: causal lags 0..L frames, symmetric -L..L (step 2)")
    args = ap.parse_args()
    from edgensd.neural.knobs import NONLINEARITIES
    from edgensd.neural.simulate import SimulationConfig, simulate

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for level in NONLINEARITIES:
        t0 = time.perf_counter()
        cfg = SimulationConfig(speech=args.speech, layout=args.layout, seed=args.seed, max_trials=args.max_trials,
                               trial_gap_s=1.0, nonlinearity=level)
        p = simulate(cfg, verbose="error").participant
        y = log_mel(p.audio)[: p.n_frames]
        test = [int(i) for i in p.test_trials]
        train = [i for i in range(p.n_trials) if i not in set(test)]
        mean_spec = np.concatenate([y[p.start[i]:p.end[i]] for i in train]).mean(0)
        floor = float(np.mean([trial_pcc(np.broadcast_to(mean_spec, (p.end[i] - p.start[i], y.shape[1])),
                                         y[p.start[i]:p.end[i]]) for i in test]))
        causal = ridge_eval(p, y, list(range(0, args.lags + 1, 2)))
        sym = ridge_eval(p, y, list(range(-args.lags, args.lags + 1, 2)))
        row = {"nonlinearity": level, "layout": args.layout, "seed": args.seed, "n_trials": p.n_trials,
               "n_test": len(test), "floor": round(floor, 4), "ridge_causal": round(causal, 4),
               "ridge_symmetric": round(sym, 4), "seconds": round(time.perf_counter() - t0, 1)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    (out / "bench_sim_knobs.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| preset | floor | ridge causal | ridge symmetric |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['nonlinearity']} | {r['floor']:.3f} | {r['ridge_causal']:.3f} | {r['ridge_symmetric']:.3f} |")


if __name__ == "__main__":
    main()
