"""Step graphs for export: one frame and the state in, one frame of raw parameters and the new state out.

:func:`step_module` returns, for any causal decoder, a plain ``nn.Module`` with
``forward(x_t (1, n_electrodes), *state) -> (y_t (1, 18), *new_state)`` built from explicit cells, so the
converters see only ops they can quantize: ONNX Runtime does not quantize the ONNX ``LSTM``/``GRU`` ops and
LiteRT unrolls a recurrent op to a fixed length (DESIGN.md, "Known traps"). The ``lstm`` decoder's
``nn.LSTM`` is rewritten as gate arithmetic on its own weights; the other decoders already step through
plain layers (:class:`edgensd.decoders.base.StepModule`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgensd.decoders.base import Decoder, StepModule
from edgensd.decoders.lstm import LSTMDecoder

__all__ = ["ExplicitLSTMStep", "step_module", "step_example_inputs"]


class ExplicitLSTMStep(nn.Module):
    """The causal :class:`~edgensd.decoders.lstm.LSTMDecoder` step with its LSTM written as gate arithmetic.

    Same weights, same state layout as the decoder (one tensor (1, 2, num_layers, hidden): hidden states,
    then cell states), same outputs to float rounding; dropout is inactive (eval mode).

    Parameters
    ----------
    decoder : LSTMDecoder
        A causal LSTM decoder (its weights are shared, not copied).
    """

    def __init__(self, decoder: LSTMDecoder) -> None:
        super().__init__()
        if not decoder.config.causal:
            raise ValueError("decoder must be causal to export a step graph (config.causal=True)")
        lstm = decoder.rnn.lstm
        self.num_layers, self.hidden = lstm.num_layers, lstm.hidden_size
        # Input and recurrent products fused per layer: gates = [x, h] @ W.T + b, PyTorch order i, f, g, o.
        self.cells = nn.ModuleList()
        for k in range(self.num_layers):
            w = torch.cat([getattr(lstm, f"weight_ih_l{k}"), getattr(lstm, f"weight_hh_l{k}")], dim=1)
            b = getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}")
            cell = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                cell.weight.copy_(w)
                cell.bias.copy_(b)
            self.cells.append(cell)
        self.out = decoder.out
        self.eval()

    def forward(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        hd = self.hidden
        inp = x_t
        hs, cs = [], []
        for k, cell in enumerate(self.cells):
            h, c = state[:, 0, k], state[:, 1, k]
            g = cell(torch.cat([inp, h], dim=1))
            i, f = torch.sigmoid(g[:, :hd]), torch.sigmoid(g[:, hd : 2 * hd])
            cand, o = torch.tanh(g[:, 2 * hd : 3 * hd]), torch.sigmoid(g[:, 3 * hd :])
            c = f * c + i * cand
            h = o * torch.tanh(c)
            hs.append(h)
            cs.append(c)
            inp = h
        new_state = torch.stack([torch.stack(hs, dim=1), torch.stack(cs, dim=1)], dim=1)
        return self.out(inp), new_state


def step_module(decoder: Decoder) -> nn.Module:
    """The export step graph of a causal decoder, in eval mode.

    Parameters
    ----------
    decoder : Decoder
        A causal decoder (``decoder.config.causal`` True); a non-causal one cannot stream and is refused.

    Returns
    -------
    nn.Module
        ``forward(x_t (1, n_electrodes), *state) -> (y_t (1, 18), *new_state)``, states in
        :meth:`Decoder.state_names` order with :meth:`Decoder.state_shapes` shapes.
    """
    if not decoder.config.causal:
        raise ValueError(
            f"decoder {decoder.arch!r} is non-causal (config.causal=False): it needs future frames and cannot "
            "run as a streaming step graph; train it with --causal to export it"
        )
    decoder.eval()
    if isinstance(decoder, LSTMDecoder):
        return ExplicitLSTMStep(decoder)
    return StepModule(decoder).eval()


def step_example_inputs(decoder: Decoder) -> tuple[Tensor, ...]:
    """Zero example inputs ``(x_t, *state)`` of the step graph (batch 1), for tracing and conversion."""
    p = next(decoder.parameters())
    x = torch.zeros((1, decoder.config.n_electrodes), dtype=p.dtype, device=p.device)
    return (x, *decoder.init_state(1))
