"""The decoder registry: names → classes, config dispatch, saving and loading.

>>> from edgensd.decoders import get_decoder, list_decoders
>>> list_decoders()
['edge', 'lstm', 'resnet3d', 'swin3d']
>>> model = get_decoder("resnet3d", n_electrodes=128, causal=True)
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgensd.log import logger

if TYPE_CHECKING:  # pragma: no cover
    from edgensd.decoders.base import Decoder, DecoderConfig

_DECODERS: dict[str, type[Decoder]] = {}

CONFIG_FILE = "decoder_config.json"
WEIGHTS_FILE = "decoder_weights.pt"


def register(name: str):
    """Class decorator registering a :class:`~edgensd.decoders.base.Decoder` subclass under ``name``.

    Parameters
    ----------
    name : str
        Registry name (lower case, unique).
    """

    def deco(cls):
        if name in _DECODERS and _DECODERS[name] is not cls:
            raise ValueError(f"decoder name {name!r} is already registered to {_DECODERS[name].__name__}")
        cls.arch = name
        _DECODERS[name] = cls
        return cls

    return deco


def list_decoders() -> list[str]:
    """Names of all registered decoders, sorted."""
    return sorted(_DECODERS)


def get_decoder_class(name: str) -> type[Decoder]:
    """The decoder class registered as ``name``."""
    if name not in _DECODERS:
        raise ValueError(f"decoder name must be one of {list_decoders()}, got {name!r}")
    return _DECODERS[name]


def make_config(name: str, config: Any = None, **overrides: Any) -> DecoderConfig:
    """Build the config of decoder ``name``.

    Parameters
    ----------
    name : str
        Registry name.
    config : None, dict, DecoderConfig or the architecture's config
        Starting point: None (defaults), a dict (as from JSON), a plain
        :class:`~edgensd.decoders.base.DecoderConfig` (its shared fields are taken) or the architecture's
        own config class.
    **overrides
        Field values replacing those of ``config``.

    Returns
    -------
    DecoderConfig subclass
    """
    from edgensd.decoders.base import DecoderConfig

    cls = get_decoder_class(name).config_class
    if config is None:
        data: dict = {}
    elif isinstance(config, dict):
        data = {k: v for k, v in config.items() if k != "_type"}
    elif type(config) is cls or type(config) is DecoderConfig:
        data = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    else:
        raise TypeError(
            f"config for decoder {name!r} must be None, a dict, a DecoderConfig or a {cls.__name__}, "
            f"got {type(config).__name__}"
        )
    data.update(overrides)
    return cls.from_dict(data)


def get_decoder(name: str, config: Any = None, **overrides: Any) -> Decoder:
    """Build decoder ``name`` (see :func:`make_config` for ``config`` and ``overrides``).

    Returns
    -------
    Decoder
        A freshly initialized model (train mode).
    """
    cfg = make_config(name, config, **overrides)
    return get_decoder_class(name)(cfg)


def build_decoder(config: DecoderConfig) -> Decoder:
    """Build the decoder whose config class is ``type(config)``."""
    for cls in _DECODERS.values():
        if type(config) is cls.config_class:
            return cls(config)
    known = sorted(c.config_class.__name__ for c in _DECODERS.values())
    raise TypeError(f"config must be one of {known}, got {type(config).__name__}")


def load_config(path: str | os.PathLike) -> DecoderConfig:
    """Read a decoder config saved by ``config.save(path)`` (its ``_type`` picks the class)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"decoder config file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"decoder config file {path} is not valid JSON: {exc}") from exc
    typ = data.get("_type")
    by_type = {c.config_class.__name__: c for c in _DECODERS.values()}
    if typ not in by_type:
        raise ValueError(f"decoder config file {path} has _type {typ!r}; known types are {sorted(by_type)}")
    return by_type[typ].config_class.load(path)


def save_decoder(model: Decoder, directory: str | os.PathLike) -> Path:
    """Save ``model``'s config (``decoder_config.json``) and weights (``decoder_weights.pt``) in a folder."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save(directory / CONFIG_FILE)
    tmp = directory / (WEIGHTS_FILE + ".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, directory / WEIGHTS_FILE)
    logger.debug("saved %s decoder to %s", model.arch, directory)
    return directory


def load_decoder(directory: str | os.PathLike, map_location: str = "cpu") -> Decoder:
    """Load a decoder saved by :func:`save_decoder` (in eval mode)."""
    import torch

    directory = Path(directory)
    cfg = load_config(directory / CONFIG_FILE)
    model = build_decoder(cfg)
    wpath = directory / WEIGHTS_FILE
    if not wpath.is_file():
        raise FileNotFoundError(f"decoder weights not found: {wpath}")
    model.load_state_dict(torch.load(wpath, map_location=map_location, weights_only=True))
    return model.eval()
