"""Run the demo: resynthesize real utterances with the shipped speech model and write WAVs.

Prints per-utterance spectrogram PCC (with a cepstral-envelope reference) and STOI of the frame-rendered
audio; writes <out>/*_original.wav, <out>/*_resynth.wav and <out>/demo.json.
"""

from __future__ import annotations

import argparse

COMMAND = ("demo",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="edgensd_demo", metavar="DIR", help="output folder, created if missing")


def run(args: argparse.Namespace) -> int:
    from edgensd.cli._args import check_output_dir
    from edgensd.demo import run_demo

    res = run_demo(check_output_dir(args.out, "--out"))
    print(f"{'utterance':28s} {'sec':>5s} {'PCC':>6s} {'cepstral':>8s} {'STOI':>5s} {'ms/frame':>8s}")
    for r in res["utterances"]:
        print(f"{r['utterance']:28s} {r['seconds']:5.2f} {r['pcc']:6.3f} {r['cepstral_envelope_pcc']:8.3f} "
              f"{r['stoi_render']:5.2f} {r['render_ms_per_frame']:8.3f}")
    print(f"mean PCC {res['pcc_mean']:.3f} (cepstral envelope {res['cepstral_envelope_pcc_mean']:.3f}), "
          f"STOI {res['stoi_render_mean']:.2f}; WAVs in {res['out_dir']}")
    return 0
