"""Write a deployable bundle of a trained causal decoder (``edgensd export bundle``).

The bundle is a self-contained folder (:mod:`edgensd.runtime.bundle` lists its files and loads it without
torch). It is written into a temporary folder beside the target and renamed into place at the end, so an
interrupted export leaves nothing half-written.

Formats register through one hook, :func:`register_format`: a writer gets an :class:`ExportContext` (the
step graph, example inputs, calibration samples, settings) and adds its files with
:meth:`ExportContext.add_model` / :meth:`ExportContext.add_file`. ``onnx`` is built in; ``tflite`` and
``tflm`` call :mod:`edgensd.export.litert` and :mod:`edgensd.export.tflm` and are refused with a clear
message while those modules are not installed.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import platform
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgensd.config import Config
from edgensd.log import logger
from edgensd.runtime.backend import TensorSpec
from edgensd.runtime.bundle import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, MANIFEST_FILE, sha256_file

__all__ = ["BUNDLE_CONFIG_FILE", "BundleConfig", "ExportContext", "available_formats", "register_format",
           "write_bundle"]

BUNDLE_CONFIG_FILE = "bundle_config.json"
SYNTH_FILE = "synth.edsynth"
FEATURES_FILE = "features.json"
PARAMS_FILE = "params.json"
QUANTIZE_CHOICES = ("int8", "none")


@dataclasses.dataclass
class BundleConfig(Config):
    """How a bundle is made (saved in the bundle as ``bundle_config.json``).

    Parameters
    ----------
    formats : tuple of str
        Decoder formats to write (:func:`available_formats`).
    quantize : str
        ``"int8"`` (calibrate and also write int8 graphs) or ``"none"`` (fp32 only).
    calib : str
        Participant file whose training trials calibrate int8 ("": the file the decoder was trained on).
    max_calib_samples : int
        At most this many calibration frames, evenly spaced over all training frames (0: all).
    opset : int
        ONNX opset.
    """

    formats: tuple[str, ...] = ("onnx",)
    quantize: str = "int8"
    calib: str = ""
    max_calib_samples: int = 8192
    opset: int = 17

    def __post_init__(self) -> None:
        self.formats = tuple(str(f) for f in self.formats)
        if not self.formats or len(set(self.formats)) != len(self.formats):
            raise ValueError(f"formats must name each format once, got {list(self.formats)}")
        if self.quantize not in QUANTIZE_CHOICES:
            raise ValueError(f"quantize must be one of {list(QUANTIZE_CHOICES)}, got {self.quantize!r}")
        if isinstance(self.max_calib_samples, bool) or int(self.max_calib_samples) < 0:
            raise ValueError(f"max_calib_samples must be an int >= 0 (0: all frames), got {self.max_calib_samples!r}")


@dataclasses.dataclass
class ExportContext:
    """What a format writer gets, and where it puts its files.

    Attributes
    ----------
    decoder : Decoder
        The trained causal decoder (eval mode).
    step : torch.nn.Module
        Its step graph (:func:`edgensd.export.stepgraph.step_module`).
    example_inputs : tuple of Tensor
        ``(x, *zero_states)``.
    calib_samples : list of [x, *states] or None
        Calibration samples (float32 numpy), None when not quantizing.
    config : BundleConfig
    folder : Path
        The (temporary) bundle folder.
    cache : dict
        Shared between writers (e.g. the int8 LiteRT model, used by both ``tflite`` and ``tflm``).
    """

    decoder: Any
    step: Any
    example_inputs: tuple
    calib_samples: list | None
    config: BundleConfig
    folder: Path
    models: list[dict] = dataclasses.field(default_factory=list)
    cache: dict = dataclasses.field(default_factory=dict)

    @property
    def int8(self) -> bool:
        """Whether int8 graphs are wanted."""
        return self.config.quantize == "int8"

    def add_file(self, name: str, data: bytes) -> Path:
        """Write one file into the bundle (a plain file name; each name once)."""
        if Path(name).name != name or name in (MANIFEST_FILE, BUNDLE_CONFIG_FILE):
            raise ValueError(f"bundle file name must be a plain, unreserved file name, got {name!r}")
        path = self.folder / name
        if path.exists():
            raise ValueError(f"bundle file {name!r} is written twice")
        path.write_bytes(data)
        return path

    def add_model(self, name: str, data: bytes | None, fmt: str, precision: str,
                  specs: tuple[TensorSpec, TensorSpec, Sequence[TensorSpec], Sequence[TensorSpec]],
                  extra: dict | None = None) -> None:
        """Register a decoder graph (and write it, unless ``data`` is None: a file another entry wrote).

        Parameters
        ----------
        name : str
            File name.
        data : bytes or None
        fmt : str
            Backend format (``onnx``, ``tflite``, ``tflm``).
        precision : str
            ``fp32`` or ``int8``.
        specs : (x, y, state_in, state_out)
            Tensor specs in the step-interface order.
        extra : dict, optional
            Format-specific facts (JSON-ready), e.g. ``{"arena_bytes": ...}``.
        """
        if data is not None:
            self.add_file(name, data)
        elif not (self.folder / name).is_file():
            raise ValueError(f"model file {name!r} is registered without data and was not written before")
        x, y, s_in, s_out = specs
        self.models.append({"file": name, "format": fmt, "precision": precision, "x": x.to_dict(),
                            "y": y.to_dict(), "state_in": [s.to_dict() for s in s_in],
                            "state_out": [s.to_dict() for s in s_out], "extra": dict(extra or {})})


FormatWriter = Callable[[ExportContext], None]
_FORMATS: dict[str, tuple[tuple[str, ...], FormatWriter]] = {}


def register_format(name: str, writer: FormatWriter, requires: Sequence[str] = ()) -> None:
    """Register a bundle format.

    Parameters
    ----------
    name : str
        Format name (``--formats`` value).
    writer : callable(ExportContext)
        Adds the format's files.
    requires : sequence of str
        Modules the writer imports; while one is missing, the format is refused by name.
    """
    _FORMATS[name] = (tuple(requires), writer)


def _missing(modules: Sequence[str]) -> list[str]:
    out = []
    for m in modules:
        try:
            if importlib.util.find_spec(m) is None:
                out.append(m)
        except ModuleNotFoundError:
            out.append(m)
    return out


def available_formats() -> list[str]:
    """Formats whose writers can run in this installation."""
    return sorted(n for n, (req, _) in _FORMATS.items() if not _missing(req))


def check_formats(formats: Sequence[str]) -> None:
    """Refuse unknown formats and formats whose modules are not installed yet (before any long work)."""
    for f in formats:
        if f not in _FORMATS:
            raise ValueError(f"unknown format {f!r}; formats are {sorted(_FORMATS)} (available here: "
                             f"{available_formats()})")
        missing = _missing(_FORMATS[f][0])
        if missing:
            raise ValueError(f"format {f!r} needs {', '.join(missing)}, which is not installed (pip install "
                             f"'edgensd[export]'); available formats: {available_formats()}")


# ---------------------------------------------------------------------------------------------- writers
def _write_onnx(ctx: ExportContext) -> None:
    import onnx
    from edgensd.export.onnx_export import onnx_fp32, onnx_int8, read_specs

    fp32 = onnx_fp32(ctx.step, ctx.example_inputs, opset=ctx.config.opset)
    ctx.add_model("decoder_fp32.onnx", fp32, "onnx", "fp32", read_specs(onnx.load_from_string(fp32)))
    if ctx.int8:
        q = onnx_int8(fp32, ctx.calib_samples)
        ctx.add_model("decoder_int8.onnx", q, "onnx", "int8", read_specs(onnx.load_from_string(q)))


def _litert_int8(ctx: ExportContext) -> bytes:
    """The int8 LiteRT model (shared by ``tflite`` and ``tflm``), its intermediate tensor names dropped: the
    deployed file, whose every byte is device flash (the fp32 file keeps its names for debugging)."""
    from edgensd.export import litert

    if "tflite_fp32" not in ctx.cache:
        ctx.cache["tflite_fp32"] = litert.convert_fp32(ctx.step, ctx.example_inputs)
    if "tflite_int8" not in ctx.cache:
        q = litert.quantize_int8(ctx.cache["tflite_fp32"], ctx.calib_samples)
        ctx.cache["tflite_int8"] = litert.strip_tensor_names(q)
    return ctx.cache["tflite_int8"]


def _write_tflite(ctx: ExportContext) -> None:
    from edgensd.export import litert

    if "tflite_fp32" not in ctx.cache:
        ctx.cache["tflite_fp32"] = litert.convert_fp32(ctx.step, ctx.example_inputs)
    fp32 = ctx.cache["tflite_fp32"]
    ctx.add_model("decoder_fp32.tflite", fp32, "tflite", "fp32", litert.io_specs(fp32))
    if ctx.int8:
        q = _litert_int8(ctx)
        ctx.add_model("decoder_int8.tflite", q, "tflite", "int8", litert.io_specs(q))
        ctx.cache["tflite_int8_written"] = True


def _write_tflm(ctx: ExportContext) -> None:
    from edgensd.export import litert, tflm

    if not ctx.int8:
        raise ValueError("format 'tflm' is int8 only: use --quantize int8")
    q = _litert_int8(ctx)
    arena = int(tflm.arena_size(q))
    name = "decoder_int8.tflite"
    ctx.add_model(name, None if ctx.cache.get("tflite_int8_written") else q, "tflm", "int8", litert.io_specs(q),
                  extra={"arena_bytes": arena, "c_header": "decoder_int8_tflm.h"})
    ctx.cache["tflite_int8_written"] = True
    tflm.write_c_header(q, ctx.folder / "decoder_int8_tflm.h", "eds_decoder_int8", arena)


register_format("onnx", _write_onnx, requires=("onnx", "onnxruntime"))
register_format("tflite", _write_tflite, requires=("edgensd.export.litert",))
register_format("tflm", _write_tflm, requires=("edgensd.export.litert", "edgensd.export.tflm"))


# ---------------------------------------------------------------------------------------------- bundle
def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("edgensd", "torch", "numpy", "onnx", "onnxruntime", "ai-edge-litert", "ai-edge-quantizer",
                "litert-torch", "tflite-micro"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _json_attr(v):
    if isinstance(v, str):
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    return v


def _stats_from_file(path: str) -> dict | None:
    """z-scoring statistics a participant file records: ``highgamma_stats`` (``edgensd prepare``) or the
    simulator's ``sim_highgamma_mean`` / ``sim_highgamma_std`` extras; None when it records neither."""
    from edgensd.data.participant import load_participant

    p = load_participant(path, load_extras=True)
    stats = _json_attr(p.attrs.get("highgamma_stats"))
    if stats is None and "sim_highgamma_mean" in p.extras and "sim_highgamma_std" in p.extras:
        stats = {"mean": [float(v) for v in p.extras["sim_highgamma_mean"]],
                 "std": [float(v) for v in p.extras["sim_highgamma_std"]],
                 "source": f"{path}: extras sim_highgamma_mean / sim_highgamma_std (simulated recording)"}
    return stats


def _features(td, calib_file: str | None) -> dict:
    part = dict(td.info.get("participant") or {})
    hg_config = _json_attr(part.get("highgamma_config"))
    hg_stats = _json_attr(part.get("highgamma_stats"))
    train_file = td.train_config.data
    for f in (train_file, calib_file):
        if hg_stats is None and f and Path(f).is_file():
            hg_stats = _stats_from_file(f)
    return {
        "n_electrodes": int(td.decoder.n_electrodes),
        "frame_rate_hz": 125.0,
        "highgamma_config": hg_config,
        "highgamma_stats": hg_stats,
        "normalization": "the decoder takes the participant file's features unchanged: high-gamma (70-150 Hz "
                         "analytic amplitude, common-average referenced) z-scored per electrode by the pipeline "
                         "above with the statistics above (null: the training file did not record them)",
        "training_data": td.info.get("data"),
        "participant": {k: v for k, v in part.items() if k not in ("highgamma_config", "highgamma_stats")},
    }


def _params(voice) -> dict:
    from edgensd.params import PARAM_NAMES

    lo, hi = voice.bounds()
    return {
        "param_names": list(PARAM_NAMES),
        "voice_range": voice.to_dict(),
        "lower": [float(v) for v in lo],
        "upper": [float(v) for v in hi],
        "map": "physical = lower + sigmoid(raw) * (upper - lower) per parameter; f0_hz on a log scale: "
               "exp(log(lower) + sigmoid(raw) * (log(upper) - log(lower))) (edgensd.params.raw_to_physical)",
    }


def write_bundle(model_dir: str | os.PathLike, out: str | os.PathLike, config: BundleConfig | None = None,
                 overwrite: bool = False) -> Path:
    """Export a trained causal decoder as a bundle folder.

    Parameters
    ----------
    model_dir : path
        Trained decoder directory (:func:`edgensd.decoding.train.train_decoder`).
    out : path
        Bundle folder to create.
    config : BundleConfig, optional
    overwrite : bool
        Replace an existing ``out`` (only once the new bundle is complete).

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    ValueError
        A non-causal model, an unknown or unavailable format, an existing ``out`` without ``overwrite``,
        a speech model of another voice, or calibration problems (see :func:`edgensd.export.calibrate.calibrate`).
    FileNotFoundError
        Missing model directory, speech model or calibration file.
    """
    from edgensd.export.calibrate import calibrate
    from edgensd.export.stepgraph import step_example_inputs, step_module, step_state_names

    from edgensd.decoders import macs_per_frame, measure_lookahead, n_params
    from edgensd.decoding.train import load_trained_decoder
    from edgensd.params import VoiceRange
    from edgensd.speech.synth_export import load_synth_source, synth_file_bytes

    cfg = config or BundleConfig()
    check_formats(cfg.formats)
    out = Path(out)
    if out.exists() and not overwrite:
        raise ValueError(f"--out {out} already exists; choose a new folder (or overwrite it)")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the folder to write the bundle in does not exist: {out.parent}")
    if not os.access(out.parent, os.W_OK):
        raise ValueError(f"cannot write in {out.parent} (permission denied)")
    if cfg.calib and not Path(cfg.calib).is_file():
        raise FileNotFoundError(f"calibration file not found: {cfg.calib}")
    td = load_trained_decoder(model_dir)
    dec = td.decoder.eval()
    if not dec.causal:
        raise ValueError(f"{model_dir} holds a non-causal {td.train_config.arch!r} decoder: it needs future frames "
                         "and cannot stream on a device; export a model trained with --causal")
    speech_dir = Path(td.train_config.speech_model)
    weights, _, _ = load_synth_source(speech_dir)
    voice = VoiceRange.from_dict(td.info["voice_range"])
    if not weights.voice.same_as(voice):
        raise ValueError(f"speech model {speech_dir} has voice range {weights.voice.name!r}, but the decoder in "
                         f"{model_dir} was trained with {voice.name!r}")
    step = step_module(dec)
    example = step_example_inputs(dec)
    calib = None
    if cfg.quantize == "int8":
        calib = calibrate(model_dir, cfg.calib or None, cfg.max_calib_samples or None, trained=td)

    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        ctx = ExportContext(decoder=dec, step=step, example_inputs=example,
                            calib_samples=calib.samples if calib is not None else None, config=cfg, folder=tmp)
        for fmt in cfg.formats:
            _FORMATS[fmt][1](ctx)
            logger.info("bundle: wrote the %s decoder", fmt)
        ctx.add_file(SYNTH_FILE, synth_file_bytes(weights))
        ctx.add_file(FEATURES_FILE, (json.dumps(_features(td, calib.source if calib else None), indent=2) + "\n")
                     .encode())
        ctx.add_file(PARAMS_FILE, (json.dumps(_params(voice), indent=2) + "\n").encode())
        cfg.save(tmp / BUNDLE_CONFIG_FILE)
        files = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in sorted(tmp.iterdir())}
        synth_bytes = files[SYNTH_FILE]["bytes"]
        budget = []
        for m in ctx.models:
            state_bytes = sum(_nbytes(TensorSpec.from_dict(s)) for s in m["state_in"])
            io_bytes = _nbytes(TensorSpec.from_dict(m["x"])) + _nbytes(TensorSpec.from_dict(m["y"]))
            mb = files[m["file"]]["bytes"]
            budget.append({"format": m["format"], "precision": m["precision"], "model_bytes": mb,
                           "synth_bytes": synth_bytes, "flash_bytes": mb + synth_bytes,
                           "state_bytes": state_bytes, "io_bytes": io_bytes,
                           "arena_bytes": m["extra"].get("arena_bytes")})
        manifest = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_FORMAT_VERSION,
            "model": {"arch": td.train_config.arch, "causal": True, "n_electrodes": int(dec.n_electrodes),
                      "config": dec.config.to_dict(), "n_params": int(n_params(dec)),
                      "context_frames": int(td.train_config.context_frames), "source": str(Path(model_dir)),
                      "train_seconds": td.info.get("train_seconds"), "train_steps": td.info.get("train_steps"),
                      "data_key": td.info.get("data_key"), "speech_model": str(speech_dir),
                      "speech_model_sha256": td.info.get("speech_model_sha256"),
                      "state_names": step_state_names(dec)},
            "versions": _versions(),
            "frame_rate_hz": 125.0,
            "samples_per_frame": 128,
            "sample_rate_hz": 16000,
            "lookahead_frames": {"declared": int(dec.lookahead_frames), "measured": int(measure_lookahead(dec))},
            "macs_per_frame": float(macs_per_frame(dec)),
            "models": ctx.models,
            "synth": {"file": SYNTH_FILE},
            "features": {"file": FEATURES_FILE},
            "params": {"file": PARAMS_FILE},
            "config": {"file": BUNDLE_CONFIG_FILE},
            "calibration": calib.summary() if calib is not None else None,
            "budget": budget,
            "budget_note": "flash = decoder graph + synth file bytes; RAM per stream = state bytes (+ the TFLM "
                           "arena where given); io = one input frame and one output frame",
            "files": files,
        }
        mtmp = tmp / (MANIFEST_FILE + ".tmp")
        mtmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(mtmp, tmp / MANIFEST_FILE)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("bundle %s: %s", out, ", ".join(f"{m['file']} ({files[m['file']]['bytes']} B)" for m in ctx.models))
    return out


def _nbytes(spec: TensorSpec) -> int:
    n = 1
    for s in spec.shape:
        n *= int(s)
    return n * (1 if spec.dtype == "int8" else 4)
