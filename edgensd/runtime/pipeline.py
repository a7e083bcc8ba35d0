"""The streaming decode pipeline (torch-free): neural frame → decoder step → physical parameters → audio.

Per 8 ms frame: the backend runs the decoder step with its carried state (:mod:`edgensd.runtime.backend`),
:func:`edgensd.params.raw_to_physical` maps the 18 raw outputs to physical units with the bundle's voice
range, and the C synthesizer (:class:`edgensd.csynth.CSynth`) renders 128 samples (16 kHz).
"""

from __future__ import annotations

import importlib
import time

import numpy as np

from edgensd.params import N_PARAMS, raw_to_physical
from edgensd.runtime.backend import BackendUnavailable, StepBackend
from edgensd.runtime.bundle import Bundle, BundleError

__all__ = ["BACKENDS", "PRECISIONS", "DecodePipeline", "make_backend"]

#: Backend name → (module, class, bundle format). Each class takes the model file path.
BACKENDS: dict[str, tuple[str, str, str]] = {
    "onnx": ("edgensd.runtime.backend_onnx", "ONNXBackend", "onnx"),
    "tflite": ("edgensd.runtime.backend_tflite", "TFLiteBackend", "tflite"),
    "tflm": ("edgensd.runtime.backend_tflm", "TFLMBackend", "tflm"),
}
PRECISIONS = ("fp32", "int8")


def make_backend(bundle: Bundle, name: str = "onnx", precision: str = "int8") -> StepBackend:
    """Load a bundle's decoder graph in one backend.

    Parameters
    ----------
    bundle : Bundle
    name : str
        ``"onnx"``, ``"tflite"`` or ``"tflm"``.
    precision : str
        ``"fp32"`` or ``"int8"``.

    Returns
    -------
    StepBackend
        Its tensor specs checked against the bundle manifest's.

    Raises
    ------
    ValueError
        Unknown backend or precision.
    BundleError
        The bundle holds no graph of that format and precision, or the graph's tensors differ from the
        manifest's.
    BackendUnavailable
        The backend's runtime package (or module) is not installed.
    """
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {name!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    module, cls_name, fmt = BACKENDS[name]
    entry = bundle.model(fmt, precision)
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise BackendUnavailable(f"backend {name!r} is not part of this installation (no module {module})") from exc
    backend = getattr(mod, cls_name)(entry.path)
    got = [backend.x_spec, backend.y_spec, *backend.state_in_specs, *backend.state_out_specs]
    want = [entry.x, entry.y, *entry.state_in, *entry.state_out]
    if got != want:
        raise BundleError(f"{entry.path}: the graph's tensors differ from those in the bundle manifest "
                          f"({[s.to_dict() for s in got]} vs {[s.to_dict() for s in want]})")
    return backend


class DecodePipeline:
    """Stream neural frames through a bundle's decoder and the C synthesizer.

    Parameters
    ----------
    bundle : Bundle
    backend : str
        Backend name (:data:`BACKENDS`).
    precision : str
        ``"fp32"`` or ``"int8"``.
    seed : int
        Noise seed of the synthesizer.
    fixed_point : bool
        Render audio with the synthesizer's integer-only path.

    Notes
    -----
    With a declared look-ahead of L frames, the first L steps of a stream produce no output frame;
    :meth:`decode` feeds L zero frames at the end so that every input frame gets its output.
    """

    def __init__(self, bundle: Bundle, backend: str = "onnx", precision: str = "int8", seed: int = 0,
                 fixed_point: bool = False) -> None:
        from edgensd.csynth import CSynth

        self.bundle = bundle
        self.backend = make_backend(bundle, backend, precision)
        self.synth = CSynth(bundle.synth_path, seed=seed, fixed_point=fixed_point)
        if not self.synth.voice.same_as(bundle.voice):
            raise BundleError(f"{bundle.synth_path}: the synthesizer's voice range differs from the bundle's "
                              "parameter map (params.json)")
        self.lookahead = bundle.lookahead_frames
        self.step_seconds: list[float] = []
        self.reset()

    def reset(self) -> None:
        """Start a new stream (zero decoder state, synthesizer state cleared)."""
        self.backend.reset()
        self.synth.reset()
        self._n_in = 0

    def push(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decode one neural frame.

        Parameters
        ----------
        frame : ndarray, shape (n_electrodes,)
            z-scored high-gamma features.

        Returns
        -------
        params : ndarray, shape (k, 18), float32
            Physical parameters of the output frame (k = 1), or none (k = 0) during look-ahead warm-up.
        audio : ndarray, shape (128 k,), float32
        """
        frame = np.asarray(frame, np.float32).reshape(-1)
        if frame.size != self.bundle.n_electrodes:
            raise ValueError(f"frame must hold {self.bundle.n_electrodes} electrodes (the bundle's), got {frame.size}")
        t0 = time.perf_counter()
        raw = self.backend.step(frame)
        self.step_seconds.append(time.perf_counter() - t0)
        self._n_in += 1
        if self._n_in <= self.lookahead:
            return np.zeros((0, N_PARAMS), np.float32), np.zeros(0, np.float32)
        phys = raw_to_physical(raw[None], self.bundle.voice).astype(np.float32)
        return phys, self.synth.render_frame(phys[0])

    def decode(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode a whole stream from the zero state, frame by frame.

        Parameters
        ----------
        frames : ndarray, shape (n_frames, n_electrodes)

        Returns
        -------
        raw : ndarray, shape (n_frames, 18), float32
            The decoder's raw outputs.
        params : ndarray, shape (n_frames, 18), float32
            Physical parameters.
        audio : ndarray, shape (128 n_frames,), float32
            16 kHz audio rendered frame by frame.
        """
        frames = np.asarray(frames, np.float32)
        if frames.ndim != 2 or frames.shape[1] != self.bundle.n_electrodes:
            raise ValueError(f"frames must have shape (n_frames, {self.bundle.n_electrodes}), got {frames.shape}")
        self.reset()
        pad = np.zeros((self.lookahead, frames.shape[1]), np.float32)
        raws = []
        for t, f in enumerate(np.concatenate([frames, pad])):
            if not np.isfinite(f).all():
                raise ValueError(f"frame {t} holds NaN/inf features; the decoder needs finite high-gamma features")
            t0 = time.perf_counter()
            raw = self.backend.step(f)
            self.step_seconds.append(time.perf_counter() - t0)
            if t >= self.lookahead:
                raws.append(raw)
        raw = np.stack(raws).astype(np.float32) if raws else np.zeros((0, N_PARAMS), np.float32)
        phys = raw_to_physical(raw, self.bundle.voice).astype(np.float32) if len(raw) else raw
        audio = self.synth.render(phys) if len(phys) else np.zeros(0, np.float32)
        return raw, phys, audio
