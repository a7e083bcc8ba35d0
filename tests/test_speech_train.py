"""Stage-1 training and evaluation end to end on real prompts: checkpoints, resume, signals, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from edgensd.data.speech import SpeechDataConfig, gather_speech
from edgensd.speech.evaluate import evaluate_speech
from edgensd.speech.model import SpeechModelConfig, load_speech_model
from edgensd.speech.train import CHECKPOINT_FILE, SpeechTrainConfig, load_checkpoint, train_speech

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("speech")
    return gather_speech(out, SpeechDataConfig(max_prompts=24, n_test=6), verbose="warning").path


def tiny(minutes: float) -> SpeechTrainConfig:
    return SpeechTrainConfig(max_minutes=minutes, batch_size=2, crop_frames=48, checkpoint_every_s=1.0,
                             model=SpeechModelConfig(hidden=16, n_blocks=1))


@pytest.fixture(scope="module")
def trained(speech_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    train_speech(speech_file, out, tiny(0.05))
    return out


def test_training_writes_a_usable_model(trained):
    for name in ("model.pt", "speech_model.json", "synth_weights.npz", "train_config.json", CHECKPOINT_FILE,
                 "train_log.jsonl"):
        assert (trained / name).is_file(), name
    ck = load_checkpoint(trained / CHECKPOINT_FILE)
    assert ck["done"] and ck["step"] > 0 and ck["elapsed_s"] >= 3.0
    model = load_speech_model(trained)
    assert model.config.hidden == 16
    assert model.config.voice.name == "high"  # taken from the speech file


def test_resume_continues_from_checkpoint(trained, speech_file, tmp_path):
    import shutil

    out = tmp_path / "resume"
    shutil.copytree(trained, out)
    before = load_checkpoint(out / CHECKPOINT_FILE)
    cfg = tiny(0.1)
    cfg.model = SpeechModelConfig(hidden=64)  # ignored: the checkpoint's architecture wins
    train_speech(speech_file, out, cfg)
    after = load_checkpoint(out / CHECKPOINT_FILE)
    assert after["step"] > before["step"] and after["elapsed_s"] >= 6.0
    assert load_speech_model(out).config.hidden == 16


def test_evaluation_json_wavs_plots(trained, speech_file, tmp_path):
    res = evaluate_speech(trained, speech_file, tmp_path / "e.json", tmp_path / "wav", tmp_path / "plots", max_wavs=2)
    saved = json.loads((tmp_path / "e.json").read_text())
    for key in ("pcc_mean", "pcc_median", "n_utterances", "per_utterance", "baselines", "stoi"):
        assert key in saved
    assert saved["n_utterances"] == 6 == len(saved["per_utterance"])
    assert -1 <= res["pcc_mean"] <= 1 and 0.2 < res["baselines"]["floor_pcc_mean"] < 0.8
    assert 0.7 < res["baselines"]["cepstral_envelope_pcc_mean"] < 1.0
    assert len(list((tmp_path / "wav").glob("*.wav"))) == 6 and len(list((tmp_path / "plots").glob("*.png"))) == 6
    assert 0 <= saved["stoi"]["frame_renderer_mean"] <= 1


def test_sigterm_leaves_a_usable_checkpoint(speech_file, tmp_path):
    out = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgensd.cli.main", "train", "speech", "--data", str(speech_file),
         "--out", str(out), "--max-minutes", "10", "--threads", "1", "-q"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while not (out / "train_log.jsonl").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    assert b"checkpoint written" in err
    ck = load_checkpoint(out / CHECKPOINT_FILE)
    assert not ck["done"] and ck["step"] >= 1
    load_speech_model(out)  # the model files are usable as they are


def test_bad_inputs(trained, speech_file, tmp_path):
    import shutil

    with pytest.raises(FileNotFoundError):
        train_speech(tmp_path / "nope.h5", tmp_path / "o", tiny(0.01))
    bad = tmp_path / "bad"
    shutil.copytree(trained, bad)
    (bad / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupted"):
        train_speech(speech_file, bad, tiny(0.01))
    (bad / "model.pt").write_bytes(np.arange(100).tobytes())
    with pytest.raises(ValueError, match="corrupted"):
        load_speech_model(bad)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_speech_model(tmp_path / "missing_dir")
    with pytest.raises(ValueError, match="max_minutes"):
        train_speech(speech_file, tmp_path / "z", tiny(0.0))
