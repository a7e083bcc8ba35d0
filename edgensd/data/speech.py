"""Real speech for training: the Asterisk prompts of one voice as one speech-only participant file.

The Debian packages ``asterisk-core-sounds-en-g722`` (568 prompts, one US-English female speaker, raw
G.722 at 16 kHz) and ``asterisk-core-sounds-en`` (their transcripts, ``name: text`` per line) hold about
25 minutes of clean read speech, roughly one participant of the reference study. The packages of the other
languages hold other speakers, laid out the same way (:data:`VOICES`: ``es`` Allison Smith again, in
Mexican Spanish; ``fr`` June Wallack, female; ``it`` Carlo Flora, male; ``ru`` a female voice provided by
Maxim Topal / ivrvoice.ru). :func:`gather_speech` turns one voice's prompts into ``speech.h5``, a
participant file without neural data (see :mod:`edgensd.data.participant`):

* prompts are taken in sorted order of their names (``'activated'``, ..., ``'digits/1'``, ``'digits/10'``,
  ...; plain string order, so the file is the same on every machine);
* prompts that are not speech are left out unless ``include_non_speech``: those whose transcript is only a
  bracketed description (``[this is a simple beep tone]``, ``(beep)``, ``<beep ascending>``), those whose
  name is one of the packages' tone and sound-effect prompts (:data:`NON_SPEECH_NAMES`, and ``silence/*``;
  the names are the same in every language, and some languages' transcripts lack them: French has no line
  for ``beep`` nor for its ``silence/*`` prompts), and
  those that decode to silence (peak below :data:`edgensd.audio.SILENCE_PEAK`: the ``silence/1`` ...
  ``silence/10`` prompts); empty prompt files (the Russian package's ``is.g722``) are left out with a
  warning;
* each prompt is one trial; ``gap_s`` (0.25 s) of digital silence precedes every prompt and follows the
  last one, and every onset is moved to the next frame boundary (a multiple of 128 samples), so trial
  ``i`` starts at sample ``128 * start[i]`` exactly; ``end[i]`` is ``ceil`` of the prompt's last sample
  over 128;
* ``label_alldataset`` is the transcript (the prompt name when the transcript has none), ``prompt_names``
  the prompt names, ``test_trials`` ``n_test`` (50) trials spread evenly over the sorted prompts;
  ``voice_range`` the ``'high'`` preset for ``en`` (as before other voices existed) and, for the other
  voices, estimated from the speaker's own training trials (:func:`edgensd.speech.voice.estimate_voice_range`;
  the estimate is logged and kept in the ``voice_estimate`` attribute);
* the data keep the voice's licence and attribution (``en``/``es``/``fr``: CC-BY-SA-3.0; ``it``/``ru``:
  CC-BY-3.0, per the packages' copyright files): the file's ``licence``/``attribution`` attributes and
  ``README.txt`` say so.

Beside ``speech.h5`` the output folder gets ``README.txt`` (attribution, what the file holds) and
``speech_data.json`` (the :class:`SpeechDataConfig` it was made with).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
import time
from pathlib import Path

import numpy as np

import edgensd
from edgensd.audio import SILENCE_PEAK, load_audio
from edgensd.config import Config, check_choice
from edgensd.data.participant import Participant, save_participant
from edgensd.log import logger, progress_enabled, use_log_level
from edgensd.params import VoiceRange
from edgensd.spectrogram import HOP, SAMPLE_RATE

#: Where ``asterisk-core-sounds-en-g722`` installs the prompts.
ALLISON_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
#: Where ``asterisk-core-sounds-en`` installs the transcripts.
TRANSCRIPT_PATH = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
PROMPTS_PACKAGE = "asterisk-core-sounds-en-g722"
TRANSCRIPT_PACKAGE = "asterisk-core-sounds-en"
LICENCE = "CC-BY-SA-3.0"
ATTRIBUTION = "Recorded by Allison Smith"
SOURCE = "Asterisk core sound prompts (English), voice en_US_f_Allison, G.722 16 kHz (Debian packages)"
SPEECH_FILE = "speech.h5"
README_FILE = "README.txt"
CONFIG_FILE = "speech_data.json"

_NON_SPEECH = re.compile(r"^\s*(\[[^\]]*\]|\([^)]*\)|<[^>]*>)\s*$")
#: Prompts that are tones or sound effects in every language's package (checked by listening to their
#: measures: a pure tone or beeps), whatever their transcript says or lacks.
NON_SPEECH_NAMES: frozenset[str] = frozenset(
    {"beep", "beeperr", "ascending-2tone", "descending-2tone", "confbridge-join", "confbridge-leave", "tt-monkeys"}
)


@dataclasses.dataclass(frozen=True)
class Voice:
    """One speaker's Asterisk prompts: where the Debian packages put them, who spoke them, under what licence.

    Attributes
    ----------
    code : str
        Short name (``--voice``).
    folder : str
        Folder below ``/usr/share/asterisk/sounds`` holding the ``*.g722`` prompts.
    language : str
    speaker : str
    sex : {'female', 'male'}
        As the packages' credits and folder names give it.
    prompts_package, transcript_package : str
        Debian packages with the prompts (G.722) and the transcripts.
    licence, attribution : str
        From the packages' copyright file; data derived from the prompts keep both.
    voice_range : {'high', 'low', 'estimate'}
        Voice range stored in the speech file by default (``estimate``: from the speaker's own audio).
    """

    code: str
    folder: str
    language: str
    speaker: str
    sex: str
    prompts_package: str
    transcript_package: str
    licence: str
    attribution: str
    voice_range: str

    @property
    def sounds_dir(self) -> Path:
        """Folder of the prompts."""
        return SOUNDS_ROOT / self.folder

    @property
    def transcript_path(self) -> Path:
        """Transcript file of the prompts."""
        return Path(f"/usr/share/doc/{self.transcript_package}/core-sounds-{self.code}.txt.gz")

    @property
    def source(self) -> str:
        """One line naming the prompts."""
        return f"Asterisk core sound prompts ({self.language}), voice {self.folder}, G.722 16 kHz (Debian packages)"


SOUNDS_ROOT = Path("/usr/share/asterisk/sounds")
#: The voices of the Debian Asterisk prompt packages (``asterisk-core-sounds-<code>-g722`` and
#: ``asterisk-core-sounds-<code>``; licences and credits from their copyright file).
VOICES: dict[str, Voice] = {
    v.code: v
    for v in (
        Voice("en", "en_US_f_Allison", "US English", "Allison Smith", "female", "asterisk-core-sounds-en-g722",
              "asterisk-core-sounds-en", "CC-BY-SA-3.0", "Recorded by Allison Smith", "high"),
        Voice("es", "es_MX_f_Allison", "Mexican Spanish", "Allison Smith", "female", "asterisk-core-sounds-es-g722",
              "asterisk-core-sounds-es", "CC-BY-SA-3.0", "Recorded by Allison Smith", "estimate"),
        Voice("fr", "fr_CA_f_June", "Canadian French", "June Wallack", "female", "asterisk-core-sounds-fr-g722",
              "asterisk-core-sounds-fr", "CC-BY-SA-3.0",
              "Recorded by June Wallack; translated into French by Clod Patry, Kristopher Lalletti and June Wallack",
              "estimate"),
        Voice("it", "it_IT_m_Carlo", "Italian", "Carlo Flora", "male", "asterisk-core-sounds-it-g722",
              "asterisk-core-sounds-it", "CC-BY-3.0",
              "Recorded by Carlo Flora (www.carloflora.com); translated by Silvia Petrin", "estimate"),
        Voice("ru", "ru_RU_f_IvrvoiceRU", "Russian", "IvrvoiceRU voice (provided by Maxim Topal)", "female",
              "asterisk-core-sounds-ru-g722", "asterisk-core-sounds-ru", "CC-BY-3.0",
              "Provided by Maxim Topal, http://www.ivrvoice.ru", "estimate"),
    )
}

__all__ = [
    "ALLISON_DIR",
    "NON_SPEECH_NAMES",
    "TRANSCRIPT_PATH",
    "VOICES",
    "Prompt",
    "SpeechDataConfig",
    "SpeechDataMissingError",
    "SpeechDataResult",
    "Voice",
    "build_speech_participant",
    "gather_speech",
    "list_prompts",
    "read_transcripts",
]


class SpeechDataMissingError(FileNotFoundError):
    """The Debian packages holding the prompts or transcripts are not installed (message says which)."""


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One prompt: its name (path below the sounds folder, no suffix), its file and its transcript."""

    name: str
    path: Path
    transcript: str | None

    @property
    def is_non_speech(self) -> bool:
        """Whether the prompt is a tone, sound effect or silence: its transcript only describes a sound
        (``[beep tone]``, ``(10 seconds of silence)``, ``<beep ascending>``), or its name is in
        :data:`NON_SPEECH_NAMES` or starts with ``silence/``."""
        if self.name in NON_SPEECH_NAMES or self.name.startswith("silence/"):
            return True
        return self.transcript is not None and bool(_NON_SPEECH.match(self.transcript))


@dataclasses.dataclass
class SpeechDataConfig(Config):
    """How ``speech.h5`` is made (saved beside it as ``speech_data.json``).

    Attributes
    ----------
    voice : {'en', 'es', 'fr', 'it', 'ru'}
        Which speaker's prompts (:data:`VOICES`): the default folder, transcript file, licence and voice range.
    sounds_dir : str or None
        Folder searched recursively for ``*.g722`` prompts; ``None``: the voice's.
    transcript_path : str or None
        Transcript file (``name: text`` per line; gzip if it ends in ``.gz``); ``None``: the voice's.
    max_prompts : int or None
        Keep only the first this many speech prompts (in sorted order); ``None`` keeps all.
    gap_s : float
        Silence before each prompt and after the last, seconds (>= 0); onsets are then rounded up to
        the next frame.
    include_non_speech : bool
        Keep bracketed non-speech prompts (tones, monkeys) and silent prompts.
    n_test : int
        Held-out trials: ``n_test`` spread evenly over the sorted prompts (when fewer than ``2 * n_test``
        trials are kept, half of them, rounded down).
    voice_range : str or None
        Voice range stored in the file: the ``'high'`` or ``'low'`` preset, or ``'estimate'`` (from the
        speaker's training trials, :func:`edgensd.speech.voice.estimate_voice_range`); ``None``: the voice's
        default (``'high'`` for ``en``, ``'estimate'`` for the others).
    """

    voice: str = "en"
    sounds_dir: str | None = None
    transcript_path: str | None = None
    max_prompts: int | None = None
    gap_s: float = 0.25
    include_non_speech: bool = False
    n_test: int = 50
    voice_range: str | None = None

    def __post_init__(self) -> None:
        check_choice("voice", self.voice, tuple(VOICES))
        if self.max_prompts is not None and (
            isinstance(self.max_prompts, bool)
            or not isinstance(self.max_prompts, int)
            or self.max_prompts < 1
        ):
            raise ValueError(f"max_prompts must be a positive int or None, got {self.max_prompts!r}")
        if not (isinstance(self.gap_s, (int, float)) and 0.0 <= self.gap_s <= 10.0):
            raise ValueError(f"gap_s must be a number of seconds in [0, 10], got {self.gap_s!r}")
        if isinstance(self.n_test, bool) or not isinstance(self.n_test, int) or self.n_test < 0:
            raise ValueError(f"n_test must be a non-negative int, got {self.n_test!r}")
        if self.voice_range is not None:
            check_choice("voice_range", self.voice_range, ("low", "high", "estimate"))

    @property
    def voice_info(self) -> Voice:
        """The :class:`Voice` of ``voice``."""
        return VOICES[self.voice]

    @property
    def resolved_sounds_dir(self) -> Path:
        """``sounds_dir``, or the voice's folder."""
        return Path(self.sounds_dir) if self.sounds_dir else self.voice_info.sounds_dir

    @property
    def resolved_transcript_path(self) -> Path:
        """``transcript_path``, or the voice's transcript file."""
        return Path(self.transcript_path) if self.transcript_path else self.voice_info.transcript_path

    @property
    def resolved_voice_range(self) -> str:
        """``voice_range``, or the voice's default."""
        return self.voice_range if self.voice_range is not None else self.voice_info.voice_range


@dataclasses.dataclass
class SpeechDataResult:
    """What :func:`gather_speech` wrote and measured."""

    path: Path
    readme_path: Path
    config_path: Path
    n_prompts: int
    n_test: int
    skipped: list[str]
    speech_minutes: float
    total_minutes: float
    seconds: float


def _missing_message(missing: list[tuple[str, str]]) -> str:
    what = "; ".join(f"{desc} (Debian package {pkg})" for desc, pkg in missing)
    pkgs = " ".join(dict.fromkeys(pkg for _, pkg in missing))
    return f"real speech data not found: {what}. Install with: apt-get update && apt-get install {pkgs}"


def read_transcripts(path: str | Path = TRANSCRIPT_PATH, package: str = TRANSCRIPT_PACKAGE) -> dict[str, str]:
    """Read the prompt transcripts.

    Parameters
    ----------
    path : str or Path
        ``core-sounds-<lang>.txt.gz`` (or an uncompressed copy): ``name: text`` per line, ``;`` comments;
        UTF-8, with or without a byte-order mark (the Italian file has one).
    package : str
        Debian package that installs the file (named in the error when it is missing).

    Returns
    -------
    dict of str to str
        Prompt name (with subfolder, e.g. ``'digits/1'``) → transcript text, stripped.
    """
    path = Path(path)
    if not path.is_file():
        raise SpeechDataMissingError(_missing_message([(f"no transcript file {path}", package)]))
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise ValueError(f"transcript file {path} is unreadable: {exc}") from exc
    out: dict[str, str] = {}
    for line in lines:
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        name, sep, text = line.partition(":")
        if not sep or not name.strip():
            logger.debug("transcript file %s: ignored line %r", path, line)
            continue
        out[name.strip()] = text.strip()
    if not out:
        raise ValueError(f"transcript file {path} holds no 'name: text' lines")
    return out


def list_prompts(
    sounds_dir: str | Path = ALLISON_DIR,
    transcript_path: str | Path = TRANSCRIPT_PATH,
    voice: str = "en",
) -> list[Prompt]:
    """Every ``*.g722`` prompt below ``sounds_dir`` with its transcript, sorted by name (nothing decoded).

    ``voice`` (a key of :data:`VOICES`) only names the Debian packages in the error when files are missing.

    Raises
    ------
    SpeechDataMissingError
        No prompts or no transcript file; the message names the Debian packages to install.
    """
    sounds_dir, transcript_path = Path(sounds_dir), Path(transcript_path)
    info = VOICES[check_choice("voice", voice, tuple(VOICES))]
    files = sorted(sounds_dir.rglob("*.g722")) if sounds_dir.is_dir() else []
    missing = []
    if not files:
        missing.append((f"no *.g722 prompts under {sounds_dir}", info.prompts_package))
    if not transcript_path.is_file():
        missing.append((f"no transcript file {transcript_path}", info.transcript_package))
    if missing:
        raise SpeechDataMissingError(_missing_message(missing))
    transcripts = read_transcripts(transcript_path, info.transcript_package)
    prompts = [
        Prompt(name=name, path=p, transcript=transcripts.get(name))
        for p in files
        for name in [p.relative_to(sounds_dir).with_suffix("").as_posix()]
    ]
    prompts.sort(key=lambda pr: pr.name)
    n_without = sum(pr.transcript is None for pr in prompts)
    if n_without:
        logger.debug(
            "%d of %d prompts have no transcript; their name is their label", n_without, len(prompts)
        )
    return prompts


def spread_test_trials(n_trials: int, n_test: int) -> np.ndarray:
    """Indices of ``n_test`` held-out trials spread evenly over ``n_trials`` (sorted, unique).

    The prompts are sorted by name, so the last 50 would be almost all voicemail prompts; an even spread
    gives a held-out set as varied as the training set.
    """
    if n_test <= 0:
        return np.zeros(0, np.int64)
    if n_test > n_trials:
        raise ValueError(f"n_test ({n_test}) must not exceed the number of trials ({n_trials})")
    step = n_trials / n_test
    return (np.floor((np.arange(n_test) + 0.5) * step)).astype(np.int64)


def build_speech_participant(config: SpeechDataConfig | None = None) -> tuple[Participant, dict]:
    """Decode the prompts and lay them out as one speech-only :class:`Participant` (nothing written).

    Parameters
    ----------
    config : SpeechDataConfig or None
        Defaults to ``SpeechDataConfig()`` (all speech prompts from the Debian packages).

    Returns
    -------
    participant : Participant
        Speech-only: ``audio`` float32 (n_samples,), one trial per prompt, ``prompt_names``,
        ``voice_range``, ``test_trials`` and the licence attributes.
    stats : dict
        ``n_listed``, ``n_prompts``, ``skipped`` (names), ``speech_minutes``, ``total_minutes``, ``seconds``.
    """
    from tqdm import tqdm

    cfg = config if config is not None else SpeechDataConfig()
    t0 = time.perf_counter()
    voice = cfg.voice_info
    sounds_dir, transcript_path = cfg.resolved_sounds_dir, cfg.resolved_transcript_path
    listed = list_prompts(sounds_dir, transcript_path, cfg.voice)
    skipped: list[str] = []
    candidates = []
    for pr in listed:
        if pr.is_non_speech and not cfg.include_non_speech:
            skipped.append(pr.name)
        else:
            candidates.append(pr)
    gap = int(round(cfg.gap_s * SAMPLE_RATE))
    pieces: list[tuple[int, np.ndarray]] = []
    kept: list[Prompt] = []
    pos = 0
    total = len(candidates) if cfg.max_prompts is None else min(cfg.max_prompts, len(candidates))
    with tqdm(total=total, desc="decoding prompts", unit="prompt", disable=not progress_enabled()) as bar:
        for pr in candidates:
            if cfg.max_prompts is not None and len(kept) >= cfg.max_prompts:
                break
            if pr.path.stat().st_size == 0:  # the Russian package ships an empty 'is.g722'
                logger.warning("prompt %s: %s is empty; left out", pr.name, pr.path)
                skipped.append(pr.name)
                continue
            audio = load_audio(pr.path, allow_silent=True)
            if not cfg.include_non_speech and float(np.max(np.abs(audio))) < SILENCE_PEAK:
                skipped.append(pr.name)
                continue
            pos = -(-(pos + gap) // HOP) * HOP  # gap, then up to the next frame boundary
            pieces.append((pos, audio))
            kept.append(pr)
            pos = -(-(pos + audio.shape[0]) // HOP) * HOP
            bar.update(1)
    if not kept:
        raise ValueError(
            f"no speech prompts left in {sounds_dir} (skipped {len(skipped)} non-speech ones)"
        )
    n_samples = -(-(pos + gap) // HOP) * HOP
    wave = np.zeros(n_samples, dtype=np.float32)
    starts = np.empty(len(kept), dtype=np.int64)
    ends = np.empty(len(kept), dtype=np.int64)
    for i, (at, audio) in enumerate(pieces):
        wave[at : at + audio.shape[0]] = audio
        starts[i] = at // HOP
        ends[i] = -(-(at + audio.shape[0]) // HOP)
    n = len(kept)
    n_test = cfg.n_test if n >= 2 * cfg.n_test else n // 2
    if n_test != cfg.n_test:
        logger.info(
            "only %d prompts kept: holding out %d (n_test=%d needs %d)",
            n,
            n_test,
            cfg.n_test,
            2 * cfg.n_test,
        )
    speech_samples = sum(a.shape[0] for _, a in pieces)
    seconds = time.perf_counter() - t0
    stats = {
        "n_listed": len(listed),
        "n_prompts": n,
        "n_test": n_test,
        "skipped": skipped,
        "speech_minutes": speech_samples / SAMPLE_RATE / 60.0,
        "total_minutes": n_samples / SAMPLE_RATE / 60.0,
        "seconds": seconds,
    }
    test_trials = spread_test_trials(n, n_test)
    extra_attrs: dict = {}
    if cfg.resolved_voice_range == "estimate":
        from edgensd.speech.voice import estimate_voice_range

        held_out = set(test_trials.tolist())
        est = estimate_voice_range(a for i, (_, a) in enumerate(pieces) if i not in held_out)
        logger.info("voice range of %s estimated from the training prompts: %s", voice.folder, est.reason)
        voice_range = est.voice
        stats["voice_estimate"] = est.to_dict()
        extra_attrs["voice_estimate"] = json.dumps(est.to_dict(), sort_keys=True)
    else:
        voice_range = VoiceRange.preset(cfg.resolved_voice_range)
    extra_attrs.update({"voice": voice.code, "speaker": voice.speaker, "speaker_sex": voice.sex,
                        "language": voice.language})
    p = Participant(
        audio=wave,
        start=starts,
        end=ends,
        labels=[pr.transcript if pr.transcript else pr.name for pr in kept],
        prompt_names=[pr.name for pr in kept],
        voice_range=voice_range,
        test_trials=test_trials,
        attrs={
            "source": voice.source,
            "licence": voice.licence,
            "attribution": voice.attribution,
            "debian_packages": f"{voice.prompts_package} {voice.transcript_package}",
            "sounds_dir": str(sounds_dir),
            "transcript_path": str(transcript_path),
            "skipped_prompts": " ".join(skipped),
            "speech_minutes": stats["speech_minutes"],
            "gap_s": float(cfg.gap_s),
            "created_by": f"edgensd {edgensd.__version__}: edgensd data speech",
            **extra_attrs,
        },
    )
    return p, stats


_LICENCE_URL = {
    "CC-BY-SA-3.0": "https://creativecommons.org/licenses/by-sa/3.0/",
    "CC-BY-3.0": "https://creativecommons.org/licenses/by/3.0/",
}


def _readme_text(p: Participant, stats: dict, cfg: SpeechDataConfig) -> str:
    v = cfg.voice_info
    skipped = ", ".join(stats["skipped"]) or "none"
    made_with = "" if cfg.voice == "en" else f" --voice {cfg.voice}"
    made_with += "" if cfg.max_prompts is None else f" --max-prompts {cfg.max_prompts}"
    title = f'Speech-only participant file built from the Asterisk "{v.folder}" prompts'
    keep = "stay" if v.licence == "CC-BY-SA-3.0" else "are"
    est = stats.get("voice_estimate")
    voice_line = (f"estimated from the training prompts: {est['reason']}" if est
                  else f"'{cfg.resolved_voice_range}' preset")
    return f"""{title}
{"=" * len(title)}

Licence: {v.licence} ({_LICENCE_URL[v.licence]})
Attribution: {v.attribution}. Source: {v.source}.
Speaker: {v.speaker} ({v.sex}, {v.language}).
Data derived from these prompts {keep} {v.licence} and must carry this attribution.

Files
  {SPEECH_FILE}         participant file (edgensd.data.load_participant(path, require_neural=False));
                    no neural data ('ecog_alldataset' absent)
  {CONFIG_FILE}  how it was made (edgensd.data.speech.SpeechDataConfig)

Contents
  prompts (trials):  {p.n_trials} of {stats["n_listed"]} listed, in sorted name order
  held-out trials:   {stats["n_test"]} spread evenly over the prompts ('test_trials')
  speech:            {stats["speech_minutes"]:.2f} min
  with gaps:         {stats["total_minutes"]:.2f} min ({cfg.gap_s:g} s before each prompt)
  audio:             16 kHz mono float32, each prompt starting on a 128-sample frame boundary
  labels:            transcript of each prompt (the prompt name where none exists);
                     'prompt_names' holds the prompt names
  voice range:       {voice_line}
  left out:          {skipped}

Made with: edgensd data speech --out DIR{made_with}
"""


def gather_speech(
    out_dir: str | Path,
    config: SpeechDataConfig | None = None,
    *,
    verbose: bool | str | int | None = None,
) -> SpeechDataResult:
    """Build ``out_dir/speech.h5`` (+ ``README.txt``, ``speech_data.json``) from one voice's prompts.

    Parameters
    ----------
    out_dir : str or Path
        Output folder (created). Existing files of the same names are replaced atomically.
    config : SpeechDataConfig or None
        Defaults to ``SpeechDataConfig()``.
    verbose : bool | str | int | None
        Log level for this call; ``None`` keeps the current one.

    Returns
    -------
    SpeechDataResult
        Paths written, prompt counts, minutes of speech and the time it took (seconds).

    Raises
    ------
    SpeechDataMissingError
        The Debian packages are not installed (the message gives the ``apt-get install`` line).
    """
    with use_log_level(verbose):
        cfg = config if config is not None else SpeechDataConfig()
        out_dir = Path(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"--out {out_dir} exists and is not a folder")
        t0 = time.perf_counter()
        p, stats = build_speech_participant(cfg)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = save_participant(p, out_dir / SPEECH_FILE)
        readme = out_dir / README_FILE
        tmp = readme.with_name(readme.name + ".tmp")
        tmp.write_text(_readme_text(p, stats, cfg), encoding="utf-8")
        tmp.replace(readme)
        config_path = cfg.save(out_dir / CONFIG_FILE)
        seconds = time.perf_counter() - t0
        logger.info(
            "wrote %s: %d prompts (%d held out), %.2f min of speech (%.2f min with gaps), "
            "%d left out, in %.1f s",
            path,
            stats["n_prompts"],
            stats["n_test"],
            stats["speech_minutes"],
            stats["total_minutes"],
            len(stats["skipped"]),
            seconds,
        )
        return SpeechDataResult(
            path=path,
            readme_path=readme,
            config_path=config_path,
            n_prompts=stats["n_prompts"],
            n_test=stats["n_test"],
            skipped=list(stats["skipped"]),
            speech_minutes=stats["speech_minutes"],
            total_minutes=stats["total_minutes"],
            seconds=seconds,
        )
