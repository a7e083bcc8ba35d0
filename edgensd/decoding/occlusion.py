"""Occlusion: each electrode's contribution to a trained decoder, drawn on the electrode layout.

For every held-out trial the decoder runs on the trial's segment as in :mod:`edgensd.decoding.evaluate`,
once intact and once per electrode with that electrode's features set to 0 (its z-scored mean) over the
whole segment. An electrode's contribution is the drop in mean spectrogram PCC (intact − occluded):
positive where the decoder relies on it.

On a simulated participant (:func:`edgensd.neural.simulate.load_ground_truth`) the contributions are
compared with the simulator's roles: leading electrodes (sensorimotor / inferior frontal, activity 50–200 ms
before the acoustics) against lagging ones (auditory, 50–150 ms after); bad channels (simulated or detected)
are left out. The comparison reports each role's mean and median drop and the AUC: the probability that a
random leading electrode drops the PCC more than a random lagging one (0.5 = no preference).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from edgensd.decoding.evaluate import load_eval_setup, params_to_spec
from edgensd.log import logger, progress_enabled
from edgensd.metrics import pcc
from edgensd.params import raw_to_physical

__all__ = ["compare_with_truth", "layout_positions", "occlusion"]


def _auc(a: np.ndarray, b: np.ndarray) -> float:
    """P(x > y) + 0.5 P(x = y) for x from ``a``, y from ``b`` (NaN if either is empty)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size == 0 or b.size == 0:
        return float("nan")
    gt = (a[:, None] > b[None, :]).mean()
    eq = (a[:, None] == b[None, :]).mean()
    return float(gt + 0.5 * eq)


def compare_with_truth(drop: np.ndarray, truth) -> dict:
    """Compare occlusion drops with a simulator's ground truth.

    Parameters
    ----------
    drop : ndarray, shape (n_electrodes,)
        PCC drop per electrode.
    truth : edgensd.neural.simulate.GroundTruth

    Returns
    -------
    dict
        Per role (``leading``, ``lagging``, ``none``): ``n``, ``mean_drop``, ``median_drop``;
        ``auc_leading_vs_lagging``; ``leading_above_lagging`` (AUC > 0.5 and the leading median above the
        lagging one); ``excluded_bad``; ``top10_electrodes``.
    """
    good = ~np.asarray(truth.bad, bool) & ~np.asarray(truth.bad_detected, bool)
    role = np.asarray(truth.role).astype(str)
    out: dict = {"excluded_bad": [int(i) for i in np.flatnonzero(~good)], "roles": {}}
    for r in ("leading", "lagging", "none"):
        d = drop[good & (role == r)]
        out["roles"][r] = {
            "n": int(d.size),
            "mean_drop": float(d.mean()) if d.size else float("nan"),
            "median_drop": float(np.median(d)) if d.size else float("nan"),
        }
    lead, lag = drop[good & (role == "leading")], drop[good & (role == "lagging")]
    auc = _auc(lead, lag)
    out["auc_leading_vs_lagging"] = auc
    roles = out["roles"]
    out["leading_above_lagging"] = bool(
        np.isfinite(auc) and auc > 0.5 and roles["leading"]["median_drop"] > roles["lagging"]["median_drop"]
    )
    # rank of each electrode (1 = largest drop) among the good ones
    order = np.argsort(-np.where(good, drop, -np.inf))
    out["top10_electrodes"] = [{"electrode": int(e), "drop": float(drop[e]), "role": str(role[e])} for e in order[:10]]
    return out


def layout_positions(p, truth=None) -> tuple[np.ndarray, str]:
    """2-D positions to draw the electrodes at, and what they are.

    The simulator's sheet positions in the lateral view when known, else the file's 3-D positions unrolled
    (:func:`edgensd.neural.layouts.flatten_3d`), else the row-major square grid.

    Returns
    -------
    xy : ndarray, shape (n_electrodes, 2)
    kind : str
    """
    from edgensd.neural.layouts import flatten_3d, square_grid_index, view_from_sheet

    if truth is not None:
        return view_from_sheet(truth.sheet_positions_mm, p.hemisphere or "left"), "lateral view, mm"
    pos = p.electrode_positions
    if pos is not None and np.all(np.isfinite(pos)):
        return (flatten_3d(pos) if pos.shape[1] == 3 else np.asarray(pos, float)), "unrolled positions, mm"
    g = square_grid_index(p.n_electrodes)
    return np.stack([g.cols, -g.rows], axis=1).astype(float), "row-major square grid (no positions in the file)"


def occlusion(
    model_dir: str | os.PathLike,
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    speech_model: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    max_trials: int | None = None,
    batch: int = 16,
) -> dict:
    """Measure each electrode's contribution (drop in PCC when it is occluded); write JSON and PNG.

    Parameters
    ----------
    model_dir : path
        Trained decoder directory.
    data : path
        Participant file (held-out trials are used).
    out_dir : path
        Gets ``occlusion.json`` and ``occlusion.png``.
    speech_model : path, optional
        Default: the one the decoder was trained with.
    cache_dir : path, optional
        Reference cache (default: ``model_dir``).
    max_trials : int, optional
        Use only the first this many held-out trials.
    batch : int
        Occluded copies decoded together.

    Returns
    -------
    dict
        ``base_pcc_mean``, ``drop`` (per electrode), ``occluded_pcc_mean`` (per electrode), ``n_trials``,
        ``ground_truth`` (see :func:`compare_with_truth`; None for a participant that is not simulated).
    """
    from tqdm import tqdm

    t0 = time.time()
    st = load_eval_setup(model_dir, data, speech_model, cache_dir)
    td, sm, p, voice, seg = st["trained"], st["speech"], st["participant"], st["voice"], st["test_seg"]
    dec, synth = td.decoder.eval(), sm.synth.eval()
    n_el = dec.n_electrodes
    ks = list(range(len(seg)))[: max_trials if max_trials else None]
    if not ks:
        raise ValueError(f"max_trials must be >= 1, got {max_trials}")
    base = np.zeros(len(ks))
    occl = np.zeros((len(ks), n_el))
    for j, k in enumerate(tqdm(ks, desc="occlusion", unit="trial", disable=not progress_enabled())):
        rows = seg.rows(k)
        tr = slice(int(seg.first[k]), int(seg.first[k] + seg.length[k]))
        x = torch.from_numpy(np.ascontiguousarray(seg.neural[rows], np.float32))
        true = seg.spec[rows][tr]
        with torch.no_grad():
            y = dec(x[None])[0]
        base[j] = pcc(params_to_spec(synth, raw_to_physical(y.numpy(), voice)[tr]), true)
        for e0 in range(0, n_el, batch):
            es = list(range(e0, min(e0 + batch, n_el)))
            xb = x[None].repeat(len(es), 1, 1)
            for b, e in enumerate(es):
                xb[b, :, e] = 0.0
            with torch.no_grad():
                yb = dec(xb).numpy()
            specs = params_to_spec(synth, raw_to_physical(yb[:, tr], voice))
            for b, e in enumerate(es):
                occl[j, e] = pcc(specs[b], true)
    drop = base.mean() - occl.mean(axis=0)
    truth = None
    try:
        from edgensd.neural.simulate import load_ground_truth

        truth = load_ground_truth(data)
    except ValueError:
        logger.info("%s is not a simulated participant: no ground truth to compare with", data)
    res = {
        "model": str(model_dir),
        "name": f"{td.train_config.arch} ({'causal' if dec.causal else 'non-causal'})",
        "arch": td.train_config.arch,
        "causal": bool(dec.causal),
        "data": str(data),
        "n_trials": len(ks),
        "occluded_value": "0 (the z-scored mean) over the whole segment",
        "base_pcc_mean": float(base.mean()),
        "occluded_pcc_mean": [float(v) for v in occl.mean(axis=0)],
        "drop": [float(v) for v in drop],
        "ground_truth": compare_with_truth(drop, truth) if truth is not None else None,
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    xy, kind = layout_positions(p, truth)
    res["positions"] = {"kind": kind, "xy": np.round(xy, 3).tolist()}
    _plot(res, xy, kind, truth, out_dir / "occlusion.png")
    res["seconds"] = round(time.time() - t0, 1)
    tmp = out_dir / "occlusion.json.tmp"
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    os.replace(tmp, out_dir / "occlusion.json")
    gt = res["ground_truth"]
    if gt is not None:
        logger.info(
            "%s occlusion: leading electrodes mean drop %.4f, lagging %.4f, AUC %.2f -> leading above lagging: %s",
            res["name"], gt["roles"]["leading"]["mean_drop"], gt["roles"]["lagging"]["mean_drop"],
            gt["auc_leading_vs_lagging"], gt["leading_above_lagging"],
        )
    return res


def _plot(res: dict, xy: np.ndarray, kind: str, truth, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drop = np.asarray(res["drop"])
    lim = max(float(np.abs(drop).max()), 1e-6)
    fig, ax = plt.subplots(figsize=(7, 6))
    markers = {"leading": "^", "lagging": "v", "none": "o"}
    if truth is not None:
        role = np.asarray(truth.role).astype(str)
        bad = np.asarray(truth.bad, bool) | np.asarray(truth.bad_detected, bool)
        sc = None
        for r, m in markers.items():
            sel = (role == r) & ~bad
            if sel.any():
                sc = ax.scatter(xy[sel, 0], xy[sel, 1], c=drop[sel], cmap="RdBu_r", vmin=-lim, vmax=lim, s=140,
                                marker=m, edgecolors="k", linewidths=0.6, label=r)
        if bad.any():
            ax.scatter(xy[bad, 0], xy[bad, 1], marker="x", c="grey", s=60, label="bad channel")
        gt = res["ground_truth"]
        ax.set_title(f"{res['name']}: PCC drop when occluded\nleading vs lagging AUC "
                     f"{gt['auc_leading_vs_lagging']:.2f} (leading above lagging: {gt['leading_above_lagging']})",
                     fontsize=10)
        ax.legend(loc="best", fontsize=7)
    else:
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=drop, cmap="RdBu_r", vmin=-lim, vmax=lim, s=140, edgecolors="k",
                        linewidths=0.6)
        ax.set_title(f"{res['name']}: PCC drop when occluded", fontsize=10)
    for e, (x, y) in enumerate(xy):
        ax.annotate(str(e), (x, y), fontsize=5, ha="center", va="center")
    if sc is not None:
        fig.colorbar(sc, ax=ax, label="PCC drop (intact - occluded)")
    ax.set_aspect("equal")
    ax.set_xlabel(kind)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
