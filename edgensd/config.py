"""Typed dataclass configs that round-trip through JSON and are saved beside every artifact."""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T", bound="Config")


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value


def _from_jsonable(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return tp.from_dict(value) if hasattr(tp, "from_dict") else tp(**value)
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_jsonable(args[0], v) for v in value)
        return tuple(_from_jsonable(a, v) for a, v in zip(args, value, strict=True))
    if origin is list and isinstance(value, list):
        (arg,) = typing.get_args(tp) or (Any,)
        return [_from_jsonable(arg, v) for v in value]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _from_jsonable(arg, value)
            except (TypeError, ValueError):
                continue
    return value


@dataclasses.dataclass
class Config:
    """Base class for all configs: JSON round-trip with unknown-key checks.

    Subclasses are plain dataclasses; nested dataclass fields round-trip too.
    """

    def to_dict(self) -> dict:
        """Return a JSON-serializable dict of all fields."""
        return _to_jsonable(self)

    @classmethod
    def from_dict(cls: type[T], data: dict) -> T:
        """Build from a dict, refusing keys this config does not know."""
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - names - {"_type"})
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown config keys {unknown}; allowed keys are {sorted(names)}")
        kwargs = {k: _from_jsonable(hints.get(k, Any), v) for k, v in data.items() if k in names}
        return cls(**kwargs)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the config as JSON (atomically) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"_type": type(self).__name__, **self.to_dict()}
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls: type[T], path: str | os.PathLike) -> T:
        """Read a config written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"config file {path} is not valid JSON: {exc}") from exc
        typ = data.pop("_type", cls.__name__)
        if typ != cls.__name__:
            raise ValueError(f"config file {path} holds a {typ}, expected a {cls.__name__}")
        return cls.from_dict(data)


def check_choice(name: str, value: Any, allowed: typing.Iterable[Any]) -> Any:
    """Raise a ValueError naming the argument and the allowed values if ``value`` is not allowed."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value
