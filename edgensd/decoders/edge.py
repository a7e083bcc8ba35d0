"""``edge``: a causal decoder for a microcontroller.

Per frame, the electrode vector goes through

1. an input temporal convolution mixing all electrodes (``n_electrodes → channels``, ``input_kernel`` taps),
2. a stack of dilated causal temporal convolutions with residual connections
   (``channels → channels``, ``kernel_size`` taps, dilations ``dilations``; receptive field
   ``1 + (input_kernel - 1) + (kernel_size - 1) * sum(dilations)`` frames, 33 = 264 ms by default),
3. a GRU cell written out from two ``Linear`` layers with hard-sigmoid gates and a hard-tanh candidate
   (no ``nn.GRU``: ONNX Runtime does not quantize the GRU op and LiteRT unrolls it), carrying context
   beyond the convolutions' receptive field,
4. a ``Linear`` read-out from the GRU state and the convolution features to the 18 raw parameters.

Only integer-friendly operations run at inference: Conv1d, Linear, ReLU, hard-sigmoid, hard-tanh, add,
sub, mul, concat and slicing (no normalization, exp or softmax). Every layer carries its own minimal
state: each convolution the last ``(k - 1) * dilation`` frames of its input, the GRU its hidden vector;
a step therefore costs exactly the per-frame MACs (about 38 k with 64 electrodes and the defaults, below
1/50 of causal ``resnet3d``).

The GRU cell (``h`` the state, ``x`` the convolution features of the frame)::

    r = hardsigmoid(W_r x + U_r h + b_r)        z = hardsigmoid(W_z x + U_z h + b_z)
    n = hardtanh(W_n x + b_n + r * (U_n h + c_n))
    h' = n + z * (h - n)                        # = (1 - z) * n + z * h
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgensd.decoders.base import (
    Decoder,
    DecoderConfig,
    StateBook,
    StatefulLayer,
    _check_int,
    _check_int_tuple,
)
from edgensd.decoders.layers import TemporalConv1d
from edgensd.decoders.registry import register
from edgensd.params import N_PARAMS


@dataclasses.dataclass
class EdgeConfig(DecoderConfig):
    """Config of :class:`EdgeDecoder` (shared fields: :class:`~edgensd.decoders.base.DecoderConfig`;
    ``causal`` must stay True, ``grid_index`` is ignored).

    Parameters
    ----------
    channels : int
        Width of the convolution stack.
    input_kernel : int
        Temporal taps of the input convolution.
    kernel_size : int
        Temporal taps of the dilated convolutions.
    dilations : tuple of int
        Dilation of each residual convolution (one layer per entry).
    gru_hidden : int
        Size of the GRU state.
    """

    channels: int = 32
    input_kernel: int = 3
    kernel_size: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    gru_hidden: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("channels", "input_kernel", "kernel_size", "gru_hidden"):
            setattr(self, name, _check_int(name, getattr(self, name), 1))
        self.dilations = tuple(_check_int_tuple("dilations", self.dilations, 1)) if self.dilations else ()


class HardGRUCell(StatefulLayer):
    """GRU cell from two Linear layers, hard-sigmoid gates and a hard-tanh candidate.

    Parameters
    ----------
    n_in : int
        Input features per frame.
    hidden : int
        State size.

    Notes
    -----
    ``forward(x (batch, n, n_in), h (batch, hidden)) -> (states (batch, n, hidden), h_last)``; loops over
    the frames (one iteration per step when streaming).
    """

    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.w_x = nn.Linear(n_in, 3 * hidden)
        self.w_h = nn.Linear(hidden, 3 * hidden)
        with torch.no_grad():  # start with gates half open and candidates in the linear range
            self.w_x.weight.mul_(0.5)
            self.w_h.weight.mul_(0.5)

    def state_shape(self) -> tuple[int, ...] | None:
        return (self.hidden,)

    def forward(self, x: Tensor, h: Tensor | None) -> tuple[Tensor, Tensor]:
        hd = self.hidden
        if h is None:
            h = x.new_zeros((x.shape[0], hd))
        gx = self.w_x(x)  # all frames at once
        outs = []
        for t in range(x.shape[1]):
            gi, gh = gx[:, t], self.w_h(h)
            r = F.hardsigmoid(gi[:, :hd] + gh[:, :hd])
            z = F.hardsigmoid(gi[:, hd : 2 * hd] + gh[:, hd : 2 * hd])
            n = F.hardtanh(gi[:, 2 * hd :] + r * gh[:, 2 * hd :])
            h = n + z * (h - n)
            outs.append(h)
        return torch.stack(outs, dim=1), h


@register("edge")
class EdgeDecoder(Decoder):
    """Microcontroller decoder (see the module docstring).

    Parameters
    ----------
    config : EdgeConfig
    """

    config_class = EdgeConfig
    causal_only = True

    def __init__(self, config: EdgeConfig) -> None:
        super().__init__(config)
        c = config
        self.inp = TemporalConv1d(c.n_electrodes, c.channels, c.input_kernel, causal=True)
        self.convs = nn.ModuleList(
            TemporalConv1d(c.channels, c.channels, c.kernel_size, dilation=d, causal=True) for d in c.dilations
        )
        self.drop = nn.Dropout(c.dropout)
        self.gru = HardGRUCell(c.channels, c.gru_hidden)
        self.out = nn.Linear(c.gru_hidden + c.channels, N_PARAMS)

    def _run(self, x: Tensor, book: StateBook) -> Tensor:
        h = F.relu(book(self.inp, self.drop(x).transpose(1, 2)))  # (b, channels, n)
        for conv in self.convs:
            h = F.relu(h + book(conv, h))
        feats = self.drop(h.transpose(1, 2))  # (b, n, channels)
        g = book(self.gru, feats)
        return self.out(torch.cat([g, feats], dim=-1))
