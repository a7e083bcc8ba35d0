"""Train an ECoG decoder (stage 2) against a frozen speech model.

The frozen speech encoder turns the true audio into reference parameters (cached in the output directory,
or --cache-dir); the loss compares the decoded parameters' synthesized linear and mel spectrograms with
the true ones and the parameters with the reference (Chen et al. 2024). Checkpoints every two minutes and
on Ctrl-C / SIGTERM; running the same command again on the same --out resumes, up to --max-minutes in total.

Small-data recipe: --val-fraction holds whole training trials out for validation (never the test trials);
the best-validation weights are saved and --patience validations without improvement stop training early;
--ema-decay validates and saves a moving average of the weights; --aug-* augment the training crops.
A recipe fills in measured settings for every flag not given explicitly (edgensd.decoding.recipes): the
default, --recipe auto, uses small-data (weight decay, dropout, augmentation, RMSE spectrogram terms, correlation
term) for edge and none for the other architectures; --recipe none gives the plain defaults listed below.

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
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
)
from edgensd.decoding.recipes import ARCH_DEFAULTS, AUTO, RECIPES, recipe_decoder, recipe_train, resolve_recipe
from edgensd.log import logger

COMMAND = ("train", "decoder")

_RECIPE_DEFAULTS = argparse.Namespace(val_fraction=0.0, val_every_s=30.0, patience=10, ema_decay=0.0, aug_dropout=0.0,
                                      aug_jitter=0, aug_noise=0.0, aug_gain=0.0)
"""Defaults of the small-data recipe (kept here so --help needs no torch; a test checks them against
DecoderTrainConfig)."""

_LOSS_DEFAULTS = argparse.Namespace(weight_lin=1.0, weight_mel=1.0, weight_param=1.0, weight_pcc=0.0, lr=1e-3,
                                    weight_decay=1e-4, spec_loss="l1")
"""Defaults of the stage-2 loss weights and optimizer (a test checks them against DecoderTrainConfig)."""

ARCHS = ("edge", "lstm", "resnet3d", "swin3d")
"""Registered decoder names (kept here so --help needs no torch; a test checks it against the registry)."""


class _Given(argparse.Action):
    """Store the value and remember that the flag was given (so a --recipe does not override it)."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ARG002
        setattr(namespace, self.dest, values)
        namespace.given = {*getattr(namespace, "given", ()), self.dest}


def _fraction(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edgensd train decoder``."""
    d = _RECIPE_DEFAULTS
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
    rec = p.add_argument_group(
        "small-data recipe",
        "validation split of the training trials (model selection, early stopping), weight averaging and "
        "augmentation of the training crops; the test trials are never used",
    )
    rec.add_argument("--val-fraction", action=_Given, type=_fraction, default=d.val_fraction, metavar="F",
                     help="share of the training trials held out for validation, whole trials, seeded; in [0, 1), "
                          "0 = no validation (default %(default)s)")
    rec.add_argument("--val-every", action=_Given, type=positive_float, default=d.val_every_s, metavar="S",
                     dest="val_every_s",
                     help="seconds of training between validations (default %(default)s)")
    rec.add_argument("--patience", action=_Given, type=nonneg_int, default=d.patience, metavar="N",
                     help="stop after N validations without improvement; 0 = never (default %(default)s)")
    rec.add_argument("--ema-decay", action=_Given, type=_fraction, default=d.ema_decay, metavar="D",
                     help="decay of the moving average of the weights that is validated and saved; in [0, 1), "
                          "0 = off (default %(default)s)")
    rec.add_argument("--aug-dropout", action=_Given, type=_fraction, default=d.aug_dropout, metavar="P",
                     help="probability of zeroing a whole electrode per crop; in [0, 1) (default %(default)s)")
    rec.add_argument("--aug-jitter", action=_Given, type=nonneg_int, default=d.aug_jitter, metavar="FRAMES",
                     help="largest shift of the neural frames against the targets per crop, frames "
                          "(default %(default)s)")
    rec.add_argument("--aug-noise", action=_Given, type=nonneg_float, default=d.aug_noise, metavar="SD",
                     help="additive Gaussian noise, SD in z units (default %(default)s)")
    rec.add_argument("--aug-gain", action=_Given, type=nonneg_float, default=d.aug_gain, metavar="SD",
                     help="per-electrode gain per crop, SD of the log gain (default %(default)s)")
    lw = p.add_argument_group(
        "loss and optimizer", "weights of the stage-2 loss terms (each >= 0; see "
        "edgensd.decoding.train.decoder_losses) and the optimizer's settings")
    lw.add_argument("--lr", action=_Given, type=positive_float, default=_LOSS_DEFAULTS.lr, metavar="LR",
                    help="AdamW peak learning rate (cosine over the budget after a 2 %% warm-up; default %(default)s)")
    lw.add_argument("--weight-decay", action=_Given, type=nonneg_float, default=_LOSS_DEFAULTS.weight_decay,
                    metavar="WD",
                    help="AdamW decoupled weight decay (default %(default)s)")
    lw.add_argument("--spec-loss", action=_Given, choices=("l1", "rmse"), default=_LOSS_DEFAULTS.spec_loss,
                    help="how the spectrogram terms compare: l1 (mean absolute error, the conditional median) or "
                         "rmse (root-mean-square error, the conditional mean; default %(default)s)")
    lw.add_argument("--weight-lin", action=_Given, type=nonneg_float, default=_LOSS_DEFAULTS.weight_lin, metavar="W",
                    help="the linear normalized-dB spectrogram term (default %(default)s)")
    lw.add_argument("--weight-mel", action=_Given, type=nonneg_float, default=_LOSS_DEFAULTS.weight_mel, metavar="W",
                    help="the mel normalized-dB spectrogram term (default %(default)s)")
    lw.add_argument("--weight-param", action=_Given, type=nonneg_float, default=_LOSS_DEFAULTS.weight_param,
                    metavar="W",
                    help="L1 between the decoded and the reference parameters' positions (default %(default)s)")
    lw.add_argument("--weight-pcc", action=_Given, type=nonneg_float, default=_LOSS_DEFAULTS.weight_pcc, metavar="W",
                    help="1 - Pearson r of each crop's linear normalized-dB spectrogram, as eval scores a "
                         "trial; 0 = off (default %(default)s)")
    p.add_argument("--recipe", choices=(AUTO, *RECIPES), default=AUTO,
                   help="named training recipe: its values fill in every recipe, loss and optimizer flag not given "
                        "here (whose listed defaults are recipe none's) and sit under --decoder-config; small-data = "
                        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in RECIPES["small-data"]["train"].items())
                        + " and " + ", ".join(f"{k} {v}" for k, v in RECIPES["small-data"]["decoder"].items())
                        + "; auto = " + ", ".join(f"{v} for {a}" for a, v in ARCH_DEFAULTS.items())
                        + ", none for the others (default %(default)s)")
    p.set_defaults(given=set())
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
    values = {k: getattr(args, k) for k in (*vars(_RECIPE_DEFAULTS), *vars(_LOSS_DEFAULTS))}
    recipe = resolve_recipe(args.recipe, args.arch)
    if recipe != "none":  # the recipe fills in what the command line leaves unset
        values.update({k: v for k, v in recipe_train(recipe).items() if k not in args.given})
        overrides = recipe_decoder(recipe, overrides)
        logger.info("recipe %s%s: %s; decoder %s", recipe,
                    f" (--recipe {AUTO}'s choice for {args.arch})" if args.recipe == AUTO else "",
                    ", ".join(f"{k}={values[k]}" for k in recipe_train(recipe)), overrides)
    elif args.recipe == AUTO:
        logger.info("recipe none (--recipe %s's choice for %s)", AUTO, args.arch)
    try:
        cfg = DecoderTrainConfig(
            arch=args.arch,
            causal=args.causal,
            max_minutes=args.max_minutes,
            seed=args.seed,
            n_threads=args.threads,
            batch_size=args.batch_size,
            cache_dir=args.cache_dir,
            decoder=overrides,
            **values,
        )
    except ValueError as exc:  # name the flag rather than the config field
        msg = str(exc)
        for field in (*vars(_RECIPE_DEFAULTS), *vars(_LOSS_DEFAULTS)):
            if msg.startswith(field + " "):
                msg = _flag(field) + msg[len(field):]
        raise CommandError(msg) from None
    out = train_decoder(args.data, args.speech_model, args.out, cfg)
    print(f"decoder in {out}")
    return 0


def _flag(field: str) -> str:
    """The command-line flag of a recipe field of DecoderTrainConfig."""
    return "--val-every" if field == "val_every_s" else "--" + field.replace("_", "-")
