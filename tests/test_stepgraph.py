"""The export step graphs equal the decoders' whole-sequence forward when streamed frame by frame."""

import pytest
import torch
from edgensd.export.stepgraph import ExplicitLSTMStep, step_example_inputs, step_module, step_state_names

from edgensd.decoders import get_decoder

CASES = [
    ("edge", {}),
    ("lstm", {"num_layers": 2, "hidden_size": 24}),
    ("resnet3d", {}),
    ("swin3d", {}),
]


@pytest.mark.parametrize(("arch", "kw"), CASES, ids=[c[0] for c in CASES])
def test_step_graph_streams_like_forward(arch, kw):
    torch.manual_seed(0)
    dec = get_decoder(arch, n_electrodes=16, causal=True, **kw).eval()
    x = torch.randn(1, 40, 16)
    with torch.no_grad():
        ref = dec(x)[0]
        step = step_module(dec)
        _, *state = step_example_inputs(dec)
        out = []
        for t in range(x.shape[1]):
            y, *state = step(x[:, t], *state)
            out.append(y[0])
    assert (torch.stack(out) - ref).abs().max().item() < 1e-5
    if arch == "lstm":
        assert isinstance(step, ExplicitLSTMStep)
        assert not any(isinstance(m, torch.nn.LSTM) for m in step.modules())


def test_lstm_step_state_is_split_per_layer_and_kind():
    # One int8 scale per tensor: h (bounded by 1) must not share a tensor with c (unbounded).
    torch.manual_seed(1)
    dec = get_decoder("lstm", n_electrodes=8, causal=True, num_layers=3, hidden_size=12).eval()
    step = step_module(dec)
    _, *state = step_example_inputs(dec)
    assert step_state_names(dec) == step.state_names() == ["rnn.h0", "rnn.c0", "rnn.h1", "rnn.c1", "rnn.h2", "rnn.c2"]
    assert [tuple(s.shape) for s in state] == step.state_shapes() == [(1, 12)] * 6
    x = torch.randn(1, 25, 8)
    with torch.no_grad():
        dstate = dec.init_state(1)
        for t in range(x.shape[1]):
            _, dstate = dec.step(x[:, t], dstate)
            _, *state = step(x[:, t], *state)
    # the decoder's (1, 2, layers, hidden) state, split, is the step graph's state
    for a, b in zip(ExplicitLSTMStep.split_state(dstate[0]), state, strict=True):
        assert (a - b).abs().max().item() < 1e-5
    assert state[1].abs().max() > 0 and state[0].abs().max() <= 1.0
    with pytest.raises(ValueError, match="expected 6 state tensors"):
        step(x[:, 0], *state[:4])


def test_non_causal_decoder_is_refused():
    dec = get_decoder("lstm", n_electrodes=4, causal=False)
    with pytest.raises(ValueError, match="non-causal"):
        step_module(dec)
