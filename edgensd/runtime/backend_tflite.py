"""LiteRT (TensorFlow Lite) step backend, and the reader that maps a ``.tflite`` step graph to the step contract.

:class:`TFLiteBackend` runs a ``.tflite`` step graph (float32 or full-int8) on ai-edge-litert's
``Interpreter`` (builtin kernels, one thread), or on ``tflite_runtime`` where only that is installed.
:func:`read_step_io` reads, from the model's flatbuffer alone, which graph input is ``x``, which are the
states, which output is ``y`` and which are the new states, with their quantization; the TFLite Micro
backend and the export toolchain use it too.

Mapping inputs and outputs: litert-torch names the signature inputs ``args_0 .. args_N`` in the order of
``forward``'s positional arguments and the outputs ``output_0 .. output_N`` in the order of the returned
tuple; neither the subgraph's input/output order nor the tensor shapes are relied on (two state tensors
can have the same shape, and the output tensors are not in positional order in the subgraph). This
module imports neither torch nor a runtime at import time.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from edgensd.log import logger
from edgensd.runtime.backend import BackendUnavailable, StepBackend, TensorSpec

__all__ = ["StepIO", "TFLiteBackend", "read_step_io", "step_io_from_interpreter", "tflite_schema"]

_ARG = re.compile(r"^args_(\d+)$")
_OUT = re.compile(r"^output_(\d+)$")
_DTYPES = {"FLOAT32": "float32", "INT8": "int8"}


def tflite_schema():
    """The generated flatbuffer schema module of the ``.tflite`` format from an installed runtime.

    Returns
    -------
    module
        ``schema_py_generated`` of ai-edge-litert, else of tflite-micro.

    Raises
    ------
    BackendUnavailable
        If neither ``ai-edge-litert`` nor ``tflite-micro`` is installed.
    """
    try:
        from ai_edge_litert import schema_py_generated as fb
    except ImportError:
        try:
            from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
        except ImportError:
            raise BackendUnavailable(
                "reading a .tflite model needs the schema of ai-edge-litert or tflite-micro: "
                "pip install ai-edge-litert (or tflite-micro)"
            ) from None
    return fb


@dataclasses.dataclass(frozen=True)
class StepIO:
    """Where the step contract's tensors sit in a ``.tflite`` model.

    Attributes
    ----------
    x, y : TensorSpec
        Input frame and output parameters.
    states_in, states_out : list of TensorSpec
        State tensors, in the decoder's state order.
    input_positions : list of int
        Position in the subgraph's input list of ``x`` then of each state (TFLite Micro addresses inputs
        by position).
    output_positions : list of int
        Position in the subgraph's output list of ``y`` then of each new state.
    input_tensors, output_tensors : list of int
        Tensor indices in subgraph 0, same order (LiteRT addresses tensors by index).
    """

    x: TensorSpec
    y: TensorSpec
    states_in: list[TensorSpec]
    states_out: list[TensorSpec]
    input_positions: list[int]
    output_positions: list[int]
    input_tensors: list[int]
    output_tensors: list[int]


def _spec(fb, tensor) -> TensorSpec:
    type_names = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    tname = type_names.get(tensor.type, str(tensor.type))
    if tname not in _DTYPES:
        raise ValueError(
            f"step-graph tensor {tensor.name.decode()!r} has type {tname}; allowed input/output types are "
            f"{sorted(_DTYPES)}"
        )
    dtype = _DTYPES[tname]
    scale = zp = None
    if dtype == "int8":
        q = tensor.quantization
        if q is None or q.scale is None or len(q.scale) != 1:
            raise ValueError(f"int8 tensor {tensor.name.decode()!r} needs one per-tensor scale and zero point")
        scale, zp = float(q.scale[0]), int(q.zeroPoint[0])
    return TensorSpec(tensor.name.decode(), tuple(int(s) for s in tensor.shape), dtype, scale, zp)


def _ordered(entries, pattern: re.Pattern, what: str) -> list[int]:
    """Tensor indices of signature entries named ``prefix_<k>``, sorted by k (numerically: args_10 > args_9)."""
    by_k = {}
    for e in entries:
        name = e.name.decode()
        m = pattern.match(name)
        if m is None:
            raise ValueError(f"signature {what} {name!r} is not named {pattern.pattern} (litert-torch's naming)")
        by_k[int(m.group(1))] = e.tensorIndex
    if sorted(by_k) != list(range(len(by_k))):
        raise ValueError(f"signature {what}s are not numbered 0..{len(by_k) - 1}: {sorted(by_k)}")
    return [by_k[k] for k in range(len(by_k))]


def read_step_io(model: bytes | bytearray | memoryview | str | os.PathLike) -> StepIO:
    """Map a ``.tflite`` step graph's inputs and outputs to ``x``, states, ``y`` and new states.

    Parameters
    ----------
    model : bytes or path
        The ``.tflite`` flatbuffer, or its path.

    Returns
    -------
    StepIO

    Raises
    ------
    ValueError
        If the model has not exactly one signature named ``args_k``/``output_k``, if inputs and outputs
        differ in number, if a state's input and output shapes differ, or if an input/output tensor is
        neither float32 nor per-tensor int8.
    """
    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as f:
            model = f.read()
    fb = tflite_schema()
    m = fb.ModelT.InitFromPackedBuf(bytes(model), 0)
    if not m.signatureDefs or len(m.signatureDefs) != 1:
        n = len(m.signatureDefs or [])
        raise ValueError(f"a step graph must have exactly one signature (as litert-torch writes it), found {n}")
    sig = m.signatureDefs[0]
    sg = m.subgraphs[sig.subgraphIndex]
    ins = _ordered(sig.inputs, _ARG, "input")
    outs = _ordered(sig.outputs, _OUT, "output")
    if len(ins) != len(outs) or not ins:
        raise ValueError(
            f"a step graph has x plus N states in and y plus N new states out; found {len(ins)} inputs and "
            f"{len(outs)} outputs"
        )
    sub_in, sub_out = [int(i) for i in sg.inputs], [int(i) for i in sg.outputs]
    for what, idx, sub in (("input", ins, sub_in), ("output", outs, sub_out)):
        stray = [i for i in idx if i not in sub]
        if stray:
            raise ValueError(f"the signature's {what} tensors {stray} are not {what}s of its subgraph {sub} (a tool "
                             "rewrote the graph without updating the signature)")
    in_specs = [_spec(fb, sg.tensors[i]) for i in ins]
    out_specs = [_spec(fb, sg.tensors[i]) for i in outs]
    for k, (a, b) in enumerate(zip(in_specs[1:], out_specs[1:], strict=True)):
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ValueError(f"state {k}: input {a.shape} {a.dtype} and output {b.shape} {b.dtype} differ")
    return StepIO(
        x=in_specs[0],
        y=out_specs[0],
        states_in=in_specs[1:],
        states_out=out_specs[1:],
        input_positions=[sub_in.index(i) for i in ins],
        output_positions=[sub_out.index(i) for i in outs],
        input_tensors=ins,
        output_tensors=outs,
    )


def step_io_from_interpreter(interp) -> StepIO:
    """:class:`StepIO` from a LiteRT/tflite_runtime interpreter's signature (no flatbuffer schema needed).

    Used where neither ai-edge-litert nor tflite-micro provides the schema (a tflite_runtime-only host);
    subgraph positions are those of the interpreter's input/output details.

    Parameters
    ----------
    interp : Interpreter
        An interpreter of the step graph, tensors allocated.
    """
    sigs = interp.get_signature_list()
    if len(sigs) != 1:
        raise ValueError(f"a step graph must have exactly one signature (as litert-torch writes it), found {len(sigs)}")
    runner = interp.get_signature_runner(next(iter(sigs)))
    names = {d["index"]: d["name"] for d in interp.get_tensor_details()}
    sub_in = [d["index"] for d in interp.get_input_details()]
    sub_out = [d["index"] for d in interp.get_output_details()]

    def ordered(details: dict, pattern: re.Pattern, what: str) -> list[TensorSpec]:
        by_k = {}
        for key, d in details.items():
            m = pattern.match(key)
            if m is None:
                raise ValueError(f"signature {what} {key!r} is not named {pattern.pattern} (litert-torch's naming)")
            by_k[int(m.group(1))] = d
        if sorted(by_k) != list(range(len(by_k))):
            raise ValueError(f"signature {what}s are not numbered 0..{len(by_k) - 1}: {sorted(by_k)}")
        return [by_k[k] for k in range(len(by_k))]

    def spec(d) -> TensorSpec:
        dtype = np.dtype(d["dtype"]).name
        if dtype not in ("float32", "int8"):
            raise ValueError(f"step-graph tensor {names[d['index']]!r} has dtype {dtype}; allowed: float32, int8")
        scale = zp = None
        if dtype == "int8":
            qp = d["quantization_parameters"]
            scale, zp = float(qp["scales"][0]), int(qp["zero_points"][0])
        return TensorSpec(names[d["index"]], tuple(int(v) for v in d["shape"]), dtype, scale, zp)

    ins = ordered(runner.get_input_details(), _ARG, "input")
    outs = ordered(runner.get_output_details(), _OUT, "output")
    if len(ins) != len(outs) or not ins:
        raise ValueError(f"a step graph has x plus N states in and as many out; found {len(ins)} and {len(outs)}")
    in_specs, out_specs = [spec(d) for d in ins], [spec(d) for d in outs]
    return StepIO(
        x=in_specs[0], y=out_specs[0], states_in=in_specs[1:], states_out=out_specs[1:],
        input_positions=[sub_in.index(d["index"]) for d in ins],
        output_positions=[sub_out.index(d["index"]) for d in outs],
        input_tensors=[d["index"] for d in ins], output_tensors=[d["index"] for d in outs],
    )


def _interpreter_class(prefer: str = "auto"):
    """The ``Interpreter`` class of ai-edge-litert, else of tflite_runtime (``prefer``: auto, ai-edge-litert,
    tflite-runtime)."""
    allowed = ("auto", "ai-edge-litert", "tflite-runtime")
    if prefer not in allowed:
        raise ValueError(f"interpreter must be one of {allowed}, got {prefer!r}")
    if prefer in ("auto", "ai-edge-litert"):
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType

            return Interpreter, OpResolverType, "ai-edge-litert"
        except ImportError:
            if prefer != "auto":
                raise BackendUnavailable(
                    "the tflite backend needs ai-edge-litert: pip install ai-edge-litert"
                ) from None
    try:
        from tflite_runtime.interpreter import Interpreter, OpResolverType
    except Exception as e:  # tflite_runtime 2.14 fails to import under NumPy 2 with errors other than ImportError
        raise BackendUnavailable(
            "the tflite backend needs ai-edge-litert: pip install ai-edge-litert "
            f"(tflite_runtime, its unmaintained predecessor, is not usable here: {type(e).__name__}: {e})"
        ) from None
    logger.info("tflite backend: ai-edge-litert not installed, falling back to tflite_runtime")
    return Interpreter, OpResolverType, "tflite-runtime"


class TFLiteBackend(StepBackend):
    """A ``.tflite`` decoder step graph on the LiteRT interpreter.

    Parameters
    ----------
    model_path : str or path-like
        The ``.tflite`` step graph (float32 or full-int8, as :mod:`edgensd.export.litert` writes it).
    num_threads : int
        Interpreter threads (1: the per-frame step is far too small to split).
    kernels : {"builtin", "reference", "xnnpack"}
        ``builtin``: LiteRT's optimized builtin kernels without the default delegate; ``reference``: its
        reference kernels; ``xnnpack``: the default XNNPACK delegate (what a plain ``Interpreter`` uses).
    interpreter : {"auto", "ai-edge-litert", "tflite-runtime"}
        Which package's interpreter to use; ``auto`` takes ai-edge-litert and falls back to tflite_runtime.

    Raises
    ------
    BackendUnavailable
        If no usable interpreter package is installed (the message names ``ai-edge-litert``).
    """

    name = "tflite"

    def __init__(self, model_path, num_threads: int = 1, kernels: str = "builtin", interpreter: str = "auto") -> None:
        resolvers = {"builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "reference": "BUILTIN_REF", "xnnpack": "AUTO"}
        if kernels not in resolvers:
            raise ValueError(f"kernels must be one of {sorted(resolvers)}, got {kernels!r}")
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be an int >= 1, got {num_threads!r}")
        cls, resolver, self.package = _interpreter_class(interpreter)
        with open(model_path, "rb") as f:
            content = f.read()
        self.kernels = kernels
        self._interp = cls(model_content=content, num_threads=num_threads,
                           experimental_op_resolver_type=getattr(resolver, resolvers[kernels]))
        self._interp.allocate_tensors()
        try:
            io = read_step_io(content)
        except BackendUnavailable:  # no schema module (tflite_runtime only): ask the interpreter
            io = step_io_from_interpreter(self._interp)
        self.x_spec, self.y_spec = io.x, io.y
        self.state_in_specs, self.state_out_specs = io.states_in, io.states_out
        self._in, self._out = io.input_tensors, io.output_tensors
        self.model_path = str(model_path)

    def run_raw(self, x: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One step in the graph's own dtypes (see :meth:`StepBackend.run_raw`)."""
        if len(states) != len(self.state_in_specs):
            raise ValueError(f"expected {len(self.state_in_specs)} state tensors, got {len(states)}")
        it = self._interp
        for idx, arr, spec in zip(self._in, (x, *states), (self.x_spec, *self.state_in_specs), strict=True):
            arr = np.asarray(arr)
            if arr.shape != spec.shape or arr.dtype != np.dtype(spec.dtype):
                raise ValueError(
                    f"input {spec.name!r} must be {spec.dtype} of shape {spec.shape}, got {arr.dtype} {arr.shape}"
                )
            it.set_tensor(idx, arr)
        it.invoke()
        outs = [it.get_tensor(i).copy() for i in self._out]
        return outs[0], outs[1:]
