"""The cohort report of a sweep: per-participant rows, means over participants with bootstrap intervals, the
paired difference from ridge of the same causality, and box plots in the style of the cohort figures of Chen
et al. 2024 (causal vs non-causal per architecture; low-density vs hybrid grids).

Every interval is a 95 % percentile bootstrap over participants (resampled with replacement), so it says how
much the cohort mean depends on which participants were recorded; with one participant there is none.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from edgensd.log import logger
from edgensd.sweep.config import (
    CONFIG_FILE,
    DONE_FILE,
    SweepConfig,
    causal_tag,
    decoder_task_dir,
    read_done,
    same_fingerprint,
)

__all__ = ["bootstrap_mean_ci", "collect_rows", "compare_to_best_noncausal", "markdown", "summarize_groups",
           "write_report"]

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
PLOT_CAUSAL = "cohort_causal_vs_noncausal.png"
PLOT_LAYOUT = "cohort_layout.png"


def bootstrap_mean_ci(values, n_boot: int = 10000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean of ``values`` with a percentile bootstrap interval (resampling the values with replacement).

    Parameters
    ----------
    values : array-like, shape (n,)
        One value per participant (a PCC, or a paired difference in PCC).
    n_boot : int
        Resamples (>= 100).
    seed : int
        Seed of the resampling.
    level : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    dict
        ``mean``, ``ci`` ([low, high], or None when n < 2), ``n``.

    Raises
    ------
    ValueError
        No values, a non-finite value, ``n_boot`` < 100 or ``level`` outside (0, 1).
    """
    x = np.asarray(values, dtype=float).reshape(-1)
    if x.size == 0:
        raise ValueError("values must hold at least one number, got none")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"values must be finite, got {x.tolist()}")
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 100:
        raise ValueError(f"n_boot must be an integer >= 100, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    mean = float(x.mean())
    if x.size < 2:
        return {"mean": mean, "ci": None, "n": 1}
    rng = np.random.default_rng(seed)
    boots = x[rng.integers(0, x.size, (int(n_boot), x.size))].mean(axis=1)
    a = 100 * (1 - level) / 2
    lo, hi = np.percentile(boots, [a, 100 - a])
    return {"mean": mean, "ci": [float(lo), float(hi)], "n": int(x.size)}


def _expected(cfg: SweepConfig) -> list[tuple[str, str, bool]]:
    """(participant, arch, causal) of every stage-2 task the config asks for."""
    from edgensd.decoders import get_decoder_class

    return [(n, a, c) for n in cfg.names for a in cfg.archs for c in cfg.causalities()
            if c or not get_decoder_class(a).causal_only]


def _earlier_tasks(out: str | os.PathLike, cfg: SweepConfig) -> list[tuple[str, str, bool]]:
    """(participant, arch, causal) of finished stage-2 tasks in ``out`` that ``cfg`` does not ask for: those of
    earlier runs on the same folder with other ``--archs`` or ``--causal``, for the config's participants."""
    from edgensd.decoders import list_decoders

    asked = set(_expected(cfg))
    found = []
    for name in cfg.names:
        for arch in list_decoders():
            for causal in (True, False):
                key = (name, arch, causal)
                if key not in asked and (decoder_task_dir(out, name, arch, causal) / DONE_FILE).is_file():
                    found.append(key)
    return found


def _same_settings(done: dict, cfg: SweepConfig, name: str, arch: str, causal: bool) -> bool:
    """Whether a finished task ran with the settings ``cfg`` would give it, apart from the architecture's own
    decoder and training overrides (which the config holds only for the architectures it sweeps, and which
    ``--recipe auto`` sets per architecture)."""
    want = cfg.decoder_fingerprint(name, arch, causal)
    have = dict(done.get("fingerprint", {}))
    for key in ("decoder", "train"):
        want.pop(key, None)
        have.pop(key, None)
    return same_fingerprint(want, have)


def collect_rows(out: str | os.PathLike, cfg: SweepConfig) -> tuple[list[dict], list[str]]:
    """Finished stage-2 results of the sweep's tasks, and the names of the unfinished ones.

    A sweep resumed on the same ``out`` with other ``--archs`` or ``--causal`` keeps the earlier run's tasks:
    their finished results are reported too (with ``earlier_run`` True) when they ran with the same settings
    (participant file, stage 1, budget, batch size; not the architecture's own decoder and training
    overrides); any other is left out with a warning.

    Returns
    -------
    rows : list of dict
        One per finished task (its ``done.json``), with ``diff_vs_ridge`` added, and
        ``ridge_noncausal_pcc_mean`` read from its ``eval.json`` where ``done.json`` predates that key.
    missing : list of str
        ``participant/arch_causal`` of each task the config asks for without ``done.json``.
    """
    rows, missing = [], []
    expected = [(*t, False) for t in _expected(cfg)] + [(*t, True) for t in _earlier_tasks(out, cfg)]
    for name, arch, causal, earlier in expected:
        done = read_done(decoder_task_dir(out, name, arch, causal))
        if done is None:
            missing.append(f"{name}/{arch}_{causal_tag(causal)}")
            continue
        if earlier:
            if not _same_settings(done, cfg, name, arch, causal):
                logger.warning("%s: finished with other settings (%s) than this sweep's; left out of the report",
                               decoder_task_dir(out, name, arch, causal), done.get("fingerprint"))
                continue
            done["earlier_run"] = True
        done["diff_vs_ridge"] = done["pcc_mean"] - done["ridge_pcc_mean"]
        if "ridge_noncausal_pcc_mean" not in done and done.get("eval_json"):
            try:
                base = json.loads(Path(done["eval_json"]).read_text())["baselines"]
                done["ridge_noncausal_pcc_mean"] = float(base["ridge_noncausal_pcc_mean"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.warning("%s: no non-causal ridge PCC (%s); ridge is left out of the non-causal references",
                               done["eval_json"], exc)
        rows.append(done)
    return rows, missing


def summarize_groups(rows: list[dict], n_boot: int = 10000, seed: int = 0) -> list[dict]:
    """Per architecture × causality: means over participants with bootstrap intervals.

    Returns
    -------
    list of dict
        ``arch``, ``causal``, ``n_participants``, ``pcc`` and ``diff_vs_ridge`` (:func:`bootstrap_mean_ci`
        of the decoder's PCC and of its paired difference from ridge of the same causality),
        ``ridge_pcc_mean``, ``floor_pcc_mean``, ``ceiling_pcc_mean``, ``frac_above_ridge`` and ``by_layout``
        (per layout: ``n``, ``pcc_mean``, ``diff_vs_ridge_mean``).
    """
    groups: dict[tuple[str, bool], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["arch"], bool(r["causal"])), []).append(r)
    out = []
    for (arch, causal), rs in groups.items():
        pcc = [r["pcc_mean"] for r in rs]
        diff = [r["diff_vs_ridge"] for r in rs]
        layouts = sorted({r["layout"] for r in rs})
        out.append({
            "arch": arch, "causal": causal, "n_participants": len(rs),
            "pcc": bootstrap_mean_ci(pcc, n_boot, seed),
            "diff_vs_ridge": bootstrap_mean_ci(diff, n_boot, seed),
            "ridge_pcc_mean": float(np.mean([r["ridge_pcc_mean"] for r in rs])),
            "floor_pcc_mean": float(np.mean([r["floor_pcc_mean"] for r in rs])),
            "ceiling_pcc_mean": float(np.mean([r["ceiling_pcc_mean"] for r in rs])),
            "frac_above_ridge": float(np.mean(np.asarray(diff) > 0)),
            "by_layout": {lay: {"n": sum(r["layout"] == lay for r in rs),
                                "pcc_mean": float(np.mean([r["pcc_mean"] for r in rs if r["layout"] == lay])),
                                "diff_vs_ridge_mean": float(np.mean([r["diff_vs_ridge"] for r in rs
                                                                     if r["layout"] == lay]))}
                          for lay in layouts},
        })
    return out


def compare_to_best_noncausal(rows: list[dict], groups: list[dict], n_boot: int = 10000, seed: int = 0) -> list[dict]:
    """Each causal architecture against the best non-causal model, paired per participant.

    The candidates are the non-causal architectures (the groups of :func:`summarize_groups`) and the non-causal
    ridge baseline every evaluation fits (``ridge``, from the rows' ``ridge_noncausal_pcc_mean``, one value per
    participant); the reference is the one with the highest mean PCC over its participants, and the difference
    is taken on the participants both have.

    Returns
    -------
    list of dict
        Per causal architecture: ``arch``, ``reference`` (the non-causal architecture, or ``ridge``),
        ``reference_pcc_mean`` (over all its participants) and ``diff`` (:func:`bootstrap_mean_ci` of causal −
        reference per participant, ``n`` the participants paired). Empty without any non-causal candidate.
    """
    refs = {g["arch"]: {r["participant"]: r["pcc_mean"] for r in rows if r["arch"] == g["arch"] and not r["causal"]}
            for g in groups if not g["causal"]}
    ridge = {r["participant"]: float(r["ridge_noncausal_pcc_mean"]) for r in rows
             if r.get("ridge_noncausal_pcc_mean") is not None}
    if ridge:
        refs["ridge"] = ridge
    if not refs:
        return []
    means = {k: float(np.mean(list(v.values()))) for k, v in refs.items()}
    name = max(means, key=means.__getitem__)
    ref, ref_mean = refs[name], means[name]
    out = []
    for g in groups:
        if not g["causal"]:
            continue
        diff = [r["pcc_mean"] - ref[r["participant"]] for r in rows
                if r["arch"] == g["arch"] and r["causal"] and r["participant"] in ref]
        if diff:
            out.append({"arch": g["arch"], "reference": name, "reference_pcc_mean": ref_mean,
                        "diff": bootstrap_mean_ci(diff, n_boot, seed)})
    return out


def _ci(s: dict, signed: bool = False) -> str:
    if s["ci"] is None:
        return "– (n = 1)"
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return f"[{fmt.format(s['ci'][0])}, {fmt.format(s['ci'][1])}]"


def _asked(result: dict) -> str:
    """The causality the last run asked for, and the tasks of earlier runs on the folder that are reported."""
    earlier = result.get("earlier_run") or []
    if not earlier:
        return result["causal"]
    kinds = sorted({t.split("/", 1)[1] for t in earlier})
    return (f"this run: {result['causal']}; {len(earlier)} of them from earlier runs on the same folder with the same "
            f"settings: {', '.join(kinds)}")


def markdown(result: dict) -> str:
    """``results.md`` from the dict :func:`write_report` returns."""
    n_boot = result["n_boot"]
    lines = [
        "# Sweep results", "",
        f"{len(result['participants'])} participants × {len(result['archs'])} architectures "
        f"({_asked(result)}); {result['n_finished']} of {result['n_expected']} tasks finished; stage 2 "
        f"{result['minutes']:g} min per model. PCC: held-out spectrogram PCC (mean over trials) from "
        "`edgensd eval decoder`; ridge: the ridge baseline of the same causality on the same trials. "
        f"Intervals: 95 % percentile bootstrap over participants ({n_boot:,} resamples).", "",
        "## Per architecture", "",
        "| arch | causal | participants | PCC mean | 95 % CI | ridge | Δ vs ridge (paired) | 95 % CI | above ridge "
        "| floor | ceiling |",
        "|---|---|---:|---:|---|---:|---:|---|---:|---:|---:|",
    ]
    for g in result["groups"]:
        lines.append(
            f"| {g['arch']} | {causal_tag(g['causal'])} | {g['n_participants']} | {g['pcc']['mean']:.3f} | "
            f"{_ci(g['pcc'])} | {g['ridge_pcc_mean']:.3f} | {g['diff_vs_ridge']['mean']:+.3f} | "
            f"{_ci(g['diff_vs_ridge'], True)} | {100 * g['frac_above_ridge']:.0f} % | {g['floor_pcc_mean']:.3f} | "
            f"{g['ceiling_pcc_mean']:.3f} |")
    if result.get("vs_best_noncausal"):
        lines += ["", "## Causal against the best non-causal model", "",
                  "| causal arch | best non-causal | its PCC mean | participants paired | Δ (paired) | 95 % CI |",
                  "|---|---|---:|---:|---:|---|"]
        for c in result["vs_best_noncausal"]:
            lines.append(f"| {c['arch']} | {c['reference']} | {c['reference_pcc_mean']:.3f} | {c['diff']['n']} | "
                         f"{c['diff']['mean']:+.3f} | {_ci(c['diff'], True)} |")
    lines += ["", "## By layout", "", "| arch | causal | layout | participants | PCC mean | Δ vs ridge |",
              "|---|---|---|---:|---:|---:|"]
    for g in result["groups"]:
        for lay, s in g["by_layout"].items():
            lines.append(f"| {g['arch']} | {causal_tag(g['causal'])} | {lay} | {s['n']} | {s['pcc_mean']:.3f} | "
                         f"{s['diff_vs_ridge_mean']:+.3f} |")
    lines += ["", "## Per participant", "",
              "| participant | layout | arch | causal | PCC | ridge | Δ | floor | ceiling | STOI | steps | min |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        stoi = "–" if r.get("stoi_mean") is None else f"{r['stoi_mean']:.3f}"
        lines.append(
            f"| {r['participant']} | {r['layout']} | {r['arch']} | {causal_tag(r['causal'])} | {r['pcc_mean']:.3f} | "
            f"{r['ridge_pcc_mean']:.3f} | {r['diff_vs_ridge']:+.3f} | {r['floor_pcc_mean']:.3f} | "
            f"{r['ceiling_pcc_mean']:.3f} | {stoi} | {r['train_steps']} | {r['seconds'] / 60:.1f} |")
    if result["missing"]:
        lines += ["", f"Not finished ({len(result['missing'])}): " + ", ".join(result["missing"])]
    if result["plots"]:
        lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in result["plots"])]
    return "\n".join(lines) + "\n"


def _box(ax, data, pos, color, width=0.32, hatch=None):
    bp = ax.boxplot(data, positions=[pos], widths=width, patch_artist=True, showfliers=False,
                    medianprops={"color": "k"})
    for b in bp["boxes"]:
        b.set_facecolor(color)
        b.set_alpha(0.55)
        if hatch:
            b.set_hatch(hatch)


def _plots(result: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    if not rows:
        return []
    archs = [a for a in result["archs"] if any(r["arch"] == a for r in rows)]
    written = []
    # 1. per architecture: non-causal vs causal decoder (and ridge), participants joined across causality
    fig, axes = plt.subplots(1, len(archs), figsize=(2.6 * len(archs) + 0.8, 3.8), sharey=True, squeeze=False)
    for ax, arch in zip(axes[0], archs, strict=True):
        for x, causal in enumerate((False, True)):
            rs = [r for r in rows if r["arch"] == arch and bool(r["causal"]) == causal]
            if not rs:
                continue
            _box(ax, [r["pcc_mean"] for r in rs], x - 0.18, "C0" if causal else "C3")
            _box(ax, [r["ridge_pcc_mean"] for r in rs], x + 0.18, "0.7", hatch="//")
            ax.scatter(np.full(len(rs), x - 0.18), [r["pcc_mean"] for r in rs], s=12, color="k", zorder=3)
        by_p: dict[str, dict] = {}
        for r in rows:
            if r["arch"] == arch:
                by_p.setdefault(r["participant"], {})[bool(r["causal"])] = r["pcc_mean"]
        for v in by_p.values():
            if len(v) == 2:
                ax.plot([-0.18, 0.82], [v[False], v[True]], color="0.4", lw=0.8, zorder=2)
        ax.set_xticks([0, 1], ["non-causal", "causal"])
        ax.set_xlim(-0.6, 1.6)
        ax.set_title(arch, fontsize=10)
    axes[0, 0].set_ylabel("held-out spectrogram PCC")
    axes[0, -1].legend(handles=[plt.Rectangle((0, 0), 1, 1, fc="C3", alpha=0.55, label="non-causal"),
                                plt.Rectangle((0, 0), 1, 1, fc="C0", alpha=0.55, label="causal"),
                                plt.Rectangle((0, 0), 1, 1, fc="0.7", hatch="//", label="ridge (same causality)")],
                       fontsize=7, loc="lower right")
    fig.suptitle(f"{len(result['participants'])} participants; dots: participants", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / PLOT_CAUSAL, dpi=90)
    plt.close(fig)
    written.append(PLOT_CAUSAL)
    # 2. per architecture × causality: low-density vs hybrid grids (and any other layout)
    layouts = sorted({r["layout"] for r in rows}, key=lambda s: ({"LD": 0, "HB": 1}.get(s, 2), s))
    keys = [(g["arch"], g["causal"]) for g in result["groups"]]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 + 0.7 * len(keys) * len(layouts)), 3.8))
    w = 0.8 / len(layouts)
    for i, (arch, causal) in enumerate(keys):
        for j, lay in enumerate(layouts):
            vals = [r["pcc_mean"] for r in rows if r["arch"] == arch and bool(r["causal"]) == causal
                    and r["layout"] == lay]
            if not vals:
                continue
            x = i - 0.4 + w * (j + 0.5)
            _box(ax, vals, x, f"C{j}", width=w * 0.85)
            ax.scatter(np.full(len(vals), x), vals, s=10, color="k", zorder=3)
    ax.set_xticks(range(len(keys)), [f"{a}\n{causal_tag(c)}" for a, c in keys], fontsize=8)
    ax.set_ylabel("held-out spectrogram PCC")
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, fc=f"C{j}", alpha=0.55, label=lay)
                       for j, lay in enumerate(layouts)], fontsize=7, title="layout", title_fontsize=7)
    ax.set_title("low-density (LD) vs hybrid-density (HB) grids", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / PLOT_LAYOUT, dpi=90)
    plt.close(fig)
    written.append(PLOT_LAYOUT)
    return written


def write_report(out: str | os.PathLike, cfg: SweepConfig | None = None, plots: bool = True) -> dict:
    """Write ``results.json``, ``results.md`` and the box plots of what the sweep in ``out`` has finished.

    Parameters
    ----------
    out : path
        A sweep's output folder.
    cfg : SweepConfig, optional
        Default: the folder's ``sweep_config.json``.
    plots : bool
        Draw the PNGs.

    Returns
    -------
    dict
        ``participants``, ``archs``, ``causal``, ``minutes``, ``n_boot``, ``rows`` (finished tasks),
        ``groups`` (:func:`summarize_groups`), ``vs_best_noncausal`` (:func:`compare_to_best_noncausal`),
        ``missing``, ``n_expected``, ``n_finished``, ``earlier_run`` (``participant/arch_causal`` of the rows
        from earlier runs on the folder, see :func:`collect_rows`), ``plots``.

    Raises
    ------
    FileNotFoundError
        ``out`` holds no ``sweep_config.json``.
    """
    out = Path(out)
    if cfg is None:
        path = out / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"--out: {out} holds no {CONFIG_FILE}: nothing to report (run the sweep first)")
        cfg = SweepConfig.load(path)
    rows, missing = collect_rows(out, cfg)
    earlier = [f"{r['participant']}/{r['arch']}_{causal_tag(r['causal'])}" for r in rows if r.get("earlier_run")]
    archs = list(cfg.archs) + sorted({r["arch"] for r in rows} - set(cfg.archs))
    result = {
        "participants": cfg.names, "archs": archs, "causal": cfg.causal, "minutes": cfg.minutes,
        "n_boot": cfg.n_boot, "bootstrap": "95 % percentile bootstrap over participants (seed 0)",
        "rows": rows, "missing": missing,
        "groups": sorted(summarize_groups(rows, cfg.n_boot), key=lambda g: (archs.index(g["arch"]), not g["causal"])),
        "n_expected": len(rows) + len(missing), "n_finished": len(rows), "earlier_run": earlier, "plots": [],
    }
    result["vs_best_noncausal"] = compare_to_best_noncausal(rows, result["groups"], cfg.n_boot)
    if plots:
        result["plots"] = _plots(result, out)
    from edgensd.sweep.tasks import write_json_atomic

    write_json_atomic(out / RESULTS_JSON, result)
    tmp = out / (RESULTS_MD + ".tmp")
    tmp.write_text(markdown(result))
    os.replace(tmp, out / RESULTS_MD)
    for g in result["groups"]:
        logger.info("%s %s over %d participants: PCC %.3f %s, vs ridge %+.3f %s", g["arch"], causal_tag(g["causal"]),
                    g["n_participants"], g["pcc"]["mean"], _ci(g["pcc"]), g["diff_vs_ridge"]["mean"],
                    _ci(g["diff_vs_ridge"], True))
    for c in result["vs_best_noncausal"]:
        logger.info("%s causal vs the best non-causal (%s) over %d participants: %+.3f %s", c["arch"], c["reference"],
                    c["diff"]["n"], c["diff"]["mean"], _ci(c["diff"], True))
    if missing:
        logger.info("%d tasks not finished yet: %s", len(missing), ", ".join(missing))
    return result


def load_results(out: str | os.PathLike) -> dict:
    """Read a sweep's ``results.json``."""
    return json.loads((Path(out) / RESULTS_JSON).read_text())
