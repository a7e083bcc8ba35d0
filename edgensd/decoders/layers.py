"""Building blocks shared by the decoders: streaming temporal convolutions, the grid map, the head.

Layouts: 1-D temporal layers take ``(batch, channels, n_frames)``; 3-D layers take
``(batch, channels, n_frames, rows, cols)``. A causal temporal convolution with kernel ``k`` and dilation
``d`` keeps the last ``(k - 1) * d`` frames of its input as state; concatenating them in front of the new
frames and convolving without temporal padding gives exactly the outputs of a left-zero-padded
convolution of the whole sequence. A non-causal one pads symmetrically and has no state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgensd.decoders.base import DecoderConfig, StateBook, StatefulLayer, _check_int
from edgensd.params import N_PARAMS


class TemporalConv1d(StatefulLayer):
    """1-D convolution over frames, causal (streaming) or symmetric.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int
        Taps over time.
    dilation : int
        Temporal dilation.
    stride : int
        Temporal stride (non-causal only; a strided causal layer would need future frames to realign).
    causal : bool
    bias : bool

    Notes
    -----
    ``forward(x (batch, in_channels, n), state) -> (y (batch, out_channels, n'), new_state)``; causal:
    ``n' = n`` and ``state`` has shape (batch, in_channels, (kernel_size - 1) * dilation).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        dilation: int = 1,
        stride: int = 1,
        causal: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        kernel_size = _check_int("kernel_size", kernel_size, 1)
        dilation = _check_int("dilation", dilation, 1)
        stride = _check_int("stride", stride, 1)
        if causal and stride != 1:
            raise ValueError(f"stride must be 1 for a causal temporal convolution, got {stride}")
        self.causal = causal
        self.in_channels = in_channels
        self.pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, bias=bias)

    def state_shape(self) -> tuple[int, ...] | None:
        return (self.in_channels, self.pad) if self.causal and self.pad else None

    def forward(self, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if not self.causal:
            left = self.pad // 2
            return self.conv(F.pad(x, (left, self.pad - left))), None
        if state is None:
            state = x.new_zeros((x.shape[0], self.in_channels, self.pad))
        xx = torch.cat([state, x], dim=2) if self.pad else x
        if x.shape[2] == 1:  # one frame (a step): the convolution is a Linear over the taps, much cheaper
            y = self._one_frame(xx)
        else:
            y = self.conv(xx)
        return y, (xx[:, :, -self.pad :] if self.pad else None)

    def _one_frame(self, xx: Tensor) -> Tensor:
        w = self.conv.weight
        taps = xx[:, :, :: self.conv.dilation[0]]  # (batch, in_channels, kernel_size)
        return F.linear(taps.reshape(xx.shape[0], -1), w.reshape(w.shape[0], -1), self.conv.bias).unsqueeze(2)


class TemporalConv3d(StatefulLayer):
    """3-D convolution over (frames, rows, cols): causal or symmetric in time, 'same' padding in space.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_t : int
        Taps over time.
    kernel_s : int
        Taps over rows and cols (odd).
    in_hw : (rows, cols)
        Spatial size of the input (fixes the state shape).
    dilation_t : int
        Temporal dilation.
    stride_s : int
        Spatial stride.
    stride_t : int
        Temporal stride (non-causal only).
    causal : bool
    bias : bool

    Notes
    -----
    Causal state: (batch, in_channels, (kernel_t - 1) * dilation_t, rows, cols).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_t: int,
        kernel_s: int,
        in_hw: tuple[int, int],
        *,
        dilation_t: int = 1,
        stride_s: int = 1,
        stride_t: int = 1,
        causal: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        kernel_t = _check_int("kernel_t", kernel_t, 1)
        kernel_s = _check_int("kernel_s", kernel_s, 1)
        if kernel_s % 2 == 0:
            raise ValueError(f"kernel_s must be odd, got {kernel_s}")
        if causal and stride_t != 1:
            raise ValueError(f"stride_t must be 1 for a causal temporal convolution, got {stride_t}")
        self.causal = causal
        self.in_channels = in_channels
        self.in_hw = (int(in_hw[0]), int(in_hw[1]))
        self.pad = (kernel_t - 1) * dilation_t
        self.conv = nn.Conv3d(
            in_channels,
            out_channels,
            (kernel_t, kernel_s, kernel_s),
            stride=(stride_t, stride_s, stride_s),
            dilation=(dilation_t, 1, 1),
            padding=(0, kernel_s // 2, kernel_s // 2),
            bias=bias,
        )
        self.out_hw = tuple((s + 2 * (kernel_s // 2) - kernel_s) // stride_s + 1 for s in self.in_hw)

    def state_shape(self) -> tuple[int, ...] | None:
        return (self.in_channels, self.pad, *self.in_hw) if self.causal and self.pad else None

    def forward(self, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if not self.causal:
            left = self.pad // 2
            return self.conv(F.pad(x, (0, 0, 0, 0, left, self.pad - left))), None
        if not self.pad:
            return self.conv(x), None
        if state is None:
            state = x.new_zeros((x.shape[0], self.in_channels, self.pad, *self.in_hw))
        xx = torch.cat([state, x], dim=2)
        return self.conv(xx), xx[:, :, -self.pad :]


class GridMap(nn.Module):
    """Place electrodes on their grid cells (a gather; empty cells are zero).

    Parameters
    ----------
    config : DecoderConfig
        Supplies ``n_electrodes`` and the grid (:meth:`DecoderConfig.grid`).

    Notes
    -----
    ``forward(x (batch, n, n_electrodes)) -> (batch, n, rows, cols)``.
    """

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        index, (rows, cols) = config.grid()
        n = config.n_electrodes
        src = torch.full((rows * cols,), n, dtype=torch.long)  # n → the appended zero column
        src[torch.as_tensor(index[:, 0] * cols + index[:, 1])] = torch.arange(n)
        self.register_buffer("src", src, persistent=False)
        self.shape = (rows, cols)

    def forward(self, x: Tensor) -> Tensor:
        xx = F.pad(x, (0, 1))
        return xx.index_select(-1, self.src).reshape(*x.shape[:-1], *self.shape)


class TemporalHead(nn.Module):
    """Temporal convolution then a channel MLP to the 18 raw parameters (the paper's decoder head).

    Parameters
    ----------
    in_features : int
        Features per frame.
    hidden : int
        Width of the temporal convolution and the MLP.
    kernel_t : int
        Taps of the temporal convolution.
    causal : bool
    dropout : float

    Notes
    -----
    ``forward(x (batch, in_features, n), book) -> (batch, n, 18)``.
    """

    def __init__(self, in_features: int, hidden: int, kernel_t: int, causal: bool, dropout: float) -> None:
        super().__init__()
        self.conv = TemporalConv1d(in_features, hidden, kernel_t, causal=causal)
        self.drop = nn.Dropout(dropout)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, N_PARAMS)

    def forward(self, x: Tensor, book: StateBook) -> Tensor:
        h = F.relu(book(self.conv, x)).transpose(1, 2)
        h = F.relu(self.fc1(self.drop(h)))
        return self.fc2(self.drop(h))
