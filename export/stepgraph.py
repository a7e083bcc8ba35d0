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

__all__ = ["ExplicitLSTMStep", "step_example_inputs", "step_module", "step_state_names"]


class ExplicitLSTMStep(nn.Module):
    """The causal :class:`~edgensd.decoders.lstm.LSTMDecoder` step with its LSTM written as gate arithmetic.

    Same weights and same outputs to float rounding; dropout is inactive (eval mode). The state is split into
    one tensor per layer and kind, ``h0, c0, h1, c1, ...`` (each (1, hidden)), not the decoder's single
    (1, 2, num_layers, hidden) tensor: an int8 tensor has one scale, and a hidden state (bounded by ±1) sharing
    it with the cell states (±58 on a trained 3-layer model) would keep about 5 of its 256 levels.

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
        # Per layer: gates = W_ih x + W_hh h + b (PyTorch gate order i, f, g, o), as two products and an add.
        # Not one product of concat([x, h]): an int8 concat needs one scale for all its inputs, so the
        # quantizer would requantize the state outputs that feed the next layer (and LiteRT's signature then
        # names the tensor before the requantize).
        self.cells_ih, self.cells_hh = nn.ModuleList(), nn.ModuleList()
        for k in range(self.num_layers):
            w_ih, w_hh = getattr(lstm, f"weight_ih_l{k}"), getattr(lstm, f"weight_hh_l{k}")
            ih = nn.Linear(w_ih.shape[1], w_ih.shape[0])
            hh = nn.Linear(w_hh.shape[1], w_hh.shape[0], bias=False)
            with torch.no_grad():
                ih.weight.copy_(w_ih)
                ih.bias.copy_(getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}"))
                hh.weight.copy_(w_hh)
            self.cells_ih.append(ih)
            self.cells_hh.append(hh)
        self.out = decoder.out
        self.eval()

    def state_names(self) -> list[str]:
        """``rnn.h0, rnn.c0, rnn.h1, ...``: the hidden and cell state of each layer, in input order."""
        return [f"rnn.{kind}{k}" for k in range(self.num_layers) for kind in ("h", "c")]

    def state_shapes(self, batch: int = 1) -> list[tuple[int, ...]]:
        """(batch, hidden) for every state tensor."""
        return [(batch, self.hidden)] * (2 * self.num_layers)

    @staticmethod
    def split_state(state: Tensor) -> list[Tensor]:
        """The decoder's (batch, 2, num_layers, hidden) state as this graph's ``h0, c0, h1, ...`` tensors."""
        return [state[:, kind, k] for k in range(state.shape[2]) for kind in (0, 1)]

    def forward(self, x_t: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        if len(state) != 2 * self.num_layers:
            raise ValueError(f"expected {2 * self.num_layers} state tensors (h, c per layer), got {len(state)}")
        hd = self.hidden
        inp = x_t
        new_state = []
        for k, (ih, hh) in enumerate(zip(self.cells_ih, self.cells_hh, strict=True)):
            h, c = state[2 * k], state[2 * k + 1]
            g = ih(inp) + hh(h)
            i, f = torch.sigmoid(g[:, :hd]), torch.sigmoid(g[:, hd : 2 * hd])
            cand, o = torch.tanh(g[:, 2 * hd : 3 * hd]), torch.sigmoid(g[:, 3 * hd :])
            c = f * c + i * cand
            h = o * torch.tanh(c)
            new_state += [h, c]
            inp = h
        return (self.out(inp), *new_state)


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
        :func:`step_state_names` order with :func:`step_example_inputs` shapes (the decoder's own layout,
        except the ``lstm``'s, which is split per layer and kind: :class:`ExplicitLSTMStep`).
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


def _state_layout(decoder: Decoder) -> tuple[list[str], list[tuple[int, ...]]]:
    if isinstance(decoder, LSTMDecoder):
        n, hd = decoder.rnn.lstm.num_layers, decoder.rnn.lstm.hidden_size
        names = [f"rnn.{kind}{k}" for k in range(n) for kind in ("h", "c")]
        return names, [(1, hd)] * len(names)
    return decoder.state_names(), decoder.state_shapes(1)


def step_state_names(decoder: Decoder) -> list[str]:
    """Name of each state tensor of the decoder's step graph (:func:`step_module`), in input order."""
    return _state_layout(decoder)[0]


def step_example_inputs(decoder: Decoder) -> tuple[Tensor, ...]:
    """Zero example inputs ``(x_t, *state)`` of the step graph (batch 1), for tracing and conversion."""
    p = next(decoder.parameters())
    x = torch.zeros((1, decoder.config.n_electrodes), dtype=p.dtype, device=p.device)
    shapes = _state_layout(decoder)[1]
    return (x, *(torch.zeros(s, dtype=p.dtype, device=p.device) for s in shapes))
