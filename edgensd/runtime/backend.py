"""The one step interface every decoder backend implements (ONNX Runtime, LiteRT, TFLite Micro).

A step graph has one input frame and the state tensors in, one frame of raw speech parameters and the new
state tensors out, always in this order:

* inputs: ``x`` (1, n_electrodes), then each state tensor in the step graph's order (the manifest's
  ``model.state_names``);
* outputs: ``y`` (1, 18) raw parameters (:func:`edgensd.params.raw_to_physical` maps them), then each new
  state tensor in the same order as the inputs.

An int8 graph takes and gives int8 tensors; a backend quantizes ``x`` and dequantizes ``y`` with the
tensor's scale and zero point, and feeds the int8 state back unchanged (export guarantees each state tensor
has the same scale and zero point on input and output).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import numpy as np

__all__ = ["BackendUnavailable", "StepBackend", "TensorSpec", "quantize", "dequantize"]


class BackendUnavailable(ImportError):
    """A backend's runtime package is not installed; the message names the package to install."""


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One input, output or state tensor of a step graph.

    Parameters
    ----------
    name : str
        Tensor name in the graph.
    shape : tuple of int
        Shape, batch first (batch is 1).
    dtype : str
        ``"float32"`` or ``"int8"``.
    scale, zero_point : float, int or None
        Affine quantization of an int8 tensor: ``real = scale * (q - zero_point)``; None for float32.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    def to_dict(self) -> dict:
        """JSON-ready dict (for the bundle manifest)."""
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "scale": self.scale, "zero_point": self.zero_point}

    @classmethod
    def from_dict(cls, d: dict) -> TensorSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(str(d["name"]), tuple(int(s) for s in d["shape"]), str(d["dtype"]),
                   None if d.get("scale") is None else float(d["scale"]),
                   None if d.get("zero_point") is None else int(d["zero_point"]))


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float → the tensor's dtype (round half to even, saturate to int8); float32 tensors pass through."""
    if spec.dtype == "float32":
        return np.asarray(x, np.float32)
    q = np.rint(np.asarray(x, np.float64) / spec.scale) + spec.zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """The tensor's dtype → float32."""
    if spec.dtype == "float32":
        return np.asarray(q, np.float32)
    return ((np.asarray(q, np.float32) - np.float32(spec.zero_point)) * np.float32(spec.scale)).astype(np.float32)


class StepBackend(abc.ABC):
    """A decoder step graph loaded in one runtime, with its state carried between calls.

    Subclasses set :attr:`name`, fill :attr:`x_spec`, :attr:`y_spec`, :attr:`state_in_specs` and
    :attr:`state_out_specs` in ``__init__``, and implement :meth:`run_raw`.
    """

    name: ClassVar[str] = ""
    x_spec: TensorSpec
    y_spec: TensorSpec
    state_in_specs: list[TensorSpec]
    state_out_specs: list[TensorSpec]

    @abc.abstractmethod
    def run_raw(self, x: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One step in the graph's own dtypes, without touching the carried state (open-loop checks).

        Parameters
        ----------
        x : ndarray, shape ``x_spec.shape``, dtype ``x_spec.dtype``
        states : list of ndarray, shapes/dtypes of ``state_in_specs``

        Returns
        -------
        y : ndarray, shape ``y_spec.shape``, dtype ``y_spec.dtype``
        new_states : list of ndarray, shapes/dtypes of ``state_out_specs``
        """

    def zero_state(self) -> list[np.ndarray]:
        """The state at the start of a stream: real 0 in each state tensor's dtype (its zero point)."""
        return [quantize(np.zeros(s.shape, np.float32), s) for s in self.state_in_specs]

    def reset(self) -> None:
        """Start a new stream (zero state)."""
        self._state = self.zero_state()

    @property
    def state(self) -> list[np.ndarray]:
        """The carried state, in the graph's dtypes."""
        if not hasattr(self, "_state"):
            self.reset()
        return self._state

    @state.setter
    def state(self, value: list[np.ndarray]) -> None:
        self._state = [np.asarray(v) for v in value]

    def step(self, x: np.ndarray) -> np.ndarray:
        """Decode one frame.

        Parameters
        ----------
        x : ndarray, shape (n_electrodes,) or (1, n_electrodes), float
            One frame of z-scored high-gamma features.

        Returns
        -------
        ndarray, shape (18,), float32
            Raw speech parameters of this frame (dequantized for an int8 graph).
        """
        xq = quantize(np.asarray(x, np.float32).reshape(self.x_spec.shape), self.x_spec)
        y, self._state = self.run_raw(xq, self.state)
        return dequantize(y, self.y_spec).reshape(-1)

    def run(self, frames: np.ndarray) -> np.ndarray:
        """Decode a sequence frame by frame from the carried state.

        Parameters
        ----------
        frames : ndarray, shape (n_frames, n_electrodes)

        Returns
        -------
        ndarray, shape (n_frames, 18), float32
        """
        frames = np.asarray(frames, np.float32)
        return np.stack([self.step(f) for f in frames]) if len(frames) else np.zeros((0, self.y_spec.shape[-1]),
                                                                                      np.float32)
