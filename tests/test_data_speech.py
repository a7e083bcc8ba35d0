"""Tests of edgensd.data.speech and ``edgensd data speech`` on the real Allison prompts (Debian packages)."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from edgensd.audio import load_audio
from edgensd.cli.main import main
from edgensd.data import load_participant, trial_split
from edgensd.data.speech import (
    ALLISON_DIR,
    TRANSCRIPT_PATH,
    VOICES,
    SpeechDataConfig,
    SpeechDataMissingError,
    gather_speech,
    list_prompts,
    read_transcripts,
)
from edgensd.params import VoiceRange

HOP = 128




def test_transcripts_parse_real_file():
    tr = read_transcripts(TRANSCRIPT_PATH)
    assert tr["activated"] == "Activated."
    assert tr["digits/1"] == "one"
    assert tr["silence/1"] == "(1 second of silence)"
    assert len(tr) > 560


def test_full_listing_finds_every_prompt():
    prompts = list_prompts()
    assert len(prompts) == 568
    names = [p.name for p in prompts]
    assert names == sorted(names) and len(set(names)) == len(names)
    by_name = {p.name: p for p in prompts}
    assert by_name["digits/1"].transcript == "one" and by_name["digits/1"].path.suffix == ".g722"
    assert by_name["beep"].is_non_speech and by_name["silence/3"].is_non_speech
    assert not by_name["letters/at"].is_non_speech  # "at [@]" is speech
    # the two conference beeps ("<beep ascending>", "<beep decending>") are tones too
    assert by_name["confbridge-join"].is_non_speech and by_name["confbridge-leave"].is_non_speech
    assert sum(p.is_non_speech for p in prompts) == 17


def test_gather_small(tmp_path, edgensd_log):
    out = tmp_path / "speech"
    res = gather_speech(out, SpeechDataConfig(max_prompts=6))
    assert res.path == out / "speech.h5" and res.n_prompts == 6 and res.n_test == 3
    assert res.speech_minutes > 0 and res.total_minutes > res.speech_minutes and res.seconds > 0
    assert any("6 prompts" in r.getMessage() and "min of speech" in r.getMessage() for r in edgensd_log)

    with pytest.raises(ValueError, match="speech-only"):
        load_participant(res.path)
    p = load_participant(res.path, require_neural=False)
    speech = [pr for pr in list_prompts() if not pr.is_non_speech][:6]
    assert p.prompt_names == [pr.name for pr in speech]
    assert p.labels == [pr.transcript for pr in speech] and p.labels[0] == "Activated."
    assert p.test_trials.tolist() == [1, 3, 5]
    train, test = trial_split(p)
    assert train.tolist() == [0, 2, 4] and test.tolist() == [1, 3, 5]
    assert isinstance(p.voice_range, VoiceRange) and p.voice_range.same_as(VoiceRange.preset("high"))
    assert p.attrs["licence"] == "CC-BY-SA-3.0" and p.attrs["attribution"] == "Recorded by Allison Smith"
    assert "Allison" in p.attrs["source"] and p.attrs["voice"] == "en" and p.attrs["speaker_sex"] == "female"
    gap = int(0.25 * 16000)
    assert p.start[0] * HOP >= gap and p.audio.size % HOP == 0
    prev_end = 0
    for i, pr in enumerate(speech):
        x = load_audio(pr.path)
        s, e = p.trial_frames(i)
        np.testing.assert_array_equal(p.audio[s * HOP : s * HOP + x.size], x)  # frame-aligned, bit-exact
        assert e == -(-(s * HOP + x.size) // HOP)
        assert s * HOP - prev_end * HOP >= gap and not p.audio[prev_end * HOP : s * HOP].any()
        prev_end = e
    assert (p.n_frames - prev_end) * HOP >= gap

    readme = res.readme_path.read_text()
    assert "CC-BY-SA-3.0" in readme and "Recorded by Allison Smith" in readme
    cfg = SpeechDataConfig.load(res.config_path)
    assert cfg == SpeechDataConfig(max_prompts=6)


def test_gather_everything(tmp_path):
    res = gather_speech(tmp_path, verbose="warning")
    p = load_participant(res.path, require_neural=False)
    assert p.n_trials == res.n_prompts == 568 - 17
    assert sorted(res.skipped) == sorted(
        ["ascending-2tone", "beep", "beeperr", "confbridge-join", "confbridge-leave", "descending-2tone", "tt-monkeys"]
        + [f"silence/{i}" for i in range(1, 11)]
    )
    test = p.test_trials.tolist()  # 50 prompts spread evenly over the sorted names
    assert len(test) == 50 and test == sorted(set(test)) and test[0] < 20 and test[-1] > 530
    assert max(np.diff(test)) <= 12
    assert 23.5 < res.speech_minutes < 25.5
    assert p.duration_s / 60 == pytest.approx(res.total_minutes)
    assert all(label for label in p.labels)


def test_non_speech_prompts_and_missing_transcripts(tmp_path):
    sounds = tmp_path / "sounds"
    (sounds / "silence").mkdir(parents=True)
    shutil.copy(ALLISON_DIR / "activated.g722", sounds / "activated.g722")
    shutil.copy(ALLISON_DIR / "beep.g722", sounds / "beep.g722")
    shutil.copy(ALLISON_DIR / "silence" / "1.g722", sounds / "silence" / "quiet.g722")
    shutil.copy(ALLISON_DIR / "added.g722", sounds / "zz-untranscribed.g722")
    transcripts = tmp_path / "core-sounds-en.txt"
    transcripts.write_text(
        "; comment\n\nactivated: Activated.\nbeep: [this is a simple beep tone]\n"
        "silence/quiet: odd: but spoken?\n"
    )
    base = {"sounds_dir": str(sounds), "transcript_path": str(transcripts), "n_test": 1}
    res = gather_speech(tmp_path / "a", SpeechDataConfig(**base), verbose="warning")
    p = load_participant(res.path, require_neural=False)
    # beep: bracketed transcript; silence/quiet: decodes to silence (its transcript here claims speech)
    assert p.prompt_names == ["activated", "zz-untranscribed"] and res.skipped == ["beep", "silence/quiet"]
    assert p.labels == ["Activated.", "zz-untranscribed"]  # no transcript: the name is the label
    assert p.test_trials.tolist() == [1]
    res = gather_speech(tmp_path / "b", SpeechDataConfig(**base, include_non_speech=True), verbose="warning")
    p = load_participant(res.path, require_neural=False)
    assert p.prompt_names == ["activated", "beep", "silence/quiet", "zz-untranscribed"] and res.skipped == []
    assert p.labels[2] == "odd: but spoken?"


def test_missing_packages_name_what_to_install(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SpeechDataMissingError) as info:
        list_prompts(empty, tmp_path / "nope.txt.gz")
    msg = str(info.value)
    assert "apt-get install asterisk-core-sounds-en-g722 asterisk-core-sounds-en" in msg
    assert str(empty) in msg and "nope.txt.gz" in msg
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(SpeechDataMissingError, match=r"apt-get install asterisk-core-sounds-en-g722$"):
        list_prompts(empty, TRANSCRIPT_PATH)
    with pytest.raises(SpeechDataMissingError, match=r"apt-get install asterisk-core-sounds-en$"):
        list_prompts(ALLISON_DIR, tmp_path / "nope.txt.gz")
    with pytest.raises(SpeechDataMissingError, match="asterisk-core-sounds-en-g722"):
        gather_speech(tmp_path / "out", SpeechDataConfig(sounds_dir=str(empty)))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("kw", "pattern"),
    [
        ({"max_prompts": 0}, "max_prompts"),
        ({"gap_s": -1.0}, "gap_s"),
        ({"n_test": -2}, "n_test"),
        ({"voice_range": "mid"}, r"voice_range must be one of \['low', 'high', 'estimate'\]"),
        ({"voice": "de"}, r"voice must be one of \['en', 'es', 'fr', 'it', 'ru'\]"),
    ],
)
def test_config_validation(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        SpeechDataConfig(**kw)


def test_cli(tmp_path, edgensd_log):
    assert main(["data", "speech", "--out", str(tmp_path / "cli"), "--max-prompts", "2", "-q"]) == 0
    p = load_participant(tmp_path / "cli" / "speech.h5", require_neural=False)
    assert p.n_trials == 2 and p.test_trials.tolist() == [1]
    assert (tmp_path / "cli" / "README.txt").is_file() and (tmp_path / "cli" / "speech_data.json").is_file()

    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["data", "speech", "--out", str(tmp_path / "x"), "--sounds-dir", str(empty)]
    argv += ["--transcripts", str(tmp_path / "none.txt.gz"), "-q"]
    assert main(argv) == 2
    errors = [r.getMessage() for r in edgensd_log if r.levelno == logging.ERROR]
    assert any("apt-get install asterisk-core-sounds-en-g722 asterisk-core-sounds-en" in m for m in errors)


# --------------------------------------------------------------------------------------------------------
# the other voices (Debian packages asterisk-core-sounds-{es,fr,it,ru}[-g722], installed by install.sh)
# --------------------------------------------------------------------------------------------------------

# (voice, folder, licence, sex) as the packages' folder names and copyright file give them
OTHER_VOICES = [
    ("es", "es_MX_f_Allison", "CC-BY-SA-3.0", "female"),
    ("fr", "fr_CA_f_June", "CC-BY-SA-3.0", "female"),
    ("it", "it_IT_m_Carlo", "CC-BY-3.0", "male"),
    ("ru", "ru_RU_f_IvrvoiceRU", "CC-BY-3.0", "female"),
]


@pytest.mark.parametrize(("voice", "folder", "licence", "sex"), OTHER_VOICES)
def test_other_voice_listing_and_transcripts(voice, folder, licence, sex):
    v = VOICES[voice]
    assert v.sounds_dir.name == folder and v.licence == licence and v.sex == sex
    tr = read_transcripts(v.transcript_path)
    assert len(tr) > 450 and not any(k.startswith("\ufeff") or k.startswith(";") for k in tr)  # it: byte-order mark
    prompts = list_prompts(v.sounds_dir, v.transcript_path, voice)
    assert len(prompts) > 500
    by_name = {p.name: p for p in prompts}
    # tones are non-speech by name in every language, whatever the transcript says or lacks
    for name in ("beep", "confbridge-join", "ascending-2tone"):
        if name in by_name:
            assert by_name[name].is_non_speech, name
    assert by_name["agent-loggedoff"].transcript and not by_name["agent-loggedoff"].is_non_speech
    assert sum(p.transcript is not None for p in prompts) > 0.9 * len(prompts)


@pytest.mark.parametrize(("voice", "folder", "licence", "sex"), OTHER_VOICES)
def test_gather_other_voice(tmp_path, voice, folder, licence, sex):
    res = gather_speech(tmp_path, SpeechDataConfig(voice=voice, max_prompts=8, n_test=2), verbose="warning")
    p = load_participant(res.path, require_neural=False)
    v = VOICES[voice]
    assert p.n_trials == 8 and p.attrs["licence"] == licence and p.attrs["attribution"] == v.attribution
    assert p.attrs["voice"] == voice and p.attrs["speaker_sex"] == sex and folder in p.attrs["source"]
    assert p.attrs["sounds_dir"] == str(v.sounds_dir)
    tr = read_transcripts(v.transcript_path)
    assert p.labels == [tr.get(n, n) for n in p.prompt_names]
    # the voice range comes from the speaker's own training prompts
    est = json.loads(p.attrs["voice_estimate"])
    assert est["n_voiced_frames"] > 100 and 90 < est["f0_median_hz"] < 300
    lo, hi = p.voice_range.f0_hz
    assert lo <= est["f0_p2_hz"] and hi >= est["f0_p98_hz"]
    readme = res.readme_path.read_text()
    assert licence in readme and v.attribution in readme and f"--voice {voice}" in readme
    assert SpeechDataConfig.load(res.config_path).voice == voice


def test_voice_pitch_male_below_female():
    """Carlo (it, male) speaks lower than June (fr) and the ru voice (female); 25 s of prompts each (all of them:
    median f0 177, 198 and 214 Hz)."""
    from edgensd.speech.voice import estimate_voice_range

    med = {}
    for voice in ("fr", "it", "ru"):
        v = VOICES[voice]
        prompts = [pr for pr in list_prompts(v.sounds_dir, v.transcript_path, voice) if not pr.is_non_speech]
        med[voice] = estimate_voice_range((load_audio(pr.path) for pr in prompts[::37]), max_seconds=25).f0_median_hz
    assert med["it"] < med["fr"] - 10 and med["it"] < med["ru"] - 10, med


def test_empty_prompt_file_is_left_out(tmp_path, edgensd_log):
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    shutil.copy(ALLISON_DIR / "activated.g722", sounds / "activated.g722")
    (sounds / "is.g722").write_bytes(b"")  # as in asterisk-core-sounds-ru-g722
    transcripts = tmp_path / "t.txt"
    transcripts.write_text("activated: Activated.\nis: is\n")
    res = gather_speech(tmp_path / "out", SpeechDataConfig(sounds_dir=str(sounds), transcript_path=str(transcripts),
                                                           n_test=0))
    assert res.n_prompts == 1 and res.skipped == ["is"]
    assert any("is.g722 is empty" in r.getMessage() and r.levelno == logging.WARNING for r in edgensd_log)


def test_missing_packages_of_another_voice(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    msg = "apt-get install asterisk-core-sounds-it-g722 asterisk-core-sounds-it$"
    with pytest.raises(SpeechDataMissingError, match=msg):
        list_prompts(empty, tmp_path / "nope.txt.gz", "it")
    with pytest.raises(ValueError, match=r"voice must be one of \['en', 'es', 'fr', 'it', 'ru'\]"):
        list_prompts(empty, tmp_path / "nope.txt.gz", "de")


def test_cli_voice(tmp_path, capsys):
    out = tmp_path / "fr"
    assert main(["data", "speech", "--voice", "fr", "--out", str(out), "--max-prompts", "3", "--n-test", "1",
                 "--voice-range", "low", "-q"]) == 0
    p = load_participant(out / "speech.h5", require_neural=False)
    assert p.attrs["voice"] == "fr" and p.voice_range.same_as(VoiceRange.preset("low"))
    assert "voice_estimate" not in p.attrs and p.labels[0] == "activé"
    with pytest.raises(SystemExit):
        main(["data", "speech", "--voice", "de", "--out", str(tmp_path / "x")])
    assert "invalid choice: 'de'" in capsys.readouterr().err
