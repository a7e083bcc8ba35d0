"""Benchmark and parity report of the C synthesizer (issue 5), side by side in one run on one core.

Measures, on real utterances (Allison prompts, or the held-out trials of ``--data``):

* speed at batch 1: a spectrogram frame in C against the PyTorch synthesizer's per-frame cost (target: C at
  least 50x faster), and one 8 ms audio frame in C (float32 and fixed point) against its duration (target:
  at most 2 %), with the numpy renderer for context;
* parity: spectrogram frames against PyTorch deterministic mode (max |diff|, normalized dB; target 1e-3) and
  audio against the numpy frame renderer (max |diff|; target 1e-4);
* the fixed-point audio path's SNR against float32 (target at least 40 dB);
* STOI of the C-rendered audio against the original speech, next to Griffin-Lim on the same (synthesized)
  spectrogram and Griffin-Lim on the original spectrogram.

Parameters come from ``--model DIR`` (a trained speech model: its synthesizer and its encoder's parameters)
or, before one exists, from analysis by synthesis through a synthesizer with perturbed weights
(:func:`edgensd.csynth.fit_params_to_audio`).

Usage: python bench/bench_synth.py [--model DIR] [--data speech.h5] [--n-utterances 6] [--json out.json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, before numpy/torch start their pools

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from edgensd.csynth import CSynth, fit_params_to_audio, perturbed_synthesizer, speech_prompt  # noqa: E402
from edgensd.spectrogram import HOP, SAMPLE_RATE, power_spectrogram, power_to_norm  # noqa: E402
from edgensd.speech.render import FrameRenderer  # noqa: E402
from edgensd.speech.synth import estimate_background  # noqa: E402

FRAME_S = HOP / SAMPLE_RATE
#: Allison prompts used when no --data is given (short, varied, spread over the sorted names).
DEFAULT_PROMPTS = ("activated", "conf-getpin", "digits/5", "vm-goodbye", "letters/m", "queue-thankyou",
                   "vm-nobox", "call-waiting")


def _pin_one_core() -> str:
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})
        return f"pinned to CPU {cpus[-1]} of {len(cpus)}"
    return "not pinned"


def _utterances(data: str | None, n: int) -> list[tuple[str, np.ndarray]]:
    if data is not None:
        from edgensd.data.participant import load_participant, trial_split

        p = load_participant(data, require_neural=False)
        _, test = trial_split(p)
        picks = test[np.linspace(0, len(test) - 1, min(n, len(test))).astype(int)]
        return [(f"trial {int(i)}", p.trial_audio(int(i))) for i in picks]
    out = []
    for name in DEFAULT_PROMPTS:
        try:
            out.append((name, speech_prompt(name)))
        except (FileNotFoundError, ValueError):
            continue
        if len(out) == n:
            break
    if not out:
        raise SystemExit("no Allison prompts found: install asterisk-core-sounds-en-g722 or pass --data")
    return out


def _timeit(fn, n_calls: int) -> tuple[float, float]:
    """(CPU seconds of this thread, wall seconds) per call of ``fn`` over ``n_calls`` calls.

    CPU time of the benchmarking thread is the figure reported: on a machine shared with other jobs, wall
    time also counts the time the thread waits for the core, which changes from run to run.
    """
    c0, t0 = time.thread_time(), time.perf_counter()
    for _ in range(n_calls):
        fn()
    return (time.thread_time() - c0) / n_calls, (time.perf_counter() - t0) / n_calls


def _snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    ref = ref.astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum((test - ref) ** 2), 1e-30)))


def _stoi(clean: np.ndarray, test: np.ndarray) -> float:
    """STOI of ``test`` against ``clean`` (NaN where the utterance is too short for pystoi's 384 ms window)."""
    from pystoi import stoi

    n = min(clean.shape[0], test.shape[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(stoi(clean[:n], test[:n], SAMPLE_RATE))
    return float("nan") if any("Not enough STFT frames" in str(w.message) for w in caught) else value


def _griffin_lim():
    try:
        from edgensd.speech.griffinlim import griffin_lim
    except ImportError:
        return None
    return griffin_lim


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, metavar="DIR", help="trained speech model directory")
    ap.add_argument("--data", default=None, metavar="FILE", help="participant file: use its held-out trials")
    ap.add_argument("--n-utterances", type=int, default=6, metavar="N")
    ap.add_argument("--fit-steps", type=int, default=150, metavar="N", help="Adam steps when fitting params")
    ap.add_argument("--timing-frames", type=int, default=400, metavar="N", help="frames per timing run")
    ap.add_argument("--repeats", type=int, default=9, metavar="N", help="timing runs (median reported)")
    ap.add_argument("--gl-iter", type=int, default=64, metavar="N", help="Griffin-Lim iterations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    pinned = _pin_one_core()

    utts = _utterances(args.data, args.n_utterances)
    if args.model is not None:
        from edgensd.speech.evaluate import encode_audio
        from edgensd.speech.model import load_speech_model

        model = load_speech_model(args.model)
        synth = model.synth
        params = [encode_audio(model, a)[0].astype(np.float32) for _, a in utts]
        source = f"trained model {args.model} (encoder parameters)"
    else:
        bg = estimate_background(np.concatenate([power_spectrogram(a) for _, a in utts]))
        synth = perturbed_synthesizer(seed=args.seed + 1, background=bg)
        params = [fit_params_to_audio(a, synth, n_steps=args.fit_steps) for _, a in utts]
        source = f"perturbed synthesizer, parameters fitted to each utterance ({args.fit_steps} Adam steps)"
    synth.eval()
    weights = synth.export_weights()
    griffin_lim = _griffin_lim()

    # ---- parity, fixed point, STOI per utterance ----------------------------------------------------------
    rows = []
    for (name, audio), p in zip(utts, params, strict=True):
        cs = CSynth(weights, seed=args.seed)
        with torch.no_grad():
            ref_spec = synth.spectrogram_norm(torch.as_tensor(p)).numpy()
        spec = cs.spectrogram(p)
        ref_audio = FrameRenderer(weights, seed=args.seed).render(p)
        c_audio = cs.render(p)
        fx_synth = CSynth(weights, seed=args.seed, fixed_point=True)
        fx_audio = fx_synth.render(p)
        row = {
            "utterance": name,
            "frames": int(p.shape[0]),
            "spec_maxdiff": float(np.max(np.abs(spec - ref_spec))),
            "audio_maxdiff": float(np.max(np.abs(c_audio - ref_audio))),
            "fixed_snr_db": _snr_db(c_audio, fx_audio),
            "fixed_saturated": fx_synth.n_saturated,
            "stoi_c": _stoi(audio, c_audio),
            "stoi_c_fixed": _stoi(audio, fx_audio),
        }
        if griffin_lim is not None:
            gl_synth = griffin_lim(spec, n_iter=args.gl_iter, seed=args.seed)
            gl_orig = griffin_lim(power_to_norm(power_spectrogram(audio)), n_iter=args.gl_iter, seed=args.seed)
            row["stoi_gl_synth"] = _stoi(audio, gl_synth)
            row["stoi_gl_original"] = _stoi(audio, gl_orig)
        rows.append(row)

    # ---- speed, side by side --------------------------------------------------------------------------------
    traj = np.concatenate(params)
    traj = np.resize(traj, (args.timing_frames, traj.shape[1])).astype(np.float32)
    cs = CSynth(weights, seed=args.seed)
    cs_fx = CSynth(weights, seed=args.seed, fixed_point=True)
    fr = FrameRenderer(weights, seed=args.seed)
    frames_t = torch.as_tensor(traj)
    k = {"i": 0}

    def torch_frame():
        i = k["i"] = (k["i"] + 1) % traj.shape[0]
        with torch.no_grad():
            synth(frames_t[i : i + 1])

    def torch_sequence():
        with torch.no_grad():
            synth(frames_t)

    def c_frame_py():
        i = k["i"] = (k["i"] + 1) % traj.shape[0]
        cs.spectrogram_frame(traj[i])

    def numpy_push():
        i = k["i"] = (k["i"] + 1) % traj.shape[0]
        fr.push(traj[i])

    names = ("torch", "torch_seq", "c_spec", "c_spec_py", "c_audio", "c_audio_fx", "numpy_audio")
    cpu: dict[str, list[float]] = {name: [] for name in names}
    wall: dict[str, list[float]] = {name: [] for name in names}
    n_frames = traj.shape[0]
    n_torch = max(20, args.timing_frames // 8)
    runs = {
        "torch": (torch_frame, n_torch, 1),
        "torch_seq": (torch_sequence, 1, n_frames),
        "c_spec": (lambda: cs.spectrogram(traj), 1, n_frames),
        "c_spec_py": (c_frame_py, n_frames, 1),
        "c_audio": (lambda: cs.render(traj), 1, n_frames),
        "c_audio_fx": (lambda: cs_fx.render(traj), 1, n_frames),
        "numpy_audio": (numpy_push, n_torch, 1),
    }
    for _ in range(args.repeats):  # interleaved, so load changes hit every row alike
        for name, (fn, n_calls, per_call) in runs.items():
            c, t = _timeit(fn, n_calls)
            cpu[name].append(c / per_call)
            wall[name].append(t / per_call)
    med = {key: statistics.median(v) for key, v in cpu.items()}
    med_wall = {key: statistics.median(v) for key, v in wall.items()}

    # ---- report ----------------------------------------------------------------------------------------------
    print(f"edgensd C synthesizer benchmark -- {pinned}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"parameters: {source}; voice {weights.voice.name!r}, {cs.n_harmonics} harmonics")
    print()
    print(f"speed, batch 1, one frame: CPU time of the benchmarking thread (wall clock in brackets), median of "
          f"{args.repeats} interleaved runs")
    print(f"  {'what':44s} {'per frame':>12s} {'(wall)':>12s} {'ratio / share':>18s}")

    def line(label: str, key: str, extra: str = "") -> None:
        print(f"  {label:44s} {med[key] * 1e6:9.2f} us {med_wall[key] * 1e6:9.2f} us {extra}")

    line("PyTorch synthesizer, spectrogram frame", "torch")
    line("C spectrogram frame (array call)", "c_spec", f"{med['torch'] / med['c_spec']:10.0f} x faster "
         f"({med_wall['torch'] / med_wall['c_spec']:.0f} x wall)")
    line("C spectrogram frame (one Python call each)", "c_spec_py", f"{med['torch'] / med['c_spec_py']:10.0f} x faster")
    line(f"PyTorch, {n_frames} frames in one call, per frame", "torch_seq",
         f"{med['torch_seq'] / med['c_spec']:10.1f} x the C frame (amortized, not streaming)")
    line("C audio frame, float32 (128 samples, 8 ms)", "c_audio", f"{100 * med['c_audio'] / FRAME_S:10.3f} % of 8 ms")
    line("C audio frame, fixed point", "c_audio_fx", f"{100 * med['c_audio_fx'] / FRAME_S:10.3f} % of 8 ms")
    line("numpy renderer audio frame (reference)", "numpy_audio",
         f"{100 * med['numpy_audio'] / FRAME_S:10.3f} % of 8 ms")
    print()
    cols = ["frames", "spec_maxdiff", "audio_maxdiff", "fixed_snr_db", "stoi_c", "stoi_c_fixed"]
    if griffin_lim is not None:
        cols += ["stoi_gl_synth", "stoi_gl_original"]
    heads = {"frames": "frames", "spec_maxdiff": "spec |d|max", "audio_maxdiff": "audio |d|max",
             "fixed_snr_db": "fixed SNR dB", "stoi_c": "STOI C", "stoi_c_fixed": "STOI C fx",
             "stoi_gl_synth": "STOI GL synth", "stoi_gl_original": "STOI GL orig"}
    print("per utterance: parity (targets 1e-3 / 1e-4), fixed-point SNR (target >= 40 dB), STOI vs original "
          "(nan: shorter than pystoi's window; left out of the mean)")
    print(f"  {'utterance':16s}" + "".join(f"{heads[c]:>14s}" for c in cols))
    for r in rows:
        cells = "".join(f"{r[c]:14d}" if c == "frames" else
                        f"{r[c]:14.2e}" if "maxdiff" in c else f"{r[c]:14.3f}" if "stoi" in c else f"{r[c]:14.1f}"
                        for c in cols)
        print(f"  {r['utterance']:16s}{cells}")
    summary = {
        "spec_maxdiff": max(r["spec_maxdiff"] for r in rows),
        "audio_maxdiff": max(r["audio_maxdiff"] for r in rows),
        "fixed_snr_db_min": min(r["fixed_snr_db"] for r in rows),
        "stoi_c_mean": float(np.nanmean([r["stoi_c"] for r in rows])),
        "speedup_spec": med["torch"] / med["c_spec"],
        "speedup_spec_vs_torch_sequence": med["torch_seq"] / med["c_spec"],
        "audio_frame_share": med["c_audio"] / FRAME_S,
        "audio_frame_share_fixed": med["c_audio_fx"] / FRAME_S,
    }
    if griffin_lim is not None:
        summary["stoi_gl_synth_mean"] = float(np.nanmean([r["stoi_gl_synth"] for r in rows]))
        summary["stoi_gl_original_mean"] = float(np.nanmean([r["stoi_gl_original"] for r in rows]))
    print(f"  {'worst / mean':16s}" + "".join(
        f"{summary['spec_maxdiff']:14.2e}" if c == "spec_maxdiff" else
        f"{summary['audio_maxdiff']:14.2e}" if c == "audio_maxdiff" else
        f"{summary['fixed_snr_db_min']:14.1f}" if c == "fixed_snr_db" else
        f"{np.nanmean([r[c] for r in rows]):14.3f}" if "stoi" in c else f"{'':14s}" for c in cols))
    ok = (summary["spec_maxdiff"] <= 1e-3 and summary["audio_maxdiff"] <= 1e-4 and summary["speedup_spec"] >= 50
          and summary["audio_frame_share"] <= 0.02 and summary["fixed_snr_db_min"] >= 40)
    print()
    print("issue 5 targets: " + ("all met" if ok else "NOT all met"))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "cpu_time_median_s": med, "wall_time_median_s": med_wall,
                                               "summary": summary, "source": source}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
