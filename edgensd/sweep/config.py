"""What a sweep runs (:class:`SweepConfig`), where each task writes, and when an output folder may be resumed.

Layout of a sweep's output folder::

    OUT/sweep_config.json                       the SweepConfig of the last run
    OUT/speech/<speech key>/                    stage 1a: one speech model per recording (``--speech-per speech``)
    OUT/tasks/<participant>/speech/             stage 1: the participant's speech model (``--speech-per
                                                participant``; none with either of the others)
    OUT/tasks/<participant>/cache/              reference parameters and ridge fits, filled by stage 1
    OUT/tasks/<participant>/<arch>_<causal>/    stage 2 + evaluation: model/, eval.json
    OUT/*/.../done.json                         written last and atomically: the task's result
    OUT/results.json, results.md, *.png         the cohort report

A task folder with ``done.json`` is finished and never run again; one without it is run (again) and resumes
from its checkpoint. ``done.json`` carries the task's fingerprint (the settings that shape its result); a
resumed sweep whose settings differ from a finished task's is refused (:func:`check_resume`), so results of
different settings are never mixed in one report.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from edgensd.config import Config

__all__ = [
    "CAUSAL_CHOICES",
    "CONFIG_FILE",
    "DONE_FILE",
    "SPEECH_PER",
    "SweepConfig",
    "SweepConfigError",
    "TRAIN_RESERVED",
    "check_resume",
    "decoder_task_dir",
    "participant_layout",
    "participant_name",
    "speech_model_task_dir",
    "speech_task_dir",
]

CAUSAL_CHOICES = ("causal", "noncausal", "both")
#: How stage 1 trains speech models without a shared ``--speech-model``: one per distinct recording (audio,
#: trials, split and voice range: :func:`edgensd.data.participant.speech_key`), or one per participant.
SPEECH_PER = ("speech", "participant")
SPEECH_DIR = "speech"
CONFIG_FILE = "sweep_config.json"
DONE_FILE = "done.json"
TASKS_DIR = "tasks"

#: DecoderTrainConfig fields a sweep sets itself (not allowed in ``train`` overrides).
TRAIN_RESERVED = ("data", "speech_model", "arch", "causal", "decoder", "max_minutes", "seed", "batch_size",
                  "n_threads", "cache_dir", "checkpoint_every_s")

#: Settings whose change makes finished tasks stale (compared field by field on resume).
INVALIDATING = ("minutes", "speech_minutes", "speech_model_sha256", "seed", "batch_size")


class SweepConfigError(ValueError):
    """A sweep cannot start: bad settings, or settings that contradict an existing output folder."""


@dataclasses.dataclass
class SweepConfig(Config):
    """Settings of one ``edgensd sweep`` run (saved as ``sweep_config.json`` in the output folder).

    Parameters
    ----------
    participants : list of str
        Participant files (absolute paths); each one's name is its file stem and must be unique.
    participant_sha256 : dict of str to str
        SHA-256 of each participant file, by name (filled by the runner).
    archs : list of str
        Decoder architectures to train (registered names; ``ridge`` is the baseline every evaluation reports).
    causal : str
        ``'causal'``, ``'noncausal'`` or ``'both'``; causal-only architectures (``edge``) are trained causal only.
    minutes : float
        Stage-2 training budget per decoder, minutes.
    speech_minutes : float
        Stage-1 training budget per participant, minutes (unused with ``speech_model``).
    speech_model : str
        A speech model shared by every participant (absolute path), or ``""`` to train one per participant.
    speech_model_sha256 : str
        SHA-256 of the shared speech model's ``model.pt`` (filled by the runner; ``""`` without one).
    speech_per : str
        Without ``speech_model``: ``'speech'`` trains one speech model per distinct recording and shares it
        among the participants who spoke it (participants simulated from one speech file); ``'participant'``
        trains one per participant (sweeps from before this option). Unused with ``speech_model``.
    speech_keys : dict of str to str
        Each participant's speech key (:func:`~edgensd.data.participant.speech_key`), by name (filled by the
        runner when ``speech_per`` is ``'speech'``).
    seed : int
        Seed of every training.
    batch_size : int
        Stage-2 crops per step.
    decoder : dict of str to dict
        Per-architecture overrides of the decoder config, e.g. ``{"lstm": {"hidden_size": 64}}``.
    train : dict
        Overrides of the stage-2 training settings for every decoder (fields of
        :class:`~edgensd.decoding.train.DecoderTrainConfig` other than those the sweep sets itself, see
        :data:`TRAIN_RESERVED`), e.g. ``{"weight_decay": 0.05}``.
    train_arch : dict of str to dict
        Per-architecture training overrides on top of ``train`` (what ``--recipe auto`` picks for each
        architecture when the swept ones get different recipes), e.g. ``{"edge": {"weight_pcc": 1.0}}``.
    stoi : bool
        Compute STOI in the evaluations.
    cpus_per_task : int
        CPUs Ray reserves for each task; each task sets its torch threads to this.
    num_cpus : int
        CPUs of the local Ray instance (0: all of this machine's); unused with ``ray_address``.
    ray_address : str
        Address of a Ray cluster to join (``""``: start Ray on this machine).
    n_boot : int
        Bootstrap resamples of the participants in the report.
    """

    participants: list[str] = dataclasses.field(default_factory=list)
    participant_sha256: dict[str, str] = dataclasses.field(default_factory=dict)
    archs: list[str] = dataclasses.field(default_factory=list)
    causal: str = "both"
    minutes: float = 30.0
    speech_minutes: float = 30.0
    speech_model: str = ""
    speech_model_sha256: str = ""
    speech_per: str = "speech"
    speech_keys: dict[str, str] = dataclasses.field(default_factory=dict)
    seed: int = 0
    batch_size: int = 16
    decoder: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    train: dict[str, Any] = dataclasses.field(default_factory=dict)
    train_arch: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    stoi: bool = True
    cpus_per_task: int = 1
    num_cpus: int = 0
    ray_address: str = ""
    n_boot: int = 10000

    def __post_init__(self) -> None:
        if self.causal not in CAUSAL_CHOICES:
            raise SweepConfigError(f"causal must be one of {list(CAUSAL_CHOICES)}, got {self.causal!r}")
        if self.speech_per not in SPEECH_PER:
            raise SweepConfigError(f"speech_per must be one of {list(SPEECH_PER)}, got {self.speech_per!r}")
        for name in ("minutes", "speech_minutes"):
            if not float(getattr(self, name)) > 0:
                raise SweepConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("batch_size", "cpus_per_task"):
            if int(getattr(self, name)) < 1:
                raise SweepConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_cpus < 0:
            raise SweepConfigError(f"num_cpus must be >= 0, got {self.num_cpus}")
        if self.n_boot < 100:
            raise SweepConfigError(f"n_boot must be >= 100, got {self.n_boot}")
        names = [participant_name(p) for p in self.participants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise SweepConfigError(f"participant files must have distinct names (file stems); repeated: {dup}")
        reserved = sorted(set(self.train).union(*self.train_arch.values()) & set(TRAIN_RESERVED))
        if reserved:
            raise SweepConfigError(f"train overrides may not set {reserved}: the sweep sets {list(TRAIN_RESERVED)} "
                                   "itself (use its own options)")
        for what, per_arch in (("decoder", self.decoder), ("train_arch", self.train_arch)):
            unknown = sorted(set(per_arch) - set(self.archs))
            if unknown:
                raise SweepConfigError(f"{what} overrides name architectures that are not swept: {unknown} "
                                       f"(swept: {self.archs})")

    @property
    def names(self) -> list[str]:
        """Participant names (file stems), in the order given."""
        return [participant_name(p) for p in self.participants]

    def causalities(self) -> list[bool]:
        """The causal flags asked for (``True`` first)."""
        return {"causal": [True], "noncausal": [False], "both": [True, False]}[self.causal]

    @property
    def shares_speech(self) -> bool:
        """Whether stage 1 trains one speech model per recording (no ``speech_model``, ``speech_per='speech'``)."""
        return not self.speech_model and self.speech_per == "speech"

    def speech_fingerprint(self, name: str) -> dict:
        """The settings a participant's stage-1 task depends on."""
        fp = {"participant_sha256": self.participant_sha256.get(name, ""),
              "speech_model_sha256": self.speech_model_sha256,
              "speech_minutes": None if self.speech_model else float(self.speech_minutes),
              "seed": int(self.seed)}
        if self.shares_speech:  # only then, so sweeps from before the option resume unchanged
            fp["speech_key"] = self.speech_keys.get(name, "")
        return fp

    def speech_model_fingerprint(self, key: str) -> dict:
        """The settings a per-recording speech model depends on (``speech_per='speech'``)."""
        return {"speech_key": key, "speech_minutes": float(self.speech_minutes), "seed": int(self.seed)}

    def train_for(self, arch: str) -> dict[str, Any]:
        """The training overrides of architecture ``arch``: ``train`` with ``train_arch[arch]`` on top."""
        return {**self.train, **self.train_arch.get(arch, {})}

    def decoder_fingerprint(self, name: str, arch: str, causal: bool) -> dict:
        """The settings a stage-2 task depends on (its stage 1's, the budget, the architecture's config)."""
        fp = {**self.speech_fingerprint(name), "arch": arch, "causal": bool(causal),
              "minutes": float(self.minutes), "batch_size": int(self.batch_size),
              "decoder": self.decoder.get(arch, {})}
        train = self.train_for(arch)
        if train:  # only when set, so sweeps from before the option resume unchanged
            fp["train"] = train
        return fp


def same_fingerprint(a: dict, b: dict) -> bool:
    """Whether two task fingerprints agree once both are in JSON form (as ``done.json`` holds them)."""
    return json.loads(json.dumps(a, sort_keys=True)) == json.loads(json.dumps(b, sort_keys=True))


def participant_name(path: str | Path) -> str:
    """A participant's name in a sweep: its file's stem (``/data/p0.h5`` → ``p0``)."""
    return Path(path).stem


def causal_tag(causal: bool) -> str:
    """``'causal'`` or ``'noncausal'`` (task folder names, report keys)."""
    return "causal" if causal else "noncausal"


def speech_task_dir(out: str | Path, name: str) -> Path:
    """The folder of a participant's stage-1 task."""
    return Path(out) / TASKS_DIR / name / "speech"


def speech_model_task_dir(out: str | Path, key: str) -> Path:
    """The folder of the speech-model task of one recording (``speech_per='speech'``)."""
    return Path(out) / SPEECH_DIR / key


def cache_dir(out: str | Path, name: str) -> Path:
    """A participant's reference / ridge cache, shared by its stage-2 tasks (filled by its stage-1 task)."""
    return Path(out) / TASKS_DIR / name / "cache"


def decoder_task_dir(out: str | Path, name: str, arch: str, causal: bool) -> Path:
    """The folder of a stage-2 task (training + evaluation)."""
    return Path(out) / TASKS_DIR / name / f"{arch}_{causal_tag(causal)}"


def read_done(task_dir: str | Path) -> dict | None:
    """A finished task's ``done.json``, or None when the task has not finished."""
    path = Path(task_dir) / DONE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:  # written atomically, so only a hand-edited file gets here
        raise SweepConfigError(f"{path} is not valid JSON ({exc}); delete it to run that task again") from None


def participant_layout(path: str | Path) -> str:
    """The participant's electrode layout as the report groups it: ``'LD'``, ``'HB'``, another or ``'unknown'``.

    Read without loading the data: the ``density`` dataset (``'low'`` → LD, ``'hybrid'`` → HB), else the
    ``layout`` attribute or the ``layout`` of the ``simulation_config`` attribute that ``edgensd simulate``
    writes (``ld8x8`` → LD, ``hb128`` → HB; ``strip``, ``seeg`` as they are).
    """
    import h5py

    names = {"low": "LD", "ld8x8": "LD", "hybrid": "HB", "hb128": "HB"}
    try:
        with h5py.File(path, "r") as f:
            values = []
            if "density" in f:
                v = f["density"][()]
                values.append(v.decode() if isinstance(v, bytes) else str(v))
            values.append(f.attrs.get("layout"))
            sim = f.attrs.get("simulation_config")
            if sim is not None:
                try:
                    values.append(json.loads(sim).get("layout"))
                except (json.JSONDecodeError, AttributeError):
                    pass
    except OSError:
        return "unknown"
    for v in values:
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, str) and v:
            return names.get(v, v)
    return "unknown"


def check_resume(old: SweepConfig, new: SweepConfig, out: str | Path) -> None:
    """Refuse to resume ``out`` (written with ``old``) with settings that make its finished tasks stale.

    Participants and architectures may be added or left out; what is shared must agree: the budgets, the
    shared speech model, the seed, the batch size, the training overrides, each shared architecture's
    overrides and each shared participant's file content (SHA-256).

    Raises
    ------
    SweepConfigError
        Naming every setting that differs, with the old and new values.
    """
    diffs = []
    for name in INVALIDATING:
        a, b = getattr(old, name), getattr(new, name)
        if name == "speech_minutes" and old.speech_model and new.speech_model:
            continue  # stage 1 is not trained with a shared speech model
        if a != b:
            diffs.append(f"{name}: {a!r} → {b!r}")
    if not old.speech_model and not new.speech_model and old.speech_per != new.speech_per:
        diffs.append(f"speech_per: {old.speech_per!r} → {new.speech_per!r} (--speech-per {old.speech_per} resumes "
                     "it)")
    if bool(old.speech_model) != bool(new.speech_model):
        diffs.append(f"speech_model: {old.speech_model or '(trained per participant)'!r} → "
                     f"{new.speech_model or '(trained per participant)'!r}")
    for arch in sorted(set(old.archs) & set(new.archs)):
        if old.train_for(arch) != new.train_for(arch):
            diffs.append(f"train[{arch!r}]: {old.train_for(arch)} → {new.train_for(arch)}")
        if old.decoder.get(arch, {}) != new.decoder.get(arch, {}):
            diffs.append(f"decoder[{arch!r}]: {old.decoder.get(arch, {})} → {new.decoder.get(arch, {})}")
    for name in sorted(set(old.participant_sha256) & set(new.participant_sha256)):
        a, b = old.participant_sha256[name], new.participant_sha256[name]
        if a != b:
            diffs.append(f"participant {name!r} file content (sha256 {a[:12]}… → {b[:12]}…)")
    if diffs:
        raise SweepConfigError(
            f"--out {out} holds a sweep run with other settings, whose finished tasks would be mixed with new "
            f"ones: {'; '.join(diffs)}. Use the same settings to resume it, or another --out for a new sweep"
        )
