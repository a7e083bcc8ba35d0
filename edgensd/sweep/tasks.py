"""The bodies of a sweep's tasks: plain functions that Ray runs in its worker processes.

Each task works in its own folder, appends one line to ``attempts.jsonl`` when it starts (how many times it
ran), logs to ``task.log`` there, sets torch's threads to its CPU share, and writes ``done.json`` last,
atomically (write then rename): a folder with ``done.json`` holds a finished task, whatever happened to the
sweep afterwards. Training checkpoints as ``edgensd train`` does, so a task that is run again resumes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from edgensd.log import logger
from edgensd.sweep.config import DONE_FILE

__all__ = ["ATTEMPTS_FILE", "TASK_LOG", "run_decoder_task", "run_speech_model_task", "run_speech_task",
           "write_json_atomic"]

ATTEMPTS_FILE = "attempts.jsonl"
TASK_LOG = "task.log"
LOCK_FILE = "lock"
DECODER_CHECKPOINT_EVERY_S = 60.0
"""Seconds between stage-2 checkpoints in a sweep (a killed sweep loses at most this much of a task)."""


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as JSON to a temporary file, then rename it over ``path`` (readers never see half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _run_task(spec: dict, body: Callable[[Path], dict]) -> dict:
    """Run ``body(task_dir)`` with the bookkeeping every task shares; returns the result written to done.json."""
    import torch

    task_dir = Path(spec["task_dir"])
    task_dir.mkdir(parents=True, exist_ok=True)
    with _task_lock(task_dir):
        return _run_locked(spec, body, task_dir, torch)


@contextlib.contextmanager
def _task_lock(task_dir: Path):
    """Hold an exclusive lock on the task folder: a run of the same task left over from a killed sweep (its
    worker outlives the sweep by a second or so) finishes dying before this one writes there."""
    with open(task_dir / LOCK_FILE, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for an earlier run of %s to stop", task_dir)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run_locked(spec: dict, body: Callable[[Path], dict], task_dir: Path, torch) -> dict:
    done = task_dir / DONE_FILE
    if done.is_file():  # finished by an earlier run after this sweep planned it
        prev = json.loads(done.read_text())
        if prev.get("fingerprint") == json.loads(json.dumps(spec["fingerprint"])):
            return prev
    attempts = task_dir / ATTEMPTS_FILE
    n_attempt = (len(attempts.read_text().splitlines()) if attempts.is_file() else 0) + 1
    started = _now()
    with open(attempts, "a") as f:
        f.write(json.dumps({"attempt": n_attempt, "started": started, "pid": os.getpid(),
                            "host": socket.gethostname()}) + "\n")
    threads = int(spec["threads"])
    torch.set_num_threads(threads)
    handler = logging.FileHandler(task_dir / TASK_LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    t0 = time.time()
    try:
        logger.info("task %s (attempt %d, %d torch threads, pid %d)", task_dir, n_attempt, threads, os.getpid())
        result = body(task_dir)
        result.update({
            "task": spec["task"], "participant": spec["participant"], "data": spec["data"],
            "layout": spec["layout"], "fingerprint": spec["fingerprint"], "attempt": n_attempt,
            "started": started, "finished": _now(), "seconds": round(time.time() - t0, 1),
            "threads": threads, "host": socket.gethostname(),
        })
        write_json_atomic(task_dir / DONE_FILE, result)
        logger.info("task done in %.1f s", result["seconds"])
        return result
    except KeyboardInterrupt:
        logger.warning("task stopped (interrupted); running the sweep again resumes it")
        raise
    except BaseException as exc:
        logger.error("task failed: %s: %s", type(exc).__name__, exc)
        raise
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(old_level)


def _train_speech_model(spec: dict, sm: Path) -> dict:
    """Stage-1 training into ``sm`` on ``spec["data"]``; its time and steps."""
    from edgensd.speech.train import SpeechTrainConfig, train_speech
    from edgensd.trainloop import load_checkpoint

    cfg = SpeechTrainConfig(max_minutes=float(spec["speech_minutes"]), seed=int(spec["seed"]),
                            n_threads=int(spec["threads"]))
    train_speech(spec["data"], sm, cfg)
    ck = load_checkpoint(sm / "checkpoint.pt")
    return {"speech_train_seconds": round(float(ck["elapsed_s"]), 1), "speech_train_steps": int(ck["step"])}


def run_speech_model_task(spec: dict) -> dict:
    """The speech model of one recording, shared by every participant who spoke it (``speech_per='speech'``).

    Parameters
    ----------
    spec : dict
        ``task``, ``task_dir``, ``participant`` (the one whose file it trains on), ``data``, ``layout``,
        ``fingerprint`` (holds ``speech_key``), ``threads``, ``speech_minutes``, ``seed``.

    Returns
    -------
    dict
        ``speech_model`` (``task_dir/model``), ``speech_key``, ``speech_train_seconds``, ``speech_train_steps``,
        plus the common fields (see :func:`_run_task`).
    """

    def body(task_dir: Path) -> dict:
        sm = task_dir / "model"
        out = _train_speech_model(spec, sm)
        return {**out, "speech_model": str(sm), "speech_key": spec["fingerprint"]["speech_key"]}

    return _run_task(spec, body)


def run_speech_task(spec: dict, speech_model: dict | None = None) -> dict:
    """Stage 1 of one participant: its speech model, then its reference parameters and ridge fits (cache).

    Parameters
    ----------
    spec : dict
        ``task``, ``task_dir``, ``participant``, ``data``, ``layout``, ``fingerprint``, ``threads``,
        ``cache_dir``, ``speech_model`` (a shared model, or ``""``), ``speech_key``, ``speech_minutes``,
        ``seed``.
    speech_model : dict, optional
        The result of this participant's recording's :func:`run_speech_model_task`; without it and without a
        shared model, the participant's own speech model is trained in ``task_dir/model``.

    Returns
    -------
    dict
        ``speech_model`` (the folder stage 2 uses), ``speech_key`` (``""`` unless shared by recording),
        ``speech_train_seconds`` and ``speech_train_steps`` (of the model's training; None for a shared
        ``--speech-model``), ``shared_speech_model``, plus the common fields (see :func:`_run_task`).
    """

    def body(task_dir: Path) -> dict:
        from edgensd.decoding.evaluate import prepare_cache

        out = {"speech_train_seconds": None, "speech_train_steps": None, "shared_speech_model": bool(
            spec["speech_model"]), "speech_key": ""}
        if spec["speech_model"]:
            sm = Path(spec["speech_model"])
        elif speech_model is not None:
            if speech_model["speech_key"] != spec.get("speech_key"):
                raise ValueError(f"{spec['task']}: speech model of recording {speech_model['speech_key']} given "
                                 f"for recording {spec.get('speech_key')!r}")
            sm = Path(speech_model["speech_model"])
            out.update(speech_key=speech_model["speech_key"],
                       speech_train_seconds=speech_model["speech_train_seconds"],
                       speech_train_steps=speech_model["speech_train_steps"])
        else:
            sm = task_dir / "model"
            out.update(_train_speech_model(spec, sm))
        prepare_cache(spec["data"], sm, spec["cache_dir"])
        out["speech_model"] = str(sm)
        return out

    return _run_task(spec, body)


def run_decoder_task(spec: dict, stage1: dict) -> dict:
    """Stage 2 and evaluation of one decoder on one participant.

    Parameters
    ----------
    spec : dict
        ``task``, ``task_dir``, ``participant``, ``data``, ``layout``, ``fingerprint``, ``threads``,
        ``cache_dir``, ``arch``, ``causal``, ``minutes``, ``seed``, ``batch_size``, ``decoder`` (overrides),
        ``stoi``, ``train`` (DecoderTrainConfig overrides; optional).
    stage1 : dict
        The participant's stage-1 result (:func:`run_speech_task`): ``speech_model`` is used.

    Returns
    -------
    dict
        ``arch``, ``causal``, ``pcc_mean``, ``pcc_median``, ``ridge_pcc_mean`` (same causality),
        ``floor_pcc_mean``, ``ceiling_pcc_mean``, ``stoi_mean``, ``n_trials``, ``train_steps``,
        ``train_seconds``, ``macs_per_frame``, ``n_params``, ``lookahead_frames``, ``eval_json``, ``model``,
        plus the common fields (see :func:`_run_task`).
    """

    def body(task_dir: Path) -> dict:
        from edgensd.decoding.evaluate import evaluate_decoder
        from edgensd.decoding.train import DecoderTrainConfig, train_decoder

        cfg = DecoderTrainConfig(arch=spec["arch"], causal=bool(spec["causal"]), max_minutes=float(spec["minutes"]),
                                 seed=int(spec["seed"]), batch_size=int(spec["batch_size"]),
                                 n_threads=int(spec["threads"]), cache_dir=str(spec["cache_dir"]),
                                 decoder=dict(spec["decoder"]), checkpoint_every_s=DECODER_CHECKPOINT_EVERY_S,
                                 **dict(spec.get("train", {})))
        model_dir = task_dir / "model"
        train_decoder(spec["data"], stage1["speech_model"], model_dir, cfg)
        r = evaluate_decoder(model_dir, spec["data"], task_dir / "eval.json", cache_dir=spec["cache_dir"],
                             stoi=bool(spec["stoi"]))
        keys = ("arch", "causal", "pcc_mean", "pcc_median", "ridge_pcc_mean", "floor_pcc_mean", "ceiling_pcc_mean",
                "stoi_mean", "n_trials", "train_steps", "train_seconds", "macs_per_frame", "n_params",
                "lookahead_frames")
        return {**{k: r[k] for k in keys}, "ridge_noncausal_pcc_mean": r["baselines"]["ridge_noncausal_pcc_mean"],
                "speech_model": stage1["speech_model"], "model": str(model_dir),
                "eval_json": str(task_dir / "eval.json")}

    return _run_task(spec, body)
