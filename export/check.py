"""Quantized-vs-float check of a bundle on held-out trials (``edgensd check``).

Every runtime the bundle and this installation offer (torch fp32 when torch and the trained model are
available, then each decoder graph of the bundle on its backend: ONNX fp32 and int8, LiteRT, TFLM) decodes
the held-out trials of a participant file over their segments from the zero state. For each runtime the
report gives the spectrogram PCC (C synthesizer spectrogram vs the original audio's STFT, as
``edgensd decode`` and ``edgensd eval decoder`` compute it), its difference from the float reference
(torch fp32, else ONNX fp32; positive = accuracy lost), per-parameter RMSE and Pearson r of the physical
parameters against the float reference's, the largest raw-output difference, the model file size and, for
ONNX int8, the ops that still compute in float. A quantized runtime that loses more than
``max_delta_pcc`` fails the check.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from edgensd.log import logger
from edgensd.metrics import summarize
from edgensd.params import PARAM_NAMES, raw_to_physical

__all__ = ["CheckResult", "check_bundle", "markdown_report", "threshold_failures", "write_reports"]


@dataclasses.dataclass
class CheckResult:
    """The report and the thresholds that failed (empty: passed)."""

    report: dict
    failures: list[str]


class _TorchPipe:
    """The trained torch decoder behind the pipeline interface :func:`decode_trials` uses."""

    def __init__(self, decoder, voice, synth) -> None:
        self.decoder, self.voice, self.synth = decoder, voice, synth

    def decode(self, frames):
        """Stream the frames one at a time with carried state (look-ahead flushed at the end)."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(frames, np.float32))[None]
        with torch.no_grad():
            raw = torch.cat(list(self.decoder.stream(x[:, t : t + 1] for t in range(x.shape[1]))), 1)[0].numpy()
        return raw, raw_to_physical(raw, self.voice).astype(np.float32), np.zeros(0, np.float32)


def _torch_reference(bundle, model_dir):
    """The torch decoder of the bundle's source model, or (None, why not)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None, "torch is not installed"
    path = Path(model_dir) if model_dir is not None else Path(bundle.manifest["model"].get("source", ""))
    if not path.is_dir():
        return None, f"trained model folder {path} not found (pass --model)"
    from edgensd.decoding.train import load_trained_decoder

    td = load_trained_decoder(path)
    if td.decoder.config.to_dict() != bundle.manifest["model"]["config"]:
        raise ValueError(f"--model {path} holds another decoder than the bundle's (configs differ)")
    return td.decoder.eval(), ""


def check_bundle(bundle_path: str | os.PathLike, data: str | os.PathLike, max_delta_pcc: float = 0.01,
                 model_dir: str | os.PathLike | None = None) -> CheckResult:
    """Run every available runtime on the held-out trials and compare it with the float reference.

    Parameters
    ----------
    bundle_path : path
    data : path
        Participant file with the bundle's electrodes (its held-out trials are used).
    max_delta_pcc : float
        Largest PCC a quantized runtime may lose against the float reference.
    model_dir : path, optional
        Trained model folder for the torch reference (default: the bundle's recorded source, if present).

    Returns
    -------
    CheckResult
    """
    from edgensd.csynth import CSynth
    from edgensd.data.participant import load_participant, trial_split
    from edgensd.runtime.backend import BackendUnavailable
    from edgensd.runtime.bundle import load_bundle
    from edgensd.runtime.decode import decode_trials
    from edgensd.runtime.pipeline import BACKENDS, DecodePipeline
    from edgensd.runtime.segments import check_electrodes

    if not max_delta_pcc >= 0:
        raise ValueError(f"max_delta_pcc must be >= 0, got {max_delta_pcc}")
    b = load_bundle(bundle_path)
    data = Path(data)
    if not data.is_file():
        raise FileNotFoundError(f"participant file not found: {data}")
    p = load_participant(data)
    check_electrodes(p, b.n_electrodes, "check")
    test_idx = trial_split(p)[1]
    if len(test_idx) == 0:
        raise ValueError(f"{data} has no held-out trials to check on")
    runs: list[tuple[str, str, str, object, str | None]] = []  # (name, backend, precision, pipe, file)
    skipped: dict[str, str] = {}
    dec, why = _torch_reference(b, model_dir)
    if dec is not None:
        runs.append(("torch fp32", "torch", "fp32", _TorchPipe(dec, b.voice, CSynth(b.synth_path)), None))
    else:
        skipped["torch fp32"] = why
    fmt_to_backend = {fmt: name for name, (_, _, fmt) in BACKENDS.items()}
    for m in b.models:
        name = f"{fmt_to_backend[m.format]} {m.precision}"
        try:
            runs.append((name, fmt_to_backend[m.format], m.precision,
                         DecodePipeline(b, fmt_to_backend[m.format], m.precision), m.file))
        except BackendUnavailable as exc:
            skipped[name] = str(exc)
    recs = {}
    for name, _, _, pipe, _ in runs:
        recs[name] = decode_trials(pipe, p, test_idx, b.context_frames)
        logger.info("check: %s decoded %d held-out trials", name, len(test_idx))
    float_name = "torch fp32" if "torch fp32" in recs else next((n for n in recs if n.endswith("fp32")), None)
    if float_name is None:
        raise ValueError(f"bundle {b.path} has no fp32 graph to compare with and no torch reference ({why})")
    ref_pcc = summarize([r["pcc"] for r in recs[float_name]])["mean"]
    ref_phys = np.concatenate([r["params"] for r in recs[float_name]])
    ref_raw = np.concatenate([r["raw"] for r in recs[float_name]])
    runtimes = []
    for name, backend, precision, _, file in runs:
        rr = recs[name]
        phys = np.concatenate([r["params"] for r in rr])
        raw = np.concatenate([r["raw"] for r in rr])
        pcc_mean = summarize([r["pcc"] for r in rr])["mean"]
        per_param = {}
        for j, pn in enumerate(PARAM_NAMES):
            a, c = phys[:, j].astype(np.float64), ref_phys[:, j].astype(np.float64)
            r = float(np.corrcoef(a, c)[0, 1]) if a.std() > 0 and c.std() > 0 else float("nan")
            per_param[pn] = {"rmse": float(np.sqrt(np.mean((a - c) ** 2))), "r": r}
        entry = {
            "runtime": name, "backend": backend, "precision": precision, "pcc_mean": pcc_mean,
            "delta_pcc_vs_float": float(ref_pcc - pcc_mean),
            "per_trial_pcc": [{"trial": r["trial"], "pcc": r["pcc"]} for r in rr],
            "per_param_vs_float": per_param,
            "max_abs_diff_raw_vs_float": float(np.abs(raw - ref_raw).max()),
            "file": file, "file_bytes": (b.path / file).stat().st_size if file else None,
            "float_ops": _float_ops(b.path / file) if file and file.endswith(".onnx") and precision == "int8"
            else None,
        }
        runtimes.append(entry)
    failures = threshold_failures(runtimes, max_delta_pcc, float_name)
    report = {
        "bundle": str(b.path), "data": str(data), "n_trials": int(len(test_idx)),
        "trials": [int(i) for i in test_idx], "float_reference": float_name, "max_delta_pcc": float(max_delta_pcc),
        "runtimes": runtimes, "skipped": skipped, "passed": not failures, "failures": failures,
        "note": "held-out trials decoded over their segments (training context) from the zero state; PCC = "
                "C synthesizer spectrogram of the decoded parameters vs the original audio's STFT, trial frames; "
                "delta_pcc_vs_float = reference PCC - runtime PCC (positive: lost); per-parameter RMSE in each "
                "parameter's physical unit (edgensd.params)",
    }
    return CheckResult(report=report, failures=failures)


def threshold_failures(runtimes: list[dict], max_delta_pcc: float, float_name: str) -> list[str]:
    """One message per quantized runtime that loses more than ``max_delta_pcc`` PCC against float.

    Parameters
    ----------
    runtimes : list of dict
        Report entries (``runtime``, ``precision``, ``delta_pcc_vs_float``).
    max_delta_pcc : float
    float_name : str
        The float reference's name (named in the message).
    """
    return [f"{e['runtime']} loses {e['delta_pcc_vs_float']:.4f} PCC vs {float_name} "
            f"(threshold --max-delta-pcc {max_delta_pcc})"
            for e in runtimes if e["precision"] != "fp32" and e["delta_pcc_vs_float"] > max_delta_pcc]


def _float_ops(path: Path) -> list[str] | None:
    """Ops left in float in an int8 ONNX graph, or None where the ``onnx`` package (export extra) is missing:
    a runtime-only install still checks accuracy and lists the ops as unknown."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        logger.warning("check: the onnx package is not installed, so the ops left in float of %s are not listed "
                       "(pip install 'edgensd[export]')", path.name)
        return None
    from edgensd.export.onnx_export import float_ops

    return float_ops(path.read_bytes())


def markdown_report(report: dict) -> str:
    """A markdown table of a :func:`check_bundle` report."""
    lines = [f"# Bundle check: {report['bundle']}", "",
             f"{report['n_trials']} held-out trials of `{report['data']}`; float reference: "
             f"{report['float_reference']}; threshold: int8 may lose at most {report['max_delta_pcc']} PCC.", "",
             "| runtime | PCC mean | ΔPCC vs float | max abs raw diff | worst param r (name) | file bytes | "
             "ops in float |", "|---|---|---|---|---|---|---|"]
    for e in report["runtimes"]:
        rs = {k: v["r"] for k, v in e["per_param_vs_float"].items() if np.isfinite(v["r"])}
        worst = min(rs, key=rs.get) if rs else None
        ops = "-" if e["float_ops"] is None else (", ".join(sorted(set(e["float_ops"]))) or "none")
        lines.append(f"| {e['runtime']} | {e['pcc_mean']:.4f} | {e['delta_pcc_vs_float']:+.4f} | "
                     f"{e['max_abs_diff_raw_vs_float']:.4g} | "
                     f"{'-' if worst is None else f'{rs[worst]:.4f} ({worst})'} | "
                     f"{'-' if e['file_bytes'] is None else e['file_bytes']} | {ops} |")
    for name, why in report["skipped"].items():
        lines.append(f"| {name} | skipped: {why} | | | | | |")
    lines += ["", "**PASSED**" if report["passed"] else "**FAILED**: " + "; ".join(report["failures"]), ""]
    return "\n".join(lines)


def write_reports(result: CheckResult, json_path: str | os.PathLike, markdown_path=None) -> None:
    """Write the JSON report (and the markdown table), atomically."""
    for path, text in ((json_path, json.dumps(result.report, indent=2) + "\n"),
                       (markdown_path, markdown_report(result.report) if markdown_path else None)):
        if path is None:
            continue
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
