"""edgensd: neural speech decoding from ECoG, built for edge devices.

The runtime part of the package (spectrograms, speech parameters, frame renderer, data files) imports
without PyTorch; training modules import torch lazily.
"""

from edgensd.log import logger, set_log_level

__version__ = "0.1.0"

__all__ = ["__version__", "logger", "set_log_level"]
