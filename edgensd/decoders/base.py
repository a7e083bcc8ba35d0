"""Shared decoder machinery: the config, the shape contract, and explicit streaming state.

Shape contract (every registered decoder)
-----------------------------------------
input
    high-gamma features ``x``, float32 tensor of shape ``(batch, n_frames, n_electrodes)`` at 125 Hz
    (z-scored per electrode, as DESIGN.md says).
output
    raw speech parameters, float32 tensor of shape ``(batch, n_frames, 18)``: one output frame per input
    frame, columns in :data:`edgensd.params.PARAM_NAMES` order, mapped to physical units only by
    :func:`edgensd.params.raw_to_physical`.

Causal decoders stream
----------------------
A causal decoder (``config.causal=True``) computes output frame ``t`` from input frames ``<= t +
config.lookahead_frames`` (0 by default) and exposes the same computation three ways, which agree to
float rounding:

* ``forward(x)`` on a whole sequence;
* ``forward_chunk(x_chunk, state) -> (y_chunk, new_state)`` on chunks of any length, or
  :meth:`Decoder.streamer` / :meth:`Decoder.stream`, which carry the state between chunks;
* ``step(x_t, state) -> (y_t, new_state)`` one frame at a time, with ``init_state(batch)``.

The state is a tuple of plain tensors, batch first, one per stateful layer (:meth:`Decoder.state_names`):
ring buffers holding the last ``(kernel - 1) * dilation`` input frames of every temporal convolution (the
buffer is shifted, ``cat`` then slice, rather than indexed circularly, so the step graph is static), the
past keys and values of every causal attention window, and recurrent states. Every layer keeps only what
it needs, so one step costs one output frame's multiply-accumulates (:func:`edgensd.decoders.macs_per_frame`);
no decoder recomputes a window. Whole-sequence ``forward`` starts from the zero state, which is the same
as zero padding on the left of every layer.

Look-ahead
----------
With ``lookahead_frames = L > 0`` a causal decoder's core still runs strictly causally; output frame ``t``
is the core's output at frame ``t + L``. ``forward`` pads L zero frames at the end; when streaming, the
``k``-th call of ``step`` returns output frame ``k - L`` (the first L are warm-up and are dropped by
:class:`Streamer`), and :meth:`Streamer.flush` feeds the L zero frames at the end of a stream.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgensd.config import Config
from edgensd.log import logger
from edgensd.params import N_PARAMS

FRAME_RATE_HZ = 125.0
"""Frame rate of the neural features and of the decoded parameters (8 ms frames)."""

__all__ = [
    "FRAME_RATE_HZ",
    "Decoder",
    "DecoderConfig",
    "StateBook",
    "StatefulLayer",
    "StepModule",
    "Streamer",
    "default_grid_index",
]


def _square_side(n_electrodes: int) -> int:
    if n_electrodes < 1:
        raise ValueError(f"n_electrodes must be a positive int, got {n_electrodes!r}")
    side = math.isqrt(n_electrodes)
    return side if side * side == n_electrodes else side + 1


def default_grid_index(n_electrodes: int) -> tuple[tuple[int, int], ...]:
    """Row-major square grid: electrode ``i`` at ``(i // side, i % side)``, ``side = ceil(sqrt(n))``.

    Parameters
    ----------
    n_electrodes : int
        Number of electrodes (any positive count; cells past the last electrode stay empty).

    Returns
    -------
    tuple of (row, col) pairs, length ``n_electrodes``
    """
    side = _square_side(n_electrodes)
    return tuple((i // side, i % side) for i in range(n_electrodes))


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_int_tuple(name: str, value, minimum: int, length: int | None = None) -> tuple[int, ...]:
    try:
        items = tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of ints >= {minimum}, got {value!r}") from None
    if not items or (length is not None and len(items) != length):
        want = f"{length} ints" if length is not None else "a non-empty sequence of ints"
        raise ValueError(f"{name} must be {want} >= {minimum}, got {value!r}")
    return tuple(_check_int(f"{name}[{i}]", v, minimum) for i, v in enumerate(items))


@dataclasses.dataclass
class DecoderConfig(Config):
    """Fields every decoder config shares; each architecture subclasses it with its hyperparameters.

    Parameters
    ----------
    n_electrodes : int
        Number of electrodes, the last axis of the input.
    causal : bool
        Whether the decoder is causal (streaming, see the module docstring) or sees symmetric context.
    lookahead_frames : int
        Declared look-ahead of a causal decoder in 8 ms frames (0: output frame t uses frames <= t).
        Must be 0 for non-causal decoders, whose look-ahead is set by their architecture and measured by
        :func:`edgensd.decoders.measure_lookahead`.
    grid_index : tuple of (row, col) pairs or None
        Grid cell of each electrode, used by the grid models (``resnet3d``, ``swin3d``; the others ignore
        it). None: a row-major square grid, ``ceil(sqrt(n_electrodes))`` on a side, missing cells zero.
    grid_shape : (rows, cols) or None
        Grid size; None: just large enough for ``grid_index``.
    dropout : float
        Dropout probability while training (no effect in eval mode).
    """

    n_electrodes: int = 64
    causal: bool = True
    lookahead_frames: int = 0
    grid_index: tuple[tuple[int, int], ...] | None = None
    grid_shape: tuple[int, int] | None = None
    dropout: float = 0.1

    def __post_init__(self) -> None:
        self.n_electrodes = _check_int("n_electrodes", self.n_electrodes, 1)
        if not isinstance(self.causal, (bool, np.bool_)):
            raise ValueError(f"causal must be True or False, got {self.causal!r}")
        self.causal = bool(self.causal)
        self.lookahead_frames = _check_int("lookahead_frames", self.lookahead_frames, 0)
        if not self.causal and self.lookahead_frames:
            raise ValueError(
                "lookahead_frames must be 0 when causal=False (a non-causal decoder's look-ahead comes from "
                f"its architecture; use measure_lookahead), got {self.lookahead_frames}"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a float in [0, 1), got {self.dropout!r}")
        self.dropout = float(self.dropout)
        if self.grid_index is not None:
            arr = np.asarray(self.grid_index)
            if arr.shape != (self.n_electrodes, 2):
                raise ValueError(
                    f"grid_index must hold one (row, col) pair per electrode, shape ({self.n_electrodes}, 2) "
                    f"for n_electrodes={self.n_electrodes}, got shape {arr.shape}"
                )
            if not np.issubdtype(arr.dtype, np.number) or not np.all(arr == np.round(arr)) or np.any(arr < 0):
                raise ValueError("grid_index must hold non-negative integer (row, col) cells")
            arr = arr.astype(np.int64)
            cells, counts = np.unique(arr, axis=0, return_counts=True)
            if np.any(counts > 1):
                dup = [tuple(int(v) for v in c) for c in cells[counts > 1]]
                raise ValueError(f"grid_index puts several electrodes in the same cell(s) {dup[:5]}")
            self.grid_index = tuple((int(r), int(c)) for r, c in arr)
        if self.grid_shape is not None:
            self.grid_shape = _check_int_tuple("grid_shape", self.grid_shape, 1, length=2)
            rows, cols = self.grid()[0].max(axis=0) + 1
            if rows > self.grid_shape[0] or cols > self.grid_shape[1]:
                raise ValueError(
                    f"grid_shape {self.grid_shape} is too small for grid_index (needs at least ({rows}, {cols}))"
                )

    def grid(self) -> tuple[np.ndarray, tuple[int, int]]:
        """Electrode cells and grid size.

        Returns
        -------
        index : ndarray of int64, shape (n_electrodes, 2)
            (row, col) of each electrode.
        shape : (rows, cols)
        """
        index = np.asarray(
            self.grid_index if self.grid_index is not None else default_grid_index(self.n_electrodes),
            np.int64,
        )
        if self.grid_shape is not None:
            return index, (int(self.grid_shape[0]), int(self.grid_shape[1]))
        if self.grid_index is None:  # the full square, as the reference lays out electrodes
            side = _square_side(self.n_electrodes)
            return index, (side, side)
        rows, cols = index.max(axis=0) + 1
        return index, (int(rows), int(cols))


class StatefulLayer(nn.Module):
    """A layer that may carry streaming state: one tensor, batch first.

    Subclasses implement :meth:`state_shape` (without the batch axis; None when the layer needs no state in
    its current mode) and ``forward(x, state) -> (y, new_state)``, where ``state`` is None outside
    streaming (non-causal mode).
    """

    def __init__(self) -> None:
        super().__init__()
        self._state_slot = -1

    def state_shape(self) -> tuple[int, ...] | None:
        """Shape of the state without the batch axis, or None."""
        return None


class StateBook:
    """Routes each stateful layer to its slot of a flat state tuple while a decoder runs.

    Parameters
    ----------
    states : sequence of Tensor or None
        The incoming state (None: non-causal, stateless run).
    """

    __slots__ = ("old", "new")

    def __init__(self, states: Sequence[Tensor] | None) -> None:
        self.old = states
        self.new = list(states) if states is not None else None

    def __call__(self, layer: StatefulLayer, x: Tensor) -> Tensor:
        """Run ``layer`` on ``x`` with its state; record the new state; return the output."""
        slot = layer._state_slot
        if self.old is None or slot < 0:
            return layer(x, None)[0]
        y, self.new[slot] = layer(x, self.old[slot])
        return y


def _tracing() -> bool:
    """Whether the code runs under a tracer/exporter (input checks are skipped there)."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return True
    compiler = getattr(torch, "compiler", None)
    for fn in ("is_compiling", "is_exporting"):
        f = getattr(compiler, fn, None)
        if f is not None and f():
            return True
    return False


class Decoder(nn.Module):
    """Base class of all ECoG → speech-parameter decoders (see the module docstring for the contract).

    Subclasses set ``config_class`` and implement ``_run(x, book) -> y`` for ``x`` of shape
    ``(batch, n, n_electrodes)`` and ``y`` of shape ``(batch, n, 18)``, calling each stateful layer through
    ``book(layer, h)``. They are registered with :func:`edgensd.decoders.register`.

    Parameters
    ----------
    config : DecoderConfig subclass
        The architecture's config.
    """

    arch: ClassVar[str] = "decoder"
    config_class: ClassVar[type[DecoderConfig]] = DecoderConfig
    causal_only: ClassVar[bool] = False

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        if self.causal_only and not config.causal:
            raise ValueError(f"decoder {self.arch!r} exists only as a causal model; causal must be True, got False")
        self.config = config
        self._slot_names: list[str] | None = None
        self._slot_shapes: list[tuple[int, ...]] = []

    # ------------------------------------------------------------------ properties
    @property
    def n_electrodes(self) -> int:
        """Number of input electrodes."""
        return self.config.n_electrodes

    @property
    def causal(self) -> bool:
        """Whether the decoder streams (see the module docstring)."""
        return self.config.causal

    @property
    def lookahead_frames(self) -> int:
        """Declared look-ahead in frames (0 unless configured; non-causal models: see measure_lookahead)."""
        return self.config.lookahead_frames

    @property
    def n_outputs(self) -> int:
        """Raw outputs per frame (18)."""
        return N_PARAMS

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, n_electrodes={self.n_electrodes}, causal={self.causal}"

    # ------------------------------------------------------------------ subclass hook
    def _run(self, x: Tensor, book: StateBook) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ state slots
    def _slots(self) -> list[str]:
        if self._slot_names is None:
            names, shapes = [], []
            for name, mod in self.named_modules():
                if isinstance(mod, StatefulLayer):
                    shape = mod.state_shape() if self.causal else None
                    if shape is None:
                        mod._state_slot = -1
                    else:
                        mod._state_slot = len(names)
                        names.append(name)
                        shapes.append(tuple(int(s) for s in shape))
            self._slot_names, self._slot_shapes = names, shapes
        return self._slot_names

    def _require_causal(self, what: str) -> None:
        if not self.causal:
            raise RuntimeError(
                f"{what} needs a causal decoder; this {self.arch!r} was built with causal=False "
                "(rebuild it with causal=True to stream)"
            )

    def state_names(self) -> list[str]:
        """Name of each state tensor (the module path of its layer), in state-tuple order."""
        self._require_causal("state_names()")
        return list(self._slots())

    def state_shapes(self, batch: int = 1) -> list[tuple[int, ...]]:
        """Shape of each state tensor for a batch size, in state-tuple order."""
        self._require_causal("state_shapes()")
        self._slots()
        return [(batch, *s) for s in self._slot_shapes]

    def init_state(self, batch: int = 1) -> tuple[Tensor, ...]:
        """The zero state at the start of a stream.

        Parameters
        ----------
        batch : int
            Batch size.

        Returns
        -------
        tuple of Tensor
            One tensor per stateful layer (:meth:`state_names`), shapes :meth:`state_shapes`, on the model's
            device and dtype.
        """
        self._require_causal("init_state()")
        batch = _check_int("batch", batch, 1)
        p = next(self.parameters())
        return tuple(torch.zeros(s, dtype=p.dtype, device=p.device) for s in self.state_shapes(batch))

    # ------------------------------------------------------------------ input checks
    def _check_frames(self, x, name: str, ndim: int) -> Tensor:
        if not isinstance(x, Tensor):
            if isinstance(x, np.ndarray):
                x = torch.as_tensor(x)
            else:
                raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
        p = next(self.parameters())
        if _tracing():
            return x
        shape_txt = "(batch, n_frames, n_electrodes)" if ndim == 3 else "(batch, n_electrodes)"
        if x.ndim != ndim:
            raise ValueError(f"{name} must have shape {shape_txt}, got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must hold floats (high-gamma features), got dtype {x.dtype}")
        if x.shape[-1] != self.n_electrodes:
            raise ValueError(
                f"{name} has {x.shape[-1]} electrodes (last axis) but this {self.arch!r} decoder was built "
                f"for n_electrodes={self.n_electrodes}"
            )
        if ndim == 3 and x.shape[1] < 1:
            raise ValueError(f"{name} must hold at least one frame, got shape {tuple(x.shape)}")
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            bad = (~finite).nonzero()[0].tolist()
            axes = ("batch", "frame", "electrode") if ndim == 3 else ("batch", "electrode")
            first = ", ".join(f"{a} {b}" for a, b in zip(axes, bad, strict=True))
            raise ValueError(
                f"{name} holds {int((~finite).sum())} NaN/inf values (first at {first}); the decoder needs "
                "finite high-gamma features (interpolate or drop bad electrodes first)"
            )
        return x.to(dtype=p.dtype, device=p.device)

    def _check_state(self, state) -> tuple[Tensor, ...]:
        names = self._slots()
        if not isinstance(state, (tuple, list)):
            raise TypeError(f"state must be the tuple returned by init_state() or step(), got {type(state).__name__}")
        if _tracing():
            return tuple(state)
        if len(state) != len(names):
            raise ValueError(f"state must hold {len(names)} tensors ({names}), got {len(state)}")
        for name, shape, s in zip(names, self._slot_shapes, state, strict=True):
            if not isinstance(s, Tensor) or tuple(s.shape[1:]) != shape:
                got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
                raise ValueError(
                    f"state tensor {name!r} must have shape (batch, {', '.join(map(str, shape))}), got {got}"
                )
        return tuple(state)

    # ------------------------------------------------------------------ public computation
    def forward(self, x: Tensor) -> Tensor:
        """Decode a whole sequence.

        Parameters
        ----------
        x : Tensor, shape (batch, n_frames, n_electrodes)
            High-gamma features, float32.

        Returns
        -------
        Tensor, shape (batch, n_frames, 18)
            Raw parameters, one frame per input frame.
        """
        x = self._check_frames(x, "x", 3)
        if not self.causal:
            return self._run(x, StateBook(None))
        look = self.lookahead_frames
        state = self.init_state(x.shape[0])
        if look:
            x = F.pad(x, (0, 0, 0, look))
        y = self._run(x, StateBook(state))
        return y[:, look:] if look else y

    def forward_chunk(self, x: Tensor, state: Sequence[Tensor]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Run the causal core on a chunk of frames, carrying the state.

        Parameters
        ----------
        x : Tensor, shape (batch, n, n_electrodes)
            The next ``n >= 1`` frames.
        state : tuple of Tensor
            From :meth:`init_state` or a previous call.

        Returns
        -------
        y : Tensor, shape (batch, n, 18)
            The core's outputs for these frames (with ``lookahead_frames = L``, the outputs of frames
            ``t - L``; :class:`Streamer` handles that).
        new_state : tuple of Tensor
        """
        self._require_causal("forward_chunk()")
        x = self._check_frames(x, "x", 3)
        state = self._check_state(state)
        book = StateBook(state)
        y = self._run(x, book)
        return y, tuple(book.new)

    def step(self, x_t: Tensor, state: Sequence[Tensor]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Decode one frame.

        Parameters
        ----------
        x_t : Tensor, shape (batch, n_electrodes)
            The newest neural frame.
        state : tuple of Tensor
            From :meth:`init_state` or the previous step.

        Returns
        -------
        y_t : Tensor, shape (batch, 18)
            Raw parameters of frame ``t - lookahead_frames``.
        new_state : tuple of Tensor
        """
        self._require_causal("step()")
        x_t = self._check_frames(x_t, "x_t", 2)
        state = self._check_state(state)
        book = StateBook(state)
        y = self._run(x_t[:, None, :], book)
        return y[:, 0], tuple(book.new)

    def streamer(self, batch: int = 1) -> Streamer:
        """A :class:`Streamer` that feeds chunks of any size and carries the state."""
        self._require_causal("streamer()")
        return Streamer(self, batch)

    def stream(self, chunks: Iterable[Tensor], flush: bool = True) -> Iterator[Tensor]:
        """Decode an iterable of chunks, yielding each chunk's outputs.

        Parameters
        ----------
        chunks : iterable of Tensor, each shape (batch, n_i, n_electrodes)
        flush : bool
            With ``lookahead_frames > 0``, finally yield the last outputs (see :meth:`Streamer.flush`).

        Yields
        ------
        Tensor, shape (batch, m_i, 18)
            Concatenated over the whole stream (with the flush), equal to ``forward`` of the concatenation.
        """
        self._require_causal("stream()")
        s: Streamer | None = None
        for chunk in chunks:
            if s is None:
                s = Streamer(self, int(chunk.shape[0]))
            yield s.push(chunk)
        if s is not None and flush and self.lookahead_frames:
            yield s.flush()

    def step_module(self) -> StepModule:
        """The step as a module for export: ``forward(x_t, *state) -> (y_t, *new_state)``, unchecked."""
        self._require_causal("step_module()")
        self._slots()
        return StepModule(self)


class Streamer:
    """Chunked streaming with carried state (made by :meth:`Decoder.streamer`).

    Parameters
    ----------
    model : Decoder
        A causal decoder.
    batch : int
        Batch size of the chunks.

    Notes
    -----
    ``push`` returns exactly the output frames that are final, so the concatenation of every ``push`` and
    a final ``flush`` equals ``model(x)`` on the concatenated input. With ``lookahead_frames = L`` the
    first L frames of output are held back until L later frames arrive.
    """

    def __init__(self, model: Decoder, batch: int = 1) -> None:
        self.model = model
        self.batch = _check_int("batch", batch, 1)
        self.state = model.init_state(self.batch)
        self.n_in = 0

    def push(self, chunk: Tensor) -> Tensor:
        """Feed ``chunk`` (batch, n, n_electrodes); return the new output frames (batch, m, 18)."""
        if isinstance(chunk, (Tensor, np.ndarray)) and chunk.ndim == 3 and chunk.shape[1] == 0:
            p = next(self.model.parameters())
            return torch.zeros((self.batch, 0, N_PARAMS), dtype=p.dtype, device=p.device)
        if isinstance(chunk, (Tensor, np.ndarray)) and chunk.ndim == 3 and chunk.shape[0] != self.batch:
            raise ValueError(f"chunk batch size {chunk.shape[0]} differs from the streamer's batch={self.batch}")
        y, self.state = self.model.forward_chunk(chunk, self.state)
        skip = max(0, self.model.lookahead_frames - self.n_in)
        self.n_in += int(y.shape[1])
        return y[:, skip:]

    def flush(self) -> Tensor:
        """End the stream: feed ``lookahead_frames`` zero frames and return the held-back outputs."""
        look = self.model.lookahead_frames
        p = next(self.model.parameters())
        if not look:
            return torch.zeros((self.batch, 0, N_PARAMS), dtype=p.dtype, device=p.device)
        logger.debug("flushing %d look-ahead frames", look)
        return self.push(torch.zeros((self.batch, look, self.model.n_electrodes), dtype=p.dtype, device=p.device))


class StepModule(nn.Module):
    """The step of a causal decoder as a plain module for tracing/export (no input checks).

    ``forward(x_t, *state) -> (y_t, *new_state)`` with ``x_t`` (batch, n_electrodes), ``y_t`` (batch, 18)
    and state tensors named by :meth:`Decoder.state_names`.
    """

    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        self.decoder = decoder
        self.train(decoder.training)  # same mode as the decoder (eval for export)

    def forward(self, x_t: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        book = StateBook(state)
        y = self.decoder._run(x_t[:, None, :], book)
        return (y[:, 0], *book.new)
