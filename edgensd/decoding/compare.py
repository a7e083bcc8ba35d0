"""Compare evaluated decoders side by side: a markdown table and a PNG (numpy + matplotlib; no torch).

Inputs are JSON files written by ``edgensd eval decoder``; optional ``occlusion.json`` files (from
``edgensd occlusion``) found beside them or given explicitly add the leading-vs-lagging verdict.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from edgensd.log import logger
from edgensd.params import PARAM_NAMES

__all__ = [
    "REFERENCE_CHOICES", "REQUIRED_KEYS", "compare", "load_evals", "markdown_table", "paired_differences",
    "paired_markdown",
]

#: Keys an evaluation JSON must hold to be compared.
REQUIRED_KEYS: tuple[str, ...] = (
    "pcc_mean", "pcc_median", "n_trials", "per_param", "macs_per_frame", "n_params", "lookahead_frames",
    "floor_pcc_mean", "ridge_pcc_mean",
)


#: Special values of ``reference`` (besides a model name) in :func:`paired_differences`.
REFERENCE_CHOICES: tuple[str, ...] = ("best", "best-noncausal")


def load_evals(paths) -> list[dict]:
    """Read evaluation JSONs; errors name the file and the missing keys.

    Models that share a name (runs of one architecture with different settings) are told apart by their
    model folder: ``edge (causal) [runs/edge_aug]``, as the table and ``reference`` then spell them.
    """
    out = []
    if not paths:
        raise ValueError("evals must name at least one evaluation JSON (from 'edgensd eval decoder')")
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"evaluation JSON not found: {path}")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        missing = [k for k in REQUIRED_KEYS if k not in d]
        if missing:
            raise ValueError(f"{path} is not an 'edgensd eval decoder' result: keys {missing} are missing")
        d.setdefault("name", path.stem)
        d["_path"] = str(path)
        out.append(d)
    _disambiguate(out)
    return out


def _disambiguate(evals: list[dict]) -> None:
    """Suffix repeated names with the model folder (else the JSON's path) so that every name is unique."""
    names = [d["name"] for d in evals]
    for d in evals:
        if names.count(d["name"]) > 1:
            d["name"] = f"{d['name']} [{d.get('model') or d['_path']}]"
    names = [d["name"] for d in evals]
    for d in evals:
        if names.count(d["name"]) > 1:  # the same model evaluated twice (e.g. on other data): the JSON tells
            d["name"] = f"{d['name']} ({d['_path']})"


def _fmt_int(v) -> str:
    return "-" if v is None else f"{int(round(v)):,}"


def _fmt(v, nd=3) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{nd}f}"


def _look(d: dict) -> str:
    n = int(d["lookahead_frames"])
    return f">= {n} (unbounded)" if d.get("lookahead_unbounded") else f"{n} ({8 * n} ms)"


def _occlusion_markdown(evals: list[dict], occl: dict) -> str:
    """Per-role occlusion drops (mean PCC drop when one electrode is occluded) of the models that have them."""
    roles = ("leading", "lagging", "none")
    lines = ["Occlusion against the simulator's ground truth (mean drop in PCC when one electrode is occluded; "
             "electrodes the pipeline marked bad are left out):", "",
             "| model | trials | " + " | ".join(f"{r} (n) mean drop" for r in roles) + " | AUC leading vs lagging |",
             "|---|---:|" + "---:|" * (len(roles) + 1)]
    n_rows = 0
    for d in evals:
        o = occl.get(d["name"])
        gt = (o or {}).get("ground_truth")
        if not gt:
            continue
        cells = []
        for r in roles:
            st = gt["roles"].get(r)
            cells.append("-" if not st or not st.get("n") else f"{st['mean_drop']:+.4f} ({st['n']})")
        lines.append(f"| {d['name']} | {o.get('n_trials', '-')} | " + " | ".join(cells)
                     + f" | {gt['auc_leading_vs_lagging']:.2f} |")
        n_rows += 1
    return "\n".join(lines) if n_rows else ""


def markdown_table(evals: list[dict], occl: dict | None = None) -> str:
    """Markdown of the main table and the per-parameter table.

    Parameters
    ----------
    evals : list of dict
        From :func:`load_evals`.
    occl : dict, optional
        Model name → occlusion result (adds a leading-vs-lagging column).
    """
    data_keys = {d.get("data_key") for d in evals}
    lines = []
    if len(data_keys) > 1:
        lines.append("**Warning:** these evaluations come from different data files; baselines differ per row.\n")
    hdr = ["model", "PCC mean", "PCC median", "floor", "ridge", "PCC − ridge", "ceiling", "STOI", "MACs/frame",
           "params", "look-ahead (frames)", "training (min)", "steps", "trials"]
    if occl:
        hdr.append("occlusion: leading > lagging (AUC)")
    lines += ["| " + " | ".join(hdr) + " |", "|" + "|".join(["---"] + ["---:"] * (len(hdr) - 1)) + "|"]
    for d in evals:
        ts = d.get("train_seconds")
        row = [
            d["name"], _fmt(d["pcc_mean"]), _fmt(d["pcc_median"]), _fmt(d["floor_pcc_mean"]),
            _fmt(d["ridge_pcc_mean"]) + (" (c)" if d.get("causal") else " (nc)"),
            _fmt(d["pcc_mean"] - d["ridge_pcc_mean"], 3), _fmt(d.get("ceiling_pcc_mean")), _fmt(d.get("stoi_mean")),
            _fmt_int(d["macs_per_frame"]), _fmt_int(d["n_params"]), _look(d),
            "-" if ts is None else f"{ts / 60:.1f}", _fmt_int(d.get("train_steps")), str(d["n_trials"]),
        ]
        if occl:
            o = occl.get(d["name"])
            gt = (o or {}).get("ground_truth")
            row.append("-" if not gt else f"{gt['leading_above_lagging']} ({gt['auc_leading_vs_lagging']:.2f})")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("PCC: per held-out trial, Pearson r over frames × 256 bins of normalized dB, mean over trials. "
                 "floor: training-mean spectrum; ridge: lagged neural frames → spectrogram, (c) causal lags "
                 "t-24..t, (nc) t-24..t+24 (step 2 frames); ceiling: the speech model's own resynthesis of the "
                 "reference parameters; STOI: see each JSON's `stoi.variant`.")
    if occl:
        lines += ["", _occlusion_markdown(evals, occl)]
    lines.append("")
    lines.append("Per-parameter Pearson r (decoded vs the speech encoder's reference parameters):")
    lines.append("")
    lines.append("| model | " + " | ".join(PARAM_NAMES) + " |")
    lines.append("|---|" + "|".join(["---:"] * len(PARAM_NAMES)) + "|")
    for d in evals:
        lines.append("| " + d["name"] + " | " + " | ".join(_fmt(d["per_param"].get(n), 2) for n in PARAM_NAMES)
                     + " |")
    return "\n".join(lines) + "\n"


def _resolve_reference(evals: list[dict], reference: str) -> dict:
    names = [d["name"] for d in evals]
    if reference == "best":
        return max(evals, key=lambda d: d["pcc_mean"])
    if reference == "best-noncausal":
        nc = [d for d in evals if d.get("causal") is False]
        if not nc:
            raise ValueError("reference='best-noncausal' but no evaluation is of a non-causal model "
                             f"(models: {names})")
        return max(nc, key=lambda d: d["pcc_mean"])
    for d in evals:
        if d["name"] == reference:
            return d
    raise ValueError(f"reference must be one of {list(REFERENCE_CHOICES)} or a model name among {names}, "
                     f"got {reference!r}")


def paired_differences(evals: list[dict], reference: str = "best", n_boot: int = 10000, seed: int = 0) -> dict:
    """Per-trial paired PCC differences of every model against a reference model.

    Two models evaluated on the same held-out trials differ by less than their spread over trials suggests:
    most of that spread is shared (some trials are easy for every model). The paired difference per trial,
    averaged, with a percentile bootstrap over trials, says whether a gap is larger than trial sampling.

    Parameters
    ----------
    evals : list of dict
        From :func:`load_evals`; each needs ``per_trial`` (a list of ``{"trial", "pcc"}``).
    reference : str
        ``"best"`` (highest ``pcc_mean``), ``"best-noncausal"`` (highest among non-causal models) or a
        model name.
    n_boot : int
        Bootstrap resamples of the trials.
    seed : int
        Seed of the resampling.

    Returns
    -------
    dict
        ``reference`` (its name), ``n_boot`` and ``rows``: per other model ``name``, ``n_trials`` (trials
        both evaluated), ``mean_diff`` (model − reference, PCC), ``ci95`` ([low, high]) and
        ``frac_trials_better`` (fraction of those trials where the model scores higher). Models without
        per-trial results are listed in ``skipped``.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 100:
        raise ValueError(f"n_boot must be an integer >= 100, got {n_boot!r}")
    ref = _resolve_reference(evals, reference)
    if not ref.get("per_trial"):
        raise ValueError(f"the reference model {ref['name']!r} has no per-trial results ({ref.get('_path')})")
    ref_pcc = {t["trial"]: t["pcc"] for t in ref["per_trial"]}
    rng = np.random.default_rng(seed)
    rows, skipped = [], []
    for d in evals:
        if d is ref:
            continue
        pairs = [(t["pcc"], ref_pcc[t["trial"]]) for t in d.get("per_trial") or () if t["trial"] in ref_pcc]
        if not pairs:
            skipped.append(d["name"])
            continue
        diff = np.array([a - b for a, b in pairs], float)
        boots = diff[rng.integers(0, diff.size, (n_boot, diff.size))].mean(axis=1)
        lo, hi = np.percentile(boots, [2.5, 97.5])
        rows.append({"name": d["name"], "n_trials": int(diff.size), "mean_diff": float(diff.mean()),
                     "ci95": [float(lo), float(hi)], "frac_trials_better": float(np.mean(diff > 0))})
    if skipped:
        logger.warning("no trials shared with %r (or no per-trial results): %s", ref["name"], skipped)
    return {"reference": ref["name"], "n_boot": n_boot, "rows": rows, "skipped": skipped}


def paired_markdown(paired: dict) -> str:
    """Markdown of :func:`paired_differences`."""
    lines = [f"Paired per-trial PCC difference against **{paired['reference']}** (model − reference on the "
             f"trials both evaluated; 95 % percentile bootstrap over trials, {paired['n_boot']:,} resamples):",
             "", "| model | Δ PCC | 95 % CI | trials better | trials |", "|---|---:|---|---:|---:|"]
    for r in paired["rows"]:
        lo, hi = r["ci95"]
        lines.append(f"| {r['name']} | {r['mean_diff']:+.3f} | [{lo:+.3f}, {hi:+.3f}] | "
                     f"{100 * r['frac_trials_better']:.0f} % | {r['n_trials']} |")
    return "\n".join(lines) + "\n"


def _plot(evals: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [d["name"] for d in evals]
    x = np.arange(len(evals))
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [1, 1.4]})
    ax = axes[0]
    ax.bar(x - 0.27, [d["pcc_mean"] for d in evals], 0.27, label="decoder", color="C0")
    ax.bar(x, [d["ridge_pcc_mean"] for d in evals], 0.27, label="ridge (same causality)", color="C1")
    ax.bar(x + 0.27, [d["floor_pcc_mean"] for d in evals], 0.27, label="floor", color="C7")
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("spectrogram PCC (held-out mean)")
    lo = min(min(d["floor_pcc_mean"], d["pcc_mean"], d["ridge_pcc_mean"]) for d in evals)
    ax.set_ylim(lo - 0.05 if lo < 0 else max(0.0, lo - 0.05), None)
    ax.legend(fontsize=7)
    for i, d in enumerate(evals):
        ax.annotate(f"{d['macs_per_frame'] / 1e6:.2f} M\nMAC/fr", (i - 0.27, d["pcc_mean"]), fontsize=6,
                    ha="center", va="bottom")
    ax = axes[1]
    m = np.array([[d["per_param"].get(n, np.nan) for n in PARAM_NAMES] for d in evals], float)
    im = ax.imshow(m, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(PARAM_NAMES)), PARAM_NAMES, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(evals)), names, fontsize=8)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if np.isfinite(m[i, j]):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=5,
                        color="w" if m[i, j] < 0.6 else "k")
    fig.colorbar(im, ax=ax, label="Pearson r vs reference")
    ax.set_title("per-parameter r", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def compare(
    evals: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    occlusions: list[str | os.PathLike] | None = None,
    reference: str = "best",
) -> dict:
    """Write ``compare.md``, ``compare.png`` and ``compare.json`` for several evaluations.

    Parameters
    ----------
    evals : list of path
        Evaluation JSONs (``edgensd eval decoder --json``).
    out_dir : path
    occlusions : list of path, optional
        ``occlusion.json`` files; matched to evaluations by model name.
    reference : str
        Model the paired per-trial differences are taken against (see :func:`paired_differences`); used
        when more than one model is compared.

    Returns
    -------
    dict
        ``markdown`` (the tables), ``rows`` (one summary dict per model), ``paired`` (or None), paths written.
    """
    ev = load_evals(evals)
    if reference not in REFERENCE_CHOICES and reference not in [d["name"] for d in ev]:
        _resolve_reference(ev, reference)  # raises, naming the allowed values
    paired = paired_differences(ev, reference) if len(ev) > 1 else None
    occl = {}
    for path in occlusions or []:
        o = json.loads(Path(path).read_text())
        occl[o.get("name", Path(path).parent.name)] = o
    md = markdown_table(ev, occl or None)
    if paired is not None:
        md += "\n" + paired_markdown(paired)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "compare.md").write_text(md)
    _plot(ev, out_dir / "compare.png")
    rows = [
        {k: d.get(k) for k in ("name", "arch", "causal", "pcc_mean", "pcc_median", "floor_pcc_mean", "ridge_pcc_mean",
                               "ceiling_pcc_mean", "stoi_mean", "macs_per_frame", "n_params", "lookahead_frames",
                               "lookahead_unbounded", "train_seconds", "train_steps", "n_trials", "per_param",
                               "_path")}
        for d in ev
    ]
    (out_dir / "compare.json").write_text(json.dumps({"rows": rows, "paired": paired}, indent=2) + "\n")
    logger.info("compared %d models: %s", len(ev), out_dir / "compare.md")
    return {"markdown": md, "rows": rows, "paired": paired, "markdown_path": str(out_dir / "compare.md"),
            "png_path": str(out_dir / "compare.png")}
