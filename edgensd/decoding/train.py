"""Stage 2: train an ECoG decoder to produce the frozen speech encoder's parameters, with the frozen
synthesizer in the loss (Chen et al. 2024).

Per batch of random crops of training-trial segments (neural frames with context, see
:mod:`edgensd.decoding.targets`):

* the decoder maps high-gamma frames (batch, crop, n_electrodes) to raw parameters (batch, crop, 18);
  :func:`edgensd.params.raw_to_physical` maps them to physical units with the speech model's voice range;
* the frozen synthesizer renders their power spectrogram (deterministic); the loss compares its linear
  (256 bins) and mel (128 bands) normalized-dB spectrograms with the true ones (L1 by default; ``spec_loss``
  ``"rmse"`` takes the root-mean-square error instead, whose minimizer is the conditional mean rather than the
  median);
* a weighted parameter loss compares ``sigmoid(raw)`` (each parameter's position in its range) with the
  reference parameters' positions (L1; f0 weighted by the reference voicing, the spectral-shape parameters
  by the frame's activity; per-parameter weights in :class:`DecoderTrainConfig`).

The first ``warmup_frames`` output frames of each crop are left out of the loss (a causal decoder starts
each crop from the zero state; a non-causal one also misses its future at the last frames, which are left
out too).

The small-data recipe (each part a :class:`DecoderTrainConfig` field and a CLI flag;
:mod:`edgensd.decoding.selection`, :mod:`edgensd.decoding.augment`):

* a validation split of the TRAINING trials (``val_fraction``, whole trials, seeded; the test trials are
  never used, and no training segment's context reaches into a validation trial), scored every
  ``val_every_s`` seconds of training as ``edgensd eval decoder`` scores the test trials (spectrogram PCC);
  the best-validation weights are the saved model (model selection) and training stops after ``patience``
  validations without improvement (early stopping); the curve goes to ``train_log.jsonl`` (``val_pcc``);
* an exponential moving average of the weights (``ema_decay``), validated and saved instead of the raw ones;
* augmentation of the training crops: electrode dropout, time jitter, Gaussian noise, per-electrode gain.

Training is bounded by wall-clock minutes (validation time included), checkpoints every
``checkpoint_every_s`` seconds and on Ctrl-C / SIGTERM (the model files in the output directory are then
always a usable model), and resumes when run again on the same directory. The output directory holds
``decoder_config.json`` + ``decoder_weights.pt`` (:func:`edgensd.decoders.load_decoder`),
``train_config.json``, ``decoder_info.json`` (provenance: data and speech-model hashes, the participant's
high-gamma pipeline, the voice range, training time, the validation trials and the selected weights),
``checkpoint.pt`` (with the EMA, the best-validation weights and the early-stopping counters, so a resume
keeps them), ``train_log.jsonl`` and the reference cache.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgensd.config import Config
from edgensd.data.participant import Participant, load_participant, trial_split
from edgensd.decoding import augment
from edgensd.decoding.selection import EarlyStopping, WeightEMA, validation_pcc, validation_split
from edgensd.decoding.targets import (
    CONTEXT_FRAMES,
    Segments,
    build_segments,
    check_neural,
    data_key,
    file_sha256,
    load_references,
    param_loss_weights,
    param_position,
)
from edgensd.log import logger, progress_enabled
from edgensd.params import LOUD, N_PARAMS, PARAM_NAMES, VoiceRange, raw_to_physical
from edgensd.trainloop import StopFlag, atomic_torch_save, checkpoint_if_due, load_checkpoint

CHECKPOINT_FILE = "checkpoint.pt"
TRAIN_CONFIG_FILE = "train_config.json"
INFO_FILE = "decoder_info.json"
LOG_FILE = "train_log.jsonl"

#: Default weight of each parameter in the parameter loss (PARAM_NAMES order): f0, loudness and voicing,
#: F1-F3 count fully; F4-F6, the amplitudes and the unvoiced formant half.
DEFAULT_PARAM_WEIGHTS: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, *([0.5] * 6), 0.5, 0.5, 0.5)

#: The small-data recipe switched off (today's recipe before it existed): what a checkpoint written without
#: these fields resumes with.
RECIPE_OFF: dict[str, Any] = {"val_fraction": 0.0, "ema_decay": 0.0, "aug_dropout": 0.0, "aug_jitter": 0,
                              "aug_noise": 0.0, "aug_gain": 0.0, "weight_pcc": 0.0,
                              "spec_loss": "l1"}

#: Fields a resumed training takes from the new request rather than from its checkpoint (the rest must match, or
#: a warning names what is ignored). Runtime-only settings (threads, cache, checkpoint interval) are not compared.
_RESUME_TAKES_NEW: frozenset[str] = frozenset({"max_minutes", "data", "speech_model"})
_RESUME_NOT_COMPARED: frozenset[str] = frozenset({"n_threads", "cache_dir", "checkpoint_every_s"})

#: Allowed values of :attr:`DecoderTrainConfig.spec_loss`.
SPEC_LOSSES: tuple[str, ...] = ("l1", "rmse")

__all__ = [
    "DEFAULT_PARAM_WEIGHTS",
    "DecoderTrainConfig",
    "SPEC_LOSSES",
    "TrainedDecoder",
    "crop_correlation",
    "decoder_losses",
    "load_trained_decoder",
    "train_decoder",
]


@dataclasses.dataclass
class DecoderTrainConfig(Config):
    """Stage-2 training settings (saved as ``train_config.json`` beside the decoder).

    Parameters
    ----------
    data : str
        Participant file.
    speech_model : str
        Speech model directory (absolute path).
    arch : str
        Registered decoder name (:func:`edgensd.decoders.list_decoders`).
    causal : bool
        Causal (streaming) or non-causal variant.
    decoder : dict
        Overrides of the architecture's config fields (e.g. ``{"hidden_size": 64}``).
    max_minutes : float
        Wall-clock training budget (total over resumptions), minutes.
    seed : int
    batch_size : int
        Crops per step.
    crop_frames : int
        Frames per crop (8 ms each).
    warmup_frames : int
        Output frames at the start of each crop (and, non-causal, at its end) left out of the loss.
    context_frames : int
        Frames of context around each trial in its segment.
    lr, weight_decay : float
        AdamW settings; the learning rate follows a cosine over the budget after a 2 % warm-up.
    weight_lin, weight_mel, weight_param : float
        Weights of the linear-spectrogram, mel-spectrogram and parameter losses.
    weight_pcc : float
        Weight of the correlation loss: 1 - Pearson r between the synthesized and the true normalized-dB
        linear spectrogram of each crop (its counted frames x 256 bins, as ``edgensd eval decoder`` scores a
        trial), mean over crops; 0 (the default) turns it off.
    spec_loss : {"l1", "rmse"}
        How the linear and mel spectrogram terms compare the synthesized and the true normalized-dB
        spectrograms over a batch's counted frames x bins: ``"l1"`` (the default), the mean absolute error
        (minimized by the conditional median), or ``"rmse"``, the root of the mean squared error (minimized by
        the conditional mean, which Pearson r rewards when the decoder is uncertain; on the same scale as L1,
        so the weights keep their balance).
    param_weights : tuple of 18 float
        Per-parameter weights of the parameter loss.
    checkpoint_every_s : float
        Seconds between checkpoints.
    n_threads : int
        Torch threads (0: torch default).
    cache_dir : str
        Where the reference parameters are cached ("" = the output directory).
    val_fraction : float
        Share of the TRAINING trials held out (whole trials, seeded by ``seed``) for validation, in [0, 1);
        0 (the default) turns validation, model selection and early stopping off; 0.1 is a starting point.
        The test trials are never used.
    val_every_s : float
        Seconds of training between validations (validation time counts against the budget); a last one
        runs when the budget ends.
    patience : int
        Validations without improvement of the validation PCC before training stops early (0: never).
    ema_decay : float
        Decay of the exponential moving average of the weights used for validation and for the saved model,
        in [0, 1) (0, the default: off, the raw weights are used; 0.998 is a starting point).
    aug_dropout : float
        Electrode dropout: probability in [0, 1) that a whole electrode of a crop is set to 0 (its mean).
    aug_jitter : int
        Time jitter: largest shift, frames, of a crop's neural frames relative to its targets (0: off).
    aug_noise : float
        Additive Gaussian noise, standard deviation in z units (0: off).
    aug_gain : float
        Per-electrode gain: standard deviation of the log gain per crop (0: off).
    """

    data: str = ""
    speech_model: str = ""
    arch: str = "edge"
    causal: bool = True
    decoder: dict[str, Any] = dataclasses.field(default_factory=dict)
    max_minutes: float = 30.0
    seed: int = 0
    batch_size: int = 16
    crop_frames: int = 160
    warmup_frames: int = 32
    context_frames: int = CONTEXT_FRAMES
    lr: float = 1e-3
    weight_decay: float = 1e-4
    weight_lin: float = 1.0
    weight_mel: float = 1.0
    weight_param: float = 1.0
    weight_pcc: float = 0.0
    spec_loss: str = "l1"
    param_weights: tuple[float, ...] = DEFAULT_PARAM_WEIGHTS
    checkpoint_every_s: float = 120.0
    n_threads: int = 0
    cache_dir: str = ""
    val_fraction: float = 0.0
    val_every_s: float = 30.0
    patience: int = 10
    ema_decay: float = 0.0
    aug_dropout: float = 0.0
    aug_jitter: int = 0
    aug_noise: float = 0.0
    aug_gain: float = 0.0

    def __post_init__(self) -> None:
        self.param_weights = tuple(float(w) for w in self.param_weights)
        if len(self.param_weights) != N_PARAMS or min(self.param_weights) < 0:
            raise ValueError(f"param_weights must be {N_PARAMS} non-negative floats ({', '.join(PARAM_NAMES)})")
        for name in ("batch_size", "crop_frames"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_frames < self.crop_frames // 2:
            raise ValueError(f"warmup_frames must be in [0, crop_frames // 2), got {self.warmup_frames}")
        if self.context_frames < 0:
            raise ValueError(f"context_frames must be >= 0, got {self.context_frames}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1) (0: no validation), got {self.val_fraction}")
        if not self.val_every_s > 0:
            raise ValueError(f"val_every_s must be > 0, got {self.val_every_s}")
        if int(self.patience) != self.patience or self.patience < 0:
            raise ValueError(f"patience must be an integer >= 0 (0: never stop early), got {self.patience}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0: no weight averaging), got {self.ema_decay}")
        if not 0.0 <= self.aug_dropout < 1.0:
            raise ValueError(f"aug_dropout must be in [0, 1), got {self.aug_dropout}")
        if int(self.aug_jitter) != self.aug_jitter or not 0 <= self.aug_jitter < self.crop_frames // 2:
            raise ValueError(f"aug_jitter must be an integer in [0, crop_frames // 2 = {self.crop_frames // 2}), "
                             f"got {self.aug_jitter}")
        if self.spec_loss not in SPEC_LOSSES:
            raise ValueError(f"spec_loss must be one of {', '.join(SPEC_LOSSES)}, got {self.spec_loss!r}")
        if not 0.0 <= self.lr < math.inf:
            raise ValueError(f"lr must be a finite number >= 0 (0 freezes the weights), got {self.lr}")
        for name in ("weight_decay", "weight_lin", "weight_mel", "weight_param", "weight_pcc", "aug_noise",
                     "aug_gain"):
            if not 0.0 <= getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")


class _Crops:
    """Random crops of the training segments (with validity masks)."""

    def __init__(self, seg: Segments, voice: VoiceRange, cfg: DecoderTrainConfig, rng: np.random.Generator):
        self.seg = seg
        self.rng = rng
        self.crop = cfg.crop_frames
        self.pos = param_position(seg.params, voice)
        lf = np.concatenate([seg.params[seg.trial_rows(k), LOUD] for k in range(len(seg))])
        loud_ref = (float(np.percentile(lf, 20)), float(np.percentile(lf, 80)))
        self.w_param = param_loss_weights(seg.params, voice, loud_ref)
        self.lengths = np.diff(seg.offsets)
        self.prob = self.lengths / self.lengths.sum()
        loss_mask = np.ones(self.crop, np.float32)
        loss_mask[: cfg.warmup_frames] = 0.0
        if not cfg.causal and cfg.warmup_frames:
            loss_mask[-cfg.warmup_frames :] = 0.0
        self.loss_mask = loss_mask
        self.cfg = cfg

    def sample(self, n: int) -> tuple[torch.Tensor, ...]:
        cfg = self.cfg
        k = self.rng.choice(len(self.lengths), size=n, p=self.prob)
        ln = self.lengths[k]
        start = (self.rng.random(n) * (np.maximum(ln - self.crop, 0) + 1)).astype(np.int64)
        t = start[:, None] + np.arange(self.crop)[None, :]
        valid = t < ln[:, None]
        idx = self.seg.offsets[k][:, None] + np.minimum(t, ln[:, None] - 1)
        idx_x = idx
        if cfg.aug_jitter:  # neural frames t + shift for the targets of frame t, within the segment
            tx = np.clip(t + augment.jitter_shifts(n, cfg.aug_jitter, self.rng)[:, None], 0, ln[:, None] - 1)
            idx_x = self.seg.offsets[k][:, None] + tx
        x = self.seg.neural[idx_x]
        if cfg.aug_gain:
            x = augment.gain_scale(x, cfg.aug_gain, self.rng)
        if cfg.aug_noise:
            x = augment.add_noise(x, cfg.aug_noise, self.rng)
        if cfg.aug_dropout:
            x = augment.electrode_dropout(x, cfg.aug_dropout, self.rng)
        x = x * valid[..., None]
        mask = valid * self.loss_mask[None, :]
        arrays = (x, self.seg.spec[idx], self.seg.mel[idx], self.pos[idx], self.w_param[idx], mask.astype(np.float32))
        return tuple(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays)


def decoder_losses(
    decoder, synth, voice: VoiceRange, cfg: DecoderTrainConfig, x, spec, mel, pos_ref, w_param, mask
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total stage-2 loss and its parts for one batch.

    Parameters
    ----------
    decoder : Decoder
    synth : Synthesizer
        The frozen synthesizer.
    voice : VoiceRange
    cfg : DecoderTrainConfig
    x : Tensor (B, T, n_electrodes)
    spec : Tensor (B, T, 256)
        True normalized-dB spectrogram.
    mel : Tensor (B, T, 128)
    pos_ref : Tensor (B, T, 18)
        Reference parameters' positions in their ranges (:func:`param_position`).
    w_param : Tensor (B, T, 18)
        Per-frame parameter-loss weights.
    mask : Tensor (B, T)
        1 where the frame counts, 0 where it does not (warm-up frames, padding).

    Returns
    -------
    total : Tensor (scalar)
    parts : dict of float
        ``lin``, ``mel``, ``param`` (and ``pcc``, the mean correlation of the crops, when ``weight_pcc`` > 0).
    """
    from edgensd.speech.synth import power_to_norm_t

    raw = decoder(x)
    keep = mask > 0  # only the frames that count go through the synthesizer (it dominates the cost)
    raw_k, w_k = raw[keep], w_param[keep]
    power = synth(raw_to_physical(raw_k, voice))
    n = max(int(keep.sum()), 1)
    pred_norm = power_to_norm_t(power)
    d_lin = pred_norm - spec[keep]
    d_mel = synth.mel_norm_from_power(power) - mel[keep]
    if cfg.spec_loss == "rmse":
        l_lin = (d_lin.square().sum() / (n * spec.shape[-1])).clamp_min(1e-12).sqrt()
        l_mel = (d_mel.square().sum() / (n * mel.shape[-1])).clamp_min(1e-12).sqrt()
    else:
        l_lin = d_lin.abs().sum() / (n * spec.shape[-1])
        l_mel = d_mel.abs().sum() / (n * mel.shape[-1])
    w = w_k * torch.as_tensor(cfg.param_weights, dtype=raw.dtype)
    l_par = ((torch.sigmoid(raw_k) - pos_ref[keep]).abs() * w).sum() / w.sum().clamp_min(1e-6)
    total = cfg.weight_lin * l_lin + cfg.weight_mel * l_mel + cfg.weight_param * l_par
    parts = {"lin": l_lin.item(), "mel": l_mel.item(), "param": l_par.item()}
    if cfg.weight_pcc > 0:
        crop = torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(mask)[keep]
        r = crop_correlation(pred_norm, spec[keep], crop, mask.shape[0])
        total = total + cfg.weight_pcc * (1.0 - r.mean())
        parts["pcc"] = r.mean().item()
    return total, parts


def crop_correlation(pred: torch.Tensor, true: torch.Tensor, crop: torch.Tensor, n_crops: int) -> torch.Tensor:
    """Pearson r between predicted and true spectrogram frames, one per crop, over its frames x bins.

    Parameters
    ----------
    pred, true : Tensor (N, F)
        Frames of all crops, stacked (normalized dB).
    crop : Tensor (N,) of int64
        The crop of each frame, in [0, n_crops).
    n_crops : int

    Returns
    -------
    Tensor (n_present,)
        r of each crop that has at least one frame (0 for a crop whose prediction or target is constant).
    """
    f = pred.shape[-1]
    count = torch.zeros(n_crops, dtype=pred.dtype, device=pred.device).index_add_(
        0, crop, torch.ones_like(crop, dtype=pred.dtype)) * f
    present = count > 0
    denom = count.clamp_min(1.0)

    def crop_sum(v: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n_crops, dtype=v.dtype, device=v.device).index_add(0, crop, v.sum(-1))

    pc = pred - (crop_sum(pred) / denom)[crop][:, None]
    tc = true - (crop_sum(true) / denom)[crop][:, None]
    cov = crop_sum(pc * tc)
    var = crop_sum(pc * pc) * crop_sum(tc * tc)
    r = cov / torch.sqrt(var.clamp_min(1e-12))
    return r[present]


def _grid_for(p: Participant) -> tuple[tuple[tuple[int, int], ...], tuple[int, int], str]:
    from edgensd.neural.layouts import grid_index_for

    g = grid_index_for(p.n_electrodes, p.electrode_positions, p.hemisphere)
    return tuple((int(r), int(c)) for r, c in zip(g.rows, g.cols, strict=True)), tuple(g.shape), g.method


def _pipeline_info(p: Participant) -> dict:
    """The participant's feature pipeline and origin, from its attributes (JSON strings parsed)."""
    out: dict[str, Any] = {}
    for k, v in p.attrs.items():
        if isinstance(v, str) and k.endswith("_config"):
            try:
                out[k] = json.loads(v)
                continue
            except json.JSONDecodeError:
                pass
        if isinstance(v, (str, int, float, bool)):
            out[k] = v
    out.update({"hemisphere": p.hemisphere, "density": p.density, "n_electrodes": p.n_electrodes,
                "grid_shape": list(p.grid_shape) if p.grid_shape is not None else None})
    if "highgamma_config" not in out:
        out["highgamma_config"] = None  # the file does not say how its features were made
    return out


def _check_voice(p: Participant, speech_voice: VoiceRange, data, speech_dir) -> None:
    if p.voice_range is not None and not p.voice_range.same_as(speech_voice):
        raise ValueError(
            f"speech model {speech_dir} has voice range {speech_voice.name!r} {speech_voice.f0_hz} Hz, which "
            f"differs from the participant's in {data} ({p.voice_range.name!r} {p.voice_range.f0_hz} Hz): use "
            "the speech model trained on this participant's own speech"
        )


def train_decoder(
    data: str | os.PathLike,
    speech_model: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: DecoderTrainConfig | None = None,
) -> Path:
    """Train (or resume training) an ECoG decoder; returns the output directory.

    Parameters
    ----------
    data : path
        Participant file (z-scored high-gamma features, audio, trials; :mod:`edgensd.data.participant`).
    speech_model : path
        Trained speech model directory (stage 1) of the same participant's voice.
    out_dir : path
        Output directory; if it holds a checkpoint, training resumes from it (same architecture, same data).
    config : DecoderTrainConfig, optional
        ``arch``, ``causal``, budget and loss settings (``data`` and ``speech_model`` are set here).

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    ValueError
        Bad settings, a participant without usable neural data, an empty training split, a speech model of
        another voice range, or a checkpoint of another architecture / data file in ``out_dir``.
    FileNotFoundError
        Missing data file or speech model.
    KeyboardInterrupt
        After Ctrl-C / SIGTERM, once the checkpoint and model files are written.
    """
    from tqdm import tqdm

    from edgensd.decoders import get_decoder, get_decoder_class, list_decoders, save_decoder
    from edgensd.decoders import n_params as count_params
    from edgensd.speech.model import load_speech_model

    out_dir = Path(out_dir)
    data = Path(data)
    speech_dir = Path(speech_model).resolve()
    cfg = config or DecoderTrainConfig()
    cfg.data, cfg.speech_model = str(data), str(speech_dir)
    if cfg.arch not in list_decoders():
        raise ValueError(f"arch must be one of {list_decoders()}, got {cfg.arch!r}")
    if get_decoder_class(cfg.arch).causal_only and not cfg.causal:
        raise ValueError(f"arch {cfg.arch!r} exists only as a causal model: use --causal")
    ckpt_path = out_dir / CHECKPOINT_FILE
    ckpt = None
    if ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path)
        old = DecoderTrainConfig.from_dict({**RECIPE_OFF, **ckpt["train_config"]})
        if (old.arch, old.causal) != (cfg.arch, cfg.causal):
            raise ValueError(
                f"{out_dir} holds a checkpoint of {old.arch!r} (causal={old.causal}); resume it with the same "
                f"--arch and --causal/--non-causal or choose another --out (asked for {cfg.arch!r}, "
                f"causal={cfg.causal})"
            )
        ignored = [f"{k}={getattr(cfg, k)!r} (checkpoint: {getattr(old, k)!r})" for k in
                   (f.name for f in dataclasses.fields(cfg) if f.name not in _RESUME_TAKES_NEW | _RESUME_NOT_COMPARED)
                   if getattr(cfg, k) != getattr(old, k)]
        if ignored:
            logger.warning("resuming %s with the checkpoint's settings; ignored: %s (train into another --out to "
                           "use them)", out_dir, ", ".join(ignored))
        cfg = dataclasses.replace(old, **{k: getattr(cfg, k) for k in _RESUME_TAKES_NEW})
        logger.info("resuming from %s (step %d, %.1f min trained)", ckpt_path, ckpt["step"], ckpt["elapsed_s"] / 60)
    if not cfg.max_minutes > 0:
        raise ValueError(f"max_minutes must be > 0, got {cfg.max_minutes}")
    if cfg.n_threads:
        torch.set_num_threads(cfg.n_threads)

    sm = load_speech_model(speech_dir)
    voice = sm.config.voice
    p = load_participant(data)
    check_neural(p)
    _check_voice(p, voice, data, speech_dir)
    key = data_key(p)
    if ckpt is not None and ckpt.get("data_key") not in (None, key):
        raise ValueError(f"{out_dir} holds a checkpoint trained on other data (key {ckpt['data_key']}, {data} has "
                         f"{key}); choose another --out")
    train_idx, test_idx = trial_split(p)
    if len(train_idx) == 0:
        raise ValueError(f"{data} has no training trials (all {p.n_trials} are held out)")
    fit_idx, val_idx = validation_split(train_idx, cfg.val_fraction, cfg.seed)
    logger.info("%s: %d electrodes, %d training trials (%d for gradient steps, %d for validation; %d held out "
                "for testing)", data, p.n_electrodes, len(train_idx), len(fit_idx), len(val_idx), len(test_idx))
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else out_dir
    refs = load_references(p, sm, speech_dir, cfg.context_frames, cache_dir)
    # no training segment's context reaches into a validation or test trial
    seg = build_segments(p, refs, fit_idx, exclude=np.concatenate([test_idx, val_idx]))
    val_seg = build_segments(p, refs, val_idx, exclude=test_idx) if len(val_idx) else None

    torch.manual_seed(cfg.seed)
    grid_index, grid_shape, grid_method = _grid_for(p)
    model = get_decoder(cfg.arch, config=dict(cfg.decoder), n_electrodes=p.n_electrodes, causal=cfg.causal,
                        grid_index=grid_index, grid_shape=grid_shape)
    synth = sm.synth.eval()
    for prm in synth.parameters():
        prm.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, elapsed = 0, 0.0
    rng = np.random.default_rng(cfg.seed)
    ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    stopper = EarlyStopping(cfg.patience)
    best = None  # the best-validation weights (a copy of the evaluated model)
    last_val, last_val_step = 0.0, -1  # training seconds and step at the last validation
    val_evals, val_seconds = 0, 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step, elapsed = int(ckpt["step"]), float(ckpt["elapsed_s"])
        rng = np.random.default_rng([cfg.seed, step])
        torch.manual_seed(cfg.seed + step)
        sel = ckpt.get("selection") or {}
        if ema is not None:
            ema.load_state_dict(sel["ema"])
        if sel.get("early_stopping"):
            stopper.load_state_dict(sel["early_stopping"])
        if sel.get("best") is not None:
            best = copy.deepcopy(model).eval()
            best.load_state_dict(sel["best"])
        last_val, last_val_step = float(sel.get("last_val_elapsed_s", 0.0)), int(sel.get("last_val_step", -1))
        val_evals, val_seconds = int(sel.get("val_evals", 0)), float(sel.get("val_seconds", 0.0))
    evaluated = ema.module if ema is not None else model  # the weights validated and saved
    crops = _Crops(seg, voice, cfg, rng)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(out_dir / TRAIN_CONFIG_FILE)
    info = {
        "arch": cfg.arch,
        "causal": cfg.causal,
        "data": str(data.resolve()),
        "data_key": key,
        "speech_model": str(speech_dir),
        "speech_model_sha256": file_sha256(speech_dir / "model.pt"),
        "voice_range": voice.to_dict(),
        "participant": _pipeline_info(p),
        "grid_method": grid_method,
        "n_electrodes": p.n_electrodes,
        "n_train_trials": int(len(train_idx)),
        "n_fit_trials": int(len(fit_idx)),
        "n_val_trials": int(len(val_idx)),
        "val_trials": [int(i) for i in val_idx],
        "n_test_trials": int(len(test_idx)),
        "n_params": count_params(model),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
    }

    def validate() -> None:
        nonlocal best, last_val, last_val_step, val_evals, val_seconds, elapsed
        t0 = time.time()
        score = validation_pcc(evaluated, synth, voice, val_seg)
        improved = stopper.update(score, step)
        if improved:
            if best is None:
                best = copy.deepcopy(evaluated).eval()
            best.load_state_dict(evaluated.state_dict())
        dt = time.time() - t0
        elapsed += dt  # validation is part of the recipe's cost
        last_val, last_val_step, val_evals, val_seconds = elapsed, step, val_evals + 1, val_seconds + dt
        log_f.write(json.dumps({"step": step, "elapsed_s": round(elapsed, 1), "val_pcc": round(score, 5),
                                "best_val_pcc": round(stopper.best, 5), "best_step": stopper.best_step,
                                "bad_evals": stopper.bad_evals, "val_s": round(dt, 2)}) + "\n")
        log_f.flush()
        logger.debug("step %d: validation PCC %.4f (best %.4f at step %d)", step, score, stopper.best,
                     stopper.best_step)

    def checkpoint(done: bool) -> None:
        selection = {
            "ema": ema.state_dict() if ema is not None else None,
            "best": best.state_dict() if best is not None else None,
            "early_stopping": stopper.state_dict(),
            "last_val_elapsed_s": last_val,
            "last_val_step": last_val_step,
            "val_evals": val_evals,
            "val_seconds": val_seconds,
        }
        atomic_torch_save(
            {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "elapsed_s": elapsed,
             "train_config": cfg.to_dict(), "data_key": key, "done": done, "selection": selection},
            ckpt_path,
        )
        save_decoder(best if best is not None else evaluated, out_dir)
        info.update({"train_seconds": round(elapsed, 1), "train_steps": step, "done": done,
                     "train_frames_seen": step * cfg.batch_size * cfg.crop_frames,
                     "saved_weights": ("best validation " if best is not None else "last ")
                     + ("EMA" if ema is not None else "raw") + " weights",
                     "validation": None if val_seg is None else {
                         "metric": "mean spectrogram PCC over the validation trials (as eval decoder)",
                         "evaluations": val_evals, "seconds": round(val_seconds, 1),
                         "best_pcc": stopper.best if best is not None else None,
                         "best_step": stopper.best_step if best is not None else None,
                         "early_stopped": stopper.stopped}})
        tmp = out_dir / (INFO_FILE + ".tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, out_dir / INFO_FILE)

    budget = cfg.max_minutes * 60.0
    bar = tqdm(total=int(budget), initial=int(min(elapsed, budget)), unit="s", desc=f"train {cfg.arch}",
               disable=not progress_enabled())
    last_ckpt = time.time()
    log_f = open(out_dir / LOG_FILE, "a")
    logged_step, last_loss = step, None

    def log_step(loss_value: float, parts: dict[str, float]) -> None:
        nonlocal logged_step
        rec = {"step": step, "elapsed_s": round(elapsed, 1), "loss": round(loss_value, 5),
               **{k: round(v, 5) for k, v in parts.items()}}
        log_f.write(json.dumps(rec) + "\n")
        log_f.flush()
        logged_step = step

    model.train()
    if stopper.stopped:
        logger.info("%s stopped early at step %d (no better validation PCC in %d validations); nothing to resume",
                    out_dir, step, cfg.patience)
    try:
        with StopFlag() as stop:
            while elapsed < budget and not stopper.stopped:
                t0 = time.time()
                frac = elapsed / budget
                scale = min(1.0, (frac + 1e-3) / 0.02) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * scale
                loss, parts = decoder_losses(model, synth, voice, cfg, *crops.sample(cfg.batch_size))
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {loss.item()} at step {step}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                if ema is not None:
                    ema.update(model)
                step += 1
                elapsed += time.time() - t0
                if val_seg is not None and elapsed - last_val >= cfg.val_every_s:
                    validate()
                if int(elapsed) > bar.n:
                    bar.update(int(min(elapsed, budget)) - bar.n)
                last_loss = (loss.item(), parts)
                if step % 10 == 0:
                    log_step(*last_loss)
                    bar.set_postfix(loss=f"{loss.item():.4f}", lin=f"{parts['lin']:.4f}")
                last_ckpt = checkpoint_if_due(stop, checkpoint, ckpt_path, step, last_ckpt, cfg.checkpoint_every_s)
            if last_loss is not None and logged_step != step:
                log_step(*last_loss)  # the last step of this run is always in the log
            if val_seg is not None and last_val_step != step:
                validate()  # the last weights get their chance too
    finally:
        bar.close()
        log_f.close()
    checkpoint(done=True)
    logger.info("trained %s (causal=%s) for %d steps in %.1f min%s; model in %s", cfg.arch, cfg.causal, step,
                elapsed / 60, " (stopped early)" if stopper.stopped else "", out_dir)
    if best is not None:
        logger.info("saved the best validation weights: PCC %.4f at step %d (%d validations, %.1f s)",
                    stopper.best, stopper.best_step, val_evals, val_seconds)
    return out_dir


@dataclasses.dataclass
class TrainedDecoder:
    """A trained decoder directory, loaded.

    Attributes
    ----------
    decoder : Decoder
        In eval mode.
    train_config : DecoderTrainConfig
    info : dict
        ``decoder_info.json``.
    directory : Path
    """

    decoder: Any
    train_config: DecoderTrainConfig
    info: dict
    directory: Path


def load_trained_decoder(model_dir: str | os.PathLike) -> TrainedDecoder:
    """Load a directory written by :func:`train_decoder`.

    Raises
    ------
    FileNotFoundError
        The directory, or one of its files, is missing (the message names it).
    """
    from edgensd.decoders import load_decoder
    from edgensd.decoders.registry import CONFIG_FILE

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"decoder model directory not found: {model_dir}")
    for name in (CONFIG_FILE, TRAIN_CONFIG_FILE, INFO_FILE):
        if not (model_dir / name).is_file():
            raise FileNotFoundError(
                f"{model_dir} holds no {name}: is it a directory written by 'edgensd train decoder'?"
            )
    decoder = load_decoder(model_dir)
    cfg = DecoderTrainConfig.load(model_dir / TRAIN_CONFIG_FILE)
    info = json.loads((model_dir / INFO_FILE).read_text())
    return TrainedDecoder(decoder=decoder, train_config=cfg, info=info, directory=model_dir)
