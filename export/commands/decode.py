"""Decode a participant file's trials with a bundle (torch-free): WAVs, spectrogram PNGs and PCC.

Each trial is streamed frame by frame through the bundle's decoder on the chosen backend, its parameters
mapped to physical units and rendered by the C synthesizer; decode.json holds the spectrogram PCC of every
trial (decoded vs original) and the decoder step time.

Example:
  edgensd decode --bundle runs/edge_bundle --data sim/p0.h5 --out runs/decoded --precision int8
"""

from __future__ import annotations

import argparse

COMMAND = ("decode",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edgensd decode``."""
    p.add_argument("--bundle", required=True, metavar="DIR", help="bundle folder (edgensd export bundle)")
    p.add_argument("--data", required=True, metavar="FILE.h5", help="participant file with the bundle's electrodes")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (decode.json, WAVs, PNGs)")
    p.add_argument("--backend", choices=["onnx", "tflite", "tflm"], default="onnx", help="runtime (default onnx)")
    p.add_argument("--precision", choices=["int8", "fp32"], default="int8", help="decoder graph (default int8)")
    p.add_argument("--trials", choices=["test", "train", "all"], default="test",
                   help="which trials: held-out (default), training or all")
    p.add_argument("--max-wavs", type=int, default=10, help="trials written as WAV (default 10)")
    p.add_argument("--no-plots", action="store_true", help="skip the spectrogram PNGs")


def run(args: argparse.Namespace) -> int:
    """Decode and print the headline figures."""
    from edgensd.cli.main import CommandError
    from edgensd.runtime.backend import BackendUnavailable
    from edgensd.runtime.decode import decode_file

    try:
        r = decode_file(args.bundle, args.data, args.out, backend=args.backend, precision=args.precision,
                        trials=args.trials, plots=not args.no_plots, max_wavs=args.max_wavs)
    except BackendUnavailable as exc:
        raise CommandError(str(exc)) from exc
    print(f"{r['backend']} {r['precision']}: pcc_mean {r['pcc_mean']:.4f}  n_trials {r['n_trials']}  "
          f"step median {r['step_us']['median']:.0f} us  -> {args.out}")
    return 0
