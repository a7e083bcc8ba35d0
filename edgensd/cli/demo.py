"""Run the demo: the whole device path, live, on a bundle and a session that ship with the package.

A simulated device plays a short recorded session (64-channel raw ECoG at 1 kHz, simulated from real speech)
over a pseudo-terminal, as a serial port; the host reads it, computes streaming high-gamma features, runs the
shipped int8 decoder step by step and renders audio with the C synthesizer. Writes <out>/decoded.wav,
<out>/original.wav, <out>/spectrograms.png (original vs decoded), <out>/stream.json and <out>/demo.json, and
prints PCC per trial, latency (packet arrival -> audio frame) and packets lost. Needs no torch.

--resynthesis runs the earlier demo instead: resynthesis of real utterances with the shipped speech model
(encoder + synthesizer; needs torch), writing *_original.wav, *_resynth.wav and demo.json.
"""

from __future__ import annotations

import argparse

from edgensd.cli._args import check_output_dir

COMMAND = ("demo",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edgensd demo``."""
    p.add_argument("--out", default="edgensd_demo", metavar="DIR", help="output folder, created if missing")
    p.add_argument("--backend", default="onnx", choices=("onnx", "tflite", "tflm"), help="decoder runtime")
    p.add_argument("--pace", default="realtime", choices=("realtime", "fast"),
                   help="play the session at real time or 4x faster")
    p.add_argument("--resynthesis", action="store_true", help="run the stage-1 resynthesis demo instead (torch)")


def _run_resynthesis(out) -> int:
    from edgensd.demo import run_demo

    res = run_demo(out)
    print(f"{'utterance':28s} {'sec':>5s} {'PCC':>6s} {'cepstral':>8s} {'STOI':>5s} {'ms/frame':>8s}")
    for r in res["utterances"]:
        print(f"{r['utterance']:28s} {r['seconds']:5.2f} {r['pcc']:6.3f} {r['cepstral_envelope_pcc']:8.3f} "
              f"{r['stoi_render']:5.2f} {r['render_ms_per_frame']:8.3f}")
    print(f"mean PCC {res['pcc_mean']:.3f} (cepstral envelope {res['cepstral_envelope_pcc_mean']:.3f}), "
          f"STOI {res['stoi_render_mean']:.2f}; WAVs in {res['out_dir']}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the chosen demo and print its summary."""
    out = check_output_dir(args.out, "--out")
    if args.resynthesis:
        return _run_resynthesis(out)
    from edgensd.demo import run_live_demo

    res = run_live_demo(out, backend=args.backend, speed=1.0 if args.pace == "realtime" else 4.0)
    print(f"{'trial':>5s} {'PCC':>6s}  label")
    for r in res["trials"]:
        print(f"{r['trial']:5d} {r['pcc']:6.3f}  {r['label'][:50]}")
    lat = res["latency_ms"]
    print(f"mean PCC {res['pcc_mean']:.3f} over {len(res['trials'])} trials; {res['seconds']:.1f} s decoded live "
          f"({res['precision']} {res['backend']} decoder); latency packet -> audio frame p50 "
          f"{lat['end_to_end']['p50']} ms, p99 {lat['end_to_end']['p99']} ms; packets ok {res['packets_ok']}, "
          f"bad CRC {res['packets_bad_crc']}, lost {res['lost_packets']}, gap frames {res['gap_frames']}; "
          f"files in {res['out_dir']}")
    return 0
