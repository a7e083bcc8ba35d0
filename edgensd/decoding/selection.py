"""Model selection for stage 2 on small data: a validation split of the training trials, the validation
score, early stopping and an exponential moving average (EMA) of the weights.

* :func:`validation_split` takes whole trials out of the TRAINING trials only (seeded); the held-out test
  trials of :func:`edgensd.data.participant.trial_split` are never candidates.
* :func:`validation_pcc` scores a decoder on validation segments exactly as ``edgensd eval decoder`` scores
  the test trials: the decoder runs over each trial's segment (from the zero state), the decoded parameters
  of the trial's own frames go through the frozen synthesizer, and the normalized-dB spectrogram is compared
  with the true one (Pearson r per trial, mean over trials).
* :class:`EarlyStopping` counts evaluations without improvement (``patience``).
* :class:`WeightEMA` keeps ``shadow = d * shadow + (1 - d) * weights`` after every optimizer step, with the
  usual warm-up ``d_n = min(decay, (1 + n) / (10 + n))`` (n = updates so far) so the first steps do not
  drag the random initialization along; buffers are copied.

All of them hold their state in plain dicts (``state_dict`` / ``load_state_dict``) so a training checkpoint
carries them across a resume.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from edgensd.metrics import pcc

__all__ = ["EarlyStopping", "WeightEMA", "validation_pcc", "validation_split"]


def validation_split(train_idx: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the training trials into trials for gradient steps and validation trials (whole trials).

    Parameters
    ----------
    train_idx : ndarray of int
        The training trials (never the test trials).
    fraction : float
        Share of them held out for validation, in [0, 1); 0 gives no validation trials. At least one trial
        is taken when ``fraction > 0``, and at least one must remain for training.
    seed : int
        The split is a seeded random choice of trials (the same seed gives the same split on resume).

    Returns
    -------
    fit_idx, val_idx : ndarray of int64
        Sorted, disjoint, together ``train_idx``.

    Raises
    ------
    ValueError
        ``fraction`` outside [0, 1), or too few training trials to hold any out.
    """
    train_idx = np.sort(np.asarray(train_idx, np.int64))
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1) (0: no validation), got {fraction}")
    if fraction == 0:
        return train_idx, np.zeros(0, np.int64)
    n_val = max(1, int(round(fraction * len(train_idx))))
    if len(train_idx) - n_val < 1:
        raise ValueError(
            f"val_fraction={fraction} leaves no training trials ({len(train_idx)} training trials, {n_val} for "
            "validation): use val_fraction=0 or more data"
        )
    rng = np.random.default_rng([int(seed), 0x5EED])
    val = np.sort(rng.choice(train_idx, size=n_val, replace=False))
    fit = np.setdiff1d(train_idx, val)
    return fit.astype(np.int64), val.astype(np.int64)


def validation_pcc(decoder, synth, voice, seg) -> float:
    """Mean spectrogram PCC of a decoder over segments (as ``edgensd eval decoder`` computes it).

    Parameters
    ----------
    decoder : Decoder
        Put in eval mode for the call and restored afterwards.
    synth : Synthesizer
        The frozen synthesizer.
    voice : VoiceRange
    seg : Segments
        Validation segments (:func:`edgensd.decoding.targets.build_segments`).

    Returns
    -------
    float
        Mean over the segments' trials of the Pearson r between the decoded and true normalized-dB
        spectrograms of the trial's frames (NaN trials ignored; NaN if there are none).
    """
    from edgensd.params import raw_to_physical
    from edgensd.speech.synth import power_to_norm_t

    was_training = decoder.training
    decoder.eval()
    raws, trues, cuts = [], [], [0]
    try:
        with torch.no_grad():
            for k in range(len(seg)):
                rows = seg.rows(k)
                tr = slice(int(seg.first[k]), int(seg.first[k] + seg.length[k]))
                x = torch.from_numpy(np.ascontiguousarray(seg.neural[rows], np.float32))[None]
                raws.append(decoder(x)[0, tr])
                trues.append(seg.spec[rows][tr])
                cuts.append(cuts[-1] + trues[-1].shape[0])
            if not raws:
                return float("nan")
            # one synthesizer call over every trial's frames (it works frame by frame)
            pred = power_to_norm_t(synth(raw_to_physical(torch.cat(raws), voice))).numpy()
    finally:
        decoder.train(was_training)
    r = [pcc(pred[a:b], trues[k]) for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True))]
    r = [v for v in r if math.isfinite(v)]
    return float(np.mean(r)) if r else float("nan")


class EarlyStopping:
    """Stop when the validation score has not improved for ``patience`` evaluations.

    Parameters
    ----------
    patience : int
        Evaluations without improvement before stopping; 0 never stops.
    min_delta : float
        An improvement must exceed the best score by more than this.

    Attributes
    ----------
    best : float
        Best score so far (``-inf`` before the first evaluation).
    best_step : int
        Training step of the best score (-1 before the first).
    bad_evals : int
        Evaluations since the best one.
    stopped : bool
    """

    def __init__(self, patience: int = 0, min_delta: float = 0.0):
        if int(patience) != patience or patience < 0:
            raise ValueError(f"patience must be an integer >= 0 (0: never stop early), got {patience}")
        if not min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.best = -math.inf
        self.best_step = -1
        self.bad_evals = 0
        self.stopped = False

    def update(self, score: float, step: int) -> bool:
        """Record one evaluation; returns True when it is the best so far (NaN never is)."""
        improved = math.isfinite(score) and score > self.best + self.min_delta
        if improved:
            self.best, self.best_step, self.bad_evals = float(score), int(step), 0
        else:
            self.bad_evals += 1
        if self.patience and self.bad_evals >= self.patience:
            self.stopped = True
        return improved

    def state_dict(self) -> dict:
        """Counters for a checkpoint."""
        return {"best": self.best, "best_step": self.best_step, "bad_evals": self.bad_evals,
                "stopped": self.stopped}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s counters."""
        self.best = float(state["best"])
        self.best_step = int(state["best_step"])
        self.bad_evals = int(state["bad_evals"])
        self.stopped = bool(state["stopped"])


class WeightEMA:
    """Exponential moving average of a model's weights (a separate copy of the model holds it).

    Parameters
    ----------
    model : torch.nn.Module
        The model being trained; the average starts from its current weights.
    decay : float
        In (0, 1): the weight the average keeps at each update (0.999: a horizon of about 1000 steps).

    Attributes
    ----------
    module : torch.nn.Module
        The averaged model (eval mode, no gradients): use it for validation and saving.
    n_updates : int
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) (0 turns the average off), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.n_updates = 0

    def current_decay(self) -> float:
        """The decay the next update uses (warm-up: ``min(decay, (1 + n) / (10 + n))``)."""
        n = self.n_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Fold the model's current weights into the average (after an optimizer step)."""
        d = self.current_decay()
        src = dict(model.named_parameters())
        for name, p in self.module.named_parameters():
            p.mul_(d).add_(src[name].detach(), alpha=1.0 - d)
        bufs = dict(model.named_buffers())
        for name, b in self.module.named_buffers():
            b.copy_(bufs[name])
        self.n_updates += 1

    def state_dict(self) -> dict:
        """The averaged weights and counters for a checkpoint."""
        return {"decay": self.decay, "n_updates": self.n_updates, "model": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        self.module.load_state_dict(state["model"])
        self.n_updates = int(state["n_updates"])
