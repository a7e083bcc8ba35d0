"""3D ResNet decoder over (time, grid rows, grid cols), after Chen et al. 2024, causal and non-causal.

The electrodes are placed on their grid (:class:`~edgensd.decoders.layers.GridMap`), a stem convolution
and stages of residual blocks (3x3 spatial, ``kernel_t`` temporal taps; spatial stride 2 from the second
stage) extract spatio-temporal features, which are flattened per frame and mapped to the 18 raw
parameters by a temporal convolution and a channel MLP.

Non-causal (``causal=False``), as in the paper: symmetric temporal convolutions, temporal stride
``noncausal_temporal_stride`` in every stage after the first (the paper's spatio-temporal pooling), and
transposed temporal convolutions that upsample back to one output per frame.

Causal (``causal=True``), fixing each reason the reference's "causal" model is not: left-padded
(streaming) temporal convolutions; no temporal striding, pooling or transposed upsampling (the stages
use temporal dilation ``dilations`` instead to keep a long history); batch normalization only with its
running statistics at inference (a per-channel affine: no window statistics, foldable into the
convolution). Receptive field: ``1 + (stem_kernel_t - 1) + 2 * blocks_per_stage * (kernel_t - 1) *
sum(dilations) + (head_kernel_t - 1)`` frames (59 frames = 472 ms by default).

Streaming cost: every temporal convolution keeps its own ring buffer, so a step computes only the newest
frame of every layer: the step's multiply-accumulates equal the per-frame MACs of the whole-sequence
model (about 2.4 M for 64 electrodes with the defaults), and no window is recomputed.
"""

from __future__ import annotations

import dataclasses

import torch.nn.functional as F
from torch import Tensor, nn

from edgensd.decoders.base import Decoder, DecoderConfig, StateBook, _check_int, _check_int_tuple
from edgensd.decoders.layers import GridMap, TemporalConv3d, TemporalHead
from edgensd.decoders.registry import register


@dataclasses.dataclass
class ResNet3dConfig(DecoderConfig):
    """Config of :class:`ResNet3d` (shared fields: :class:`~edgensd.decoders.base.DecoderConfig`).

    Parameters
    ----------
    channels : tuple of int
        Channels of each stage (one stage per entry; spatial stride 2 from the second).
    blocks_per_stage : int
        Residual blocks per stage.
    stem_kernel_t : int
        Temporal taps of the stem convolution.
    kernel_t : int
        Temporal taps of the block convolutions.
    dilations : tuple of int
        Temporal dilation of each stage's convolutions (same length as ``channels``).
    head_hidden : int
        Width of the head.
    head_kernel_t : int
        Temporal taps of the head convolution.
    noncausal_temporal_stride : int
        Temporal stride of the stages after the first in the non-causal variant (ignored when causal).
    """

    channels: tuple[int, ...] = (16, 32, 64)
    blocks_per_stage: int = 1
    stem_kernel_t: int = 5
    kernel_t: int = 3
    dilations: tuple[int, ...] = (1, 4, 8)
    head_hidden: int = 128
    head_kernel_t: int = 3
    noncausal_temporal_stride: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        self.channels = _check_int_tuple("channels", self.channels, 1)
        self.dilations = _check_int_tuple("dilations", self.dilations, 1)
        if len(self.dilations) != len(self.channels):
            raise ValueError(
                f"dilations must have one entry per stage ({len(self.channels)} for channels="
                f"{self.channels}), got {self.dilations}"
            )
        for name in (
            "blocks_per_stage",
            "stem_kernel_t",
            "kernel_t",
            "head_hidden",
            "head_kernel_t",
            "noncausal_temporal_stride",
        ):
            setattr(self, name, _check_int(name, getattr(self, name), 1))


class _Block(nn.Module):
    """Residual block: two (kernel_t x 3 x 3) convolutions with batch norm, identity or 1x1x1 shortcut."""

    def __init__(self, cin, cout, in_hw, stride_s, stride_t, dilation, kernel_t, causal):
        super().__init__()
        self.conv1 = TemporalConv3d(
            cin,
            cout,
            kernel_t,
            3,
            in_hw,
            dilation_t=dilation,
            stride_s=stride_s,
            stride_t=stride_t,
            causal=causal,
            bias=False,
        )
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = TemporalConv3d(
            cout, cout, kernel_t, 3, self.conv1.out_hw, dilation_t=dilation, causal=causal, bias=False
        )
        self.bn2 = nn.BatchNorm3d(cout)
        self.out_hw = self.conv1.out_hw
        self.shortcut = None
        if cin != cout or stride_s != 1 or stride_t != 1:
            self.shortcut = nn.Sequential(
                nn.Conv3d(cin, cout, 1, stride=(stride_t, stride_s, stride_s), bias=False),
                nn.BatchNorm3d(cout),
            )

    def forward(self, x: Tensor, book: StateBook) -> Tensor:
        y = F.relu(self.bn1(book(self.conv1, x)))
        y = self.bn2(book(self.conv2, y))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


@register("resnet3d")
class ResNet3d(Decoder):
    """3D ResNet ECoG decoder (see the module docstring).

    Parameters
    ----------
    config : ResNet3dConfig
    """

    config_class = ResNet3dConfig

    def __init__(self, config: ResNet3dConfig) -> None:
        super().__init__(config)
        c = config
        self.grid = GridMap(c)
        hw = self.grid.shape
        self.stem = TemporalConv3d(1, c.channels[0], c.stem_kernel_t, 3, hw, causal=c.causal, bias=False)
        self.stem_bn = nn.BatchNorm3d(c.channels[0])
        blocks = []
        cin = c.channels[0]
        self.t_factor = 1
        for i, (cout, dil) in enumerate(zip(c.channels, c.dilations, strict=True)):
            for j in range(c.blocks_per_stage):
                first = j == 0 and i > 0
                st = c.noncausal_temporal_stride if first and not c.causal else 1
                self.t_factor *= st
                blk = _Block(cin, cout, hw, 2 if first else 1, st, dil, c.kernel_t, c.causal)
                blocks.append(blk)
                hw, cin = blk.out_hw, cout
        self.blocks = nn.ModuleList(blocks)
        self.out_hw = hw
        n_feat = cin * hw[0] * hw[1]
        ups = []
        if self.t_factor > 1:
            s = c.noncausal_temporal_stride
            for _ in range(len(c.channels) - 1):
                ups += [nn.ConvTranspose1d(n_feat, n_feat, 2 * s, stride=s, padding=s // 2), nn.ReLU()]
        self.upsample = nn.Sequential(*ups)
        self.head = TemporalHead(n_feat, c.head_hidden, c.head_kernel_t, c.causal, c.dropout)

    def _run(self, x: Tensor, book: StateBook) -> Tensor:
        n = x.shape[1]
        h = self.grid(x).unsqueeze(1)  # (batch, 1, n, rows, cols)
        h = F.relu(self.stem_bn(book(self.stem, h)))
        for blk in self.blocks:
            h = blk(h, book)
        b, ch, t, r, q = h.shape
        h = h.permute(0, 1, 3, 4, 2).reshape(b, ch * r * q, t)
        if self.t_factor > 1:
            h = self.upsample(h)[:, :, :n]
        return self.head(h, book)
