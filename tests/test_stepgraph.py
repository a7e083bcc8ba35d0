"""The export step graphs equal the decoders' whole-sequence forward when streamed frame by frame."""

import pytest
import torch
from edgensd.export.stepgraph import ExplicitLSTMStep, step_example_inputs, step_module

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


def test_non_causal_decoder_is_refused():
    dec = get_decoder("lstm", n_electrodes=4, causal=False)
    with pytest.raises(ValueError, match="non-causal"):
        step_module(dec)
