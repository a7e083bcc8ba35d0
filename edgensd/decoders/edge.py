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
        if torch.is_grad_enabled() and x.shape[1] > 1 and not _tracing_or_scripting():
            # Training: the recurrence in one autograd node with hand-written backpropagation through time
            # (same values; a few times less autograd overhead per frame than the loop below).
            outs = _HardGRUSequence.apply(gx, h, self.w_h.weight, self.w_h.bias)
            return outs, outs[:, -1]
        outs = []
        for t in range(x.shape[1]):
            gi, gh = gx[:, t], self.w_h(h)
            r = F.hardsigmoid(gi[:, :hd] + gh[:, :hd])
            z = F.hardsigmoid(gi[:, hd : 2 * hd] + gh[:, hd : 2 * hd])
            n = F.hardtanh(gi[:, 2 * hd :] + r * gh[:, 2 * hd :])
            h = n + z * (h - n)
            outs.append(h)
        return torch.stack(outs, dim=1), h


def _tracing_or_scripting() -> bool:
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()


class _HardGRUSequence(torch.autograd.Function):
    """:class:`HardGRUCell`'s recurrence over a sequence, with backpropagation through time written out.

    ``forward(gx (b, n, 3h), h0 (b, h), w_h (3h, h), b_h (3h,)) -> states (b, n, h)``; ``gx`` is the input
    projection of every frame (r, z, n blocks). The gradients follow PyTorch's conventions at the kinks
    (hard-sigmoid passes the gradient for -3 < a < 3, hard-tanh for -1 < a < 1).
    """

    @staticmethod
    def forward(ctx, gx: Tensor, h0: Tensor, w_h: Tensor, b_h: Tensor) -> Tensor:
        b, n, three_h = gx.shape
        hd = three_h // 3
        gx_t = gx.transpose(0, 1).contiguous()  # time-major buffers: every per-frame slice is contiguous
        gh = gx.new_empty((n, b, three_h))  # U h + c per frame
        a = gx_t  # pre-activations of r, z, n, written over the input projection (a copy of gx)
        outs = gx.new_empty((n, b, hd))
        h = h0
        w_t = w_h.t()
        for t in range(n):
            torch.addmm(b_h, h, w_t, out=gh[t])
            at = a[t]
            at[:, : 2 * hd] += gh[t, :, : 2 * hd]
            rz = F.hardsigmoid(at[:, : 2 * hd])
            at[:, 2 * hd :].addcmul_(rz[:, :hd], gh[t, :, 2 * hd :])
            cand = F.hardtanh(at[:, 2 * hd :])
            h = torch.addcmul(cand, rz[:, hd:], h - cand, out=outs[t])
        ctx.save_for_backward(h0, w_h, outs, gh, a)
        return outs.transpose(0, 1)

    @staticmethod
    def backward(ctx, d_outs: Tensor):
        h0, w_h, outs, gh, a = ctx.saved_tensors
        n, b, hd = outs.shape
        rz = F.hardsigmoid(a[..., : 2 * hd])
        r, z = rz[..., :hd], rz[..., hd:]
        cand = F.hardtanh(a[..., 2 * hd :])
        in_rz = (a[..., : 2 * hd] > -3.0) & (a[..., : 2 * hd] < 3.0)
        in_n = (a[..., 2 * hd :] > -1.0) & (a[..., 2 * hd :] < 1.0)
        h_prev = torch.cat([h0[None], outs[:-1]], dim=0)
        # Per-frame factors that do not depend on the incoming gradient, computed for all frames at once.
        f_n = (1.0 - z) * in_n  # d a_n / d h'
        f_z = (h_prev - cand) * in_rz[..., hd:] / 6.0  # d a_z / d h'
        f_r = gh[..., 2 * hd :] * in_rz[..., :hd] / 6.0  # d a_r / d a_n
        d_outs_t = d_outs.transpose(0, 1)
        d_gh = torch.empty_like(gh)  # gradient w.r.t. U h + c (r, z blocks = those w.r.t. a_r, a_z)
        d_an = torch.empty_like(outs)  # gradient w.r.t. a_n
        dh = torch.zeros_like(h0)
        for t in range(n - 1, -1, -1):
            dh = dh + d_outs_t[t]
            torch.mul(dh, f_n[t], out=d_an[t])
            torch.mul(dh, f_z[t], out=d_gh[t, :, hd : 2 * hd])
            torch.mul(d_an[t], f_r[t], out=d_gh[t, :, :hd])
            torch.mul(d_an[t], r[t], out=d_gh[t, :, 2 * hd :])
            dh = torch.addmm(dh * z[t], d_gh[t], w_h)
        flat_gh = d_gh.reshape(n * b, 3 * hd)
        d_w = flat_gh.t() @ h_prev.reshape(n * b, hd)
        d_gx = torch.cat([d_gh[..., : 2 * hd], d_an], dim=-1).transpose(0, 1)
        return d_gx, dh, d_w, flat_gh.sum(0)


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
