"""TensorFlow Lite Micro step backend: the int8 step graph on the ``tflite_micro`` Python interpreter.

The interpreter is TFLite Micro's own C++ runtime (the kernels a microcontroller runs), so this backend
checks on the host what the device will compute. It addresses inputs and outputs by their position in
the subgraph; :func:`edgensd.runtime.backend_tflite.read_step_io` maps positions to ``x``, the states,
``y`` and the new states. Torch-free; ``tflite_micro`` is imported when a backend is created.
"""

from __future__ import annotations

import numpy as np

from edgensd.runtime.backend import BackendUnavailable, StepBackend
from edgensd.runtime.backend_tflite import read_step_io, tflite_schema

__all__ = ["ARENA_HEADROOM_BYTES", "MIN_ARENA_BYTES", "TFLMBackend", "tflm_interpreter"]

ARENA_HEADROOM_BYTES = 4096
"""Arena added to the model-size heuristic when no arena size is given (see :class:`TFLMBackend`)."""

MIN_ARENA_BYTES = 1024
"""Smallest arena handed to the interpreter: below about 512 bytes the ``tflite_micro`` Python interpreter
crashes the process (segmentation fault at 256 and 400 bytes, measured with tflite-micro
0.dev20261023182759) instead of raising, whatever the model."""


def tflm_interpreter(model: bytes, arena_size: int):
    """A ``tflite_micro`` interpreter for a model with a given tensor arena.

    Parameters
    ----------
    model : bytes
        The ``.tflite`` flatbuffer.
    arena_size : int
        Tensor arena in bytes.

    Returns
    -------
    tflite_micro.python.tflite_micro.runtime.Interpreter

    Raises
    ------
    BackendUnavailable
        If ``tflite-micro`` is not installed.
    ValueError
        If ``arena_size`` is below :data:`MIN_ARENA_BYTES`.
    RuntimeError
        If the tensors do not fit in the arena (TFLite Micro's own message goes to the C-level stderr).
    """
    if isinstance(arena_size, bool) or not isinstance(arena_size, (int, np.integer)) or arena_size < MIN_ARENA_BYTES:
        raise ValueError(f"arena_size must be an int >= {MIN_ARENA_BYTES} (bytes), got {arena_size!r}")
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise BackendUnavailable("the tflm backend needs tflite-micro: pip install --pre tflite-micro") from None
    return runtime.Interpreter.from_bytes(bytes(model), arena_size=int(arena_size))


class TFLMBackend(StepBackend):
    """A ``.tflite`` decoder step graph on the TFLite Micro interpreter.

    Parameters
    ----------
    model_path : str or path-like
        The ``.tflite`` step graph (normally the full-int8 one; TFLite Micro also runs float32 graphs).
    arena_size : int or None
        Tensor arena in bytes; None: ten times the model size plus :data:`ARENA_HEADROOM_BYTES` (ample on the
        host; :func:`edgensd.export.tflm.arena_size` finds the smallest that allocates).

    Raises
    ------
    BackendUnavailable
        If ``tflite-micro`` is not installed.
    RuntimeError
        If the arena is too small.
    """

    name = "tflm"

    def __init__(self, model_path, arena_size: int | None = None) -> None:
        with open(model_path, "rb") as f:
            content = f.read()
        if arena_size is None:
            arena_size = 10 * len(content) + ARENA_HEADROOM_BYTES
        self._interp = tflm_interpreter(content, arena_size)  # checks arena_size
        fb = tflite_schema()
        if any(b.offset > 1 for b in fb.ModelT.InitFromPackedBuf(content, 0).buffers):
            raise ValueError(
                f"{model_path}: the model keeps constants outside the flatbuffer (buffer offsets), which TFLite "
                "Micro does not read (it would run with wrong weights); re-export it with "
                "edgensd.export.litert.quantize_int8, which writes them inline"
            )
        io = read_step_io(content)
        self.x_spec, self.y_spec = io.x, io.y
        self.state_in_specs, self.state_out_specs = io.states_in, io.states_out
        self._in, self._out = io.input_positions, io.output_positions
        self.arena_size = int(arena_size)
        self.model_path = str(model_path)

    def run_raw(self, x: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One step in the graph's own dtypes (see :meth:`StepBackend.run_raw`)."""
        if len(states) != len(self.state_in_specs):
            raise ValueError(f"expected {len(self.state_in_specs)} state tensors, got {len(states)}")
        it = self._interp
        for pos, arr, spec in zip(self._in, (x, *states), (self.x_spec, *self.state_in_specs), strict=True):
            arr = np.asarray(arr)
            if arr.shape != spec.shape or arr.dtype != np.dtype(spec.dtype):
                raise ValueError(
                    f"input {spec.name!r} must be {spec.dtype} of shape {spec.shape}, got {arr.dtype} {arr.shape}"
                )
            it.set_input(np.ascontiguousarray(arr), pos)
        it.invoke()
        outs = [np.array(it.get_output(p), copy=True) for p in self._out]
        return outs[0], outs[1:]
