"""Electrode layouts: geometry, regions, grid tensors from positions, errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgensd.neural.layouts import (
    HEMISPHERES,
    LAYOUT_NAMES,
    REGIONS,
    check_channel_count,
    flatten_3d,
    grid_index_for,
    grid_index_from_positions,
    make_layout,
    region_of,
    sheet_from_3d,
    sheet_to_3d,
    square_grid_index,
)

EXPECTED_COUNTS = {"ld8x8": 64, "hb128": 128, "strip": 48, "seeg": 64}
EXPECTED_GRID = {"ld8x8": (8, 8), "hb128": (16, 8), "strip": (6, 8), "seeg": (8, 8)}


@pytest.mark.parametrize("name", LAYOUT_NAMES)
@pytest.mark.parametrize("hemisphere", HEMISPHERES)
def test_layouts_shapes_regions_and_grids(name, hemisphere):
    lay = make_layout(name, hemisphere)
    n = EXPECTED_COUNTS[name]
    assert lay.n_electrodes == n
    assert lay.positions_mm.shape == (n, 2) and lay.positions_3d_mm.shape == (n, 3)
    assert set(lay.regions) <= set(REGIONS)
    counts = lay.region_counts()
    assert counts["sensorimotor"] > 0 and counts["auditory"] > 0 and counts["other"] > 0
    # hemisphere sets the side of the head
    sign = -1 if hemisphere == "left" else 1
    assert np.all(np.sign(lay.positions_3d_mm[:, 0]) == sign)
    g = lay.grid()
    assert g.shape == EXPECTED_GRID[name]
    cells = set(zip(g.rows.tolist(), g.cols.tolist(), strict=True))
    assert len(cells) == n  # one electrode per cell
    if name != "seeg":  # depth contacts have no meaningful lateral-view grid orientation to check
        assert g.mask.sum() == n


def test_ld8x8_grid_is_row_major_and_mirrors_with_hemisphere():
    left = make_layout("ld8x8", "left")
    g = left.grid()
    np.testing.assert_array_equal(g.to_grid(np.arange(64)), np.arange(64).reshape(8, 8))
    # lateral view: left hemisphere, column 0 is the most anterior; right hemisphere, the most posterior
    u_left = left.positions_mm[:, 0].reshape(8, 8)
    assert np.all(u_left[:, 0] > u_left[:, -1])
    right = make_layout("ld8x8", "right")
    u_right = right.positions_mm[:, 0].reshape(8, 8)
    assert np.all(u_right[:, 0] < u_right[:, -1])
    # row 0 is the most dorsal
    assert np.all(left.positions_mm[:8, 1] > left.positions_mm[-8:, 1])


def test_hybrid_grid_is_a_full_16x8_tensor_where_the_reference_fails():
    lay = make_layout("hb128", "left")
    g = lay.grid()
    assert g.shape == (16, 8) and g.mask.all()
    grid = g.to_grid(np.arange(128))
    np.testing.assert_array_equal(grid[0::2], np.arange(64).reshape(8, 8))  # macro rows
    np.testing.assert_array_equal(grid[1::2], np.arange(64, 128).reshape(8, 8))  # interleaved micro rows
    with pytest.raises(ValueError):
        np.arange(128).reshape(int(np.sqrt(128)), -1, int(np.sqrt(128)))  # what a square reshape would do


@pytest.mark.parametrize("name", ["ld8x8", "hb128"])
@pytest.mark.parametrize("rotation", [0.0, 17.0, -30.0])
def test_grid_from_3d_positions_matches_sheet_grid(name, rotation):
    for hemi in HEMISPHERES:
        lay = make_layout(name, hemi, rotation_deg=rotation, centre_mm=(20.0, 10.0))
        ref = lay.grid().to_grid(np.arange(lay.n_electrodes))
        g3 = grid_index_from_positions(lay.positions_3d_mm)
        np.testing.assert_array_equal(g3.to_grid(np.arange(lay.n_electrodes)), ref)


def test_grid_tolerates_position_noise_and_missing_contacts():
    lay = make_layout("ld8x8", "left", rotation_deg=12.0)
    rng = np.random.default_rng(0)
    noisy = lay.positions_mm + rng.normal(0.0, 0.7, lay.positions_mm.shape)
    g = grid_index_from_positions(noisy)
    np.testing.assert_array_equal(g.to_grid(np.arange(64)), np.arange(64).reshape(8, 8))
    keep = np.r_[0:27, 30:64]  # three contacts removed
    g = grid_index_from_positions(lay.positions_mm[keep])
    assert g.shape == (8, 8) and g.mask.sum() == keep.size
    full = np.arange(64).reshape(8, 8)
    np.testing.assert_array_equal(g.from_grid(full), keep)


def test_square_fallback_and_grid_index_for():
    g = square_grid_index(64)
    assert g.shape == (8, 8) and g.method == "square"
    np.testing.assert_array_equal(g.to_grid(np.arange(64)), np.arange(64).reshape(8, 8))
    g = square_grid_index(128)  # not a square: last row partly empty, no failure
    assert g.shape == (11, 12) and g.mask.sum() == 128
    assert grid_index_for(10).method == "square"
    pos = make_layout("ld8x8").positions_3d_mm.copy()
    assert grid_index_for(64, pos).shape == (8, 8)
    pos[3] = np.nan
    assert grid_index_for(64, pos).method == "square"
    rc = np.stack(np.divmod(np.arange(6), 3), axis=1)
    assert grid_index_for(6, rows_cols=rc).shape == (2, 3)
    with pytest.raises(ValueError, match="one grid cell"):
        grid_index_for(2, rows_cols=np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="n_electrodes"):
        square_grid_index(0)


def test_to_grid_from_grid_roundtrip_and_shape_errors():
    g = make_layout("strip").grid()
    x = np.random.default_rng(1).normal(size=(5, 48))
    np.testing.assert_array_equal(g.from_grid(g.to_grid(x)), x)
    with pytest.raises(ValueError, match="48"):
        g.to_grid(np.zeros((5, 47)))
    with pytest.raises(ValueError, match="spatial shape"):
        g.from_grid(np.zeros((5, 7, 8)))


def test_regions_from_position():
    pts = np.array([[5.0, 20.0], [-20.0, -3.0], [40.0, 10.0], [-20.0, -40.0], [0.0, 90.0]])
    assert region_of(pts) == ("sensorimotor", "auditory", "ifg", "other", "other")
    # deep sEEG contacts: white matter is 'other', Heschl's gyrus under the STG is 'auditory'
    seeg = make_layout("seeg", "left")
    stg_shaft = seeg.groups == 3
    assert "auditory" in np.array(seeg.regions)[stg_shaft]
    frontal_shaft = seeg.groups == 7
    assert np.array(seeg.regions)[frontal_shaft][0] == "other"  # deepest contact


def test_sheet_3d_roundtrip_and_flatten():
    uv = np.array([[0.0, 0.0], [30.0, -10.0], [-40.0, 35.0]])
    for hemi in HEMISPHERES:
        p3 = sheet_to_3d(uv, hemi, depth_mm=np.array([0.0, 5.0, 10.0]))
        back, depth = sheet_from_3d(p3, hemi)
        np.testing.assert_allclose(back, uv, atol=1e-9)
        np.testing.assert_allclose(depth, [0.0, 5.0, 10.0], atol=1e-9)
    flat = flatten_3d(make_layout("ld8x8").positions_3d_mm)
    d = np.linalg.norm(flat[1] - flat[0])
    assert d == pytest.approx(10.0, rel=0.03)  # the pitch survives unrolling


def test_bad_layout_name_and_channel_count():
    with pytest.raises(ValueError) as exc:
        make_layout("grid8x8")
    for name in LAYOUT_NAMES:
        assert name in str(exc.value)
    with pytest.raises(ValueError, match="hemisphere"):
        make_layout("ld8x8", "middle")
    with pytest.raises(ValueError) as exc:
        make_layout("ld8x8", n_channels=128)
    assert "64" in str(exc.value) and "128" in str(exc.value)
    with pytest.raises(ValueError, match="48 electrodes but the data has 50 channels"):
        check_channel_count(make_layout("strip"), 50)
    make_layout("hb128", n_channels=128)  # the right count passes
