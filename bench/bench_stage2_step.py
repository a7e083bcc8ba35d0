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
weights), interleaved with the current one, so the two are compared in one run on the same machine. Medians
of ``--repeats`` runs after one warm-up; the figures move with machine load, the ratios much less.
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

import torch
from _revs import import_file, source_at  # bench/ is sys.path[0] when run as a script

from edgensd.decoders import get_decoder
from edgensd.params import raw_to_physical
from edgensd.speech.model import load_speech_model
from edgensd.speech.synth import Synthesizer, power_to_norm_t

REPO = Path(__file__).resolve().parents[1]
SPEECH_MODEL = REPO / "edgensd" / "assets" / "demo" / "speech_model"
ALL_MODELS = ("edge:c", "lstm:c", "lstm:nc", "resnet3d:c", "resnet3d:nc", "swin3d:c", "swin3d:nc")
BATCH, CROP, WARMUP, N_ELECTRODES = 16, 160, 32, 64


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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


def _decoder_step(model, x: torch.Tensor):
    def run():
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()

    return run


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
    if args.baseline_rev:
        synths.append((args.baseline_rev, _baseline_synth(args.baseline_rev, synth)))
        with torch.no_grad():  # same weights, same output
            ref = synth(raw_to_physical(raw, voice))
            diff = (synths[1][1](raw_to_physical(raw, voice)) - ref).abs().max().item()
        print(f"# baseline {args.baseline_rev}: max abs power difference vs current {diff:.3g}")
    steps = {name: _synth_step(s, raw, voice, spec, mel) for name, s in synths}
    for step in steps.values():
        step()  # warm-up
    synth_s = {name: [] for name in steps}
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            synth_s[name].append(time.perf_counter() - t0)
    synth_med = {name: statistics.median(v) for name, v in synth_s.items()}

    rows = []
    x = torch.randn(BATCH, CROP, N_ELECTRODES, generator=gen)
    for spec_m in models:
        arch, var = spec_m.split(":")
        torch.manual_seed(0)
        model = get_decoder(arch, n_electrodes=N_ELECTRODES, causal=var == "c").train()
        dec = _median_time(_decoder_step(model, x), args.repeats)
        row = {"model": spec_m, "decoder_s": dec, "synth_s": synth_med["current"],
               "synth_share": synth_med["current"] / (dec + synth_med["current"])}
        rows.append(row)

    print(f"\n## one stage-2 step: decoder on ({BATCH}, {CROP}, {N_ELECTRODES}) vs synthesizer + losses on {n} "
          "frames, forward + backward, median s")
    print("\n| model | decoder | synth + losses | synth share of the step |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['decoder_s']:.3f} | {r['synth_s']:.3f} | {100 * r['synth_share']:.0f} % |")
    if args.baseline_rev:
        b = synth_med[args.baseline_rev]
        print(f"\nsynth + losses: current {synth_med['current']:.3f} s, {args.baseline_rev} {b:.3f} s "
              f"({b / synth_med['current']:.2f}x; {args.repeats} interleaved runs each)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "synth_s": synth_s, "synth_median_s": synth_med,
                                               "threads": args.threads}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
