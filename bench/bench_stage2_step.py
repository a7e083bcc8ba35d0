"""Where a stage-2 training step spends its time: the decoder vs the frozen synthesizer in the loss.

Usage::

    python bench/bench_stage2_step.py [--models edge:c,resnet3d:nc,...] [--repeats 7] [--threads 1]
                                      [--baseline-rev REV] [--json OUT]

One training step of ``edgensd train decoder`` (default ``DecoderTrainConfig``: 16 crops of 160 frames, the
first 32 of each out of the loss) is timed in two parts, each forward + backward on the CPU:

* the decoder on (16, 160, 64) high-gamma frames (random values; the cost does not depend on them);
* the synthesizer + spectral losses on the 16 x 128 = 2048 frames that count (raw parameters drawn at
  random and mapped to physical units, the linear and mel normalized-dB L1 losses), with the shipped demo
  speech model's synthesizer (frozen, as in stage 2).

``--baseline-rev REV`` also times ``edgensd/speech/synth.py`` as it was at git revision ``REV`` (same
weights), and ``edge``'s GRU as the per-frame autograd loop (what every revision before its hand-written
backpropagation through time ran; same values), interleaved with the current ones, so the two are compared in
one run on the same machine, on two parameter sets: the random one above and a realistic one (the demo speech
model's encoder on real utterances, Allison prompts, with their true spectrograms as targets). For both it
reports how far the two revisions' outputs are apart: power spectrogram, normalized-dB linear and mel
spectrograms, loss, and the gradient of the loss w.r.t. the raw parameters (what stage 2 backpropagates).
Medians of ``--repeats`` runs after one warm-up, in wall time and in this thread's CPU time (less sensitive to
other processes on a shared machine); the figures move with machine load, the ratios much less. Steps per 30
minutes are 1800 s / (decoder + synth).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _revs import import_file, source_at  # bench/ is sys.path[0] when run as a script

from edgensd.decoders import get_decoder
from edgensd.params import physical_to_raw, raw_to_physical
from edgensd.speech.model import load_speech_model
from edgensd.speech.synth import Synthesizer, power_to_norm_t

REPO = Path(__file__).resolve().parents[1]
SPEECH_MODEL = REPO / "edgensd" / "assets" / "demo" / "speech_model"
ALL_MODELS = ("edge:c", "lstm:c", "lstm:nc", "resnet3d:c", "resnet3d:nc", "swin3d:c", "swin3d:nc")
BATCH, CROP, WARMUP, N_ELECTRODES = 16, 160, 32, 64
# real utterances for the realistic parameter set (Debian asterisk-core-sounds-en-g722), used in this order
PROMPTS = ("demo-instruct", "demo-congrats", "demo-abouttotry", "demo-echotest", "demo-moreinfo", "demo-thanks",
           "demo-nomatch", "demo-enterkeywords", "activated", "added", "call-waiting", "calling")
BUDGET_S = 1800.0  # the 30-minute training budget


def _timed(fn) -> tuple[float, float]:
    """Wall and this thread's CPU seconds of one call."""
    w0, c0 = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - w0, time.thread_time() - c0


def _realistic_batch(sm, n: int):
    """Raw params (n, 18) of the demo encoder on real speech, and the true linear (n, 256) / mel (n, 128) targets."""
    from edgensd.csynth import speech_prompt
    from edgensd.speech.evaluate import encode_audio
    from edgensd.speech.features import audio_features

    phys, spec, mel = [], [], []
    for name in PROMPTS:
        audio = speech_prompt(name)
        feats = audio_features(audio, sm.config.voice)
        params = encode_audio(sm, audio)[0]
        m = min(len(params), len(feats.spec))
        phys.append(params[:m])
        spec.append(feats.spec[:m])
        mel.append(feats.mel[:m])
        if sum(len(p) for p in phys) >= n:
            break
    phys, spec, mel = (np.concatenate(a)[:n] for a in (phys, spec, mel))
    if len(phys) < n:
        raise RuntimeError(f"the prompts give {len(phys)} frames, fewer than {n}")
    raw = torch.as_tensor(physical_to_raw(phys, sm.config.voice), dtype=torch.float32)
    return raw, torch.as_tensor(spec, dtype=torch.float32), torch.as_tensor(mel, dtype=torch.float32)


def _outputs(synth: Synthesizer, raw: torch.Tensor, voice, spec: torch.Tensor, mel: torch.Tensor) -> dict:
    """One stage-2 synth + loss step's values: power, normalized dB spectrograms, loss and its raw gradient."""
    r = raw.detach().clone().requires_grad_(True)
    power = synth(raw_to_physical(r, voice))
    lin, mel_n = power_to_norm_t(power), synth.mel_norm_from_power(power)
    loss = (lin - spec).abs().mean() + (mel_n - mel).abs().mean()
    loss.backward()
    return {"power": power.detach(), "lin": lin.detach(), "mel": mel_n.detach(), "loss": loss.detach(), "grad": r.grad}


def _differences(a: dict, b: dict) -> dict:
    """Max abs differences between two :func:`_outputs` (and the scales they compare to)."""
    return {
        "power_max_abs": (a["power"] - b["power"]).abs().max().item(),
        "power_max_rel": ((a["power"] - b["power"]).abs() / b["power"].abs()).max().item(),
        "lin_norm_max_abs": (a["lin"] - b["lin"]).abs().max().item(),
        "mel_norm_max_abs": (a["mel"] - b["mel"]).abs().max().item(),
        "loss_abs": (a["loss"] - b["loss"]).abs().item(),
        "grad_max_abs": (a["grad"] - b["grad"]).abs().max().item(),
        "grad_max": b["grad"].abs().max().item(),
    }


def _baseline_synth(rev: str, current: Synthesizer) -> Synthesizer:
    path = source_at(rev, "edgensd/speech/synth.py")
    try:
        mod = import_file(path, f"synth_{rev}")
    finally:
        os.unlink(path)
    old = mod.Synthesizer(current.config, current.background.numpy())
    old.load_state_dict(current.state_dict())
    return old.eval().requires_grad_(False)


def _synth_step(synth: Synthesizer, raw: torch.Tensor, voice, spec: torch.Tensor, mel: torch.Tensor):
    def run():
        raw.grad = None
        power = synth(raw_to_physical(raw, voice))
        loss = (power_to_norm_t(power) - spec).abs().mean() + (synth.mel_norm_from_power(power) - mel).abs().mean()
        loss.backward()

    return run


def _decoder_step(model, x: torch.Tensor, loop_gru: bool = False):
    """One decoder forward + backward; ``loop_gru`` runs ``edge``'s GRU as the per-frame autograd loop it was
    trained with before its hand-written backpropagation through time (same values)."""
    from edgensd.decoders import edge

    def run():
        model.zero_grad(set_to_none=True)
        saved = edge._tracing_or_scripting
        if loop_gru:
            edge._tracing_or_scripting = lambda: True  # the loop path, as at the baseline revision
        try:
            model(x).square().mean().backward()
        finally:
            edge._tracing_or_scripting = saved

    return run


def _interleaved_cpu(fns: dict, repeats: int) -> dict:
    """Median wall and thread-CPU seconds of each function, timed in turns (same machine load for all)."""
    for fn in fns.values():
        fn()  # warm-up
    wall, cpu = {k: [] for k in fns}, {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            w, c = _timed(fn)
            wall[k].append(w)
            cpu[k].append(c)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(ALL_MODELS), help="comma-separated arch:c|nc list")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the decoder table)")
    ap.add_argument("--baseline-rev", default=None, help="also time synth.py from this git revision")
    ap.add_argument("--json", default=None, help="write the results to this JSON file")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in ALL_MODELS:
            ap.error(f"--models entries must be among {ALL_MODELS}, got {m!r}")
    torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()} · {os.cpu_count()} CPUs · torch {torch.__version__} · "
          f"{args.threads} thread(s) · load avg " + " ".join(f"{v:.2f}" for v in os.getloadavg()))

    sm = load_speech_model(SPEECH_MODEL)
    voice = sm.config.voice
    synth = sm.synth.eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    n = BATCH * (CROP - WARMUP)
    raw = torch.randn(n, 18, generator=gen).requires_grad_(True)
    spec = torch.rand(n, 256, generator=gen) * 2 - 1
    mel = torch.rand(n, 128, generator=gen) * 2 - 1
    synths = [("current", synth)]
    sets = {"random": (raw, spec, mel)}
    diffs = {}
    if args.baseline_rev:
        synths.append((args.baseline_rev, _baseline_synth(args.baseline_rev, synth)))
        sets["realistic"] = _realistic_batch(sm, n)
        for set_name, (r, sp, ml) in sets.items():
            diffs[set_name] = _differences(_outputs(synth, r, voice, sp, ml), _outputs(synths[1][1], r, voice, sp, ml))
    steps = {}
    for name, s in synths:
        for set_name, (r, sp, ml) in sets.items():
            steps[(name, set_name)] = _synth_step(s, r.detach().clone().requires_grad_(True), voice, sp, ml)
    for step in steps.values():
        step()  # warm-up
    wall = {key: [] for key in steps}
    cpu = {key: [] for key in steps}
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        for key, step in steps.items():
            w, c = _timed(step)
            wall[key].append(w)
            cpu[key].append(c)
    wall_med = {key: statistics.median(v) for key, v in wall.items()}
    cpu_med = {key: statistics.median(v) for key, v in cpu.items()}
    synth_med = {name: wall_med[(name, "random")] for name, _ in synths}
    synth_s = {name: wall[(name, "random")] for name, _ in synths}

    rows = []
    x = torch.randn(BATCH, CROP, N_ELECTRODES, generator=gen)
    for spec_m in models:
        arch, var = spec_m.split(":")
        torch.manual_seed(0)
        model = get_decoder(arch, n_electrodes=N_ELECTRODES, causal=var == "c").train()
        fns = {"current": _decoder_step(model, x)}
        if args.baseline_rev and arch == "edge":
            fns["loop"] = _decoder_step(model, x, loop_gru=True)
        timed = _interleaved_cpu(fns, args.repeats)
        dec = timed["current"][0]
        row = {"model": spec_m, "decoder_s": dec, "decoder_cpu_s": timed["current"][1], "synth_s": synth_med["current"],
               "synth_share": synth_med["current"] / (dec + synth_med["current"]),
               "steps_per_30min": BUDGET_S / (dec + synth_med["current"])}
        if args.baseline_rev:
            b = synth_med[args.baseline_rev]
            bdec = timed.get("loop", timed["current"])[0]
            row.update({"baseline_decoder_s": bdec, "baseline_decoder_cpu_s": timed.get("loop", timed["current"])[1],
                        "baseline_synth_s": b, "baseline_steps_per_30min": BUDGET_S / (bdec + b)})
            # the whole step in this thread's CPU time, current vs baseline (synth on the random set)
            cur_cpu = timed["current"][1] + cpu_med[("current", "random")]
            base_cpu = row["baseline_decoder_cpu_s"] + cpu_med[(args.baseline_rev, "random")]
            row.update({"step_cpu_s": cur_cpu, "baseline_step_cpu_s": base_cpu, "step_cpu_ratio": cur_cpu / base_cpu})
            real = (timed["current"][1] + cpu_med[("current", "realistic")],
                    row["baseline_decoder_cpu_s"] + cpu_med[(args.baseline_rev, "realistic")])
            row["step_cpu_ratio_realistic"] = real[0] / real[1]
        rows.append(row)

    print(f"\n## one stage-2 step: decoder on ({BATCH}, {CROP}, {N_ELECTRODES}) vs synthesizer + losses on {n} "
          "frames, forward + backward, median s")
    if args.baseline_rev:
        rev = args.baseline_rev
        print(f"\n| model | decoder | synth + losses | synth share | step | steps / 30 min | {rev}: decoder "
              f"| {rev}: synth + losses | {rev}: step | {rev}: steps / 30 min | step CPU, current / {rev} |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['model']} | {r['decoder_s']:.3f} | {r['synth_s']:.3f} | {100 * r['synth_share']:.0f} % "
                  f"| {r['decoder_s'] + r['synth_s']:.3f} | {r['steps_per_30min']:.0f} | {r['baseline_decoder_s']:.3f} "
                  f"| {r['baseline_synth_s']:.3f} | {r['baseline_decoder_s'] + r['baseline_synth_s']:.3f} "
                  f"| {r['baseline_steps_per_30min']:.0f} | {100 * r['step_cpu_ratio']:.1f} % "
                  f"({100 * r['step_cpu_ratio_realistic']:.1f} % realistic) |")
        print(f"\n(`{rev}` decoder: `edge`'s GRU as the per-frame autograd loop of that revision; other decoders "
              "are the same code in both columns.)")
    else:
        print("\n| model | decoder | synth + losses | synth share of the step | steps / 30 min |\n"
              "|---|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['model']} | {r['decoder_s']:.3f} | {r['synth_s']:.3f} | {100 * r['synth_share']:.0f} % "
                  f"| {r['steps_per_30min']:.0f} |")
    if args.baseline_rev:
        rev = args.baseline_rev
        print(f"\n## synth + losses, current vs {rev} ({args.repeats} interleaved runs each, median s)\n")
        print(f"| params | current wall | {rev} wall | ratio | current CPU | {rev} CPU | ratio | paired CPU ratio |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|")
        for set_name in sets:
            cw, bw = wall_med[("current", set_name)], wall_med[(rev, set_name)]
            cc, bc = cpu_med[("current", set_name)], cpu_med[(rev, set_name)]
            cur, base = cpu[("current", set_name)], cpu[(rev, set_name)]
            paired = statistics.median(b / c for c, b in zip(cur, base, strict=True))
            print(f"| {set_name} | {cw:.3f} | {bw:.3f} | {bw / cw:.2f}x | {cc:.3f} | {bc:.3f} | {bc / cc:.2f}x "
                  f"| {paired:.2f}x |")
        print("\n(paired: median over the rounds of the two CPU times' ratio within a round, robust to load drift)")
        print(f"\n## values, current vs {rev} (max abs differences on {n} frames; the loss gradient w.r.t. the raw "
              "params)\n")
        print("| params | power (rel) | lin norm dB | mel norm dB | loss | grad | max abs grad |\n"
              "|---|---:|---:|---:|---:|---:|---:|")
        for set_name, d in diffs.items():
            print(f"| {set_name} | {d['power_max_abs']:.3g} ({d['power_max_rel']:.2g}) | {d['lin_norm_max_abs']:.3g} "
                  f"| {d['mel_norm_max_abs']:.3g} | {d['loss_abs']:.3g} | {d['grad_max_abs']:.3g} "
                  f"| {d['grad_max']:.3g} |")
    if args.json:
        timing = {f"{name}/{set_name}": {"wall_s": wall[(name, set_name)], "cpu_s": cpu[(name, set_name)]}
                  for name, set_name in steps}
        Path(args.json).write_text(json.dumps({"rows": rows, "synth_s": synth_s, "synth_median_s": synth_med,
                                               "timing": timing, "differences": diffs, "threads": args.threads},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
