"""Voice range from a participant's own audio: real male (LibriVox reader, Debian pocketsphinx-testdata) and
female (Allison, Debian asterisk-core-sounds-en-g722) speech, too little voicing, and stage 1 using it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgensd.audio import load_audio
from edgensd.data.participant import Participant, save_participant
from edgensd.params import VoiceRange
from edgensd.speech.voice import LOW_HIGH_BOUNDARY_HZ, estimate_voice_range

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")  # male reader, installed by scripts/install.sh


def male_clips() -> list[np.ndarray]:
    return [load_audio(f) for f in sorted(LIBRIVOX.glob("*.wav"))]


def female_clips(n: int = 12) -> list[np.ndarray]:
    from edgensd.data.speech import SpeechDataConfig, build_speech_participant

    sp, _ = build_speech_participant(SpeechDataConfig(max_prompts=n, n_test=2))
    return [sp.trial_audio(i) for i in range(sp.n_trials)]


def test_male_reader_gets_the_low_preset():
    clips = male_clips()
    assert len(clips) == 5
    est = estimate_voice_range(clips)
    assert est.preset == "low" and est.voice.name == "low"
    assert 80 < est.f0_median_hz < 140 and est.n_voiced_frames > 500
    lo, hi = est.voice.f0_hz
    assert lo <= est.f0_p2_hz and hi >= est.f0_p98_hz  # the speaker's pitch is inside the limits
    assert "'low' preset" in est.reason
    json.dumps(est.to_dict())


def test_female_prompts_get_the_high_preset():
    est = estimate_voice_range(female_clips())
    assert est.preset == "high" and est.f0_median_hz > LOW_HIGH_BOUNDARY_HZ
    assert est.voice.f0_hz[0] <= est.f0_p2_hz and est.voice.f0_hz[1] >= est.f0_p98_hz
    # the formant and loudness limits are the preset's own
    assert est.voice.formants_hz == VoiceRange.preset("high").formants_hz


def test_too_little_voicing_keeps_high_and_says_why():
    rng = np.random.default_rng(0)
    est = estimate_voice_range([0.01 * rng.standard_normal(16000).astype(np.float32), np.zeros(100, np.float32)])
    assert est.preset == "high" and est.voice.same_as(VoiceRange.preset("high"))
    assert "voiced frames" in est.reason and est.to_dict()["f0_median_hz"] is None
    with pytest.raises(ValueError, match="margin"):
        estimate_voice_range([], margin=0.5)


def test_stage1_estimates_and_saves_the_range_of_a_file_without_one(tmp_path, edgensd_log):
    from edgensd.speech.model import SpeechModelConfig, load_speech_model
    from edgensd.speech.train import SpeechTrainConfig, train_speech

    clips = male_clips()
    gap = np.zeros(128 * 20, np.float32)
    pieces, start, end, pos = [gap], [], [], len(gap) // 128
    for c in clips:
        c = c[: len(c) // 128 * 128]
        pieces += [c, gap]
        start.append(pos)
        end.append(pos + len(c) // 128)
        pos = end[-1] + len(gap) // 128
    p = Participant(audio=np.concatenate(pieces), start=np.array(start), end=np.array(end),
                    labels=[f"clip {i}" for i in range(len(clips))], test_trials=np.array([4]))
    assert p.voice_range is None
    save_participant(p, tmp_path / "male.h5")
    cfg = SpeechTrainConfig(max_minutes=0.02, batch_size=2, crop_frames=48, checkpoint_every_s=1.0,
                            model=SpeechModelConfig(hidden=16, n_blocks=1))
    out = train_speech(tmp_path / "male.h5", tmp_path / "model", cfg)
    model = load_speech_model(out)
    assert model.config.voice.name == "low"
    saved = json.loads((Path(out) / "voice_estimate.json").read_text())
    assert saved["preset"] == "low" and saved["voice"]["f0_hz"] == list(model.config.voice.f0_hz)
    assert any("estimated from its audio" in r.getMessage() for r in edgensd_log)
