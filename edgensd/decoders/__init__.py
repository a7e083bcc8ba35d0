"""ECoG decoders: high-gamma frames in, 18 raw speech parameters per frame out.

Registered architectures (:func:`list_decoders`): ``resnet3d``, ``swin3d`` and ``lstm`` (Chen et al.
2024), each causal (streaming) or non-causal via ``causal`` in the config, and ``edge`` (causal only), a
decoder for microcontrollers. See :mod:`edgensd.decoders.base` for the shape contract and the streaming
(step/state) interface.

Importing this package needs PyTorch.
"""

from edgensd.decoders.base import (
    FRAME_RATE_HZ,
    Decoder,
    DecoderConfig,
    StepModule,
    Streamer,
    default_grid_index,
)
from edgensd.decoders.edge import EdgeConfig, EdgeDecoder
from edgensd.decoders.lstm import LSTMConfig, LSTMDecoder
from edgensd.decoders.measure import macs_per_frame, measure_lookahead, n_params, step_latency
from edgensd.decoders.registry import (
    build_decoder,
    get_decoder,
    get_decoder_class,
    list_decoders,
    load_config,
    load_decoder,
    make_config,
    register,
    save_decoder,
)
from edgensd.decoders.resnet3d import ResNet3d, ResNet3dConfig
from edgensd.decoders.swin3d import Swin3d, Swin3dConfig

__all__ = [
    "FRAME_RATE_HZ",
    "Decoder",
    "DecoderConfig",
    "EdgeConfig",
    "EdgeDecoder",
    "LSTMConfig",
    "LSTMDecoder",
    "ResNet3d",
    "ResNet3dConfig",
    "StepModule",
    "Streamer",
    "Swin3d",
    "Swin3dConfig",
    "build_decoder",
    "default_grid_index",
    "get_decoder",
    "get_decoder_class",
    "list_decoders",
    "load_config",
    "load_decoder",
    "macs_per_frame",
    "make_config",
    "measure_lookahead",
    "n_params",
    "register",
    "save_decoder",
    "step_latency",
]
