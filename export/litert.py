"""LiteRT export of a decoder step graph: float32 conversion, full-int8 quantization, input/output specs.

The step graph (:func:`edgensd.export.stepgraph.step_module`) is converted with litert-torch; its int8
version comes from ai-edge-quantizer's static (full integer) recipe calibrated with min/max over the whole
calibration set, not the default per-sample average, which clips when a sample is one frame and gives a
state tensor different scales on input and output (DESIGN.md, "Known traps"). With min/max a state's input
and output tensors see the same values; :func:`quantize_int8` also merges their two ranges, repairs the
last-bit scale differences the quantizer can still leave, and checks that each state has one scale and zero
point, so the int8 state feeds back unchanged. Constants the quantizer writes outside the flatbuffer (it
does from 256 KiB on) are moved back in, because TFLite Micro does not read them.

Typical use::

    step, ex = step_module(decoder), step_example_inputs(decoder)
    fp32 = convert_fp32(step, ex)
    samples = step_samples(step, ex, frames)        # [x, *states] per frame, float32
    int8 = quantize_int8(fp32, samples)
    x_spec, y_spec, s_in, s_out = io_specs(int8)
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from edgensd.log import logger
from edgensd.runtime.backend import TensorSpec
from edgensd.runtime.backend_tflite import read_step_io, tflite_schema

__all__ = ["convert_fp32", "float_ops", "io_specs", "quantize_int8", "step_samples", "strip_tensor_names"]

# Third-party warnings raised inside the converter/quantizer calls (filtered there only, by exact message):
# torch 2.13's pytree deprecation hit by torch.export inside litert-torch 0.10.0, and ai-edge-litert's notice
# that the calibration interpreter keeps all intermediate tensors (which calibration needs).
_CONVERT_WARNINGS = [(FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated")]
_QUANTIZE_WARNINGS = [(UserWarning, r"Warning: Enabling `experimental_preserve_all_tensors`")]


@contextlib.contextmanager
def _ignoring(rules):
    with warnings.catch_warnings():
        for cat, msg in rules:
            warnings.filterwarnings("ignore", message=msg, category=cat)
        yield


@contextlib.contextmanager
def _progress_shown(show: bool):
    """litert-torch prints a progress tree on every conversion; show it only at the DEBUG log level."""
    key = "LITERT_TORCH_SHOW_PROGRESS"  # read by litert_torch's config at each use
    old = os.environ.get(key)
    os.environ[key] = "y" if show else "n"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def convert_fp32(step: nn.Module, example_inputs: tuple[Tensor, ...]) -> bytes:
    """Convert a step graph to a float32 ``.tflite`` flatbuffer with litert-torch.

    Parameters
    ----------
    step : nn.Module
        ``forward(x_t (1, n_electrodes), *state) -> (y_t (1, 18), *new_state)`` in eval mode.
    example_inputs : tuple of Tensor
        ``(x_t, *state)`` with the step's shapes (batch 1), e.g. :func:`step_example_inputs`.

    Returns
    -------
    bytes
        The model; signature inputs ``args_k`` are ``example_inputs[k]``, outputs ``output_k`` the k-th
        returned tensor.
    """
    import litert_torch

    if not isinstance(example_inputs, tuple) or not all(isinstance(t, Tensor) for t in example_inputs):
        raise ValueError("example_inputs must be a tuple of tensors (x_t, *state)")
    step.eval()
    with _ignoring(_CONVERT_WARNINGS), _progress_shown(logger.isEnabledFor(logging.DEBUG)), torch.no_grad():
        content = bytes(litert_torch.convert(step, example_inputs).model_content())
    logger.debug("litert fp32: %d bytes, %d inputs", len(content), len(example_inputs))
    return content


def step_samples(step: nn.Module, example_inputs: tuple[Tensor, ...], frames) -> list[list[np.ndarray]]:
    """Stream frames through the float step graph from the zero state and record each step's inputs.

    Parameters
    ----------
    step : nn.Module
        The float step graph.
    example_inputs : tuple of Tensor
        ``(x_t, *state)``; the states give the starting (zero) state.
    frames : array-like, shape (n_frames, n_electrodes), float
        Neural frames in order.

    Returns
    -------
    list of list of ndarray
        Per frame ``[x (1, n_electrodes), *states]`` as float32 numpy arrays, the calibration samples of
        :func:`quantize_int8`.
    """
    frames = np.asarray(frames, np.float32)
    n_el = tuple(example_inputs[0].shape)[-1]
    if frames.ndim != 2 or frames.shape[1] != n_el:
        raise ValueError(f"frames must have shape (n_frames, {n_el}), got {frames.shape}")
    state = [s.detach().clone() for s in example_inputs[1:]]
    out = []
    with torch.no_grad():
        for f in frames:
            x = torch.from_numpy(f[None].copy())
            out.append([x.numpy().copy(), *[s.numpy().astype(np.float32).copy() for s in state]])
            _, *state = step(x, *state)
    return out


def quantize_int8(fp32_model: bytes, calib_samples: Sequence[Sequence[np.ndarray]]) -> bytes:
    """Full-integer (int8 inputs, outputs, states and ops) quantization with min/max calibration.

    Weights are symmetric per-channel int8, activations asymmetric per-tensor int8 (ai-edge-quantizer's
    ``static_wi8_ai8`` recipe); each activation's range is the min and max over all calibration samples.

    Parameters
    ----------
    fp32_model : bytes
        Float32 model from :func:`convert_fp32`.
    calib_samples : sequence of sequence of ndarray
        Per sample ``[x, *states]`` in the model's input order and shapes (:func:`step_samples`); states
        should come from streaming real (or realistic) frames so their ranges are the ones met at run time.

    Returns
    -------
    bytes
        The int8 model.

    Raises
    ------
    ValueError
        If the samples are empty or do not match the model's inputs.
    RuntimeError
        If a tensor stayed float (ai-edge-quantizer 0.10.0 leaves a standalone ``RELU_N1_TO_1``, what an
        ``F.hardtanh`` the converter cannot fuse into the op before it becomes, in float) or a state tensor
        got different quantization on input and output.
    """
    from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    fp32_model = bytes(fp32_model)
    io = read_step_io(fp32_model)
    specs = [io.x, *io.states_in]
    if len(calib_samples) == 0:
        raise ValueError("calib_samples is empty; give at least one [x, *states] sample (hundreds of frames)")
    data = []
    for i, sample in enumerate(calib_samples):
        if len(sample) != len(specs):
            raise ValueError(f"calib_samples[{i}] has {len(sample)} arrays; the model takes {len(specs)} (x, *states)")
        feed = {}
        for k, (arr, spec) in enumerate(zip(sample, specs, strict=True)):
            arr = np.asarray(arr, np.float32)
            if arr.shape != spec.shape:
                raise ValueError(f"calib_samples[{i}][{k}] has shape {arr.shape}; input {spec.name!r} is {spec.shape}")
            feed[f"args_{k}"] = arr
        data.append(feed)
    rec = recipe.static_wi8_ai8()
    with _ignoring(_QUANTIZE_WARNINGS):
        rm = recipe_manager.RecipeManager()
        rm.load_quantization_recipe(rec)
        cal = calibrator.Calibrator(fp32_model, num_threads=1, qsv_update_func=qsv_utils.min_max_update)
        cal.calibrate({"serving_default": data}, rm)
        qsvs = cal.get_model_qsvs()
        # A state's input and output tensors hold the same quantity one frame apart: give both the union of
        # their ranges (the last frame's new state and the zero start state are seen on one side only).
        for a, b in zip(io.states_in, io.states_out, strict=True):
            both = qsv_utils.min_max_update(qsvs[a.name], qsvs[b.name])
            qsvs[a.name], qsvs[b.name] = both, dict(both)
        q = quantizer.Quantizer(fp32_model, rec)
        result = q.quantize(qsvs, enable_progress_report=False)
    content = _inline_buffers(bytes(result.quantized_model))
    left = float_ops(content)
    if left:
        raise RuntimeError(f"int8 model still has float tensors/ops: {left}")
    content = _unify_state_scales(content)
    qio = read_step_io(content)
    for k, (a, b) in enumerate(zip(qio.states_in, qio.states_out, strict=True)):
        if (a.scale, a.zero_point) != (b.scale, b.zero_point):
            raise RuntimeError(
                f"state {k} ({a.name}) quantized differently on input (scale {a.scale}, zero point "
                f"{a.zero_point}) and output ({b.scale}, {b.zero_point}): int8 state would not feed back"
            )
    logger.info("litert int8: %d bytes (fp32 %d bytes, %.1f %%), %d calibration samples",
                len(content), len(fp32_model), 100.0 * len(content) / len(fp32_model), len(data))
    return content


def _inline_buffers(content: bytes) -> bytes:
    """Move constant data stored after the flatbuffer (buffer offsets) back inside it.

    ai-edge-quantizer 0.10.0 writes a model whose constants total 256 KiB or more with external buffers
    (``Buffer.offset``/``size``, data appended after the flatbuffer). LiteRT reads them; TFLite Micro does
    not and silently computes with wrong weights (measured on the default ``lstm``: outputs off by ~100
    LSB), so every model leaves here self-contained.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    fb = tflite_schema()
    m = fb.ModelT.InitFromPackedBuf(content, 0)
    moved = 0
    for buf in m.buffers:
        if buf.offset > 1:
            buf.data = np.frombuffer(content, np.uint8, count=buf.size, offset=buf.offset).copy()
            buf.offset, buf.size = 0, 0
            moved += 1
    if not moved:
        return content
    logger.debug("moved %d external buffers into the flatbuffer", moved)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


_SAME_SCALE_OPS = ("SLICE", "STRIDED_SLICE", "RESHAPE", "SQUEEZE", "TRANSPOSE", "GATHER")


def _set_state_input_scale(content: bytes, k: int, scale: float) -> bytes:
    """Set state ``k``'s input scale, and that of every tensor inheriting it through a same-scale op, in place.

    The tensors are the state input and, recursively, the outputs of the slice/reshape/... ops it feeds
    that carry exactly its scale and zero point (XNNPACK requires such ops to keep their input's scale).
    """
    fb = tflite_schema()
    io = read_step_io(content)
    m = fb.ModelT.InitFromPackedBuf(bytes(content), 0)
    sg = m.subgraphs[_sig_subgraph(m)]
    op_names = {v: n for n, v in vars(fb.BuiltinOperator).items() if not n.startswith("_")}
    consumers: dict[int, list] = {}
    for op in sg.operators:
        for i in op.inputs:
            consumers.setdefault(int(i), []).append(op)

    def qparams(i):
        q = sg.tensors[i].quantization
        if q is None or q.scale is None or len(q.scale) != 1:
            return None
        return np.float32(q.scale[0]), int(q.zeroPoint[0])

    first = io.input_tensors[1 + k]
    old = qparams(first)
    todo, patch = [first], set()
    while todo:
        t = todo.pop()
        if t in patch:
            continue
        patch.add(t)
        for op in consumers.get(t, []):
            oc = m.operatorCodes[op.opcodeIndex]
            if op_names.get(max(oc.builtinCode, oc.deprecatedBuiltinCode)) in _SAME_SCALE_OPS:
                todo.extend(int(o) for o in op.outputs if qparams(int(o)) == old)
    buf = bytearray(content)
    root = fb.Model.GetRootAs(buf, 0).Subgraphs(_sig_subgraph(m))
    for t in sorted(patch):
        q = root.Tensors(t).Quantization()
        struct.pack_into("<f", buf, q._tab.Vector(q._tab.Offset(8)), scale)  # QuantizationParameters.scale
    logger.debug("state %d: scale %.9g -> %.9g on %d tensors", k, old[0], scale, len(patch))
    return bytes(buf)


def _sig_subgraph(m) -> int:
    """Index of the subgraph the (single) signature runs."""
    return int(m.signatureDefs[0].subgraphIndex)


def _unify_state_scales(content: bytes, rel_tol: float = 1e-5) -> bytes:
    """Give each state input the exact scale of its output where the two differ by float rounding only.

    The quantizer derives some scales through the ops that produce them, so a state's input and output
    scales, computed from the same range, can differ in the last bit of float32 (seen on the default-size
    decoders). The input side takes the output's scale (:func:`_set_state_input_scale`); a real mismatch
    is left for the caller's check.
    """
    io = read_step_io(content)
    for k, (a, b) in enumerate(zip(io.states_in, io.states_out, strict=True)):
        if a.dtype != "int8" or a.scale == b.scale or a.zero_point != b.zero_point:
            continue
        if abs(a.scale - b.scale) <= rel_tol * abs(b.scale):
            content = _set_state_input_scale(content, k, b.scale)
    return content


def strip_tensor_names(model_bytes: bytes) -> bytes:
    """Drop the names of the intermediate tensors (debug strings TFLite Micro never reads).

    The step contract's input/output tensors keep their names and the signature stays, so
    :func:`edgensd.runtime.backend_tflite.read_step_io` still maps the model; the computation is untouched.
    The converter's names are module paths (about 7 KB of the default ``edge`` model's 75 KB int8 file).

    Parameters
    ----------
    model_bytes : bytes
        A ``.tflite`` step graph.

    Returns
    -------
    bytes
        The same model without intermediate tensor names.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    io = read_step_io(model_bytes)
    keep = set(io.input_tensors) | set(io.output_tensors)
    m = tflite_schema().ModelT.InitFromPackedBuf(bytes(model_bytes), 0)
    for g, sg in enumerate(m.subgraphs):
        for i, t in enumerate(sg.tensors):
            if g != m.signatureDefs[0].subgraphIndex or i not in keep:
                t.name = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def float_ops(model_bytes: bytes) -> list[str]:
    """Ops and tensors left in floating point, for checking that a model is full-integer.

    Parameters
    ----------
    model_bytes : bytes
        A ``.tflite`` flatbuffer.

    Returns
    -------
    list of str
        One entry per operator with a float input or output (``"op 3 FULLY_CONNECTED"``) and per float
        tensor (``"tensor 'name' FLOAT32"``); empty for a full-integer model.
    """
    fb = tflite_schema()
    m = fb.ModelT.InitFromPackedBuf(bytes(model_bytes), 0)
    op_names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    t_names = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    floating = {fb.TensorType.FLOAT32, fb.TensorType.FLOAT16, fb.TensorType.FLOAT64}
    if hasattr(fb.TensorType, "BFLOAT16"):
        floating.add(fb.TensorType.BFLOAT16)
    found = []
    for g, sg in enumerate(m.subgraphs):
        is_float = [t.type in floating for t in sg.tensors]
        for j, op in enumerate(sg.operators):
            tensors = [int(i) for i in list(op.inputs) + list(op.outputs) if i >= 0]
            if any(is_float[i] for i in tensors):
                oc = m.operatorCodes[op.opcodeIndex]
                code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
                found.append(f"subgraph {g} op {j} {op_names.get(code, code)}")
        for t in sg.tensors:
            if t.type in floating:
                found.append(f"subgraph {g} tensor {t.name.decode()!r} {t_names[t.type]}")
    return found


def io_specs(model_bytes: bytes) -> tuple[TensorSpec, TensorSpec, list[TensorSpec], list[TensorSpec]]:
    """The step contract's tensor specs of a ``.tflite`` step graph.

    Parameters
    ----------
    model_bytes : bytes
        A step graph from :func:`convert_fp32` or :func:`quantize_int8`.

    Returns
    -------
    x_spec, y_spec : TensorSpec
    state_in_specs, state_out_specs : list of TensorSpec
        In the step graph's state order (:func:`edgensd.export.stepgraph.step_state_names`), mapped by
        signature names, not by shapes or tensor order.
    """
    io = read_step_io(model_bytes)
    return io.x, io.y, io.states_in, io.states_out
