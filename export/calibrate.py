"""int8 calibration data: the inputs a decoder's step graph really takes on the training trials.

:func:`calibrate` streams every TRAINING trial's segment of a participant file (the split of
:func:`edgensd.data.participant.trial_split`, segments cut as in training, features as the file holds them:
stage-2 training feeds the file's z-scored high-gamma features to the decoder unchanged) frame by frame
through the float step graph from the zero state, and keeps per-frame samples ``[x, *states]`` (float32,
the graph's input shapes). Every converter (ONNX Runtime, LiteRT) calibrates on exactly this list; ranges
are min/max over the whole set.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from edgensd.log import logger

__all__ = ["Calibration", "calibrate", "stream_samples"]


@dataclasses.dataclass
class Calibration:
    """Calibration samples and where they came from.

    Attributes
    ----------
    samples : list of [x, *states]
        One entry per kept frame: ``x`` (1, n_electrodes) and each state tensor, float32.
    names : list of str
        Graph input names, in sample order (``x``, ``state0``, ...).
    source : str
        Participant file.
    trials : list of int
        Training trials streamed.
    n_frames : int
        Frames streamed (every frame of every segment).
    """

    samples: list[list[np.ndarray]]
    names: list[str]
    source: str
    trials: list[int]
    n_frames: int

    def ranges(self) -> dict[str, tuple[float, float]]:
        """Min and max of each input over the whole set."""
        out = {}
        for k, name in enumerate(self.names):
            lo = min(float(s[k].min()) for s in self.samples)
            hi = max(float(s[k].max()) for s in self.samples)
            out[name] = (lo, hi)
        return out

    def summary(self) -> dict:
        """JSON-ready summary for the bundle manifest (file, trials, frames, samples, ranges)."""
        return {"file": self.source, "n_trials": len(self.trials), "trials": list(self.trials),
                "n_frames": int(self.n_frames), "n_samples": len(self.samples),
                "ranges": {k: [lo, hi] for k, (lo, hi) in self.ranges().items()},
                "split": "training trials (edgensd.data.participant.trial_split), segments with context as in "
                         "training, streamed from the zero state"}


def stream_samples(step, example_inputs: Sequence, segments: Iterable[np.ndarray],
                   max_samples: int | None = None) -> tuple[list[list[np.ndarray]], int]:
    """Stream segments frame by frame through a float step graph; keep ``[x, *states]`` per frame.

    Parameters
    ----------
    step : torch.nn.Module
        The step graph (:func:`edgensd.export.stepgraph.step_module`).
    example_inputs : sequence of Tensor
        ``(x, *zero_states)`` (:func:`edgensd.export.stepgraph.step_example_inputs`); each segment starts
        from these states.
    segments : iterable of ndarray, shape (n_i, n_electrodes)
    max_samples : int or None
        Keep at most this many samples, evenly spaced over all frames (every frame is still streamed, so
        the kept states are the ones the model really takes); None keeps every frame.

    Returns
    -------
    samples : list of [x, *states]
    n_frames : int
        Frames streamed.
    """
    import torch

    segments = [np.ascontiguousarray(s, np.float32) for s in segments]
    total = sum(len(s) for s in segments)
    if total == 0:
        raise ValueError("calibration needs at least one frame; the segments are empty")
    if max_samples is not None and int(max_samples) < 1:
        raise ValueError(f"max_samples must be >= 1 or None, got {max_samples}")
    keep = total if max_samples is None else min(total, int(max_samples))
    wanted = set(np.linspace(0, total - 1, keep).round().astype(np.int64).tolist())
    n_el = int(example_inputs[0].shape[-1])
    samples, t = [], 0
    with torch.no_grad():
        for seg in segments:
            if seg.ndim != 2 or seg.shape[1] != n_el:
                raise ValueError(f"calibration segment has shape {seg.shape}; the step graph takes (n, {n_el})")
            state = [s.clone() for s in example_inputs[1:]]
            xs = torch.from_numpy(seg)
            for f in range(len(seg)):
                x = xs[f : f + 1]
                if t in wanted:
                    samples.append([x.numpy().copy(), *[s.numpy().copy() for s in state]])
                _, *state = step(x, *state)
                t += 1
    return samples, total


def _hg_config(value):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def calibrate(model_dir: str | os.PathLike, data: str | os.PathLike | None = None,
              max_samples: int | None = None, trained=None) -> Calibration:
    """Calibration samples of a trained decoder from the training trials of a participant file.

    Parameters
    ----------
    model_dir : path
        Trained decoder directory (:func:`edgensd.decoding.train.train_decoder`).
    data : path, optional
        Participant file (default: the one the decoder was trained on). It must have the model's electrode
        count and, when both record it, the same high-gamma pipeline.
    max_samples : int or None
        At most this many samples, evenly spaced (see :func:`stream_samples`).
    trained : TrainedDecoder, optional
        The already loaded ``model_dir``.

    Returns
    -------
    Calibration

    Raises
    ------
    FileNotFoundError
        Missing model directory or data file.
    ValueError
        A non-causal model, another electrode count, NaN/inf features, a different high-gamma pipeline,
        or no training trials.
    """
    from edgensd.export.onnx_export import io_names
    from edgensd.export.stepgraph import step_example_inputs, step_module

    from edgensd.data.participant import load_participant, trial_split
    from edgensd.decoding.train import load_trained_decoder
    from edgensd.runtime.segments import check_electrodes, trial_segments

    td = trained if trained is not None else load_trained_decoder(model_dir)
    dec = td.decoder.eval()
    data = Path(data if data is not None else td.train_config.data)
    if not data.is_file():
        raise FileNotFoundError(f"calibration data file not found: {data}")
    step = step_module(dec)
    p = load_participant(data)
    check_electrodes(p, dec.n_electrodes, "calibration")
    trained_hg = _hg_config((td.info.get("participant") or {}).get("highgamma_config"))
    file_hg = _hg_config(p.attrs.get("highgamma_config"))
    if trained_hg is not None and file_hg is not None and trained_hg != file_hg:
        raise ValueError(f"{data} (calibration) was made with another high-gamma pipeline than the decoder's "
                         f"training data: {file_hg} vs {trained_hg}; calibrate on features made the same way")
    train_idx, test_idx = trial_split(p)
    if len(train_idx) == 0:
        raise ValueError(f"{data} has no training trials to calibrate on (all {p.n_trials} are held out)")
    segs = trial_segments(p, train_idx, td.train_config.context_frames, exclude=test_idx)
    ex = step_example_inputs(dec)
    samples, n = stream_samples(step, ex, (p.ecog[s.lo : s.hi] for s in segs), max_samples)
    names = io_names(len(ex) - 1)[0]
    logger.info("calibration: %d training trials of %s, %d frames, %d samples kept", len(segs), data, n,
                len(samples))
    return Calibration(samples=samples, names=names, source=str(data), trials=[int(i) for i in train_idx],
                       n_frames=n)
