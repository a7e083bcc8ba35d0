"""Tests of edgensd.data.participant: the reference layout, the optional keys, validation, splits, trials."""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pytest

from edgensd.data import participant as pmod
from edgensd.data.participant import (
    FRAME_TOLERANCE,
    REQUIRED_KEYS,
    Participant,
    load_participant,
    save_participant,
    trial_split,
)
from edgensd.params import VoiceRange

HOP = 128




def _trials(n_trials: int, length: int = 20, gap: int = 5) -> tuple[np.ndarray, np.ndarray, int]:
    start = gap + np.arange(n_trials) * (length + gap)
    return start, start + length, int(start[-1] + length + gap)


def _arrays(n_trials=4, n_el=6, seed=0):
    rng = np.random.default_rng(seed)
    start, end, n_frames = _trials(n_trials)
    ecog = rng.standard_normal((n_frames, n_el)).astype(np.float32)
    audio = rng.uniform(-0.5, 0.5, n_frames * HOP).astype(np.float32)
    labels = [f"word{i}" for i in range(n_trials)]
    return ecog, audio, start, end, labels


def _participant(n_trials=4, n_el=6, **kw) -> Participant:
    ecog, audio, start, end, labels = _arrays(n_trials, n_el)
    return Participant(ecog=ecog, audio=audio, start=start, end=end, labels=labels, **kw)


def _write_reference(path, ecog, wave, start, end, labels, **extra) -> None:
    """A file the way the reference pipeline writes it: raw h5py, float/shaped indices, byte labels."""
    with h5py.File(path, "w") as f:
        f["ecog_alldataset"] = ecog
        f["wave_re_alldataset"] = wave
        f["start_ind_re_valid_alldataset"] = start
        f["end_ind_re_valid_alldataset"] = end
        f["label_alldataset"] = labels
        for k, v in extra.items():
            f[k] = v


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------ reference files


@pytest.mark.parametrize("labels_kind", ["fixed_bytes", "vlen_bytes"])
def test_reference_file_loads_unchanged(tmp_path, labels_kind):
    ecog, audio, start, end, labels = _arrays(n_trials=5, n_el=8)
    if labels_kind == "fixed_bytes":
        h5_labels = np.array([w.encode() for w in labels])  # dtype S5
    else:
        h5_labels = np.array([w.encode() for w in labels], dtype=h5py.string_dtype("ascii"))
    path = tmp_path / "HB02.h5"
    _write_reference(
        path,
        ecog.astype(np.float64),
        audio.astype(np.float64)[:, None],  # (n_samples, 1) as the reference indexes it
        start.astype(np.float64)[:, None],  # float, shape (n, 1)
        end.astype(np.float64)[:, None],
        h5_labels,
        wave_re_spec_alldataset=np.zeros((3, 4)),  # a derived key this project does not use
    )
    before = _sha(path)
    p = load_participant(path)
    assert _sha(path) == before
    assert p.has_neural and p.n_trials == 5 and p.n_electrodes == 8 and p.n_frames == ecog.shape[0]
    assert p.ecog.dtype == np.float32 and p.audio.dtype == np.float32 and p.audio.ndim == 1
    np.testing.assert_allclose(p.ecog, ecog)
    np.testing.assert_allclose(p.audio, audio)
    assert p.start.dtype == np.int64 and p.start.tolist() == start.tolist() and p.end.tolist() == end.tolist()
    assert p.labels == labels and all(type(w) is str for w in p.labels)
    assert p.voice_range is None and p.test_trials is None and p.extras == {}
    assert load_participant(path, load_extras=True).extras["wave_re_spec_alldataset"].shape == (3, 4)


def test_reference_int16_audio_is_scaled(tmp_path, edgensd_log):
    ecog, audio, start, end, labels = _arrays()
    pcm = (audio * 32767).astype(np.int16)
    _write_reference(tmp_path / "r.h5", ecog, pcm, start, end, np.array([w.encode() for w in labels]))
    p = load_participant(tmp_path / "r.h5")
    np.testing.assert_allclose(p.audio, pcm / 32768.0)
    assert any("int16" in r.getMessage() for r in edgensd_log)


def test_reference_file_with_extra_keys_is_fine_for_the_reference_reader(tmp_path):
    """What we write can be read the way the reference reads it (labels decoded from bytes)."""
    p = _participant()
    save_participant(p, tmp_path / "ours.h5")
    with h5py.File(tmp_path / "ours.h5", "r") as f:
        labels = [i.decode("utf-8") for i in f["label_alldataset"][:]]
        assert labels == p.labels
        assert f["start_ind_re_valid_alldataset"].dtype == np.int64
        assert f["ecog_alldataset"].dtype == np.float32
        assert f["wave_re_alldataset"].shape == (p.audio.size,)


# ------------------------------------------------------------------------------------------------ round trip


def test_round_trip_with_every_optional_key(tmp_path):
    n_el = 6
    vr = VoiceRange.preset("low")
    p = _participant(
        n_el=n_el,
        electrode_positions=np.arange(n_el * 3, dtype=np.float64).reshape(n_el, 3),
        grid_shape=(2, 3),
        hemisphere="right",
        density="hybrid",
        voice_range=vr,
        test_trials=[3, 1],
        transcripts=["the word zero", "the word one", "two", "three"],
        prompt_names=["p0", "p1", "p2", "p3"],
        attrs={
            "subject": "S01",
            "age": 42,
            "gain": 1.5,
            "ok": True,
            "bands": [70.0, 150.0],
            "tags": ["a", "b"],
        },
        extras={"formants": np.ones((5, 2), np.float32), "notes": np.array(["x", "yz"])},
    )
    raw_fs = 1000.0
    p.raw_signal = np.ones((int(p.n_frames / 125 * raw_fs), n_el), np.int16)
    p.raw_fs = raw_fs
    path = save_participant(p, tmp_path / "sub" / "p.h5")
    q = load_participant(path, load_extras=True)
    np.testing.assert_array_equal(q.ecog, p.ecog)
    np.testing.assert_array_equal(q.audio, p.audio)
    np.testing.assert_array_equal(q.start, p.start)
    np.testing.assert_array_equal(q.end, p.end)
    assert q.labels == p.labels and q.transcripts == p.transcripts and q.prompt_names == p.prompt_names
    assert q.raw_signal.dtype == np.int16 and q.raw_fs == raw_fs
    assert q.electrode_positions.dtype == np.float32 and q.electrode_positions.shape == (n_el, 3)
    assert q.grid_shape == (2, 3) and q.hemisphere == "right" and q.density == "hybrid"
    assert isinstance(q.voice_range, VoiceRange) and q.voice_range.same_as(vr) and q.voice_range.name == "low"
    assert q.test_trials.tolist() == [3, 1]
    assert q.attrs["subject"] == "S01" and q.attrs["age"] == 42 and q.attrs["ok"]
    assert q.attrs["bands"].tolist() == [70.0, 150.0] and q.attrs["tags"] == ["a", "b"]
    assert "edgensd_format_version" not in q.attrs
    np.testing.assert_array_equal(q.extras["formants"], 1.0)
    assert [str(s) for s in q.extras["notes"]] == ["x", "yz"]
    assert q.path == path and "p.h5" in repr(q)
    with h5py.File(path, "r") as f:
        assert json.loads(f["voice_range"].asstr()[()])["name"] == "low"
        assert f.attrs["edgensd_format_version"] == 1


def test_raw_fs_from_a_file_attribute(tmp_path):
    p = _participant(n_el=2)
    path = save_participant(p, tmp_path / "p.h5")
    with h5py.File(path, "a") as f:
        f["raw_signal"] = np.zeros((p.n_frames * 8, 2), np.float32)  # 1000 Hz
        f.attrs["raw_fs"] = 1000.0
    assert load_participant(path).raw_fs == 1000.0


def test_speech_only_file(tmp_path):
    _, audio, start, end, labels = _arrays()
    p = Participant(audio=audio[:-50], start=start, end=end, labels=labels)
    assert not p.has_neural and p.n_electrodes is None
    assert p.n_frames == -(-(audio.size - 50) // HOP)
    path = save_participant(p, tmp_path / "speech.h5")
    with pytest.raises(ValueError, match=r"speech\.h5 is speech-only.*require_neural=False"):
        load_participant(path)
    q = load_participant(path, require_neural=False)
    assert not q.has_neural and q.labels == labels
    with pytest.raises(ValueError, match="speech-only"):
        q.trial_neural(0)


# ------------------------------------------------------------------------------------------------ validation


def test_missing_file_and_not_hdf5(tmp_path):
    with pytest.raises(FileNotFoundError, match="none.h5"):
        load_participant(tmp_path / "none.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(ValueError, match=r"text\.h5 is not a readable HDF5"):
        load_participant(tmp_path / "text.h5")


def test_missing_required_key_lists_present_keys(tmp_path):
    ecog, audio, start, end, labels = _arrays()
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["ecog_alldataset"] = ecog
        f["wave_re_alldataset"] = audio
        f["start_ind_re_valid_alldataset"] = start
        f["something_else"] = [1]
    with pytest.raises(ValueError, match=r"bad\.h5 lacks required keys") as info:
        load_participant(tmp_path / "bad.h5")
    msg = str(info.value)
    assert "'end_ind_re_valid_alldataset'" in msg and "'label_alldataset'" in msg
    assert "something_else" in msg and "wave_re_alldataset" in msg


def _write_variant(path, **overrides):
    ecog, audio, start, end, labels = _arrays()
    keys = dict(
        zip(REQUIRED_KEYS, (ecog, audio, start, end, np.array([w.encode() for w in labels])), strict=True)
    )
    keys.update(overrides)
    with h5py.File(path, "w") as f:
        for k, v in keys.items():
            if v is not None:
                f[k] = v


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ({"ecog_alldataset": np.zeros(10, np.float32)}, r"'ecog_alldataset' must be 2-D"),
        ({"ecog_alldataset": np.zeros((105, 6), np.int32)}, r"'ecog_alldataset' must be floating point"),
        ({"wave_re_alldataset": np.zeros((2, 5, 3))}, r"'wave_re_alldataset' must be 1-D"),
        (
            {"wave_re_alldataset": np.ones(105 * HOP, np.int32)},
            r"'wave_re_alldataset' must be floating point",
        ),
        ({"start_ind_re_valid_alldataset": np.array([5.5, 30, 55, 80])}, r"whole numbers.*entry 0 is 5\.5"),
        ({"start_ind_re_valid_alldataset": np.array(["a", "b", "c", "d"], dtype="S1")}, "must be integer"),
        (
            {"end_ind_re_valid_alldataset": np.array([25, 50, 75])},
            r"'end_ind_re_valid_alldataset' has 3 entries",
        ),
        ({"label_alldataset": np.array([b"a", b"b"])}, r"'label_alldataset' has 2 entries"),
        (
            {"start_ind_re_valid_alldataset": np.array([5, 30, -1, 80])},
            r"1 trials have 'start.*' < 0.*trial 2",
        ),
        ({"end_ind_re_valid_alldataset": np.array([25, 30, 75, 100])}, r"<= 'start_ind.*first trial 1"),
        ({"end_ind_re_valid_alldataset": np.array([25, 50, 75, 500])}, r"> n_frames = 105.*first trial 3"),
        ({"wave_re_alldataset": np.zeros(100 * HOP, np.float32)}, r"100 frames of 128.*105 frames.*4 frames"),
        ({"label_alldataset": np.array([b"\xff\xfe", b"b", b"c", b"d"])}, "not UTF-8"),
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path, override, pattern):
    path = tmp_path / "broken.h5"
    _write_variant(path, **override)
    with pytest.raises(ValueError, match=pattern) as info:
        load_participant(path)
    assert str(info.value).startswith(f"participant file {path}")


def test_nan_in_ecog_names_electrodes_and_frame_counts(tmp_path):
    ecog, *_ = _arrays()
    ecog[3:6, 2] = np.nan
    ecog[10, 4] = np.inf
    path = tmp_path / "nan.h5"
    _write_variant(path, ecog_alldataset=ecog)
    with pytest.raises(
        ValueError, match=r"nan\.h5.*'ecog_alldataset'.*electrode 2: 3 frames, electrode 4: 1 frames"
    ):
        load_participant(path)


def test_nan_in_audio(tmp_path):
    _, audio, *_ = _arrays()
    audio[[1, 7]] = np.nan
    _write_variant(tmp_path / "a.h5", wave_re_alldataset=audio)
    with pytest.raises(ValueError, match=r"a\.h5: 'wave_re_alldataset' holds 2 NaN/inf samples"):
        load_participant(tmp_path / "a.h5")


def test_audio_length_tolerance(tmp_path):
    ecog, audio, start, end, labels = _arrays()
    n = ecog.shape[0]
    short = audio[: (n - FRAME_TOLERANCE) * HOP]  # exactly at the tolerance: fine
    Participant(ecog=ecog, audio=short, start=start, end=end, labels=labels)
    shorter = audio[: (n - FRAME_TOLERANCE - 1) * HOP]
    with pytest.raises(ValueError, match="allowed difference is 4 frames"):
        Participant(ecog=ecog, audio=shorter, start=start, end=end, labels=labels)
    _write_variant(tmp_path / "s.h5", wave_re_alldataset=shorter)
    p = load_participant(tmp_path / "s.h5", frame_tolerance=FRAME_TOLERANCE + 1)
    save_participant(p, tmp_path / "s2.h5")  # the tolerance given at load also applies on save
    with pytest.raises(ValueError, match="frame_tolerance"):
        load_participant(tmp_path / "s.h5", frame_tolerance=-1)


@pytest.mark.parametrize(
    ("kw", "pattern"),
    [
        ({"hemisphere": "middle"}, r"'hemisphere' must be one of \['left', 'right'\]"),
        ({"grid_shape": (2, 2)}, "fewer places than 6 electrodes"),
        ({"grid_shape": (2, 3, 1)}, "2 positive integers"),
        (
            {"electrode_positions": np.zeros((6, 2))},
            r"'electrode_positions' must be numeric \(n_electrodes, 3\)",
        ),
        ({"electrode_positions": np.zeros((5, 3))}, "5 rows for 6 electrodes"),
        ({"raw_signal": np.zeros((100, 6))}, "needs 'raw_fs'"),
        ({"raw_signal": np.zeros((100, 5)), "raw_fs": 100.0}, "5 electrodes"),
        ({"raw_signal": np.zeros((100, 6)), "raw_fs": 1000.0}, r"'raw_signal' lasts 0\.100 s"),
        ({"raw_signal": np.zeros((100, 6)), "raw_fs": -3.0}, "positive rate"),
        ({"voice_range": "{not json"}, "'voice_range' is not a valid VoiceRange"),
        ({"voice_range": json.dumps({"nonsense": 1})}, "unknown config keys"),
        ({"test_trials": [0, 9]}, r"'test_trials' must lie in \[0, 4\)"),
        ({"test_trials": [1, 1]}, "repeated"),
        ({"transcripts": ["a"]}, "'transcripts' has 1 entries, expected 4"),
        ({"density": ""}, "non-empty"),
        ({"extras": {"hemisphere": np.zeros(2)}}, "reserved keys"),
    ],
)
def test_bad_optional_fields(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        _participant(**kw)


def test_unwritable_attr_is_refused_and_old_file_kept(tmp_path):
    path = save_participant(_participant(), tmp_path / "p.h5")
    before = _sha(path)
    bad = _participant(attrs={"nested": {"a": 1}})
    with pytest.raises(ValueError, match=r"attr 'nested' must be str"):
        save_participant(bad, path)
    assert _sha(path) == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["p.h5"]


def test_crash_during_save_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = save_participant(_participant(), tmp_path / "p.h5")
    before = _sha(path)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pmod, "_write_attr", boom)
    with pytest.raises(OSError, match="disk full"):
        save_participant(_participant(attrs={"x": 1}), path)
    assert _sha(path) == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["p.h5"]
    load_participant(path)


def test_save_revalidates_mutated_participant(tmp_path):
    p = _participant()
    p.end = p.end.copy()
    p.end[0] = p.start[0]
    with pytest.raises(ValueError, match="<= 'start"):
        save_participant(p, tmp_path / "p.h5")
    assert not (tmp_path / "p.h5").exists()
    with pytest.raises(TypeError, match="Participant"):
        save_participant({"ecog": 1}, tmp_path / "p.h5")


# ------------------------------------------------------------------------------------------ splits, trials


def test_split_default_is_last_50_trials():
    p = _participant(n_trials=60)
    train, test = trial_split(p)
    assert test.tolist() == list(range(10, 60)) and train.tolist() == list(range(10))
    train, test = trial_split(p, n_test=5)
    assert test.tolist() == list(range(55, 60)) and train.size == 55


def test_split_needs_enough_trials_without_test_trials():
    p = _participant(n_trials=50)
    with pytest.raises(ValueError, match=r"50 trials.*needs at least 51.*test_trials"):
        trial_split(p)
    with pytest.raises(ValueError, match="n_test"):
        trial_split(p, n_test=0)


def test_split_uses_test_trials_from_the_file(tmp_path):
    p = _participant(n_trials=6, test_trials=[4, 0])
    q = load_participant(save_participant(p, tmp_path / "p.h5"))
    train, test = trial_split(q)
    assert test.tolist() == [0, 4] and train.tolist() == [1, 2, 3, 5]
    assert set(train.tolist()).isdisjoint(test.tolist())


def test_trial_cutting():
    p = _participant(n_trials=3)
    s, e = p.trial_frames(1)
    assert (s, e) == (30, 50)
    np.testing.assert_array_equal(p.trial_neural(1), p.ecog[30:50])
    np.testing.assert_array_equal(p.trial_audio(1), p.audio[30 * HOP : 50 * HOP])
    ctx = p.trial_neural(1, before=4, after=2)
    assert ctx.shape == (26, p.n_electrodes)
    np.testing.assert_array_equal(ctx, p.ecog[26:52])
    # context beyond the recording is zero-padded: trial 0 starts at frame 5
    pre = p.trial_neural(0, before=8)
    assert pre.shape == (28, p.n_electrodes) and not pre[:3].any()
    np.testing.assert_array_equal(pre[3:], p.ecog[0:25])
    last = p.trial_audio(2, after=100)
    assert last.shape == ((20 + 100) * HOP,) and not last[-50 * HOP :].any()
    for bad in (3, -1):
        with pytest.raises(IndexError, match=r"\[0, 3\)"):
            p.trial_audio(bad)
    with pytest.raises(TypeError):
        p.trial_frames(1.0)
    with pytest.raises(ValueError, match="before"):
        p.trial_neural(0, before=-1)
