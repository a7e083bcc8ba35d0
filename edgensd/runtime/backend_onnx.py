"""ONNX Runtime step backend (CPU), for the fp32 and int8 graphs of ``edgensd export bundle``.

The carried state lives in ONNX Runtime values bound to the session (IOBinding), two sets used in turn:
a step reads the state from one set and writes the new state into the other, so carrying the state copies
nothing; per step only the input frame (n_electrodes values) goes in and the 18 outputs come out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from edgensd.runtime.backend import BackendUnavailable, StepBackend, TensorSpec, quantize

__all__ = ["ONNXBackend"]

_SPECS_KEY = "edgensd_io_specs"  # edgensd.export.onnx_export.SPECS_METADATA_KEY (not imported: torch-free)
_DTYPES = {"tensor(float)": "float32", "tensor(int8)": "int8"}


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable(
            "the 'onnx' backend needs the onnxruntime package: pip install onnxruntime (or edgensd[runtime])"
        ) from exc
    return onnxruntime


class ONNXBackend(StepBackend):
    """A decoder step graph in ONNX Runtime with the state carried in bound buffers.

    Parameters
    ----------
    model_path : path
        An ``.onnx`` step graph written by edgensd (its tensor specs are in its metadata).
    threads : int
        Intra-op threads (1: one frame is far too small to split).

    Raises
    ------
    BackendUnavailable
        onnxruntime is not installed.
    FileNotFoundError, ValueError
        Missing file, a file ONNX Runtime cannot load, or a graph without edgensd's tensor specs or whose
        inputs/outputs disagree with them.
    """

    name = "onnx"

    def __init__(self, model_path: str | os.PathLike, threads: int = 1) -> None:
        ort = _import_ort()
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.model_path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.model_path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for a damaged file
            raise ValueError(f"{self.model_path}: ONNX Runtime cannot load it ({type(exc).__name__}: {exc})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if _SPECS_KEY not in meta:
            raise ValueError(f"{self.model_path} has no {_SPECS_KEY!r} metadata: it was not written by edgensd export")
        d = json.loads(meta[_SPECS_KEY])
        self.x_spec = TensorSpec.from_dict(d["x"])
        self.y_spec = TensorSpec.from_dict(d["y"])
        self.state_in_specs = [TensorSpec.from_dict(s) for s in d["state_in"]]
        self.state_out_specs = [TensorSpec.from_dict(s) for s in d["state_out"]]
        self._check_io()
        self._ort = ort
        self._in_names = [s.name for s in self.state_in_specs]
        self._out_names = [s.name for s in self.state_out_specs]
        self._x = ort.OrtValue.ortvalue_from_numpy(np.zeros(self.x_spec.shape, self.x_spec.dtype))
        self._y = ort.OrtValue.ortvalue_from_numpy(np.zeros(self.y_spec.shape, self.y_spec.dtype))
        self._bufs = [[ort.OrtValue.ortvalue_from_numpy(z.copy()) for z in self.zero_state()] for _ in range(2)]
        self._cur = 0
        self._bindings = [self._bind(k) for k in range(2)]

    def _check_io(self) -> None:
        want_in = [self.x_spec, *self.state_in_specs]
        want_out = [self.y_spec, *self.state_out_specs]
        for kind, got, want in (("input", self.session.get_inputs(), want_in),
                                ("output", self.session.get_outputs(), want_out)):
            got_d = [(g.name, tuple(g.shape), _DTYPES.get(g.type, g.type)) for g in got]
            want_d = [(w.name, tuple(w.shape), w.dtype) for w in want]
            if got_d != want_d:
                raise ValueError(f"{self.model_path}: graph {kind}s {got_d} differ from its recorded specs {want_d}")

    def _bind(self, k: int):
        """Binding ``k``: state from buffer set ``k``, new state into set ``1 - k``."""
        b = self.session.io_binding()
        b.bind_ortvalue_input(self.x_spec.name, self._x)
        b.bind_ortvalue_output(self.y_spec.name, self._y)
        for name, v in zip(self._in_names, self._bufs[k], strict=True):
            b.bind_ortvalue_input(name, v)
        for name, v in zip(self._out_names, self._bufs[1 - k], strict=True):
            b.bind_ortvalue_output(name, v)
        return b

    def run_raw(self, x: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        feed = {self.x_spec.name: np.asarray(x, self.x_spec.dtype).reshape(self.x_spec.shape)}
        if len(states) != len(self.state_in_specs):
            raise ValueError(f"expected {len(self.state_in_specs)} state tensors, got {len(states)}")
        for s, a in zip(self.state_in_specs, states, strict=True):
            a = np.asarray(a)
            if a.shape != s.shape or a.dtype != np.dtype(s.dtype):
                raise ValueError(f"state {s.name!r} must be {s.dtype} {s.shape}, got {a.dtype} {a.shape}")
            feed[s.name] = a
        out = self.session.run(None, feed)
        return out[0], list(out[1:])

    # the carried state lives in the bound buffers -------------------------------------------------------
    def reset(self) -> None:
        for v, z in zip(self._bufs[self._cur], self.zero_state(), strict=True):
            v.update_inplace(z)

    @property
    def state(self) -> list[np.ndarray]:
        return [v.numpy() for v in self._bufs[self._cur]]

    @state.setter
    def state(self, value: list[np.ndarray]) -> None:
        if len(value) != len(self.state_in_specs):
            raise ValueError(f"expected {len(self.state_in_specs)} state tensors, got {len(value)}")
        for v, s, a in zip(self._bufs[self._cur], self.state_in_specs, value, strict=True):
            a = np.ascontiguousarray(a)
            if a.shape != s.shape or a.dtype != np.dtype(s.dtype):
                raise ValueError(f"state {s.name!r} must be {s.dtype} {s.shape}, got {a.dtype} {a.shape}")
            v.update_inplace(a)

    def step(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if x.size != self.x_spec.shape[-1]:
            raise ValueError(f"x must hold one frame of {self.x_spec.shape[-1]} electrodes, got shape {x.shape}")
        if not np.isfinite(x).all():
            bad = np.flatnonzero(~np.isfinite(x.reshape(-1)))[:10].tolist()
            raise ValueError(f"x holds NaN/inf at electrodes {bad}; the decoder needs finite high-gamma features")
        self._x.update_inplace(np.ascontiguousarray(quantize(x.reshape(self.x_spec.shape), self.x_spec)))
        self.session.run_with_iobinding(self._bindings[self._cur])
        self._cur = 1 - self._cur
        y = self._y.numpy()
        if self.y_spec.dtype == "float32":
            return y.reshape(-1).astype(np.float32)
        return ((y.astype(np.float32) - np.float32(self.y_spec.zero_point)) * np.float32(self.y_spec.scale)).reshape(-1)
