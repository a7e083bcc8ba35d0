"""ONNX export of a causal decoder's step graph: fp32 (one self-contained file) and static int8 (QDQ).

Tensor names follow :mod:`edgensd.runtime.backend`: inputs ``x`` then ``state0 .. stateN-1``, outputs ``y``
then ``state0_out .. stateN-1_out`` (state ``i`` is the ``i``-th of :func:`edgensd.export.stepgraph.step_state_names`).

The int8 graph is ONNX Runtime static quantization (QDQ format, per-channel weights, MinMax calibration,
after ``quant_pre_process``) of the fp32 graph, then rewritten so that it takes and gives int8 tensors, as
the step interface says: the input ``QuantizeLinear`` and output ``DequantizeLinear`` nodes move into the
backend. Each state tensor is given one scale and zero point on input and output (ORT's tensor overrides),
so the int8 state feeds back unchanged. The graph's tensor specs (scale, zero point) are also stored in its
metadata (key :data:`SPECS_METADATA_KEY`), so a backend can read them from the file alone.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgensd.log import logger
from edgensd.runtime.backend import TensorSpec

__all__ = [
    "OPSET",
    "SPECS_METADATA_KEY",
    "float_ops",
    "int8_range_scale",
    "io_names",
    "onnx_int8",
    "onnx_fp32",
    "read_specs",
]

OPSET = 17
"""ONNX opset of the exported graphs."""

SPECS_METADATA_KEY = "edgensd_io_specs"
"""Model metadata key holding the JSON list of tensor specs (x, y, states in, states out)."""


def io_names(n_states: int) -> tuple[list[str], list[str]]:
    """Graph input and output names for a step graph with ``n_states`` state tensors."""
    states = [f"state{i}" for i in range(n_states)]
    return ["x", *states], ["y", *[f"{s}_out" for s in states]]


def _spec_json(x: TensorSpec, y: TensorSpec, s_in: Sequence[TensorSpec], s_out: Sequence[TensorSpec]) -> str:
    return json.dumps({"x": x.to_dict(), "y": y.to_dict(), "state_in": [s.to_dict() for s in s_in],
                       "state_out": [s.to_dict() for s in s_out]})


def _set_metadata(model, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = key, value


def read_specs(model) -> tuple[TensorSpec, TensorSpec, list[TensorSpec], list[TensorSpec]]:
    """The tensor specs stored in an exported graph's metadata.

    Parameters
    ----------
    model : onnx.ModelProto

    Returns
    -------
    x_spec, y_spec, state_in_specs, state_out_specs
    """
    meta = {p.key: p.value for p in model.metadata_props}
    if SPECS_METADATA_KEY not in meta:
        raise ValueError(f"the ONNX graph has no {SPECS_METADATA_KEY!r} metadata: was it written by edgensd export?")
    d = json.loads(meta[SPECS_METADATA_KEY])
    return (TensorSpec.from_dict(d["x"]), TensorSpec.from_dict(d["y"]),
            [TensorSpec.from_dict(s) for s in d["state_in"]], [TensorSpec.from_dict(s) for s in d["state_out"]])


def onnx_fp32(step, example_inputs: Sequence, opset: int = OPSET) -> bytes:
    """Export a step graph to a self-contained fp32 ONNX model.

    Parameters
    ----------
    step : torch.nn.Module
        :func:`edgensd.export.stepgraph.step_module` of a causal decoder (eval mode).
    example_inputs : sequence of Tensor
        ``(x (1, n_electrodes), *states)`` (:func:`edgensd.export.stepgraph.step_example_inputs`).
    opset : int
        ONNX opset.

    Returns
    -------
    bytes
        The serialized model (weights inside; no external data file), batch 1, static shapes, with the
        float32 tensor specs in its metadata.
    """
    import onnx
    import torch

    example_inputs = tuple(example_inputs)
    in_names, out_names = io_names(len(example_inputs) - 1)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # the TorchScript exporter: one file, static shapes, fast; its deprecation note is not actionable here
        warnings.simplefilter("ignore")
        torch.onnx.export(step, example_inputs, buf, input_names=in_names, output_names=out_names,
                          opset_version=int(opset), dynamo=False, do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    with torch.no_grad():
        outs = step(*example_inputs)
    shapes_in = [tuple(int(s) for s in t.shape) for t in example_inputs]
    shapes_out = [tuple(int(s) for s in t.shape) for t in outs]
    specs_in = [TensorSpec(n, s, "float32") for n, s in zip(in_names, shapes_in, strict=True)]
    specs_out = [TensorSpec(n, s, "float32") for n, s in zip(out_names, shapes_out, strict=True)]
    _set_metadata(model, SPECS_METADATA_KEY, _spec_json(specs_in[0], specs_out[0], specs_in[1:], specs_out[1:]))
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    logger.debug("fp32 ONNX step graph: %d bytes, %d nodes", len(data), len(model.graph.node))
    return data


def int8_range_scale(lo: float, hi: float) -> tuple[float, int]:
    """Asymmetric int8 scale and zero point of a real range (ONNX Runtime's MinMax rule).

    The range is widened to hold 0 (so real 0, the zero state, is exact); a constant-zero tensor gets
    scale 1.

    Parameters
    ----------
    lo, hi : float
        Minimum and maximum real value.

    Returns
    -------
    scale : float
    zero_point : int in [-128, 127]
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"calibration range must be finite, got [{lo}, {hi}]")
    if hi - lo <= 0:
        return 1.0, 0
    # float32, as ONNX stores it, so the spec and the graph agree exactly
    scale = float(np.float32((hi - lo) / 255.0))
    zp = int(np.clip(np.rint(-128.0 - lo / scale), -128, 127))
    return scale, zp


#: Calibration samples run per batch; each batch's ranges are reduced and merged before the next, so memory
#: stays bounded for any number of samples.
CALIB_BATCH = 256


def _calibrate_ranges(model_path: str, augmented_path: str, names: Sequence[str], samples, cache_path: str) -> None:
    """Min/max of every tensor ONNX Runtime quantizes, over all samples, saved as ORT's calibration cache.

    ONNX Runtime's own MinMax calibrator, fed in batches of :data:`CALIB_BATCH` (its collect step reduces and
    merges a batch's ranges; its ``CalibMaxIntermediateOutputs`` option instead drops full batches unreduced
    in ORT 1.32, so only the last partial batch would count).
    """
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

    cal = create_calibrator(Path(model_path), None, augmented_model_path=augmented_path,
                            calibrate_method=CalibrationMethod.MinMax)
    for k in range(0, len(samples), CALIB_BATCH):
        cal.collect_data(_Reader(names, samples[k : k + CALIB_BATCH]))
    save_tensors_data(cal.compute_data(), cache_path)
    del cal


class _Reader:
    """ONNX Runtime calibration data reader over ``[x, *states]`` samples."""

    def __init__(self, names: Sequence[str], samples: Sequence[Sequence[np.ndarray]]) -> None:
        self.names = list(names)
        self.samples = samples
        self.i = 0

    def get_next(self):
        if self.i >= len(self.samples):
            return None
        s = self.samples[self.i]
        self.i += 1
        return {n: np.asarray(a, np.float32) for n, a in zip(self.names, s, strict=True)}

    def rewind(self) -> None:
        self.i = 0


def _check_samples(samples, specs: Sequence[TensorSpec]) -> None:
    if not len(samples):
        raise ValueError("calibration needs at least one sample [x, *states]; got none")
    for k, s in enumerate(samples[:1] if len(samples) > 1000 else samples):
        if len(s) != len(specs):
            raise ValueError(f"calibration sample {k} holds {len(s)} arrays; the graph takes {len(specs)} "
                             f"({', '.join(sp.name for sp in specs)})")
        for a, sp in zip(s, specs, strict=True):
            if tuple(np.shape(a)) != sp.shape:
                raise ValueError(f"calibration sample {k}: {sp.name} has shape {tuple(np.shape(a))}, the graph "
                                 f"takes {sp.shape}")


def onnx_int8(fp32: bytes, calib_samples: Sequence[Sequence[np.ndarray]], per_channel: bool = True) -> bytes:
    """Static int8 quantization of an fp32 step graph from :func:`onnx_fp32`.

    Parameters
    ----------
    fp32 : bytes
        The fp32 model.
    calib_samples : sequence of [x, *states]
        Calibration inputs, float32 arrays of the graph's input shapes
        (:func:`edgensd.export.calibrate.calibrate`).
    per_channel : bool
        Per-output-channel weight scales (Conv, Gemm, MatMul).

    Returns
    -------
    bytes
        The int8 model: int8 ``x``, states and ``y`` (specs in its metadata), weights int8 per channel,
        biases int32, every Conv/MatMul/Gemm fed by ``DequantizeLinear``.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load_from_string(fp32)
    x_spec, y_spec, s_in, s_out = read_specs(model)
    in_specs = [x_spec, *s_in]
    _check_samples(calib_samples, in_specs)
    with tempfile.TemporaryDirectory(prefix="edgensd_q_") as tmp:
        src, pre, dst = (os.path.join(tmp, n) for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        Path(src).write_bytes(fp32)
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        overrides, io_q = _io_overrides(onnx.load(pre), calib_samples, x_spec, s_in, s_out)
        cache = os.path.join(tmp, "ranges.json")
        _calibrate_ranges(pre, os.path.join(tmp, "augmented.onnx"), [s.name for s in in_specs], calib_samples,
                          cache)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ORT's notes on pre-processing and per-channel defaults
            quantize_static(
                pre, dst, None, calibration_cache_path=cache,
                quant_format=QuantFormat.QDQ, per_channel=per_channel, activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                extra_options={"TensorQuantOverrides": overrides, "ActivationSymmetric": False,
                               "WeightSymmetric": True},
            )
        q = onnx.load(dst)
    specs = _int8_io(q, x_spec, y_spec, s_in, s_out, io_q)
    _compact(q)
    _set_metadata(q, SPECS_METADATA_KEY, _spec_json(*specs))
    onnx.checker.check_model(q)
    data = q.SerializeToString()
    logger.debug("int8 ONNX step graph: %d bytes (fp32 %d)", len(data), len(fp32))
    return data


def _initializer_value(graph, name: str) -> np.ndarray:
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    raise ValueError(f"quantized graph: {name!r} is not a constant initializer")


#: Ops that only move, select or reshape values: their output can share their input's scale.
_MOVE_OPS = frozenset({"Slice", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Gather", "Identity", "Flatten"})


def _io_overrides(model, samples, x_spec: TensorSpec, s_in, s_out) -> tuple[dict, dict]:
    """Tensor quantization overrides that give ``x`` and each state tensor one scale wherever it flows.

    A state's range is min/max over the calibration set; its input, its output, the value-moving ops that
    read it and the chain of value-moving ops back from its output to the ``Concat`` that builds it (a
    convolution's ring buffer) all take it, so a requantization between state in and state out is exact.
    ``x`` likewise keeps one scale through the ops that only reshape it.
    """
    g = model.graph
    producers = {o: n for n in g.node for o in n.output}
    users: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)

    def forward(name: str) -> set[str]:
        out, todo = set(), [name]
        while todo:
            for n in users.get(todo.pop(), []):
                if n.op_type in _MOVE_OPS and n.output[0] not in out:
                    out.add(n.output[0])
                    todo.append(n.output[0])
        return out

    def backward(name: str) -> set[str]:
        out, t = set(), name
        while True:
            p = producers.get(t)
            if p is None:
                return out
            if p.op_type == "Concat":
                return out | {p.output[0]}
            if p.op_type not in _MOVE_OPS:
                return out
            t = p.input[0]
            out.add(t)

    def ov(scale: float, zp: int) -> list[dict]:
        return [{"scale": np.array(scale, np.float32), "zero_point": np.array(zp, np.int8)}]

    xs = [np.asarray(s[0]) for s in samples]
    io_q = {x_spec.name: int8_range_scale(min(v.min() for v in xs), max(v.max() for v in xs))}
    overrides = {t: ov(*io_q[x_spec.name]) for t in {x_spec.name} | forward(x_spec.name)}
    for i, (si, so) in enumerate(zip(s_in, s_out, strict=True)):
        vals = [np.asarray(s[1 + i]) for s in samples]
        io_q[si.name] = io_q[so.name] = int8_range_scale(min(v.min() for v in vals), max(v.max() for v in vals))
        for t in {si.name, so.name} | forward(si.name) | backward(so.name):
            overrides[t] = ov(*io_q[si.name])
    return overrides, io_q


def _int8_io(model, x_spec, y_spec, s_in, s_out, io_q):
    """Move the graph's input quantization and output dequantization into the backend (int8 I/O).

    An input read through ``QuantizeLinear`` loses that node; an input read directly by other ops gets a
    ``DequantizeLinear`` with its calibrated scale. An output made by ``DequantizeLinear`` becomes that
    node's int8 input (the float value stays for ops inside the graph that read it).
    """
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph

    def consumers(name):
        return [n for n in g.node if name in n.input]

    def rename_input(old: str, new: str) -> None:
        for n in g.node:
            for k, v in enumerate(n.input):
                if v == old:
                    n.input[k] = new

    new_in: list[TensorSpec] = []
    for spec in [x_spec, *s_in]:
        users = consumers(spec.name)
        quant = [n for n in users if n.op_type == "QuantizeLinear"]
        params = set()
        for q in quant:
            params.add((float(_initializer_value(g, q.input[1]).reshape(())),
                        int(_initializer_value(g, q.input[2]).reshape(()))))
        if len(params) > 1 or (params and len(quant) != len(users)):
            raise ValueError(f"quantized graph: input {spec.name!r} is read with several scales ({sorted(params)}) "
                             "or both quantized and in float; cannot give it one int8 encoding")
        scale, zp = params.pop() if params else io_q[spec.name]
        if quant:
            for q in quant:
                rename_input(q.output[0], spec.name)
                g.node.remove(q)
        else:  # read in float: dequantize the int8 input once for its readers
            fname = f"{spec.name}_dequantized"
            rename_input(spec.name, fname)
            g.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), f"{spec.name}_in_scale"),
                                  numpy_helper.from_array(np.array(zp, np.int8), f"{spec.name}_in_zero_point")])
            g.node.append(helper.make_node("DequantizeLinear", [spec.name, f"{spec.name}_in_scale",
                                                                 f"{spec.name}_in_zero_point"], [fname]))
        new_in.append(TensorSpec(spec.name, spec.shape, "int8", scale, zp))
    for vi in g.input:
        vi.type.tensor_type.elem_type = TensorProto.INT8

    producers = {o: n for n in g.node for o in n.output}
    new_out: list[TensorSpec] = []
    for spec in [y_spec, *s_out]:
        dq = producers.get(spec.name)
        if dq is None or dq.op_type != "DequantizeLinear":
            kind = dq.op_type if dq is not None else "nothing"
            raise ValueError(f"quantized graph: output {spec.name!r} comes from {kind}, expected DequantizeLinear")
        qname = dq.input[0]
        scale = float(_initializer_value(g, dq.input[1]).reshape(()))
        zp = int(_initializer_value(g, dq.input[2]).reshape(()))
        if consumers(spec.name):  # also read inside the graph: keep the float value under another name
            fname = f"{spec.name}_dequantized"
            rename_input(spec.name, fname)
            dq.output[0] = fname
        else:
            g.node.remove(dq)
        for n in g.node:
            for k, v in enumerate(n.output):
                if v == qname:
                    n.output[k] = spec.name
        rename_input(qname, spec.name)
        new_out.append(TensorSpec(spec.name, spec.shape, "int8", scale, zp))
    for vo in g.output:
        vo.type.tensor_type.elem_type = TensorProto.INT8
    for a, b in zip(new_in[1:], new_out[1:], strict=True):
        if (a.scale, a.zero_point) != (b.scale, b.zero_point):
            raise ValueError(f"quantized graph: state {a.name!r} has scale/zero point {a.scale}/{a.zero_point} in "
                             f"and {b.scale}/{b.zero_point} out; int8 state could not feed back")
    _reorder(g)
    return new_in[0], new_out[0], new_in[1:], new_out[1:]


def _compact(model) -> None:
    """Shrink the file without changing what it computes: all-zero zero points of constants left out (0 is
    the default), identical constants stored once, internal tensors renamed ``t<k>`` (the QDQ pass names them
    after their whole path), node names and doc strings dropped. Graph inputs and outputs keep their names."""
    from onnx import numpy_helper

    g = model.graph
    keep = {i.name for i in g.input} | {o.name for o in g.output}
    consts = {i.name: i for i in g.initializer}
    for n in g.node:  # a constant's all-zero zero point (symmetric weights, int32 biases) is the default
        if n.op_type == "DequantizeLinear" and n.input[0] in consts and len(n.input) == 3 and n.input[2] in consts:
            if not numpy_helper.to_array(consts[n.input[2]]).any():
                del n.input[2]
    used = {i for n in g.node for i in n.input}
    kept = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    seen: dict[tuple, str] = {}
    alias: dict[str, str] = {}
    unique = []
    for init in g.initializer:
        key = (init.data_type, tuple(init.dims), init.SerializeToString().replace(init.name.encode(), b""))
        if key in seen and init.name not in keep:
            alias[init.name] = seen[key]
        else:
            seen[key] = init.name
            unique.append(init)
    names: dict[str, str] = {}

    def short(name: str) -> str:
        name = alias.get(name, name)
        if not name or name in keep:
            return name
        if name not in names:
            names[name] = f"t{len(names)}"
        return names[name]

    for init in unique:
        init.name = short(init.name)
    del g.initializer[:]
    g.initializer.extend(unique)
    for n in g.node:
        n.name, n.doc_string = "", ""
        for k, v in enumerate(n.input):
            n.input[k] = short(v)
        for k, v in enumerate(n.output):
            n.output[k] = short(v)
    del g.value_info[:]
    model.doc_string = ""


def _reorder(graph) -> None:
    """Topologically sort the nodes (renaming may leave a consumer before its producer)."""
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for n in pending:
            if all(i in known for i in n.input):
                ordered.append(n)
                known.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError("quantized graph has a cycle or a dangling input after the int8 I/O rewrite")
        pending = rest
    nodes = [type(n)() for n in ordered]
    for dst, src in zip(nodes, ordered, strict=True):
        dst.CopyFrom(src)
    del graph.node[:]
    graph.node.extend(nodes)


def float_ops(model_bytes: bytes) -> list[str]:
    """Op types of an int8 graph that compute in float (not Q/DQ and not fed only by DequantizeLinear).

    An op counts as int8 when it is QuantizeLinear/DequantizeLinear, or when every input it reads is
    produced by a DequantizeLinear (the QDQ pattern a runtime fuses into an integer kernel).
    """
    import onnx

    g = onnx.load_from_string(model_bytes).graph
    producers = {o: n for n in g.node for o in n.output}
    inits = {i.name for i in g.initializer}
    out = []
    for n in g.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        srcs = [producers.get(i) for i in n.input if i and i not in inits]
        if not srcs or any(s is None or s.op_type != "DequantizeLinear" for s in srcs):
            out.append(n.op_type)
    return sorted(out)
