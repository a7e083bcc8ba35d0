"""Decoders: shape contract, config round-trip, streaming parity, causality, MACs budget, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgensd.decoders import (  # noqa: E402
    DecoderConfig,
    build_decoder,
    default_grid_index,
    get_decoder,
    list_decoders,
    load_config,
    load_decoder,
    macs_per_frame,
    make_config,
    measure_lookahead,
    n_params,
    save_decoder,
)
from edgensd.params import N_PARAMS  # noqa: E402

torch.set_num_threads(1)

# small versions of every architecture, so the whole file stays fast on a shared 2-core machine
SMALL = {
    "resnet3d": dict(channels=(4, 8), dilations=(1, 2), head_hidden=16),
    "swin3d": dict(embed_dim=8, depths=(2, 1), num_heads=(2, 2), window_t=4, window_s=2, head_hidden=16),
    "lstm": dict(hidden_size=12, num_layers=2),
    "edge": dict(channels=8, dilations=(1, 2, 4), gru_hidden=10),
}
VARIANTS = [(name, causal) for name in sorted(SMALL) for causal in (True, False) if (name, causal) != ("edge", False)]
CAUSAL = [name for name, causal in VARIANTS if causal]


def small(name, causal=True, n_electrodes=16, **kw):
    torch.manual_seed(0)
    return get_decoder(name, n_electrodes=n_electrodes, causal=causal, **SMALL[name], **kw).eval()


def feats(batch, n_frames, n_electrodes, seed=1):
    return torch.randn(batch, n_frames, n_electrodes, generator=torch.Generator().manual_seed(seed))


def test_registry_lists_all_architectures():
    assert set(list_decoders()) >= {"resnet3d", "swin3d", "lstm", "edge"}
    with pytest.raises(ValueError, match="decoder name must be one of"):
        get_decoder("transformer")


@pytest.mark.parametrize("name,causal", VARIANTS)
def test_shape_contract_and_config_round_trip(name, causal, tmp_path):
    for n_el in (16, 13):  # square and non-square electrode counts
        model = small(name, causal, n_electrodes=n_el)
        y = model(feats(2, 21, n_el))
        assert y.shape == (2, 21, N_PARAMS) and y.dtype == torch.float32
        assert torch.isfinite(y).all()
    cfg = model.config
    assert cfg.n_electrodes == 13 and cfg.causal is causal
    again = type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    path = cfg.save(tmp_path / "cfg.json")
    assert load_config(path) == cfg
    # the saved model reloads to the same outputs
    save_decoder(model, tmp_path / "model")
    model2 = load_decoder(tmp_path / "model")
    x = feats(1, 9, 13)
    torch.testing.assert_close(model2(x), model(x))
    assert type(build_decoder(cfg)) is type(model)


def test_default_config_of_every_model_runs_at_128_electrodes():
    for name, causal in VARIANTS:
        model = get_decoder(name, n_electrodes=128, causal=causal).eval()
        with torch.no_grad():
            assert model(feats(1, 12, 128)).shape == (1, 12, N_PARAMS)


def test_grid_index_default_and_custom():
    assert default_grid_index(5) == ((0, 0), (0, 1), (0, 2), (1, 0), (1, 1))
    idx, shape = DecoderConfig(n_electrodes=128).grid()
    assert shape == (12, 12) and idx.shape == (128, 2)
    cells = [(r, c) for r in range(3) for c in range(4)][::-1][:10]
    model = small("resnet3d", n_electrodes=10, grid_index=np.array(cells))
    assert model.config.grid_index == tuple(cells) and model.grid.shape == (3, 4)
    x = feats(1, 3, 10)
    g = model.grid(x)
    for e, (r, c) in enumerate(cells):
        assert torch.equal(g[0, :, r, c], x[0, :, e])
    assert float(g[0, :, 0, 0].abs().sum()) == 0.0  # empty cell
    again = type(model.config).from_dict(json.loads(json.dumps(model.config.to_dict())))
    assert again == model.config
    with pytest.raises(ValueError, match="same cell"):
        DecoderConfig(n_electrodes=2, grid_index=((0, 0), (0, 0)))
    with pytest.raises(ValueError, match=r"shape \(3, 2\)"):
        DecoderConfig(n_electrodes=3, grid_index=((0, 0), (0, 1)))


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_step_equals_whole_equals_chunks(name):
    model = small(name)
    n = 40
    x = feats(2, n, 16)
    with torch.no_grad():
        whole = model(x)
        state = model.init_state(2)
        steps = []
        for t in range(n):
            y_t, state = model.step(x[:, t], state)
            steps.append(y_t)
        steps = torch.stack(steps, dim=1)
        rng = np.random.default_rng(0)
        cuts = np.cumsum(rng.integers(1, 9, size=n))
        chunks = np.split(np.arange(n), cuts[cuts < n])
        streamed = torch.cat(list(model.stream(x[:, c] for c in chunks)), dim=1)
    assert (steps - whole).abs().max() <= 1e-5
    assert (streamed - whole).abs().max() <= 1e-5
    assert len(state) == len(model.state_names())
    assert [tuple(s.shape) for s in state] == model.state_shapes(2)


@pytest.mark.parametrize("name", CAUSAL)
def test_perturbing_frame_t_changes_no_earlier_output(name):
    model = small(name)
    x = feats(1, 30, 16)
    with torch.no_grad():
        y0 = model(x)
        for t in (0, 7, 18, 29):
            x2 = x.clone()
            x2[:, t] += 4.0
            y = model(x2)
            assert torch.equal(y[:, :t], y0[:, :t]), f"output before frame {t} changed"
            assert not torch.equal(y[:, t:], y0[:, t:])


@pytest.mark.parametrize("name,causal", VARIANTS)
def test_measured_lookahead(name, causal):
    look = measure_lookahead(small(name, causal), n_frames=48)
    if causal:
        assert look == 0
    else:
        assert look > 0


def test_declared_lookahead_is_measured_and_streams():
    model = small("edge", lookahead_frames=2)
    assert measure_lookahead(model, n_frames=32) == 2
    x = feats(1, 25, 16)
    with torch.no_grad():
        whole = model(x)
        streamed = torch.cat(list(model.stream([x[:, :1], x[:, 1:2], x[:, 2:11], x[:, 11:]])), dim=1)
    assert streamed.shape == whole.shape == (1, 25, N_PARAMS)
    assert (streamed - whole).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="lookahead_frames must be 0 when causal=False"):
        make_config("lstm", causal=False, lookahead_frames=2)


def test_edge_macs_within_budget_of_causal_resnet3d():
    resnet = get_decoder("resnet3d", n_electrodes=64, causal=True)
    edge = get_decoder("edge", n_electrodes=64)
    m_res, m_edge = macs_per_frame(resnet, 64), macs_per_frame(edge, 64)
    assert m_res > 1e6
    assert m_edge * 50 <= m_res, (m_edge, m_res)
    # the edge count agrees with the analytic one
    c = edge.config
    analytic = (
        64 * c.channels * c.input_kernel
        + len(c.dilations) * c.channels**2 * c.kernel_size
        + 3 * c.gru_hidden * (c.channels + c.gru_hidden)
        + (c.gru_hidden + c.channels) * N_PARAMS
    )
    assert m_edge == analytic
    assert n_params(edge) < n_params(resnet)


def test_edge_uses_only_integer_friendly_modules():
    edge = get_decoder("edge", n_electrodes=16)
    allowed = (torch.nn.Conv1d, torch.nn.Linear, torch.nn.Dropout, torch.nn.ModuleList)
    for mod in edge.modules():
        if not list(mod.children()):
            assert isinstance(mod, allowed), type(mod)
    assert not any(isinstance(m, (torch.nn.GRU, torch.nn.LSTM, torch.nn.LayerNorm)) for m in edge.modules())


def test_step_module_matches_step():
    model = small("edge")
    sm = model.step_module()
    state = model.init_state(1)
    x = feats(1, 5, 16)
    s1, s2 = state, state
    with torch.no_grad():
        for t in range(5):
            y1, s1 = model.step(x[:, t], s1)
            y2, *s2 = sm(x[:, t], *s2)
            torch.testing.assert_close(y1, y2)


def test_bad_input_errors():
    model = small("edge")
    with pytest.raises(ValueError, match=r"20 electrodes.*n_electrodes=16"):
        model(feats(1, 5, 20))
    x = feats(1, 5, 16)
    x[0, 3, 2] = float("nan")
    with pytest.raises(ValueError, match=r"1 NaN/inf.*frame 3, electrode 2"):
        model(x)
    with pytest.raises(ValueError, match="NaN/inf"):
        model.step(x[:, 3], model.init_state(1))
    with pytest.raises(ValueError, match=r"12 electrodes.*n_electrodes=16"):
        model.step(torch.zeros(1, 12), model.init_state(1))
    with pytest.raises(ValueError, match=r"shape \(batch, n_frames, n_electrodes\)"):
        model(torch.zeros(5, 16))
    with pytest.raises(ValueError, match="state must hold"):
        model.step(torch.zeros(1, 16), ())
    with pytest.raises(RuntimeError, match="causal=False"):
        small("lstm", causal=False).init_state(1)
    with pytest.raises(ValueError, match="causal must be True"):
        get_decoder("edge", causal=False)
    with pytest.raises(ValueError, match="unknown config keys"):
        get_decoder("edge", n_electrodes=16, hidden=3)
    with pytest.raises(ValueError, match="n_electrodes must be an int >= 1"):
        get_decoder("lstm", n_electrodes=0)
    with pytest.raises(ValueError, match=r"n_electrodes=20 differs"):
        macs_per_frame(model, 20)


def _naive_window_attention(layer, x):
    """Independent reference of WindowAttention3d: loops over queries and their allowed keys (float64)."""
    _, n, h, w, c = x.shape
    heads, d = layer.heads, c // layer.heads
    (hp, wp), (wh, ww), (sh, sw) = layer.padded, layer.win, layer.shift
    kt = layer.kt
    q, k, v = layer.qkv(x)[0].split(c, dim=-1)
    n_rel = (2 * wh - 1) * (2 * ww - 1)
    out = torch.zeros_like(q)
    for t in range(n):
        first = t - kt + 1 if layer.causal else t - kt // 2
        for i in range(h):
            for j in range(w):
                ir, jr = (i - sh) % hp, (j - sw) % wp  # position after the cyclic shift
                keys, biases = [], []
                for tk in range(max(first, 0), min(first + kt, n)):
                    for i2 in range(h):
                        for j2 in range(w):
                            ir2, jr2 = (i2 - sh) % hp, (j2 - sw) % wp
                            same_window = ir // wh == ir2 // wh and jr // ww == jr2 // ww
                            no_wrap = ir - ir2 == i - i2 and jr - jr2 == j - j2
                            if same_window and no_wrap:
                                rel = (ir % wh - ir2 % wh + wh - 1) * (2 * ww - 1) + (jr % ww - jr2 % ww + ww - 1)
                                keys.append((tk, i2, j2))
                                biases.append((tk - first) * n_rel + rel)
                kk = torch.stack([k[a, b_, e] for a, b_, e in keys])  # (m, c)
                vv = torch.stack([v[a, b_, e] for a, b_, e in keys])
                for hd in range(heads):
                    sl = slice(hd * d, (hd + 1) * d)
                    sc = kk[:, sl] @ q[t, i, j, sl] * layer.scale + layer.bias_table[hd, biases]
                    out[t, i, j, sl] = torch.softmax(sc, 0) @ vv[:, sl]
    return layer.proj(out)[None]


@pytest.mark.parametrize("causal,n_frames", [(True, 6), (False, 6), (True, 9), (False, 9)])
def test_swin_window_attention_matches_naive_reference(causal, n_frames):
    from edgensd.decoders.swin3d import WindowAttention3d

    torch.manual_seed(0)
    layer = WindowAttention3d(8, 2, (5, 6), window_s=4, shift=True, window_t=3, causal=causal).double()
    assert layer.shift == (2, 2) and layer.padded == (8, 8)
    with torch.no_grad():
        layer.bias_table.normal_()
        x = torch.randn(1, n_frames, 5, 6, 8, dtype=torch.float64)
        got, _ = layer(x, None)
        want = _naive_window_attention(layer, x)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_edge_step_graph_exports_to_onnx_with_integer_friendly_ops(tmp_path):
    """The edge step traces to ONNX without recurrent, normalization or exp ops, and runs the same."""
    import warnings

    import onnx
    import onnxruntime as ort

    model = small("edge")
    state = model.init_state(1)
    names = [f"state{i}" for i in range(len(state))]
    path = tmp_path / "edge_step.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(
            model.step_module(),
            (torch.zeros(1, 16), *state),
            str(path),
            input_names=["x", *names],
            output_names=["y", *[f"{n}_out" for n in names]],
            dynamo=False,
            opset_version=17,
        )
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert not ops & {"GRU", "LSTM", "RNN", "LayerNormalization", "Softmax", "Exp", "Sigmoid", "Tanh"}, ops
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = feats(1, 10, 16)
    s_torch, s_onnx = state, [s.numpy() for s in state]
    for t in range(10):
        with torch.no_grad():
            y_t, s_torch = model.step(x[:, t], s_torch)
        y_o, *s_onnx = sess.run(None, {"x": x[:, t].numpy(), **dict(zip(names, s_onnx, strict=True))})
        np.testing.assert_allclose(y_o, y_t.numpy(), atol=1e-5)


@pytest.mark.parametrize("name", CAUSAL)
def test_default_size_causal_models_stream_exactly(name):
    """The default configs (8x8 grid: shifted Swin windows, dilated ResNet) also stream exactly."""
    torch.manual_seed(0)
    model = get_decoder(name, n_electrodes=64).eval()
    x = feats(1, 24, 64)
    with torch.no_grad():
        whole = model(x)
        state, steps = model.init_state(1), []
        for t in range(24):
            y_t, state = model.step(x[:, t], state)
            steps.append(y_t)
        chunks = torch.cat(list(model.stream([x[:, :5], x[:, 5:6], x[:, 6:17], x[:, 17:]])), dim=1)
    assert (torch.stack(steps, 1) - whole).abs().max() <= 1e-5
    assert (chunks - whole).abs().max() <= 1e-5


def _gru_loop(cell, x, h):
    """HardGRUCell's recurrence as the plain per-frame autograd loop (the reference for its fast path)."""
    hd = cell.hidden
    gx, outs = cell.w_x(x), []
    for t in range(x.shape[1]):
        gi, gh = gx[:, t], cell.w_h(h)
        r = torch.nn.functional.hardsigmoid(gi[:, :hd] + gh[:, :hd])
        z = torch.nn.functional.hardsigmoid(gi[:, hd : 2 * hd] + gh[:, hd : 2 * hd])
        n = torch.nn.functional.hardtanh(gi[:, 2 * hd :] + r * gh[:, 2 * hd :])
        h = n + z * (h - n)
        outs.append(h)
    return torch.stack(outs, dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_edge_gru_backprop_through_time_equals_autograd_loop(dtype):
    # The training path's hand-written BPTT against autograd through the per-frame loop: values and every
    # gradient (input, start state, both weight matrices and biases), with gates driven into their flat parts.
    from edgensd.decoders.edge import HardGRUCell

    torch.manual_seed(3)
    cell = HardGRUCell(6, 5).to(dtype)
    with torch.no_grad():
        cell.w_x.weight.mul_(4.0)  # drive the gates into their flat parts
    x = (3.0 * torch.randn(4, 37, 6, dtype=dtype)).requires_grad_()
    h0 = torch.randn(4, 5, dtype=dtype).clamp(-1, 1).requires_grad_()
    y_fast, h_last = cell(x, h0)
    y_ref = _gru_loop(cell, x, h0)
    g = torch.randn_like(y_ref)
    args = [x, h0, *cell.parameters()]
    g_fast = torch.autograd.grad((y_fast * g).sum() + h_last.sum(), args)
    g_ref = torch.autograd.grad((y_ref * g).sum() + y_ref[:, -1].sum(), args)
    # float64: PyTorch's own hard-sigmoid backward uses 1/6 in float32 (relative 3e-8), the reference's limit
    rel = 1e-5 if dtype == torch.float32 else 1e-7
    assert (y_fast - y_ref).abs().max().item() <= 10 * torch.finfo(dtype).eps
    for a, b in zip(g_fast, g_ref, strict=True):
        assert (a - b).abs().max().item() <= rel * b.abs().max().item()
    gates = cell.w_x(x)
    assert (gates[..., :10].abs() > 3).float().mean() > 0.05  # saturated r/z gates: the masks are exercised
    assert (gates[..., 10:].abs() > 1).float().mean() > 0.05  # and clipped candidates


def test_edge_gru_fast_path_only_when_training():
    from edgensd.decoders import edge as edge_mod

    cell = edge_mod.HardGRUCell(3, 4)
    x = torch.randn(2, 5, 3)
    calls = []
    real = edge_mod._HardGRUSequence.apply
    edge_mod._HardGRUSequence.apply = lambda *a: calls.append(1) or real(*a)
    try:
        with torch.no_grad():
            cell(x, None)  # inference and export: the plain loop
        cell(x[:, :1], None)  # one frame (streaming)
        assert calls == []
        y, _ = cell(x, None)
        assert calls == [1]
    finally:
        edge_mod._HardGRUSequence.apply = real
