"""3D Swin transformer decoder over (time, grid rows, grid cols), after Chen et al. 2024.

Tokens are grid cells (a temporal convolution embeds each cell's signal), processed by stages of Swin
blocks: window self-attention then an MLP, each with a pre-LayerNorm (over channels, per token — never
over time) and a residual. Between stages a patch merging halves the grid (2x2 cells → one token, per
frame). A temporal convolution and a channel MLP map the flattened last stage to the 18 raw parameters.

Attention windows (``window_s`` x ``window_s`` cells in space; in time):

* in space, windows alternate between the regular partition and one shifted by half a window (cyclic
  shift with the usual mask), as in Swin; a grid no larger than a window is one window, unshifted;
* in time, every token attends to a sliding window of frames: causal (``causal=True``) the newest
  ``window_t`` frames up to and including its own (past and present only, as the paper's causal Swin);
  non-causal, ``window_t // 2`` frames on each side. Relative position biases cover (time offset, row
  offset, col offset). Keys before the start of the stream (and padded grid cells) are masked.

Causal receptive field: ``1 + (embed_kernel_t - 1) + sum(depths) * (window_t - 1) + (head_kernel_t - 1)``
frames (24 frames = 192 ms by default).

Causal streaming: each attention layer keeps the keys and values of its last ``window_t - 1`` frames (plus
a validity flag) as state, and the embedding and head convolutions keep ring buffers, so a step computes
one frame of every layer — the step's cost equals the per-frame cost of the whole-sequence model. The
reference's causal Swin depended on the last frame of its window through temporal patch merging and
upsampling; here no layer pools or strides over time.
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
from edgensd.decoders.layers import GridMap, TemporalConv3d, TemporalHead
from edgensd.decoders.registry import register

_MASKED = -1.0e4  # additive score of masked keys (finite so that all-masked rows stay finite)


@dataclasses.dataclass
class Swin3dConfig(DecoderConfig):
    """Config of :class:`Swin3d` (shared fields: :class:`~edgensd.decoders.base.DecoderConfig`).

    Parameters
    ----------
    embed_dim : int
        Channels of the first stage (doubled by each patch merging).
    depths : tuple of int
        Swin blocks per stage.
    num_heads : tuple of int
        Attention heads per stage (each stage's width must divide by it).
    window_t : int
        Frames per temporal attention window (causal: the newest ``window_t``; non-causal:
        ``2 * (window_t // 2) + 1`` centred frames).
    window_s : int
        Grid cells per side of a spatial window.
    mlp_ratio : float
        Hidden width of the block MLP relative to the stage width.
    embed_kernel_t : int
        Temporal taps of the token embedding convolution.
    head_hidden : int
        Width of the head.
    head_kernel_t : int
        Temporal taps of the head convolution.
    """

    embed_dim: int = 16
    depths: tuple[int, ...] = (2, 2, 2)
    num_heads: tuple[int, ...] = (1, 2, 4)
    window_t: int = 4
    window_s: int = 4
    mlp_ratio: float = 2.0
    embed_kernel_t: int = 4
    head_hidden: int = 128
    head_kernel_t: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        self.depths = _check_int_tuple("depths", self.depths, 1)
        self.num_heads = _check_int_tuple("num_heads", self.num_heads, 1, length=len(self.depths))
        for name in ("embed_dim", "window_t", "window_s", "embed_kernel_t", "head_hidden", "head_kernel_t"):
            setattr(self, name, _check_int(name, getattr(self, name), 1))
        for i, h in enumerate(self.num_heads):
            if (self.embed_dim * 2**i) % h:
                raise ValueError(
                    f"num_heads[{i}]={h} must divide the stage width embed_dim * 2**{i} = {self.embed_dim * 2**i}"
                )
        if isinstance(self.mlp_ratio, bool) or not isinstance(self.mlp_ratio, (int, float)) or self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be a positive number, got {self.mlp_ratio!r}")
        self.mlp_ratio = float(self.mlp_ratio)


class WindowAttention3d(StatefulLayer):
    """Multi-head attention in (sliding temporal) x (spatial, optionally shifted) windows.

    Parameters
    ----------
    dim : int
        Token channels.
    heads : int
    hw : (rows, cols)
        Token grid size.
    window_s : int
        Spatial window side (clipped to the grid).
    shift : bool
        Use the half-window-shifted partition.
    window_t : int
        Temporal window (see :class:`Swin3dConfig`).
    causal : bool

    Notes
    -----
    ``forward(x (batch, n, rows, cols, dim), state) -> (y (batch, n, rows, cols, dim), new_state)``;
    causal state: keys, values and a validity flag of the last ``window_t - 1`` frames,
    shape (batch, window_t - 1, rows, cols, 2 * dim + 1).
    """

    def __init__(self, dim, heads, hw, window_s, shift, window_t, causal):
        super().__init__()
        self.dim, self.heads, self.causal = dim, heads, causal
        self.hw = (int(hw[0]), int(hw[1]))
        self.win = (min(window_s, self.hw[0]), min(window_s, self.hw[1]))
        self.shift = tuple(w // 2 if shift and s > w else 0 for s, w in zip(self.hw, self.win, strict=True))
        self.padded = tuple(-(-s // w) * w for s, w in zip(self.hw, self.win, strict=True))
        self.kt = window_t if causal else 2 * (window_t // 2) + 1
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        wh, ww = self.win
        n_rel = (2 * wh - 1) * (2 * ww - 1)
        self.bias_table = nn.Parameter(torch.zeros(heads, self.kt * n_rel))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        # relative-position index of (query cell s, key (tau, cell s'))
        rows = torch.arange(wh).repeat_interleave(ww)
        cols = torch.arange(ww).repeat(wh)
        rel = (rows[:, None] - rows[None, :] + wh - 1) * (2 * ww - 1) + (cols[:, None] - cols[None, :] + ww - 1)
        tau = torch.arange(self.kt).repeat_interleave(wh * ww)
        index = tau[None, :] * n_rel + rel.repeat(1, self.kt)
        self.register_buffer("rel_index", index, persistent=False)
        if any(self.shift):
            self.register_buffer("shift_mask", self._shift_mask(), persistent=False)
        else:
            self.shift_mask = None

    def _shift_mask(self) -> Tensor:
        (hp, wp), (wh, ww), (sh, sw) = self.padded, self.win, self.shift
        labels = torch.zeros(hp, wp, dtype=torch.long)
        hs = [(0, hp - wh), (hp - wh, hp - sh), (hp - sh, hp)] if sh else [(0, hp)]
        ws = [(0, wp - ww), (wp - ww, wp - sw), (wp - sw, wp)] if sw else [(0, wp)]
        k = 0
        for a, b in hs:
            for c, d in ws:
                labels[a:b, c:d] = k
                k += 1
        win = labels.reshape(hp // wh, wh, wp // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)
        same = win[:, :, None] == win[:, None, :]
        mask = torch.where(same, 0.0, _MASKED)
        return mask.repeat(1, 1, self.kt)  # (n_windows, S, kt * S), keys ordered (tau, cell)

    def state_shape(self) -> tuple[int, ...] | None:
        if not self.causal or self.kt == 1:
            return None
        return (self.kt - 1, *self.hw, 2 * self.dim + 1)

    def forward(self, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor | None]:
        b, n, h, w, c = x.shape
        heads, d = self.heads, c // self.heads
        (hp, wp), (wh, ww), (sh, sw) = self.padded, self.win, self.shift
        nwin, s, kt = (hp // wh) * (wp // ww), wh * ww, self.kt
        qkv = self.qkv(x)
        q = qkv[..., :c] * self.scale
        kv = torch.cat([qkv[..., c:], x.new_ones(b, n, h, w, 1)], dim=-1)
        new_state = None
        if self.causal:
            if kt > 1:
                if state is None:
                    state = x.new_zeros((b, kt - 1, h, w, 2 * c + 1))
                kv = torch.cat([state, kv], dim=1)
                new_state = kv[:, -(kt - 1) :]
        else:
            half = kt // 2
            kv = F.pad(kv, (0, 0, 0, 0, 0, 0, half, half))
        if hp > h or wp > w:
            q = F.pad(q, (0, 0, 0, wp - w, 0, hp - h))
            kv = F.pad(kv, (0, 0, 0, wp - w, 0, hp - h))
        if sh or sw:
            q = torch.roll(q, (-sh, -sw), (2, 3))
            kv = torch.roll(kv, (-sh, -sw), (2, 3))
        # window partition, time-major so that every temporal offset is a contiguous slice
        nt = kv.shape[1]
        q = q.reshape(b, n, hp // wh, wh, wp // ww, ww, heads, d).permute(1, 0, 2, 4, 6, 3, 5, 7)
        q = q.reshape(n, b, nwin, heads, s, d)
        kv = kv.reshape(b, nt, hp // wh, wh, wp // ww, ww, 2 * c + 1).permute(1, 0, 2, 4, 6, 3, 5)
        kv = kv.reshape(nt, b, nwin, 2 * c + 1, s)
        k = kv[:, :, :, :c].reshape(nt, b, nwin, heads, d, s).contiguous()  # keys, transposed
        v = kv[:, :, :, c : 2 * c].reshape(nt, b, nwin, heads, d, s).transpose(-1, -2).contiguous()
        valid = kv[:, :, :, 2 * c]  # (nt, b, nwin, s)
        bias = self.bias_table[:, self.rel_index]  # (heads, s, kt*s)
        if self.shift_mask is not None:
            bias = bias + self.shift_mask[:, None]  # (nwin, heads, s, kt*s)
        # gather each query frame's kt key frames once (a kt-fold copy of the keys: one product instead of
        # kt small ones, about 1.6x faster to train on CPU than per-offset slices)
        key_ok = valid.unfold(0, kt, 1).transpose(-1, -2).reshape(n, b, nwin, 1, 1, kt * s)
        k = k.unfold(0, kt, 1).transpose(-1, -2).reshape(n, b, nwin, heads, d, kt * s)
        v = v.unfold(0, kt, 1).permute(0, 1, 2, 3, 6, 4, 5).reshape(n, b, nwin, heads, kt * s, d)
        out = torch.softmax(q @ k + bias + (1.0 - key_ok) * _MASKED, dim=-1) @ v
        # out: (n, b, nwin, heads, s, d)
        out = out.permute(1, 0, 2, 3, 4, 5)
        out = out.reshape(b, n, hp // wh, wp // ww, heads, wh, ww, d).permute(0, 1, 2, 5, 3, 6, 4, 7)
        out = out.reshape(b, n, hp, wp, c)
        if sh or sw:
            out = torch.roll(out, (sh, sw), (2, 3))
        return self.proj(out[:, :, :h, :w]), new_state


class _Block(nn.Module):
    def __init__(self, dim, heads, hw, window_s, shift, window_t, causal, mlp_ratio, dropout):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3d(dim, heads, hw, window_s, shift, window_t, causal)
        self.norm2 = nn.LayerNorm(dim)
        hidden = max(1, round(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, book: StateBook) -> Tensor:
        x = x + self.drop(book(self.attn, self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class _PatchMerging(nn.Module):
    """2x2 neighbouring cells → one token of twice the width (per frame)."""

    def __init__(self, dim, hw):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduce = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.out_hw = (-(-hw[0] // 2), -(-hw[1] // 2))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2], x.shape[3]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], -1)
        return self.reduce(self.norm(x))


@register("swin3d")
class Swin3d(Decoder):
    """3D Swin transformer ECoG decoder (see the module docstring).

    Parameters
    ----------
    config : Swin3dConfig
    """

    config_class = Swin3dConfig

    def __init__(self, config: Swin3dConfig) -> None:
        super().__init__(config)
        c = config
        self.grid = GridMap(c)
        hw = self.grid.shape
        dim = c.embed_dim
        self.embed = TemporalConv3d(1, dim, c.embed_kernel_t, 1, hw, causal=c.causal)
        self.embed_norm = nn.LayerNorm(dim)
        stages, merges = [], []
        for i, (depth, heads) in enumerate(zip(c.depths, c.num_heads, strict=True)):
            blocks = [
                _Block(dim, heads, hw, c.window_s, j % 2 == 1, c.window_t, c.causal, c.mlp_ratio, c.dropout)
                for j in range(depth)
            ]
            stages.append(nn.ModuleList(blocks))
            if i < len(c.depths) - 1:
                m = _PatchMerging(dim, hw)
                merges.append(m)
                hw, dim = m.out_hw, 2 * dim
        self.stages = nn.ModuleList(stages)
        self.merges = nn.ModuleList(merges)
        self.norm = nn.LayerNorm(dim)
        self.out_hw = hw
        self.head = TemporalHead(dim * hw[0] * hw[1], c.head_hidden, c.head_kernel_t, c.causal, c.dropout)

    def _run(self, x: Tensor, book: StateBook) -> Tensor:
        h = book(self.embed, self.grid(x).unsqueeze(1))  # (b, dim, n, rows, cols)
        h = self.embed_norm(h.permute(0, 2, 3, 4, 1))  # (b, n, rows, cols, dim)
        for i, blocks in enumerate(self.stages):
            for blk in blocks:
                h = blk(h, book)
            if i < len(self.merges):
                h = self.merges[i](h)
        h = self.norm(h)
        b, n = h.shape[:2]
        h = h.permute(0, 4, 2, 3, 1).reshape(b, -1, n)
        return self.head(h, book)
