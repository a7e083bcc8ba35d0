"""The speech encoder (normalized-dB spectrogram + DSP pitch → 18 parameters) and the speech model
bundle (encoder + synthesizer) trained in stage 1."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgensd.config import Config
from edgensd.params import F0, N_PARAMS, VoiceRange, raw_to_physical
from edgensd.speech.features import N_INPUT
from edgensd.speech.synth import SynthConfig, Synthesizer

MODEL_FILE = "model.pt"
CONFIG_FILE = "speech_model.json"
SYNTH_WEIGHTS_FILE = "synth_weights.npz"


@dataclasses.dataclass
class SpeechModelConfig(Config):
    """Architecture of the speech encoder and its synthesizer.

    Attributes
    ----------
    voice : VoiceRange
        The participant's voice range.
    hidden : int
        Channels of the temporal convolution stack.
    n_blocks : int
        Residual blocks (kernel 3, dilations cycling 1, 2, 4).
    f0_correction : float
        The encoder refines the DSP pitch track by at most this relative amount: ``f0 = f0_dsp *
        exp(f0_correction * tanh(r))``.
    """

    voice: VoiceRange = dataclasses.field(default_factory=VoiceRange)
    hidden: int = 128
    n_blocks: int = 6
    f0_correction: float = 0.08


class _Block(nn.Module):
    def __init__(self, ch: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(ch, ch, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(ch, ch, 1)
        self.norm = nn.GroupNorm(1, ch)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(self.norm(x))))


class SpeechEncoder(nn.Module):
    """Spectrogram frames → 18 physical speech parameters per frame (non-causal, offline use).

    Input: (batch, n_frames, N_INPUT) from :meth:`edgensd.speech.features.TrialFeatures.encoder_input`.
    Output: (batch, n_frames, 18) in physical units.
    """

    def __init__(self, config: SpeechModelConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.inp = nn.Conv1d(N_INPUT, h, 5, padding=2)
        self.blocks = nn.Sequential(*[_Block(h, (1, 2, 4)[i % 3]) for i in range(config.n_blocks)])
        self.out = nn.Conv1d(h, N_PARAMS, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != N_INPUT:
            raise ValueError(f"encoder input must have {N_INPUT} features in the last axis, got {tuple(x.shape)}")
        h = self.blocks(self.inp(x.transpose(1, 2)))
        raw = self.out(h).transpose(1, 2)
        phys = raw_to_physical(raw, self.config.voice)
        voice = self.config.voice
        lo, hi = np.log(voice.f0_hz[0]), np.log(voice.f0_hz[1])
        log_f0_dsp = lo + (x[..., N_INPUT - 2] + 1.0) * 0.5 * (hi - lo)
        log_f0 = (log_f0_dsp + self.config.f0_correction * torch.tanh(raw[..., F0])).clamp(lo, hi)
        return torch.cat([torch.exp(log_f0).unsqueeze(-1), phys[..., 1:]], dim=-1)


class SpeechModel(nn.Module):
    """Encoder + synthesizer: the stage-1 speech auto-encoder."""

    def __init__(self, config: SpeechModelConfig, background: np.ndarray | None = None) -> None:
        super().__init__()
        self.config = config
        self.encoder = SpeechEncoder(config)
        self.synth = Synthesizer(SynthConfig(voice=config.voice), background=background)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (physical params (B, T, 18), power spectrogram (B, T, 256))."""
        params = self.encoder(x)
        return params, self.synth(params)

    def save(self, out_dir: str | Path) -> Path:
        """Write ``model.pt``, ``speech_model.json`` and ``synth_weights.npz`` into ``out_dir`` (atomic)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / (MODEL_FILE + ".tmp")
        torch.save({"state_dict": self.state_dict(), "config": self.config.to_dict()}, tmp)
        tmp.replace(out_dir / MODEL_FILE)
        self.config.save(out_dir / CONFIG_FILE)
        w_tmp = out_dir / "synth_weights.tmp.npz"
        self.synth.export_weights().save_npz(w_tmp)
        w_tmp.replace(out_dir / SYNTH_WEIGHTS_FILE)
        return out_dir


def load_speech_model(model_dir: str | Path) -> SpeechModel:
    """Load a trained speech model directory written by :meth:`SpeechModel.save`.

    Raises a FileNotFoundError naming what is missing and a ValueError for a corrupted file.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"speech model directory not found: {model_dir}")
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir} holds no {MODEL_FILE}: is it a trained speech model directory?")
    config = SpeechModelConfig.load(model_dir / CONFIG_FILE)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model = SpeechModel(config)
        model.load_state_dict(blob["state_dict"])
    except Exception as exc:  # torch raises many types for a damaged file
        raise ValueError(f"{path} is corrupted or not a speech model ({type(exc).__name__}: {exc})") from exc
    model.eval()
    return model
