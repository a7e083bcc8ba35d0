"""A simulated cohort: several participants from several speakers, grids, hemispheres and knob settings.

A cohort spec (JSON; the shipped one is ``edgensd/assets/cohort/default.json``, :func:`default_spec_path`)
lists participants; :func:`build_cohort` gathers each voice's speech once (``edgensd data speech``) and
simulates every participant (``edgensd simulate``) into one folder::

    DIR/speech/<voice>/speech.h5            the voice's speech file (``<voice>_first<N>`` with max_trials N)
    DIR/<id>.h5                             participant file
    DIR/<id>.simulation.json                its SimulationConfig (layout, hemisphere, knobs, ...)
    DIR/<id>.simulation_report.json         timings, measured speech/silence ratios, knob summary
    DIR/cohort.json                         the manifest: one record per participant (below)

The build is resumable per participant: a participant whose file and config JSON exist, with the config the
spec asks for, is not simulated again (a file with another config is an error, never overwritten silently);
every file is written atomically (temporary file, then rename), and the config JSON after the participant
file, so a killed build leaves either a finished participant or one that is simulated again. One log line
per participant.

Spec format::

    {"name": "default",
     "description": "...",
     "defaults": {"trial_gap_s": 1.0, "difficulty": "standard"},      # any SimulationConfig field
     "participants": [
        {"id": "p01", "voice": "en", "layout": "ld8x8", "hemisphere": "left", "nonlinearity": "linear",
         "seed": 101},
        ...]}

``voice`` is a key of :data:`edgensd.data.speech.VOICES`; every other key of a participant (and of
``defaults``) is a :class:`~edgensd.neural.simulate.SimulationConfig` field except ``speech`` and
``max_trials``, which the build sets. Ids are file names: letters, digits, ``-`` and ``_``.

Manifest record (``cohort.json`` → ``participants``): ``id``, ``file``, ``config_file``, ``report_file``
(relative to DIR), ``voice``, ``speaker``, ``speaker_sex``, ``language``, ``layout``, ``density``
(``low`` for ld8x8, ``hybrid`` for hb128), ``hemisphere``, ``nonlinearity``, ``knobs`` (resolved values),
``difficulty``, ``seed``, ``n_electrodes``, ``n_trials``, ``minutes``, ``seconds`` (simulation time when
it was built), ``size_bytes``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from pathlib import Path

from edgensd.log import logger, use_log_level

__all__ = [
    "CohortParticipant",
    "CohortResult",
    "CohortSpec",
    "build_cohort",
    "default_spec_path",
    "load_spec",
]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_RESERVED = ("speech", "max_trials", "voice", "id")
MANIFEST = "cohort.json"


def default_spec_path() -> Path:
    """The shipped cohort spec, ``edgensd/assets/cohort/default.json``."""
    return Path(__file__).resolve().parent.parent / "assets" / "cohort" / "default.json"


@dataclasses.dataclass(frozen=True)
class CohortParticipant:
    """One participant of a cohort spec.

    Attributes
    ----------
    id : str
        File name stem of the participant (letters, digits, ``-``, ``_``).
    voice : str
        Speaker (:data:`edgensd.data.speech.VOICES`).
    simulation : dict
        :class:`~edgensd.neural.simulate.SimulationConfig` fields (the spec's defaults, then the
        participant's own), without ``speech`` and ``max_trials``.
    """

    id: str
    voice: str
    simulation: dict

    def config(self, speech: str | Path, max_trials: int | None = None):
        """The participant's :class:`~edgensd.neural.simulate.SimulationConfig`."""
        from edgensd.neural.simulate import SimulationConfig

        return SimulationConfig(speech=str(speech), max_trials=max_trials, **self.simulation)


@dataclasses.dataclass(frozen=True)
class CohortSpec:
    """A parsed cohort spec (:func:`load_spec`)."""

    name: str
    description: str
    participants: tuple[CohortParticipant, ...]
    source: str

    @property
    def voices(self) -> tuple[str, ...]:
        """The voices the participants use, in first-use order."""
        return tuple(dict.fromkeys(p.voice for p in self.participants))


def _spec_error(where: str, msg: str) -> ValueError:
    return ValueError(f"cohort spec {where}: {msg}")


def load_spec(source: str | Path | dict | None = None) -> CohortSpec:
    """Read and check a cohort spec.

    Parameters
    ----------
    source : str, Path, dict or None
        A JSON file, an already parsed dict, or ``None`` for the shipped :func:`default_spec_path`.

    Returns
    -------
    CohortSpec

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The spec is not valid: the message names the file, the participant and the field, and the allowed
        values (every participant's SimulationConfig is built and checked here, before any work).
    """
    from edgensd.data.speech import VOICES
    from edgensd.neural.simulate import SimulationConfig

    if source is None:
        source = default_spec_path()
    if isinstance(source, dict):
        data, where = source, "(dict)"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"cohort spec not found: {path}")
        where = str(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise _spec_error(where, f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _spec_error(where, "must be a JSON object with 'participants'")
    unknown = sorted(set(data) - {"name", "description", "defaults", "participants"})
    if unknown:
        raise _spec_error(where, f"unknown keys {unknown}; allowed: name, description, defaults, participants")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise _spec_error(where, "'defaults' must be an object of SimulationConfig fields")
    entries = data.get("participants")
    if not isinstance(entries, list) or not entries:
        raise _spec_error(where, "'participants' must be a non-empty list")
    fields = {f.name for f in dataclasses.fields(SimulationConfig)} - set(_RESERVED)
    for k in defaults:
        if k not in fields:
            raise _spec_error(where, f"defaults: unknown field {k!r}; allowed: {sorted(fields)}")
    out, seen = [], set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _spec_error(where, f"participant #{i} must be an object")
        pid = entry.get("id")
        if not isinstance(pid, str) or not _ID.match(pid):
            raise _spec_error(where, f"participant #{i}: 'id' must be a file-name-safe string (letters, digits, "
                                     f"'-', '_'), got {pid!r}")
        if pid in seen:
            raise _spec_error(where, f"participant id {pid!r} appears twice")
        seen.add(pid)
        voice = entry.get("voice")
        if voice not in VOICES:
            raise _spec_error(where, f"participant {pid}: 'voice' must be one of {list(VOICES)}, got {voice!r}")
        sim = {**defaults, **{k: v for k, v in entry.items() if k not in ("id", "voice")}}
        for k in sim:
            if k not in fields:
                raise _spec_error(where, f"participant {pid}: unknown field {k!r}; allowed: id, voice, "
                                         f"{', '.join(sorted(fields))}")
        p = CohortParticipant(id=pid, voice=voice, simulation=sim)
        try:
            p.config("speech.h5")
        except (ValueError, TypeError) as exc:
            raise _spec_error(where, f"participant {pid}: {exc}") from None
        out.append(p)
    name = data.get("name", Path(where).stem if where != "(dict)" else "cohort")
    return CohortSpec(name=str(name), description=str(data.get("description", "")), participants=tuple(out),
                      source=where)


@dataclasses.dataclass
class CohortResult:
    """What :func:`build_cohort` did.

    Attributes
    ----------
    manifest_path : Path
        ``DIR/cohort.json``.
    records : list of dict
        One manifest record per participant (module docstring).
    built, skipped : list of str
        Participant ids simulated now, and ids found finished.
    seconds : float
        Wall time of the whole build.
    """

    manifest_path: Path
    records: list
    built: list
    skipped: list
    seconds: float


def _write_json_atomic(path: Path, payload) -> None:
    from edgensd.audio import _tmp_path

    tmp = _tmp_path(path)
    try:
        tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _speech_file(out_dir: Path, voice: str, max_trials: int | None) -> Path:
    """Gather the voice's speech once (reused when its file and config are there and match)."""
    from edgensd.data.speech import CONFIG_FILE, SPEECH_FILE, SpeechDataConfig, gather_speech

    folder = out_dir / "speech" / (voice if max_trials is None else f"{voice}_first{max_trials}")
    cfg = SpeechDataConfig(voice=voice, max_prompts=max_trials, n_test=50 if max_trials is None else 0)
    path, cfg_path = folder / SPEECH_FILE, folder / CONFIG_FILE
    if path.is_file() and cfg_path.is_file():
        if SpeechDataConfig.load(cfg_path) == cfg:
            return path
        raise ValueError(f"{folder} holds speech data made with another configuration ({cfg_path}); delete the "
                         "folder or build the cohort in another --out")
    t0 = time.perf_counter()
    res = gather_speech(folder, cfg, verbose="warning")
    logger.info("speech %s: %d prompts, %.1f min of speech in %.1f s -> %s", voice, res.n_prompts,
                res.speech_minutes, time.perf_counter() - t0, res.path)
    return res.path


def _record(out_dir: Path, p: CohortParticipant, cfg, path: Path, report: dict) -> dict:
    from edgensd.data.speech import VOICES

    v = VOICES[p.voice]
    summ = report.get("truth_summary", {})
    return {
        "id": p.id,
        "file": path.name,
        "config_file": path.with_name(path.stem + ".simulation.json").name,
        "report_file": path.with_name(path.stem + ".simulation_report.json").name,
        "voice": p.voice,
        "speaker": v.speaker,
        "speaker_sex": v.sex,
        "language": v.language,
        "layout": cfg.layout,
        "density": {"ld8x8": "low", "hb128": "hybrid", "strip": "strip", "seeg": "depth"}[cfg.layout],
        "hemisphere": cfg.hemisphere,
        "nonlinearity": cfg.nonlinearity,
        "knobs": cfg.knobs.to_dict(),
        "difficulty": cfg.difficulty,
        "seed": cfg.seed,
        "n_electrodes": summ.get("n_electrodes"),
        "n_trials": report.get("n_trials"),
        "minutes": report.get("minutes"),
        "seconds": report.get("timings_s", {}).get("total"),
        "size_bytes": path.stat().st_size,
    }


def build_cohort(
    out_dir: str | Path,
    spec: CohortSpec | str | Path | dict | None = None,
    *,
    max_trials: int | None = None,
    only: list[str] | None = None,
    verbose: bool | str | int | None = None,
) -> CohortResult:
    """Simulate every participant of a cohort spec into ``out_dir`` (resumable; see the module docstring).

    Parameters
    ----------
    out_dir : str or Path
        Output folder (created).
    spec : CohortSpec, str, Path, dict or None
        The spec or where to read it (:func:`load_spec`; ``None``: the shipped default).
    max_trials : int or None
        Only the first this many prompts of each voice (a quick cohort; its speech files are kept apart).
    only : list of str or None
        Build only these participant ids (the manifest still lists only finished participants).
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    CohortResult

    Raises
    ------
    ValueError
        Invalid spec, unknown ids in ``only``, or a participant file made with another configuration.
    """
    from edgensd.neural.simulate import SimulationConfig, config_path_for, simulate, write_report, write_simulation

    with use_log_level(verbose):
        t_all = time.perf_counter()
        if not isinstance(spec, CohortSpec):
            spec = load_spec(spec)
        if max_trials is not None and (isinstance(max_trials, bool) or not isinstance(max_trials, int)
                                       or max_trials < 1):
            raise ValueError(f"max_trials must be a positive int or None, got {max_trials!r}")
        ids = [p.id for p in spec.participants]
        if only is not None:
            unknown = sorted(set(only) - set(ids))
            if unknown:
                raise ValueError(f"only: unknown participant ids {unknown}; the spec has {ids}")
        todo = [p for p in spec.participants if only is None or p.id in only]
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        logger.info("cohort %s: %d participants (%s), voices %s -> %s", spec.name, len(todo),
                    ", ".join(p.id for p in todo), ", ".join(dict.fromkeys(p.voice for p in todo)), out_dir)
        # check every finished file against its config before any long work
        plans = []
        speech_paths: dict[str, Path] = {}
        for p in todo:
            folder = out_dir / "speech" / (p.voice if max_trials is None else f"{p.voice}_first{max_trials}")
            cfg = p.config(folder / "speech.h5", max_trials)
            path = out_dir / f"{p.id}.h5"
            cfg_path = config_path_for(path)
            done = path.is_file() and cfg_path.is_file()
            if done and SimulationConfig.load(cfg_path) != cfg:
                raise ValueError(f"participant {p.id}: {path} was simulated with another configuration "
                                 f"({cfg_path}); delete it or build the cohort in another --out")
            plans.append((p, cfg, path, done))
        records, built, skipped = [], [], []
        manifest_path = out_dir / MANIFEST
        for k, (p, cfg, path, done) in enumerate(plans, 1):
            report_path = path.with_name(path.stem + ".simulation_report.json")
            tag = (f"{p.id} ({k}/{len(plans)}: {p.voice} {cfg.layout} {cfg.hemisphere}, {cfg.nonlinearity}, "
                   f"seed {cfg.seed})")
            if done:
                report = json.loads(report_path.read_text()) if report_path.is_file() else {}
                rec = _record(out_dir, p, cfg, path, report)
                skipped.append(p.id)
                logger.info("participant %s: already built (%.0f MB), skipped", tag, rec["size_bytes"] / 1e6)
            else:
                if p.voice not in speech_paths:
                    speech_paths[p.voice] = _speech_file(out_dir, p.voice, max_trials)
                t0 = time.perf_counter()
                res = simulate(cfg, verbose="error")  # bad-channel detections are in the report
                write_simulation(res, path)  # participant file, then its config JSON (both atomic)
                report = write_report(res, path)
                rec = _record(out_dir, p, cfg, path, report)
                built.append(p.id)
                logger.info("participant %s: %d electrodes x %d trials (%.1f min) in %.1f s, %.0f MB -> %s", tag,
                            rec["n_electrodes"], rec["n_trials"], rec["minutes"], time.perf_counter() - t0,
                            rec["size_bytes"] / 1e6, path)
            records.append(rec)
            _write_json_atomic(manifest_path, _manifest(spec, max_trials, records, out_dir))
        seconds = time.perf_counter() - t_all
        logger.info("cohort %s: %d built, %d already there, in %.1f s; manifest %s", spec.name, len(built),
                    len(skipped), seconds, manifest_path)
        return CohortResult(manifest_path=manifest_path, records=records, built=built, skipped=skipped,
                            seconds=seconds)


def _manifest(spec: CohortSpec, max_trials: int | None, records: list, out_dir: Path) -> dict:
    old = {}
    path = out_dir / MANIFEST
    if path.is_file():
        try:
            old = {r["id"]: r for r in json.loads(path.read_text()).get("participants", [])}
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            old = {}
    merged = {**old, **{r["id"]: r for r in records}}
    merged = {k: r for k, r in merged.items() if (out_dir / str(r.get("file", ""))).is_file()}
    order = [p.id for p in spec.participants]
    return {
        "name": spec.name,
        "description": spec.description,
        "spec": spec.source,
        "max_trials": max_trials,
        "participants": [merged[i] for i in order if i in merged],
    }
