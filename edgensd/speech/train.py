"""Stage 1: train the speech encoder with the synthesizer in the loop on one participant's own speech.

Losses: L1 between synthesized and true normalized-dB spectrograms (linear 256 bins and 128 mel bands),
plus priors that keep the parameters physical: formant order (F_i + 50 Hz <= F_i+1), temporal smoothness of
the formant tracks, low loudness in silent frames, and the DSP tracker's voicing as weak supervision of α.
The DSP pitch track anchors f0 (the encoder refines it within ±8 %).

Training is bounded by wall-clock minutes, checkpoints every ``checkpoint_every_s`` seconds and on Ctrl-C /
SIGTERM (the model files in the output directory are then always a usable model), and resumes when run
again on the same directory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from edgensd.config import Config
from edgensd.data.participant import load_participant, trial_split
from edgensd.log import logger, progress_enabled
from edgensd.params import ALPHA, FORMANT_F, LOUD, VoiceRange
from edgensd.speech.features import trial_features
from edgensd.speech.model import SpeechModel, SpeechModelConfig
from edgensd.speech.synth import estimate_background, power_to_norm_t
from edgensd.trainloop import StopFlag, atomic_torch_save, checkpoint_if_due, load_checkpoint

CHECKPOINT_FILE = "checkpoint.pt"
TRAIN_CONFIG_FILE = "train_config.json"
LOG_FILE = "train_log.jsonl"


@dataclasses.dataclass
class SpeechTrainConfig(Config):
    """Stage-1 training settings (saved as ``train_config.json`` beside the model)."""

    data: str = ""
    max_minutes: float = 30.0
    seed: int = 0
    batch_size: int = 12
    crop_frames: int = 160
    lr_encoder: float = 1e-3
    lr_synth: float = 1e-2
    lr_synth_gain: float = 0.1
    weight_mel: float = 1.0
    weight_order: float = 1.0
    weight_smooth: float = 0.02
    weight_silence: float = 0.1
    weight_voicing: float = 0.05
    checkpoint_every_s: float = 120.0
    n_threads: int = 0  # 0: torch default
    model: SpeechModelConfig = dataclasses.field(default_factory=SpeechModelConfig)


class _Batches:
    """Random crops from the concatenated training trials."""

    def __init__(self, feats: list, voice: VoiceRange, crop: int, rng: np.random.Generator) -> None:
        self.x = np.concatenate([f.encoder_input(voice) for f in feats]).astype(np.float32)
        self.spec = np.concatenate([f.spec for f in feats]).astype(np.float32)
        self.mel = np.concatenate([f.mel for f in feats]).astype(np.float32)
        self.voiced = np.concatenate([f.voiced for f in feats]).astype(np.float32)
        power = np.concatenate([f.power for f in feats])
        level = 10 * np.log10(power.mean(axis=1) + 1e-12)
        self.silent = (level < np.percentile(level, 15) + 3.0).astype(np.float32)
        self.crop = min(crop, self.x.shape[0])
        self.rng = rng

    def sample(self, n: int) -> tuple[torch.Tensor, ...]:
        starts = self.rng.integers(0, self.x.shape[0] - self.crop + 1, size=n)
        idx = starts[:, None] + np.arange(self.crop)[None, :]
        return tuple(torch.from_numpy(a[idx]) for a in (self.x, self.spec, self.mel, self.voiced, self.silent))


def speech_losses(
    model: SpeechModel, cfg: SpeechTrainConfig, x, spec, mel, voiced, silent
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total stage-1 loss and its parts for one batch."""
    params, power = model(x)
    l_lin = (power_to_norm_t(power) - spec).abs().mean()
    l_mel = (model.synth.mel_norm_from_power(power) - mel).abs().mean()
    fr = params[..., FORMANT_F]
    l_order = torch.relu(fr[..., :-1] + 50.0 - fr[..., 1:]).mean() / 1000.0
    l_smooth = ((fr[:, 1:] - fr[:, :-1]).abs() / 1000.0).mean()
    lo, hi = cfg.model.voice.loudness_db
    l_sil = (torch.relu(params[..., LOUD] - (lo + 0.25 * (hi - lo))) / (hi - lo) * silent).mean()
    a = params[..., ALPHA].clamp(1e-4, 1 - 1e-4)
    l_voice = -(voiced * torch.log(a) + (1 - voiced) * torch.log(1 - a)).mean()
    total = (
        l_lin
        + cfg.weight_mel * l_mel
        + cfg.weight_order * l_order
        + cfg.weight_smooth * l_smooth
        + cfg.weight_silence * l_sil
        + cfg.weight_voicing * l_voice
    )
    parts = {"lin": l_lin.item(), "mel": l_mel.item(), "order": l_order.item(), "smooth": l_smooth.item(),
             "silence": l_sil.item(), "voicing": l_voice.item()}
    return total, parts


def train_speech(data: str | Path, out_dir: str | Path, config: SpeechTrainConfig | None = None) -> Path:
    """Train (or resume training) a speech model; returns the output directory.

    Parameters
    ----------
    data : path
        Participant (or speech-only) HDF5 file with the participant's speech.
    out_dir : path
        Output directory: ``model.pt``, ``speech_model.json``, ``synth_weights.npz``, ``train_config.json``,
        ``checkpoint.pt``, ``train_log.jsonl``. If it holds a checkpoint, training resumes from it.
    config : SpeechTrainConfig, optional

    Raises
    ------
    KeyboardInterrupt
        After Ctrl-C / SIGTERM, once the checkpoint and model files are written.
    """
    out_dir = Path(out_dir)
    data = Path(data)
    cfg = config or SpeechTrainConfig()
    cfg.data = str(data)
    ckpt_path = out_dir / CHECKPOINT_FILE
    ckpt = None
    if ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path)
        old = SpeechTrainConfig.from_dict(ckpt["train_config"])
        if old.model != cfg.model:
            logger.info("resuming with the architecture stored in %s", ckpt_path)
        cfg.model = old.model
        logger.info("resuming from %s (step %d, %.1f min trained)", ckpt_path, ckpt["step"], ckpt["elapsed_s"] / 60)
    if cfg.max_minutes <= 0:
        raise ValueError(f"max_minutes must be > 0, got {cfg.max_minutes}")
    if cfg.n_threads:
        torch.set_num_threads(cfg.n_threads)

    p = load_participant(data, require_neural=False)
    if ckpt is None:
        if p.voice_range is not None:
            cfg.model.voice = p.voice_range
        else:
            from edgensd.speech.voice import estimate_voice_range, log_estimate

            est = estimate_voice_range(p.trial_audio(int(i)) for i in trial_split(p)[0])
            log_estimate(est, str(data))
            cfg.model.voice = est.voice
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "voice_estimate.json").write_text(json.dumps(est.to_dict(), indent=2) + "\n")
    elif p.voice_range is not None and not p.voice_range.same_as(cfg.model.voice):
        raise ValueError(f"{data} has a different voice_range from the checkpoint in {out_dir}")
    voice = cfg.model.voice
    train_idx, test_idx = trial_split(p)
    logger.info("%s: %d training trials (%d held out)", data, len(train_idx), len(test_idx))
    t_feat = time.time()
    feats = trial_features(p, train_idx, voice)
    logger.info("features in %.1f s", time.time() - t_feat)

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    background = estimate_background(np.concatenate([f.power for f in feats]))
    model = SpeechModel(cfg.model, background=background)
    # The gain curves are cosine coefficients in dB and must move by tens of dB: they get their own rate.
    gains = [model.synth.gain_v, model.synth.gain_n]
    other_synth = [prm for prm in model.synth.parameters() if all(prm is not g for g in gains)]
    opt = torch.optim.AdamW(
        [
            {"params": model.encoder.parameters(), "lr": cfg.lr_encoder, "weight_decay": 1e-4},
            {"params": other_synth, "lr": cfg.lr_synth, "weight_decay": 0.0},
            {"params": gains, "lr": cfg.lr_synth_gain, "weight_decay": 0.0},
        ]
    )
    base_lrs = [cfg.lr_encoder, cfg.lr_synth, cfg.lr_synth_gain]
    step, elapsed = 0, 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step, elapsed = int(ckpt["step"]), float(ckpt["elapsed_s"])
        rng = np.random.default_rng(cfg.seed + step)
        torch.manual_seed(cfg.seed + step)
    batches = _Batches(feats, voice, cfg.crop_frames, rng)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(out_dir / TRAIN_CONFIG_FILE)

    def checkpoint(done: bool) -> None:
        atomic_torch_save(
            {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "elapsed_s": elapsed,
             "train_config": cfg.to_dict(), "done": done},
            ckpt_path,
        )
        model.save(out_dir)

    budget = cfg.max_minutes * 60.0
    from tqdm import tqdm

    bar = tqdm(total=int(budget), initial=int(min(elapsed, budget)), unit="s", desc="train speech",
               disable=not progress_enabled())
    last_ckpt = time.time()
    log_f = open(out_dir / LOG_FILE, "a")
    model.train()
    try:
        with StopFlag() as stop:
            while elapsed < budget:
                t0 = time.time()
                frac = elapsed / budget
                scale = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac))
                for g, lr in zip(opt.param_groups, base_lrs, strict=True):
                    g["lr"] = lr * scale
                loss, parts = speech_losses(model, cfg, *batches.sample(cfg.batch_size))
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {loss.item()} at step {step}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                step += 1
                dt = time.time() - t0
                elapsed += dt
                bar.update(int(elapsed) - bar.n if int(elapsed) > bar.n else 0)
                if step % 25 == 0:
                    rec = {"step": step, "elapsed_s": round(elapsed, 1), "loss": round(loss.item(), 5),
                           **{k: round(v, 5) for k, v in parts.items()}}
                    log_f.write(json.dumps(rec) + "\n")
                    log_f.flush()
                    bar.set_postfix(loss=f"{loss.item():.4f}", lin=f"{parts['lin']:.4f}")
                    logger.debug("step %d: %s", step, rec)
                last_ckpt = checkpoint_if_due(stop, checkpoint, ckpt_path, step, last_ckpt, cfg.checkpoint_every_s)
    finally:
        bar.close()
        log_f.close()
    checkpoint(done=True)
    logger.info("trained %d steps in %.1f min; model in %s", step, elapsed / 60, out_dir)
    return out_dir
