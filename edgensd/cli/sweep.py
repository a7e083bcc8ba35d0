"""Run stage 1, stage 2 and evaluation over participants × architectures × causality as Ray tasks.

Each participant's speech model is trained on its own audio, once per distinct recording (participants
simulated from one speech file share it; --speech-per participant trains one each), or --speech-model is
shared by all; then every decoder is trained on it and evaluated (with the floor, the ridge baseline of the
same causality and the speech ceiling). Ray runs the tasks: on this machine by default, on a cluster with
--ray-address (every node must see --out and the participant files at the same paths, with edgensd
installed). One line of progress per finished task. Resumable: every task writes into its own folder under
--out and marks itself done atomically; running the same command again never redoes a finished task, and a
half-trained model resumes from its checkpoint. Settings that would make finished tasks stale (budgets,
seed, a participant file's content) are refused on an existing --out. At the end (or with --report-only):
results.json, results.md (per participant, and per architecture the mean over participants with a
bootstrap 95 % interval and the paired difference from ridge) and box plots.

Example:
  edgensd sweep --participants sim/p0.h5 sim/p1.h5 --archs edge,lstm --causal both --out runs/cohort
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgensd.cli._args import (
    CommandError,
    check_model_dir,
    check_neural_file,
    check_output_dir,
    nonneg_int,
    positive_float,
    positive_int,
)
from edgensd.decoding.recipes import ARCH_DEFAULTS, AUTO, RECIPES, recipe_decoder, recipe_train, resolve_recipe
from edgensd.sweep.config import (
    CAUSAL_CHOICES,
    CONFIG_FILE,
    SPEECH_PER,
    SweepConfig,
    SweepConfigError,
    participant_name,
)

COMMAND = ("sweep",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edgensd sweep``."""
    p.add_argument("--participants", nargs="+", metavar="FILE", help="participant HDF5 files (names: file stems)")
    p.add_argument("--archs", metavar="LIST",
                   help="decoder architectures, comma-separated, e.g. edge,lstm (ridge is reported by every "
                        "evaluation and is not trained)")
    p.add_argument("--causal", choices=CAUSAL_CHOICES, default="both",
                   help="causality of the decoders (causal-only architectures are trained causal only)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (resumed when it holds this sweep)")
    p.add_argument("--ray-address", default="", metavar="ADDR",
                   help="join this Ray cluster (default: start Ray on this machine)")
    p.add_argument("--cpus", type=nonneg_int, default=0, metavar="N",
                   help="CPUs of the local Ray instance (0: all of this machine's)")
    p.add_argument("--cpus-per-task", type=positive_int, default=1, metavar="N",
                   help="CPUs per task (its torch threads)")
    p.add_argument("--minutes", type=positive_float, default=30.0, metavar="M",
                   help="stage-2 training budget per decoder, minutes")
    p.add_argument("--speech-minutes", type=positive_float, default=30.0, metavar="M",
                   help="stage-1 training budget per speech model, minutes")
    p.add_argument("--speech-per", choices=SPEECH_PER, default="speech",
                   help="without --speech-model: one speech model per distinct recording (audio, trials, split, "
                        "voice range), shared by the participants who spoke it, or one per participant "
                        "(default %(default)s)")
    p.add_argument("--speech-model", default=None, metavar="DIR",
                   help="a trained speech model shared by every participant (skips stage-1 training)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed of every training")
    p.add_argument("--batch-size", type=positive_int, default=16, help="stage-2 crops per step")
    p.add_argument("--decoder-config", default=None, metavar="JSON",
                   help="per-architecture config overrides, e.g. '{\"lstm\": {\"hidden_size\": 64}}'")
    p.add_argument("--train-config", default=None, metavar="JSON",
                   help="stage-2 training overrides for every decoder (DecoderTrainConfig fields), e.g. "
                        "'{\"weight_decay\": 0.05, \"aug_noise\": 0.3}'")
    p.add_argument("--recipe", choices=(AUTO, *RECIPES), default=AUTO,
                   help="named training recipe for every decoder (as `edgensd train decoder --recipe`); auto = "
                        + ", ".join(f"{v} for {a}" for a, v in ARCH_DEFAULTS.items())
                        + ", none for the others; --train-config and --decoder-config win over its values "
                          "(default %(default)s)")
    p.add_argument("--no-stoi", action="store_true", help="skip STOI in the evaluations")
    p.add_argument("--n-boot", type=positive_int, default=10000, help="bootstrap resamples over participants")
    p.add_argument("--report-only", action="store_true",
                   help="only write the report of what --out holds (no Ray, no training)")


def parse_archs(text: str) -> list[str]:
    """``--archs`` → registered architecture names (order kept, repeats dropped); CommandError otherwise."""
    from edgensd.decoders import list_decoders

    allowed = list_decoders()
    archs = []
    for a in (s.strip() for s in text.replace(" ", ",").split(",")):
        if not a:
            continue
        if a == "ridge":
            raise CommandError(f"--archs: 'ridge' is the linear baseline that every evaluation reports (same "
                               f"causality, same trials); it is not trained. Choose from: {', '.join(allowed)}")
        if a not in allowed:
            raise CommandError(f"--archs: unknown architecture {a!r}; choose from: {', '.join(allowed)}")
        if a not in archs:
            archs.append(a)
    if not archs:
        raise CommandError(f"--archs: no architecture given; choose from: {', '.join(allowed)}")
    return archs


def _decoder_overrides(text: str | None, archs: list[str]) -> dict:
    if not text:
        return {}
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"--decoder-config must be a JSON object keyed by architecture: {exc}") from None
    if not isinstance(d, dict) or not all(isinstance(v, dict) for v in d.values()):
        raise CommandError("--decoder-config must be a JSON object of objects keyed by architecture, e.g. "
                           f"'{{\"lstm\": {{\"hidden_size\": 64}}}}', got {text!r}")
    unknown = sorted(set(d) - set(archs))
    if unknown:
        raise CommandError(f"--decoder-config names architectures not in --archs: {unknown} (--archs: {archs})")
    return d


def _train_overrides(text: str | None) -> dict:
    """``--train-config`` → DecoderTrainConfig overrides, checked by building the config; CommandError otherwise."""
    if not text:
        return {}
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"--train-config must be a JSON object of training settings: {exc}") from None
    if not isinstance(d, dict):
        raise CommandError(f"--train-config must be a JSON object, e.g. '{{\"weight_decay\": 0.05}}', got {text!r}")
    import dataclasses

    from edgensd.decoding.train import DecoderTrainConfig
    from edgensd.sweep.config import TRAIN_RESERVED

    fields = {f.name for f in dataclasses.fields(DecoderTrainConfig)}
    allowed = sorted(fields - set(TRAIN_RESERVED))
    bad = sorted(set(d) - set(allowed))
    if bad:
        raise CommandError(f"--train-config: {bad} cannot be set here; allowed: {', '.join(allowed)}")
    try:
        DecoderTrainConfig(**d)
    except (TypeError, ValueError) as exc:
        raise CommandError(f"--train-config: {exc}") from None
    return d


def _check_voices(speech_model: Path, files: list[Path]) -> None:
    """A shared speech model must have each participant's voice range (when the file states one)."""
    import h5py

    from edgensd.params import VoiceRange
    from edgensd.speech.model import CONFIG_FILE as SPEECH_CONFIG
    from edgensd.speech.model import SpeechModelConfig

    voice = SpeechModelConfig.load(speech_model / SPEECH_CONFIG).voice
    for f in files:
        with h5py.File(f, "r") as h:
            if "voice_range" not in h:
                continue
            raw = h["voice_range"][()]
        theirs = VoiceRange.from_dict(json.loads(raw.decode() if isinstance(raw, bytes) else raw))
        if not theirs.same_as(voice):
            raise CommandError(
                f"--speech-model: its voice range {voice.name!r} {voice.f0_hz} Hz differs from that of {f} "
                f"({theirs.name!r} {theirs.f0_hz} Hz); leave out --speech-model to train one per participant")


def build_config(args: argparse.Namespace) -> SweepConfig:
    """Check the arguments (paths before anything else) and build the sweep's config."""
    if not args.participants:
        raise CommandError("--participants is required (unless --report-only)")
    if not args.archs:
        raise CommandError("--archs is required (unless --report-only)")
    files = [check_neural_file(f, "--participants") for f in args.participants]
    names = [participant_name(f) for f in files]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CommandError(f"--participants: files must have distinct names (a participant is named by its file "
                           f"stem); repeated: {dup}")
    speech_model = ""
    if args.speech_model is not None:
        speech_model = str(check_model_dir(args.speech_model, "--speech-model").resolve())
        if not (Path(speech_model) / "model.pt").is_file():
            raise CommandError(f"--speech-model: {speech_model} holds no model.pt; pass a folder written by "
                               "`edgensd train speech`")
        _check_voices(Path(speech_model), files)
    archs = parse_archs(args.archs)
    if args.causal == "noncausal":
        from edgensd.decoders import get_decoder_class

        only = [a for a in archs if get_decoder_class(a).causal_only]
        if only:
            raise CommandError(f"--archs: {only} exist only as causal models; drop them or use --causal causal|both")
    check_output_dir(args.out, "--out")
    decoder = _decoder_overrides(args.decoder_config, archs)
    train = _train_overrides(args.train_config)
    train, train_arch, decoder = _apply_recipe(args.recipe, archs, train, decoder)
    try:
        return SweepConfig(
            participants=[str(f.resolve()) for f in files], archs=archs, causal=args.causal, minutes=args.minutes,
            speech_minutes=args.speech_minutes, speech_model=speech_model, speech_per=args.speech_per,
            seed=args.seed,
            batch_size=args.batch_size, decoder=decoder, train=train, train_arch=train_arch,
            stoi=not args.no_stoi, cpus_per_task=args.cpus_per_task, num_cpus=args.cpus,
            ray_address=args.ray_address, n_boot=args.n_boot,
        )
    except SweepConfigError as exc:
        raise CommandError(str(exc)) from None


def _apply_recipe(name: str, archs: list[str], train: dict, decoder: dict) -> tuple[dict, dict, dict]:
    """Fill in each architecture's recipe (``--recipe``) under the explicit ``--train-config`` / ``--decoder-config``.

    Returns ``(train, train_arch, decoder)`` for :class:`SweepConfig`. One recipe for every swept architecture goes
    into ``train``, so the saved config reads as a sweep's did before ``--recipe auto``; different ones go into
    ``train_arch``, per architecture. Fingerprints and resume checks see only ``SweepConfig.train_for``, the same
    either way.
    """
    per = {a: resolve_recipe(name, a) for a in archs}
    decoder = {**decoder, **{a: recipe_decoder(r, decoder.get(a)) for a, r in per.items() if r != "none"}}
    if len(set(per.values())) == 1:
        return recipe_train(per[archs[0]], train), {}, decoder
    return train, {a: recipe_train(r, train) for a, r in per.items() if r != "none"}, decoder


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the sweep, or with --report-only only write its report; exit 1 if a task failed."""
    from edgensd.sweep.report import write_report

    if args.report_only:
        out = Path(args.out)
        if not (out / CONFIG_FILE).is_file():
            raise CommandError(f"--out: {out} holds no {CONFIG_FILE}: nothing to report (run the sweep first)")
        r = write_report(out)
        print(f"{r['n_finished']} of {r['n_expected']} tasks finished; results in {out / 'results.md'}")
        return 0
    cfg = build_config(args)
    from edgensd.sweep.runner import run_sweep

    try:
        res = run_sweep(cfg, args.out)
    except SweepConfigError as exc:
        raise CommandError(str(exc)) from None
    r = res["report"]
    print(f"{r['n_finished']} of {r['n_expected']} tasks finished ({res['submitted']} run now); results in "
          f"{Path(args.out) / 'results.md'}")
    if res["failed"]:
        print(f"{len(res['failed'])} tasks failed: {', '.join(f['task'] for f in res['failed'])} (see their "
              "task.log); run the same command again to retry them")
        return 1
    return 0
