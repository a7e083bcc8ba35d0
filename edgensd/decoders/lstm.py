"""LSTM decoder, after Chen et al. 2024: stacked LSTMs over the electrode vector of each frame.

Causal: unidirectional LSTMs whose hidden and cell states are the streaming state. Non-causal:
bidirectional LSTMs (unbounded look-ahead: every output depends on the whole sequence).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from edgensd.decoders.base import Decoder, DecoderConfig, StateBook, StatefulLayer, _check_int
from edgensd.decoders.registry import register
from edgensd.params import N_PARAMS


@dataclasses.dataclass
class LSTMConfig(DecoderConfig):
    """Config of :class:`LSTMDecoder` (shared fields: :class:`~edgensd.decoders.base.DecoderConfig`).

    Parameters
    ----------
    hidden_size : int
        Hidden units per LSTM layer and direction.
    num_layers : int
        Stacked LSTM layers.
    """

    hidden_size: int = 128
    num_layers: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        self.hidden_size = _check_int("hidden_size", self.hidden_size, 1)
        self.num_layers = _check_int("num_layers", self.num_layers, 1)


class StatefulLSTM(StatefulLayer):
    """``nn.LSTM`` (batch first) with its (h, c) as one state tensor.

    Notes
    -----
    ``forward(x (batch, n, n_in), state) -> (y (batch, n, hidden * directions), new_state)``; causal
    state shape (batch, 2, num_layers, hidden): ``state[:, 0]`` the hidden, ``state[:, 1]`` the cell states.
    """

    def __init__(self, n_in: int, hidden: int, num_layers: int, dropout: float, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.hidden, self.num_layers = hidden, num_layers
        self.lstm = nn.LSTM(
            n_in,
            hidden,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=not causal,
        )

    def state_shape(self) -> tuple[int, ...] | None:
        return (2, self.num_layers, self.hidden) if self.causal else None

    def forward(self, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if not self.causal:
            return self.lstm(x)[0], None
        if state is None:
            state = x.new_zeros((x.shape[0], 2, self.num_layers, self.hidden))
        h0 = state[:, 0].transpose(0, 1).contiguous()
        c0 = state[:, 1].transpose(0, 1).contiguous()
        y, (h, c) = self.lstm(x, (h0, c0))
        return y, torch.stack([h, c], dim=0).permute(2, 0, 1, 3)


@register("lstm")
class LSTMDecoder(Decoder):
    """LSTM ECoG decoder (see the module docstring).

    Parameters
    ----------
    config : LSTMConfig
    """

    config_class = LSTMConfig

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__(config)
        c = config
        self.drop = nn.Dropout(c.dropout)
        self.rnn = StatefulLSTM(c.n_electrodes, c.hidden_size, c.num_layers, c.dropout, c.causal)
        self.out = nn.Linear(c.hidden_size * (1 if c.causal else 2), N_PARAMS)

    def _run(self, x: Tensor, book: StateBook) -> Tensor:
        return self.out(self.drop(book(self.rnn, self.drop(x))))
