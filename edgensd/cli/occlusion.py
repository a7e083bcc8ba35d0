"""Each electrode's contribution to a trained decoder: drop in PCC when it is occluded (JSON + PNG).

Every held-out trial is decoded intact and with each electrode's features set to 0 (the z-scored mean);
the drop in mean spectrogram PCC is drawn on the electrode layout. On a simulated participant the drops are
compared with the simulator's ground truth (leading vs lagging electrodes, AUC).

Example:
  edgensd occlusion --model runs/edge --data sim/p0.h5 --out runs/edge/occlusion
"""

from __future__ import annotations

import argparse

from edgensd.cli._args import check_model_dir, check_neural_file, check_output_dir, nonneg_int, positive_int

COMMAND = ("occlusion",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edgensd occlusion``."""
    p.add_argument("--model", required=True, metavar="DIR", help="trained decoder directory")
    p.add_argument("--data", required=True, metavar="FILE", help="participant HDF5 file")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (occlusion.json, occlusion.png)")
    p.add_argument(
        "--max-trials", type=positive_int, default=None, metavar="N", help="only the first N held-out trials"
    )
    p.add_argument(
        "--speech-model", default=None, metavar="DIR", help="speech model directory (default: the training one)"
    )
    p.add_argument("--cache-dir", default=None, metavar="DIR", help="reference cache directory (default: --model)")
    p.add_argument("--threads", type=nonneg_int, default=0, help="torch threads (0: torch default)")


def run(args: argparse.Namespace) -> int:
    """Run the occlusion analysis and print the verdict."""
    check_model_dir(args.model, "--model")
    check_neural_file(args.data, "--data")
    check_output_dir(args.out, "--out")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from edgensd.decoding.occlusion import occlusion

    r = occlusion(
        args.model,
        args.data,
        args.out,
        speech_model=args.speech_model,
        cache_dir=args.cache_dir,
        max_trials=args.max_trials,
    )
    gt = r["ground_truth"]
    line = f"{r['name']}: base PCC {r['base_pcc_mean']:.4f} on {r['n_trials']} trials"
    if gt is not None:
        line += (
            f"; leading mean drop {gt['roles']['leading']['mean_drop']:.4f}, lagging "
            f"{gt['roles']['lagging']['mean_drop']:.4f}, AUC {gt['auc_leading_vs_lagging']:.2f}, "
            f"leading above lagging: {gt['leading_above_lagging']}"
        )
    print(line)
    return 0
