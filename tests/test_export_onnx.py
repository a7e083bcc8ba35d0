"""ONNX export of the step graphs: fp32 parity with torch for every causal decoder, the int8 graph's structure
(QDQ around every Conv/MatMul/Gemm, int8 in and out, one scale per state), and the ONNX Runtime backend."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from edgensd.export.calibrate import stream_samples
from edgensd.export.onnx_export import float_ops, int8_range_scale, io_names, onnx_fp32, onnx_int8, read_specs
from edgensd.export.stepgraph import step_example_inputs, step_module

from edgensd.decoders import get_decoder
from edgensd.runtime.backend import BackendUnavailable, dequantize, quantize

torch.set_num_threads(1)

CASES = [
    ("edge", {}),
    ("lstm", {"num_layers": 2, "hidden_size": 24}),
    ("resnet3d", {}),
    ("swin3d", {}),
]


def _model(arch, n_el=16, **kw):
    torch.manual_seed(0)
    return get_decoder(arch, n_electrodes=n_el, causal=True, **kw).eval()


def _feats(n, n_el, seed=1):
    return np.random.default_rng(seed).standard_normal((n, n_el)).astype(np.float32)


@pytest.fixture(scope="module")
def edge_int8(tmp_path_factory):
    """A small random edge decoder, its fp32 and int8 graphs and 400 calibration samples."""
    dec = _model("edge", 16, channels=16, dilations=(1, 2), gru_hidden=16)
    step, ex = step_module(dec), step_example_inputs(dec)
    fp32 = onnx_fp32(step, ex)
    samples, n = stream_samples(step, ex, [2.5 * _feats(250, 16, 2), _feats(150, 16, 3)])  # widest first
    assert n == 400 and len(samples) == 400
    return dec, fp32, onnx_int8(fp32, samples), samples


@pytest.mark.parametrize(("arch", "kw"), CASES, ids=[c[0] for c in CASES])
def test_fp32_onnx_streams_like_the_torch_step_graph(arch, kw):
    """Reference: the torch step graph streamed frame by frame; bound 1e-4 max abs over 60 frames."""
    dec = _model(arch, **kw)
    step, ex = step_module(dec), step_example_inputs(dec)
    data = onnx_fp32(step, ex)
    model = onnx.load_from_string(data)
    assert not any(i.data_location == onnx.TensorProto.EXTERNAL for i in model.graph.initializer)
    assert not {n.op_type for n in model.graph.node} & {"LSTM", "GRU", "RNN"}
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    ins, outs = io_names(len(ex) - 1)
    assert [i.name for i in sess.get_inputs()] == ins and [o.name for o in sess.get_outputs()] == outs
    x = _feats(60, 16)
    s_t, s_o = list(ex[1:]), [s.numpy() for s in ex[1:]]
    worst = 0.0
    with torch.no_grad():
        for t in range(len(x)):
            y_t, *s_t = step(torch.from_numpy(x[t : t + 1]), *s_t)
            y_o, *s_o = sess.run(None, {"x": x[t : t + 1], **dict(zip(ins[1:], s_o, strict=True))})
            worst = max(worst, float(np.abs(y_o - y_t.numpy()).max()))
    assert worst < 1e-4


def test_int8_graph_structure(edge_int8):
    _, fp32, q, _ = edge_int8
    g = onnx.load_from_string(q).graph
    producers = {o: n for n in g.node for o in n.output}
    inits = {i.name for i in g.initializer}
    mm = [n for n in g.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    assert mm
    for n in mm:
        for i in n.input:
            if i:
                assert i not in inits and producers[i].op_type == "DequantizeLinear", (n.op_type, i)
    # weights are int8 per channel, biases int32
    w_dq = [producers[n.input[1]] for n in mm]
    assert all(any(a.name == "axis" for a in dq.attribute) for dq in w_dq)
    elem = {i.name: i.data_type for i in g.initializer}
    assert all(elem[dq.input[0]] == onnx.TensorProto.INT8 for dq in w_dq)
    assert all(elem[producers[n.input[2]].input[0]] == onnx.TensorProto.INT32 for n in mm if len(n.input) > 2)
    # int8 in and out
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT8 for i in g.input)
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.INT8 for o in g.output)
    assert len(float_ops(q)) < len([n for n in g.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")])


def test_int8_state_has_one_scale_in_and_out_and_feeds_back(edge_int8):
    dec, fp32, q, samples = edge_int8
    x_s, y_s, s_in, s_out = read_specs(onnx.load_from_string(q))
    assert len(s_in) == len(dec.state_names()) >= 2
    for a, b in zip(s_in, s_out, strict=True):
        assert a.dtype == b.dtype == "int8" and a.scale == b.scale and a.zero_point == b.zero_point
        assert a.scale > 0
    # each state's range is min/max over the calibration set
    for k, spec in enumerate(s_in):
        lo = min(float(s[1 + k].min()) for s in samples)
        hi = max(float(s[1 + k].max()) for s in samples)
        assert (spec.scale, spec.zero_point) == int8_range_scale(lo, hi)
    # closed loop: int8 state fed back unchanged tracks the float graph
    sf = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"])
    sq = ort.InferenceSession(q, providers=["CPUExecutionProvider"])
    names = [s.name for s in s_in]
    stf = [np.zeros(s.shape, np.float32) for s in s_in]
    stq = [quantize(np.zeros(s.shape), s) for s in s_in]
    yf, yq = [], []
    for x in _feats(200, 16, 9):
        o = sf.run(None, {"x": x[None], **dict(zip(names, stf, strict=True))})
        yf.append(o[0][0])
        stf = o[1:]
        o = sq.run(None, {"x": quantize(x[None], x_s), **dict(zip(names, stq, strict=True))})
        yq.append(dequantize(o[0], y_s)[0])
        stq = o[1:]
        assert all(s.dtype == np.int8 for s in stq)
    yf, yq = np.array(yf), np.array(yq)
    r = np.corrcoef(yf.ravel(), yq.ravel())[0, 1]
    assert r > 0.9, r


def test_int8_weights_are_a_quarter_of_fp32_and_file_ratio():
    """Default-size 64-electrode edge decoder: int8 weights are 1/4 of fp32's; the file (weights plus QDQ
    nodes and per-channel scales) measured 0.342 of the fp32 file."""
    dec = _model("edge", 64)
    step, ex = step_module(dec), step_example_inputs(dec)
    fp32 = onnx_fp32(step, ex)
    samples, _ = stream_samples(step, ex, [_feats(64, 64)])
    q = onnx_int8(fp32, samples)
    from onnx import numpy_helper

    def weight_bytes(data, dtype):
        return sum(numpy_helper.to_array(i).nbytes for i in onnx.load_from_string(data).graph.initializer
                   if numpy_helper.to_array(i).dtype == dtype and numpy_helper.to_array(i).size >= 256)

    assert weight_bytes(q, np.int8) * 4 == weight_bytes(fp32, np.float32)
    assert len(q) / len(fp32) < 0.36


def test_int8_range_scale():
    s, z = int8_range_scale(-1.0, 3.0)
    assert z == int(np.rint(-128 + 1.0 / s)) and abs(s - 4 / 255) < 1e-7
    assert int8_range_scale(0.0, 0.0) == (1.0, 0)
    s, z = int8_range_scale(0.5, 2.0)  # widened to hold 0: real 0 is exact
    assert z == -128 and abs(s - 2 / 255) < 1e-7
    with pytest.raises(ValueError, match="finite"):
        int8_range_scale(float("nan"), 1.0)


def test_bad_calibration_samples(edge_int8):
    _, fp32, _, samples = edge_int8
    with pytest.raises(ValueError, match="at least one sample"):
        onnx_int8(fp32, [])
    with pytest.raises(ValueError, match=r"x has shape \(1, 15\)"):
        onnx_int8(fp32, [[np.zeros((1, 15), np.float32), *samples[0][1:]]])
    with pytest.raises(ValueError, match="holds 1 arrays"):
        onnx_int8(fp32, [[samples[0][0]]])
    with pytest.raises(ValueError, match="no 'edgensd_io_specs'"):
        m = onnx.load_from_string(fp32)
        del m.metadata_props[:]
        onnx_int8(m.SerializeToString(), samples)


# --------------------------------------------------------------------------------------- ONNX backend
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_backend_iobinding_step_equals_plain_runs(edge_int8, tmp_path, precision):
    from edgensd.runtime.backend_onnx import ONNXBackend

    _, fp32, q, _ = edge_int8
    path = tmp_path / f"m_{precision}.onnx"
    path.write_bytes(fp32 if precision == "fp32" else q)
    be = ONNXBackend(path)
    assert be.x_spec.dtype == ("float32" if precision == "fp32" else "int8")
    x = _feats(30, 16, 4)
    got = be.run(x)
    state = be.zero_state()
    want = []
    for f in x:
        y, state = be.run_raw(quantize(f[None], be.x_spec), state)
        want.append(dequantize(y, be.y_spec)[0])
    np.testing.assert_array_equal(got, np.array(want))
    for a, b in zip(be.state, state, strict=True):
        np.testing.assert_array_equal(a, b)
    be.reset()
    assert all(np.array_equal(a, b) for a, b in zip(be.state, be.zero_state(), strict=True))
    be.state = state  # resume from a saved state
    y0, _ = be.run_raw(quantize(x[:1], be.x_spec), state)
    np.testing.assert_array_equal(be.step(x[0]), dequantize(y0, be.y_spec)[0])


def test_backend_bad_inputs(edge_int8, tmp_path, monkeypatch):
    from edgensd.runtime.backend_onnx import ONNXBackend

    _, fp32, _, _ = edge_int8
    path = tmp_path / "m.onnx"
    path.write_bytes(fp32)
    be = ONNXBackend(path)
    with pytest.raises(ValueError, match="NaN/inf at electrodes \\[3\\]"):
        x = np.zeros(16, np.float32)
        x[3] = np.nan
        be.step(x)
    with pytest.raises(ValueError, match="one frame of 16 electrodes"):
        be.step(np.zeros(15, np.float32))
    with pytest.raises(ValueError, match="state 'state0' must be float32"):
        be.state = [np.zeros((1, 1), np.float32)] + be.state[1:]
    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        ONNXBackend(tmp_path / "nope.onnx")
    (tmp_path / "bad.onnx").write_bytes(fp32[: len(fp32) // 2])
    with pytest.raises(ValueError, match="cannot load it"):
        ONNXBackend(tmp_path / "bad.onnx")
    m = onnx.load_from_string(fp32)
    del m.metadata_props[:]
    (tmp_path / "nometa.onnx").write_bytes(m.SerializeToString())
    with pytest.raises(ValueError, match="not written by edgensd export"):
        ONNXBackend(tmp_path / "nometa.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(BackendUnavailable, match="onnxruntime"):
        ONNXBackend(path)


def test_int8_ranges_cover_the_whole_calibration_set(edge_int8):
    """The output's range is min/max of the float graph's outputs over all 400 samples (ORT's calibrator
    drops full batches when told to bound its memory, which would keep only the last ones)."""
    _, fp32, q, samples = edge_int8
    _, y_spec, _, _ = read_specs(onnx.load_from_string(q))
    sess = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    ys = np.concatenate([sess.run(["y"], dict(zip(names, s, strict=True)))[0] for s in samples])
    scale, zp = int8_range_scale(float(ys.min()), float(ys.max()))
    assert y_spec.scale == pytest.approx(scale, rel=1e-6) and y_spec.zero_point == zp


@pytest.mark.parametrize(("arch", "kw"), [("lstm", {"num_layers": 2, "hidden_size": 16}), ("resnet3d", {})],
                         ids=["lstm", "resnet3d"])
def test_int8_other_decoders_keep_state_scales_and_track_float(arch, kw):
    """The explicit-cell LSTM (h and c stacked in one state) and the causal 3D ResNet (conv ring buffers)."""
    dec = _model(arch, **kw)
    step, ex = step_module(dec), step_example_inputs(dec)
    fp32 = onnx_fp32(step, ex)
    samples, _ = stream_samples(step, ex, [_feats(120, 16, 5)])
    q = onnx_int8(fp32, samples)
    x_s, y_s, s_in, s_out = read_specs(onnx.load_from_string(q))
    assert [(a.scale, a.zero_point) for a in s_in] == [(b.scale, b.zero_point) for b in s_out]
    g = onnx.load_from_string(q).graph
    producers = {o: n for n in g.node for o in n.output}
    for n in g.node:
        if n.op_type in ("Conv", "MatMul", "Gemm"):
            assert all(producers[i].op_type == "DequantizeLinear" for i in n.input if i), n.op_type
    sf = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"])
    sq = ort.InferenceSession(q, providers=["CPUExecutionProvider"])
    names = [s.name for s in s_in]
    stf = [np.zeros(s.shape, np.float32) for s in s_in]
    stq = [quantize(np.zeros(s.shape), s) for s in s_in]
    yf, yq = [], []
    for x in _feats(120, 16, 5):
        o = sf.run(None, {"x": x[None], **dict(zip(names, stf, strict=True))})
        yf.append(o[0][0])
        stf = o[1:]
        o = sq.run(None, {"x": quantize(x[None], x_s), **dict(zip(names, stq, strict=True))})
        yq.append(dequantize(o[0], y_s)[0])
        stq = o[1:]
    r = np.corrcoef(np.ravel(yf), np.ravel(yq))[0, 1]
    assert r > 0.9, r
