"""Measuring decoders: multiply-accumulates per frame, parameters, measured look-ahead, step latency."""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn

from edgensd.decoders.base import Decoder
from edgensd.log import logger

__all__ = ["macs_per_frame", "measure_lookahead", "n_params", "step_latency"]


def _n_electrodes(model: Decoder, n_electrodes: int | None) -> int:
    if not isinstance(model, Decoder):
        raise TypeError(f"model must be an edgensd Decoder, got {type(model).__name__}")
    if n_electrodes is not None and n_electrodes != model.n_electrodes:
        raise ValueError(f"n_electrodes={n_electrodes} differs from the model's n_electrodes={model.n_electrodes}")
    return model.n_electrodes


def _lstm_macs(mod: nn.LSTM, n_frames: int) -> int:
    """Analytic MACs of an nn.LSTM over n_frames (the flop counter does not see the fused CPU kernel)."""
    dirs = 2 if mod.bidirectional else 1
    h = mod.hidden_size
    total = 0
    for layer in range(mod.num_layers):
        n_in = mod.input_size if layer == 0 else h * dirs
        total += dirs * 4 * h * (n_in + h)
    return total * n_frames


def macs_per_frame(model: Decoder, n_electrodes: int | None = None, n_frames: int = 128) -> float:
    """Multiply-accumulates per output frame.

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products,
    attention included; ``nn.LSTM`` analytically, 4 gates x hidden x (inputs + hidden) per layer,
    direction and frame). Element-wise operations (activations, gates' products, norms, softmax) are not
    counted.

    Parameters
    ----------
    model : Decoder
    n_electrodes : int or None
        Must equal the model's (None: take the model's).
    n_frames : int
        Non-causal models: frames of the whole sequence whose cost is divided by ``n_frames``.

    Returns
    -------
    float
        Causal models: the MACs of one :meth:`~Decoder.step` (streaming, carried state). Non-causal
        models: MACs of ``forward`` on ``n_frames`` frames divided by ``n_frames``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    n_el = _n_electrodes(model, n_electrodes)
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    lstm_macs = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: lstm_macs.append(_lstm_macs(mod, inp[0].shape[1])))
        for m in model.modules()
        if isinstance(m, nn.LSTM)
    ]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            if model.causal:
                model.step(torch.zeros(1, n_el, dtype=p.dtype, device=p.device), model.init_state(1))
                frames = 1
            else:
                model(torch.zeros(1, n_frames, n_el, dtype=p.dtype, device=p.device))
                frames = n_frames
    finally:
        for hk in hooks:
            hk.remove()
        model.train(was_training)
    return (counter.get_total_flops() / 2 + sum(lstm_macs)) / frames


def n_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those requiring gradients)."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only))


def measure_lookahead(
    model: Decoder,
    n_electrodes: int | None = None,
    n_frames: int = 128,
    n_probes: int = 4,
    seed: int = 0,
    tol: float = 0.0,
) -> int:
    """Measure the look-ahead: how many frames before a perturbed input frame the output changes.

    The model is copied to float64 and run in eval mode on random features; input frame ``t`` (each of
    the last ``n_probes`` frames, and the middle one) is perturbed on every electrode, and the earliest
    output frame ``t'`` that changes gives ``t - t'``. The maximum over the probes is returned.

    Parameters
    ----------
    model : Decoder
    n_electrodes : int or None
        Must equal the model's (None: take the model's).
    n_frames : int
        Sequence length; a look-ahead longer than the sequence (bidirectional recurrence) reads as
        ``n_frames - 1``.
    n_probes : int
        Perturbed positions at the end of the sequence (covers strided models' phases).
    seed : int
        Seed of the random features.
    tol : float
        An output frame counts as changed when it moves by more than ``tol`` times (1 + max |output|);
        0 (default) counts any change at float64 precision, so a recurrence's influence shows until it
        decays below rounding.

    Returns
    -------
    int
        Frames of look-ahead (0 for a causal model with ``lookahead_frames=0``).
    """
    n_el = _n_electrodes(model, n_electrodes)
    if n_frames < 2:
        raise ValueError(f"n_frames must be >= 2, got {n_frames}")
    m = copy.deepcopy(model).double().eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, n_frames, n_el, generator=gen, dtype=torch.float64)
    probes = sorted({n_frames // 2, *range(max(0, n_frames - n_probes), n_frames)})
    look = 0
    with torch.no_grad():
        y0 = m(x)
        tol = tol * (1.0 + float(y0.abs().max()))
        for t in probes:
            x2 = x.clone()
            x2[:, t] += 3.0
            changed = ((m(x2) - y0).abs().amax(dim=(0, 2)) > tol).nonzero()
            if changed.numel():
                look = max(look, t - int(changed.min()))
    logger.debug("measured look-ahead of %s: %d frames", model.arch, look)
    return look


def step_latency(model: Decoder, n_steps: int = 200, warmup: int = 20) -> float:
    """Median wall time of one :meth:`~Decoder.step` (batch 1, current thread settings), in seconds.

    Non-causal models (no step): median time of ``forward`` on 128 frames divided by 128.
    """
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    times = []
    try:
        with torch.inference_mode():
            if model.causal:
                state = model.init_state(1)
                xs = torch.randn(n_steps + warmup, 1, model.n_electrodes, dtype=p.dtype)
                for i, x_t in enumerate(xs):
                    t0 = time.perf_counter()
                    _, state = model.step(x_t, state)
                    if i >= warmup:
                        times.append(time.perf_counter() - t0)
            else:
                x = torch.randn(1, 128, model.n_electrodes, dtype=p.dtype)
                for i in range(max(3, n_steps // 20) + 2):
                    t0 = time.perf_counter()
                    model(x)
                    if i >= 2:
                        times.append((time.perf_counter() - t0) / 128)
    finally:
        model.train(was_training)
    return float(np.median(times))
