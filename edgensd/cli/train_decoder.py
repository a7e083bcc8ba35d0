"""Train an ECoG decoder (stage 2) against a frozen speech model.

The frozen speech encoder turns the true audio into reference parameters (cached in the output directory,
or --cache-dir); the loss compares the decoded parameters' synthesized linear and mel spectrograms with
the true ones and the parameters with the reference (Chen et al. 2024). Checkpoints every two minutes and
on Ctrl-C / SIGTERM; running the same command again on the same --out resumes, up to --max-minutes in total.

Example:
  edgensd train decoder --data sim/p0.h5 --speech-model runs/speech --arch edge --causal --out runs/edge
"""

from __future__ import annotations

import argparse
import json

from edgensd.cli._args import (
    CommandError,
    check_model_dir,
    check_neural_file,
    check_output_dir,
    nonneg_int,
    positive_float,
    positive_int,
)

COMMAND = ("train", "decoder")

ARCHS = ("edge", "lstm", "resnet3d", "swin3d")
"""Registered decoder names (kept here so --help needs no torch; a test checks it against the registry)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edgensd train decoder``."""
    p.add_argument("--data", required=True, metavar="FILE", help="participant HDF5 file (neural features + audio)")
    p.add_argument(
        "--speech-model", required=True, metavar="DIR", help="trained speech model directory (edgensd train speech)"
    )
    p.add_argument("--arch", required=True, choices=ARCHS, help="decoder architecture")
    grp = p.add_mutually_exclusive_group()
    grp.add_argument(
        "--causal", dest="causal", action="store_true", default=True, help="causal (streaming) variant (default)"
    )
    grp.add_argument("--non-causal", dest="causal", action="store_false", help="non-causal variant")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (resumes if it holds a checkpoint)")
    p.add_argument(
        "--max-minutes", type=positive_float, default=30.0, metavar="M", help="training time budget in minutes (total)"
    )
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed")
    p.add_argument("--threads", type=nonneg_int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="crops per step")
    p.add_argument(
        "--cache-dir", default="", metavar="DIR", help="where reference parameters are cached (default: --out)"
    )
    p.add_argument(
        "--decoder-config",
        default=None,
        metavar="JSON",
        help="overrides of the architecture config, e.g. '{\"hidden_size\": 64}'",
    )


def run(args: argparse.Namespace) -> int:
    """Train and print where the model is."""
    check_neural_file(args.data, "--data")
    check_model_dir(args.speech_model, "--speech-model")
    check_output_dir(args.out, "--out")
    from edgensd.decoding.train import DecoderTrainConfig, train_decoder

    overrides = {}
    if args.decoder_config:
        try:
            overrides = json.loads(args.decoder_config)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--decoder-config must be a JSON object: {exc}") from None
        if not isinstance(overrides, dict):
            raise CommandError(f"--decoder-config must be a JSON object, got {args.decoder_config!r}")
    cfg = DecoderTrainConfig(
        arch=args.arch,
        causal=args.causal,
        max_minutes=args.max_minutes,
        seed=args.seed,
        n_threads=args.threads,
        batch_size=args.batch_size,
        cache_dir=args.cache_dir,
        decoder=overrides,
    )
    out = train_decoder(args.data, args.speech_model, args.out, cfg)
    print(f"decoder in {out}")
    return 0
