"""Electrode layouts: clinical grids, hybrid grids, strips and sEEG shafts, with cortical regions.

Coordinate frames
-----------------
Every layout gives each electrode two positions, both in millimetres:

* **cortical sheet** ``positions_mm``, shape (n, 2): ``(u, v)`` on the flattened lateral surface around the
  Sylvian fissure. ``u`` points anterior, ``v`` points dorsal; the origin is the ventral end of the central
  sulcus where it meets the Sylvian fissure. The sheet is anatomical, so it is the same for both
  hemispheres (a left and a right grid over the same gyri have the same ``(u, v)``).
* **3-D** ``positions_3d_mm``, shape (n, 3): ``(x, y, z)`` in an MNI-like head frame (x to the right,
  y anterior, z superior). Left-hemisphere electrodes have ``x < 0``. Grid and strip contacts lie on a
  sphere standing in for the lateral cortex (the sheet wrapped on it nearly without stretching,
  :func:`sheet_to_3d`); sEEG contacts lie along straight shafts going medially. The anatomy is plausible,
  not exact.

Cortical regions (:data:`REGIONS`) are derived from position by :func:`region_of` (sheet) and
:func:`region_of_3d` (depth contacts): ``'sensorimotor'`` (pre- and postcentral gyri, ventral half),
``'auditory'`` (superior temporal gyrus, and Heschl's gyrus for depth contacts), ``'ifg'`` (inferior frontal
gyrus) and ``'other'`` (everything else, including white matter).

Grid tensors
------------
Grid models need each electrode's ``(row, col)`` in a 2-D tensor. :func:`grid_index_from_positions` fits a
lattice to the positions (any rotation; lattices that are not full squares, such as the 16×8 interleaved
hybrid grid or a grid with missing contacts, work), :func:`square_grid_index` is the row-major square-grid
fallback for electrodes without positions (as the reference code assumes), and :meth:`Layout.grid` picks the
right one for a layout (strips and shafts become one tensor row per strip row or shaft).

Grid tensors are drawn in the *lateral view* of the hemisphere (as in an intra-operative photograph):
row 0 is the most dorsal row; for the left hemisphere column 0 is the most anterior column, for the right
hemisphere the most posterior one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from edgensd.config import check_choice
from edgensd.log import logger

LAYOUT_NAMES: tuple[str, ...] = ("ld8x8", "hb128", "strip", "seeg")
HEMISPHERES: tuple[str, ...] = ("left", "right")
REGIONS: tuple[str, ...] = ("sensorimotor", "auditory", "ifg", "other")

#: Centre (x, y, z) and radius of the sphere standing in for the lateral cortical surface, mm. The sheet
#: origin sits on it at (±R, -12, 22) (ventral end of the central sulcus, MNI-like).
_SPHERE_CENTRE = np.array([0.0, -12.0, 22.0])
_SPHERE_RADIUS = 62.0


# ----------------------------------------------------------------------------------------------------------
# geometry: sheet ↔ 3-D, regions
# ----------------------------------------------------------------------------------------------------------


def _lateral(hemisphere: str) -> np.ndarray:
    return np.array([-1.0 if hemisphere == "left" else 1.0, 0.0, 0.0])


def sheet_to_3d(positions_mm: np.ndarray, hemisphere: str, depth_mm: np.ndarray | float = 0.0) -> np.ndarray:
    """Map cortical-sheet positions to the 3-D head frame.

    The sheet is wrapped onto a sphere (radius 62 mm, centre (0, −12, 22) mm) by the inverse azimuthal
    equidistant projection about the sheet origin, so distances from the origin are kept exactly and other
    distances nearly (a 70 mm grid keeps its pitch to within a few percent).

    Parameters
    ----------
    positions_mm : ndarray, shape (n, 2)
        Sheet positions ``(u, v)`` in mm (anterior, dorsal).
    hemisphere : {'left', 'right'}
        Sets the sign of x.
    depth_mm : float or ndarray, shape (n,)
        Distance below the surface towards the sphere centre, mm (0 = on the surface).

    Returns
    -------
    ndarray, float64, shape (n, 3)
        ``(x, y, z)`` in mm; ``x < 0`` for the left hemisphere.
    """
    check_choice("hemisphere", hemisphere, HEMISPHERES)
    p = np.asarray(positions_mm, dtype=np.float64).reshape(-1, 2)
    rho = np.hypot(p[:, 0], p[:, 1])
    ang = rho / _SPHERE_RADIUS
    with np.errstate(invalid="ignore", divide="ignore"):
        dirs = np.where(rho[:, None] > 0, p / np.maximum(rho, 1e-12)[:, None], 0.0)
    tangent = dirs[:, :1] * np.array([0.0, 1.0, 0.0]) + dirs[:, 1:] * np.array([0.0, 0.0, 1.0])
    normal = np.cos(ang)[:, None] * _lateral(hemisphere) + np.sin(ang)[:, None] * tangent
    r = _SPHERE_RADIUS - np.broadcast_to(np.asarray(depth_mm, dtype=np.float64), rho.shape)
    return _SPHERE_CENTRE + normal * r[:, None]


def sheet_from_3d(
    positions_3d_mm: np.ndarray, hemisphere: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Project 3-D positions onto the cortical sheet (inverse of :func:`sheet_to_3d`).

    Parameters
    ----------
    positions_3d_mm : ndarray, shape (n, 3)
        ``(x, y, z)`` in mm.
    hemisphere : {'left', 'right'}, optional
        Default: from the sign of the mean x of all positions.

    Returns
    -------
    positions_mm : ndarray, shape (n, 2)
        Sheet position ``(u, v)`` of the surface point radially above each electrode, mm.
    depth_mm : ndarray, shape (n,)
        Depth below the surface, mm (negative = outside the brain).
    """
    p = np.asarray(positions_3d_mm, dtype=np.float64).reshape(-1, 3)
    if hemisphere is None:
        hemisphere = "left" if float(np.mean(p[:, 0])) < 0 else "right"
    check_choice("hemisphere", hemisphere, HEMISPHERES)
    d = p - _SPHERE_CENTRE
    r = np.linalg.norm(d, axis=1)
    n = d / np.maximum(r, 1e-12)[:, None]
    ang = np.arccos(np.clip(n @ _lateral(hemisphere), -1.0, 1.0))
    t = n[:, 1:]
    tn = np.linalg.norm(t, axis=1)
    uv = (
        np.where(tn[:, None] > 1e-12, t / np.maximum(tn, 1e-12)[:, None], 0.0)
        * (_SPHERE_RADIUS * ang)[:, None]
    )
    return uv, _SPHERE_RADIUS - r


def wrap_about(positions_mm: np.ndarray, centre_mm: Sequence[float], hemisphere: str) -> np.ndarray:
    """3-D positions of a flexible grid laid on the cortex around its own centre.

    The sheet point ``centre_mm`` is placed with :func:`sheet_to_3d`; the other contacts keep their
    geodesic distance and direction from it (azimuthal equidistant projection about the centre), which is
    how a grid drapes over the convexity. :func:`flatten_3d` undoes it.

    Parameters
    ----------
    positions_mm : ndarray, shape (n, 2)
        Sheet positions ``(u, v)`` of the contacts, mm.
    centre_mm : (float, float)
        Sheet position of the grid centre, mm.
    hemisphere : {'left', 'right'}

    Returns
    -------
    ndarray, float64, shape (n, 3)
    """
    c = np.asarray(centre_mm, dtype=np.float64).reshape(1, 2)
    eps = 1e-3
    p0 = sheet_to_3d(c, hemisphere)[0]
    normal = (p0 - _SPHERE_CENTRE) / np.linalg.norm(p0 - _SPHERE_CENTRE)
    e_u = sheet_to_3d(c + [eps, 0.0], hemisphere)[0] - p0
    e_u -= normal * (e_u @ normal)
    e_u /= np.linalg.norm(e_u)
    e_v = np.cross(normal, e_u)
    if e_v @ (sheet_to_3d(c + [0.0, eps], hemisphere)[0] - p0) < 0:
        e_v = -e_v
    off = np.asarray(positions_mm, dtype=np.float64).reshape(-1, 2) - c
    rho = np.hypot(off[:, 0], off[:, 1])
    ang = rho / _SPHERE_RADIUS
    dirs = np.where(rho[:, None] > 0, off / np.maximum(rho, 1e-12)[:, None], 0.0)
    tangent = dirs[:, :1] * e_u + dirs[:, 1:] * e_v
    n = np.cos(ang)[:, None] * normal + np.sin(ang)[:, None] * tangent
    return _SPHERE_CENTRE + _SPHERE_RADIUS * n


def sylvian_height_mm(positions_mm: np.ndarray) -> np.ndarray:
    """Signed distance (mm, along v) above the Sylvian fissure line ``v = -0.25 u``; shape (n,)."""
    p = np.asarray(positions_mm, dtype=np.float64).reshape(-1, 2)
    return p[:, 1] + 0.25 * p[:, 0]


def central_offset_mm(positions_mm: np.ndarray) -> np.ndarray:
    """Signed distance (mm, along u) anterior of the central sulcus line ``u = -0.45 v``; shape (n,)."""
    p = np.asarray(positions_mm, dtype=np.float64).reshape(-1, 2)
    return p[:, 0] + 0.45 * np.maximum(p[:, 1], 0.0)


def region_of(positions_mm: np.ndarray) -> tuple[str, ...]:
    """Cortical region of each sheet position (surface electrodes).

    Parameters
    ----------
    positions_mm : ndarray, shape (n, 2)
        Sheet positions ``(u, v)``, mm.

    Returns
    -------
    tuple of str, length n
        One of :data:`REGIONS` per electrode: ``'sensorimotor'`` within 18 mm behind to 22 mm in front of
        the central sulcus, above the Sylvian fissure and below v = 70 mm (articulator representation);
        ``'ifg'`` 22–55 mm in front of the central sulcus and up to 30 mm above the fissure; ``'auditory'``
        up to 15 mm below the fissure, between 60 mm behind and 20 mm in front of the origin (superior
        temporal gyrus); ``'other'`` elsewhere.
    """
    p = np.asarray(positions_mm, dtype=np.float64).reshape(-1, 2)
    h = sylvian_height_mm(p)
    d = central_offset_mm(p)
    out = []
    for (u, v), hi, di in zip(p, h, d, strict=True):
        if hi >= 0 and -18.0 <= di <= 22.0 and v <= 70.0:
            out.append("sensorimotor")
        elif 0 <= hi <= 30.0 and 22.0 < di <= 55.0:
            out.append("ifg")
        elif -15.0 <= hi < 0 and -60.0 <= u <= 20.0:
            out.append("auditory")
        else:
            out.append("other")
    return tuple(out)


def region_of_3d(
    positions_3d_mm: np.ndarray, cortex_depth_mm: float = 6.0, sulcal_depth_mm: float = 18.0
) -> tuple[str, ...]:
    """Cortical region of each 3-D position (depth electrodes included).

    A contact within ``cortex_depth_mm`` of the lateral surface takes the region of the sheet position above
    it (:func:`region_of`); below sensorimotor cortex that reaches ``sulcal_depth_mm`` (the banks of the
    central sulcus and the operculum are grey matter). Deeper contacts are ``'auditory'`` in Heschl's gyrus
    and the superior temporal plane (6–30 mm deep, below the sheet band 30 mm behind to 5 mm in front of
    the origin, from 10 mm under to 4 mm above the Sylvian fissure) and ``'other'`` (white matter, insula)
    elsewhere.

    Parameters
    ----------
    positions_3d_mm : ndarray, shape (n, 3)
        ``(x, y, z)`` in mm.
    cortex_depth_mm : float
        Thickness counted as cortex below the lateral surface, mm.
    sulcal_depth_mm : float
        Depth counted as cortex below sensorimotor cortex, mm.

    Returns
    -------
    tuple of str, length n
    """
    p = np.asarray(positions_3d_mm, dtype=np.float64).reshape(-1, 3)
    uv, depth = sheet_from_3d(p)
    surface = region_of(uv)
    out = []
    h = sylvian_height_mm(uv)
    for (u, _), hi, dep, reg in zip(uv, h, depth, surface, strict=True):
        limit = sulcal_depth_mm if reg == "sensorimotor" else cortex_depth_mm
        if dep <= limit:
            out.append(reg)
        elif -30.0 <= u <= 5.0 and -10.0 <= hi <= 4.0 and dep <= 30.0:
            out.append("auditory")
        else:
            out.append("other")
    return tuple(out)


def _rot(theta_deg: float) -> np.ndarray:
    t = math.radians(theta_deg)
    return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


def view_from_sheet(positions_mm: np.ndarray, hemisphere: str) -> np.ndarray:
    """Sheet ``(u, v)`` → lateral-view ``(x_view, y_view)`` (image x to the right, y up), shape (n, 2), mm.

    In the lateral view of the left hemisphere anterior is to the left (``x_view = -u``); for the right
    hemisphere anterior is to the right (``x_view = u``); ``y_view = v``.
    """
    check_choice("hemisphere", hemisphere, HEMISPHERES)
    p = np.asarray(positions_mm, dtype=np.float64).reshape(-1, 2)
    sign = -1.0 if hemisphere == "left" else 1.0
    return np.stack([sign * p[:, 0], p[:, 1]], axis=1)


def sheet_from_view(view_mm: np.ndarray, hemisphere: str) -> np.ndarray:
    """Inverse of :func:`view_from_sheet`."""
    return view_from_sheet(view_mm, hemisphere)  # the map is its own inverse


# ----------------------------------------------------------------------------------------------------------
# grid index
# ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GridIndex:
    """Where each electrode sits in a 2-D grid tensor.

    Attributes
    ----------
    rows, cols : ndarray of int64, shape (n_electrodes,)
        Grid cell of each electrode.
    shape : tuple of int
        ``(n_rows, n_cols)`` of the tensor.
    method : str
        ``'positions'`` (lattice fitted to positions), ``'groups'`` (one row per strip row / shaft),
        ``'stored'`` (given by the file) or ``'square'`` (row-major fallback).
    """

    rows: np.ndarray
    cols: np.ndarray
    shape: tuple[int, int]
    method: str

    @property
    def mask(self) -> np.ndarray:
        """Boolean occupancy of the tensor, shape ``shape`` (True where an electrode sits)."""
        m = np.zeros(self.shape, dtype=bool)
        m[self.rows, self.cols] = True
        return m

    @property
    def n_electrodes(self) -> int:
        """Number of electrodes indexed."""
        return int(self.rows.shape[0])

    def to_grid(self, x: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Scatter electrode values into the grid tensor.

        Parameters
        ----------
        x : ndarray, shape (..., n_electrodes)
            Values per electrode (e.g. high-gamma frames × electrodes).
        fill : float
            Value of empty cells.

        Returns
        -------
        ndarray, shape (..., n_rows, n_cols)
        """
        x = np.asarray(x)
        if x.shape[-1] != self.n_electrodes:
            raise ValueError(
                f"x has {x.shape[-1]} electrodes in its last axis but the grid index has {self.n_electrodes}"
            )
        out = np.full(x.shape[:-1] + tuple(self.shape), fill, dtype=x.dtype)
        out[..., self.rows, self.cols] = x
        return out

    def from_grid(self, g: np.ndarray) -> np.ndarray:
        """Gather electrode values from a grid tensor (..., n_rows, n_cols) → (..., n_electrodes)."""
        g = np.asarray(g)
        if tuple(g.shape[-2:]) != tuple(self.shape):
            raise ValueError(
                f"grid tensor has spatial shape {tuple(g.shape[-2:])}, expected {tuple(self.shape)}"
            )
        return g[..., self.rows, self.cols]


def square_grid_index(n_electrodes: int) -> GridIndex:
    """Row-major square grid for electrodes without positions (the reference's convention).

    Electrode ``i`` goes to ``divmod(i, side)`` with ``side = ceil(sqrt(n))``; when ``n`` is not a perfect
    square the last row is partly empty (the reference code fails there instead).

    Parameters
    ----------
    n_electrodes : int
        Number of electrodes (≥ 1).

    Returns
    -------
    GridIndex
    """
    n = int(n_electrodes)
    if n < 1:
        raise ValueError(f"n_electrodes must be >= 1, got {n_electrodes}")
    side = math.isqrt(n)
    if side * side < n:
        side += 1
    idx = np.arange(n)
    n_rows = -(-n // side)
    return GridIndex(rows=idx // side, cols=idx % side, shape=(n_rows, side), method="square")


def grid_index_for(
    n_electrodes: int,
    positions_mm: np.ndarray | None = None,
    hemisphere: str | None = None,
    rows_cols: np.ndarray | None = None,
) -> GridIndex:
    """Grid tensor index for a recording, from the best information available.

    Parameters
    ----------
    n_electrodes : int
    positions_mm : ndarray, shape (n_electrodes, 2) or (n_electrodes, 3), optional
        Sheet or 3-D positions (e.g. a participant file's ``electrode_positions``). Ignored if any is
        NaN/inf (electrodes without positions).
    hemisphere : {'left', 'right'}, optional
        For sheet positions (default ``'left'``).
    rows_cols : ndarray of int, shape (n_electrodes, 2), optional
        A stored index (e.g. a simulated participant's ``sim_grid_rows_cols``); used as is when given.

    Returns
    -------
    GridIndex
        ``rows_cols`` if given, else fitted from positions, else :func:`square_grid_index` (row-major
        square grid, as the reference code assumes).
    """
    n = int(n_electrodes)
    if rows_cols is not None:
        rc = np.asarray(rows_cols, dtype=np.int64)
        if rc.shape != (n, 2) or rc.min() < 0:
            raise ValueError(
                f"rows_cols must be non-negative (row, col) pairs of shape ({n}, 2), got {rc.shape}"
            )
        if len({(int(r), int(c)) for r, c in rc}) != n:
            raise ValueError("rows_cols puts two electrodes in one grid cell")
        return GridIndex(
            rc[:, 0].copy(), rc[:, 1].copy(), (int(rc[:, 0].max()) + 1, int(rc[:, 1].max()) + 1), "stored"
        )
    if positions_mm is not None:
        pos = np.asarray(positions_mm, dtype=np.float64)
        if pos.ndim != 2 or pos.shape[0] != n:
            raise ValueError(f"positions_mm must have one row per electrode ({n}), got shape {pos.shape}")
        if np.all(np.isfinite(pos)):
            return grid_index_from_positions(pos, hemisphere or "left")
        logger.info("some electrodes have no position: using the row-major square grid")
    return square_grid_index(n)


def _axis_spacing(view: np.ndarray, axis: np.ndarray, nn_dist: np.ndarray) -> float:
    """Lattice spacing along unit vector ``axis``: median projection of neighbour steps that run along it."""
    d = view[None, :, :] - view[:, None, :]
    dist = np.linalg.norm(d, axis=-1)
    near = (dist > 0) & (dist < 1.5 * np.median(nn_dist))
    proj = np.abs(d @ axis)[near]
    along = proj[proj > 0.5 * dist[near]]
    if along.size == 0:
        return float(np.median(nn_dist))
    return float(np.median(along))


def _levels(coord: np.ndarray, spacing: float) -> np.ndarray:
    """Lattice index of 1-D coordinates on a lattice of about ``spacing``: phase fit, rounding, refit."""
    if spacing <= 0 or np.ptp(coord) < 0.5 * spacing:
        return np.zeros(len(coord), dtype=np.int64)
    phase = spacing / (2 * np.pi) * np.angle(np.mean(np.exp(2j * np.pi * coord / spacing)))
    index = np.rint((coord - phase) / spacing)
    for _ in range(2):
        if np.ptp(index) == 0:
            break
        slope, icpt = np.polyfit(index, coord, 1)
        if slope <= 0.5 * spacing:
            break
        index = np.rint((coord - icpt) / slope)
    index = index.astype(np.int64)
    return index - index.min()


def grid_index_from_positions(
    positions_mm: np.ndarray,
    hemisphere: str = "left",
    compact: bool = True,
) -> GridIndex:
    """Build a grid tensor index from electrode positions.

    The positions are mapped to the lateral view (:func:`view_from_sheet`), the lattice orientation is
    estimated from nearest-neighbour directions (modulo 90°) and removed, and each axis is quantized on its
    own lattice spacing (fitted, so position errors up to about 10 % of the pitch are tolerated). Missing
    contacts leave empty cells. With ``compact=True`` adjacent columns (then rows) that never hold an
    electrode in the same row (column) are merged in pairs, so an interleaved hybrid grid
    (64 macro + 64 offset micro contacts on a 5 mm checkerboard, 16×16 with half the cells empty) becomes a
    full 16×8 tensor. Two electrodes landing in one cell are resolved by moving the later one to the nearest
    free cell (with a warning).

    Parameters
    ----------
    positions_mm : ndarray, shape (n, 2) or (n, 3)
        Cortical-sheet positions ``(u, v)`` in mm, or 3-D positions (unrolled into the lateral view first
        with :func:`flatten_3d`; then ``hemisphere`` is ignored).
    hemisphere : {'left', 'right'}
        Hemisphere of sheet positions (sets the lateral-view orientation).
    compact : bool
        Merge columns/rows that never collide (see above).

    Returns
    -------
    GridIndex
        With ``method='positions'``.
    """
    p = np.asarray(positions_mm, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] not in (2, 3):
        raise ValueError(f"positions_mm must have shape (n, 2) or (n, 3), got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(
            "positions_mm holds NaN/inf values; use square_grid_index for electrodes without positions"
        )
    n = p.shape[0]
    if n == 1:
        return GridIndex(np.zeros(1, np.int64), np.zeros(1, np.int64), (1, 1), "positions")
    if p.shape[1] == 3:
        view = flatten_3d(p)
    else:
        view = view_from_sheet(p, hemisphere)
    d = np.linalg.norm(view[:, None, :] - view[None, :, :], axis=-1)
    np.fill_diagonal(d, np.inf)
    nn = np.argmin(d, axis=1)
    nn_dist = d[np.arange(n), nn]
    if np.min(nn_dist) <= 0:
        raise ValueError("positions_mm holds two electrodes at the same position")
    vec = view[nn] - view
    ang = np.arctan2(vec[:, 1], vec[:, 0])
    theta = 0.25 * float(np.angle(np.mean(np.exp(4j * ang))))  # lattice orientation modulo 90°
    # A checkerboard (hybrid grid) is also a square lattice turned by 45°: try both, keep the denser tensor,
    # and the orientation closer to the view axes on a tie.
    best = None
    for cand in (theta, theta + math.pi / 4):
        cand = (cand + math.pi / 4) % (math.pi / 2) - math.pi / 4
        rows, cols, moved = _quantize(view, cand, nn_dist, compact)
        fill = n / float((rows.max() + 1) * (cols.max() + 1))
        key = (-round(fill, 3), moved, round(abs(cand), 6))
        if best is None or key < best[0]:
            best = (key, rows, cols, moved)
    _, rows, cols, moved = best
    if moved:
        logger.warning(
            "grid index: %d electrode(s) shared a lattice cell and were moved to the nearest free cell", moved
        )
    shape = (int(rows.max()) + 1, int(cols.max()) + 1)
    return GridIndex(rows=rows.astype(np.int64), cols=cols.astype(np.int64), shape=shape, method="positions")


def flatten_3d(positions_3d_mm: np.ndarray) -> np.ndarray:
    """Unroll 3-D electrode positions on a curved surface into a plane, keeping distances from the centre.

    A sphere is fitted to the points (least squares); each point is mapped by the azimuthal equidistant
    projection about the points' mean direction, so a grid wrapped over the cortex keeps its pitch. Points
    that are nearly coplanar (fitted radius > 1 m, or fewer than 4 points) are projected onto their
    best-fitting plane instead.

    Parameters
    ----------
    positions_3d_mm : ndarray, shape (n, 3)
        3-D positions, mm.

    Returns
    -------
    ndarray, float64, shape (n, 2)
        Planar positions, mm, as seen from outside the surface with superior (+z) up: on a lateral surface
        this is the lateral view (:func:`view_from_sheet`). Without a sphere fit, or for a surface facing up
        or down, the axes are the principal axes of the layout (orientation arbitrary).
    """
    p = np.asarray(positions_3d_mm, dtype=np.float64).reshape(-1, 3)
    centred = p - p.mean(axis=0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    plane = centred @ vt[:2].T
    if len(p) < 4 or sv[-1] < 1e-6 * max(sv[0], 1e-12):
        return plane
    a = np.c_[2 * p, np.ones(len(p))]
    sol, *_ = np.linalg.lstsq(a, np.sum(p**2, axis=1), rcond=None)
    centre = sol[:3]
    radius = math.sqrt(max(sol[3] + centre @ centre, 0.0))
    if not np.isfinite(radius) or radius > 1000.0 or radius < 1e-3:
        return plane
    n = p - centre
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    n0 = n.mean(axis=0)
    n0 /= np.linalg.norm(n0)
    tangent = n - np.outer(n @ n0, n0)
    tn = np.linalg.norm(tangent, axis=1, keepdims=True)
    angle = np.arccos(np.clip(n @ n0, -1.0, 1.0))
    flat3 = np.where(tn > 1e-12, tangent / np.maximum(tn, 1e-12), 0.0) * (radius * angle)[:, None]
    up = np.array([0.0, 0.0, 1.0]) - n0 * n0[2]
    if np.linalg.norm(up) < 0.3:  # surface faces up or down: no lateral view, use the principal axes
        _, _, vt2 = np.linalg.svd(flat3 - flat3.mean(axis=0), full_matrices=False)
        return flat3 @ vt2[:2].T
    up /= np.linalg.norm(up)
    right = np.cross(up, n0)
    return np.stack([flat3 @ right, flat3 @ up], axis=1)


def _quantize(
    view: np.ndarray, theta: float, nn_dist: np.ndarray, compact: bool
) -> tuple[np.ndarray, np.ndarray, int]:
    aligned = view @ _rot(-math.degrees(theta)).T
    cols = _levels(aligned[:, 0], _axis_spacing(aligned, np.array([1.0, 0.0]), nn_dist))
    rows = _levels(-aligned[:, 1], _axis_spacing(aligned, np.array([0.0, 1.0]), nn_dist))  # row 0 = top
    rows, cols, moved = _resolve_collisions(rows, cols)
    if compact:
        cols = _merge_axis(rows, cols)
        rows = _merge_axis(cols, rows)
    return rows, cols, moved


def _resolve_collisions(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    rows, cols = rows.copy(), cols.copy()
    taken: dict[tuple[int, int], int] = {}
    moved = 0
    for i in range(len(rows)):
        cell = (int(rows[i]), int(cols[i]))
        if cell not in taken:
            taken[cell] = i
            continue
        best = None
        for radius in range(1, len(rows) + 1):
            cands = [
                (cell[0] + dr, cell[1] + dc)
                for dr in range(-radius, radius + 1)
                for dc in range(-radius, radius + 1)
                if max(abs(dr), abs(dc)) == radius and cell[0] + dr >= 0 and cell[1] + dc >= 0
            ]
            free = [c for c in cands if c not in taken]
            if free:
                best = min(free, key=lambda c: ((c[0] - cell[0]) ** 2 + (c[1] - cell[1]) ** 2, c))
                break
        taken[best] = i
        rows[i], cols[i] = best
        moved += 1
    return rows, cols, moved


def _merge_axis(other: np.ndarray, axis_idx: np.ndarray) -> np.ndarray:
    """Merge pairs of adjacent lines of ``axis_idx`` that never hold electrodes with the same ``other`` index.

    Only pairs are merged (a cell moves by at most one lattice step), scanning from line 0.
    """
    lines = sorted(set(int(v) for v in axis_idx))
    members = {line: set(int(o) for o in other[axis_idx == line]) for line in lines}
    mapping: dict[int, int] = {}
    out_line = -1
    i = 0
    while i < len(lines):
        out_line += 1
        line = lines[i]
        mapping[line] = out_line
        nxt = lines[i + 1] if i + 1 < len(lines) else None
        if nxt == line + 1 and not (members[line] & members[nxt]):
            mapping[nxt] = out_line
            i += 2
        else:
            i += 1
    return np.array([mapping[int(v)] for v in axis_idx], dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------
# layouts
# ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Layout:
    """An electrode layout on one hemisphere.

    Attributes
    ----------
    name : str
        One of :data:`LAYOUT_NAMES`.
    hemisphere : {'left', 'right'}
    positions_mm : ndarray, float64, shape (n, 2)
        Cortical-sheet positions ``(u, v)``, mm (see module docstring).
    positions_3d_mm : ndarray, float64, shape (n, 3)
        3-D positions ``(x, y, z)``, mm (grids are draped about their centre, :func:`wrap_about`).
    regions : tuple of str, length n
        Region of each electrode (:data:`REGIONS`), derived from position.
    kinds : tuple of str, length n
        Contact type: ``'macro'`` (standard 10 mm-pitch contact), ``'micro'`` (interleaved hybrid contact),
        ``'strip'`` or ``'depth'``.
    groups : ndarray of int64, shape (n,)
        Strip row / shaft number (0 for a single grid); with ``contacts`` it defines the grid of strips and
        shafts.
    contacts : ndarray of int64, shape (n,)
        Contact number along its strip row or shaft (0 = first / deepest).
    """

    name: str
    hemisphere: str
    positions_mm: np.ndarray
    positions_3d_mm: np.ndarray
    regions: tuple[str, ...]
    kinds: tuple[str, ...]
    groups: np.ndarray
    contacts: np.ndarray

    @property
    def n_electrodes(self) -> int:
        """Number of electrodes."""
        return int(self.positions_mm.shape[0])

    def grid(self) -> GridIndex:
        """Grid tensor index of this layout.

        Grids (``ld8x8``, ``hb128``) are fitted from positions; strips and shafts get one tensor row per strip
        row / shaft and one column per contact (``method='groups'``).
        """
        if self.name in ("ld8x8", "hb128"):
            return grid_index_from_positions(self.positions_mm, self.hemisphere)
        groups = np.unique(self.groups)
        rows = np.searchsorted(groups, self.groups)
        cols = self.contacts.astype(np.int64)
        return GridIndex(
            rows=rows.astype(np.int64), cols=cols, shape=(len(groups), int(cols.max()) + 1), method="groups"
        )

    def region_counts(self) -> dict[str, int]:
        """Number of electrodes per region, ``{region: count}`` over :data:`REGIONS`."""
        return {r: int(sum(1 for x in self.regions if x == r)) for r in REGIONS}


def _grid_view_positions(n_rows: int, n_cols: int, pitch_mm: float) -> np.ndarray:
    """Row-major contact positions of a grid in its own frame (x right, y up), centred, shape (r*c, 2)."""
    r, c = np.divmod(np.arange(n_rows * n_cols), n_cols)
    x = (c - (n_cols - 1) / 2.0) * pitch_mm
    y = ((n_rows - 1) / 2.0 - r) * pitch_mm
    return np.stack([x, y], axis=1)


def _place(
    view_local: np.ndarray, hemisphere: str, centre_mm: Sequence[float], rotation_deg: float
) -> np.ndarray:
    """Grid-frame positions → sheet positions: rotate in the lateral view, move to ``centre_mm`` (u, v)."""
    centre_view = view_from_sheet(np.asarray(centre_mm, dtype=np.float64)[None, :], hemisphere)[0]
    view = view_local @ _rot(rotation_deg).T + centre_view
    return sheet_from_view(view, hemisphere)


def _make_layout(name, hemisphere, sheet, kinds, groups, contacts, positions_3d=None, regions=None) -> Layout:
    sheet = np.asarray(sheet, dtype=np.float64)
    if positions_3d is None:
        positions_3d = sheet_to_3d(sheet, hemisphere)
    if regions is None:
        regions = region_of(sheet)
    return Layout(
        name=name,
        hemisphere=hemisphere,
        positions_mm=sheet,
        positions_3d_mm=np.asarray(positions_3d, dtype=np.float64),
        regions=tuple(regions),
        kinds=tuple(kinds),
        groups=np.asarray(groups, dtype=np.int64),
        contacts=np.asarray(contacts, dtype=np.int64),
    )


#: Default placements (sheet centre (u, v) in mm): chosen so the grids cover ventral sensorimotor cortex,
#: the superior temporal gyrus and the posterior inferior frontal gyrus, as in speech ECoG studies.
GRID_CENTRE_MM = (8.0, 2.0)


def ld8x8(
    hemisphere: str = "left",
    centre_mm: Sequence[float] = GRID_CENTRE_MM,
    rotation_deg: float = 0.0,
    pitch_mm: float = 10.0,
) -> Layout:
    """Low-density clinical grid: 8×8 contacts at 10 mm pitch, numbered row-major in the lateral view.

    Parameters
    ----------
    hemisphere : {'left', 'right'}
    centre_mm : (float, float)
        Sheet position ``(u, v)`` of the grid centre, mm.
    rotation_deg : float
        Rotation of the grid in the lateral view, degrees (counter-clockwise).
    pitch_mm : float
        Centre-to-centre spacing, mm.

    Returns
    -------
    Layout
        64 electrodes; ``grid()`` is 8×8.
    """
    check_choice("hemisphere", hemisphere, HEMISPHERES)
    local = _grid_view_positions(8, 8, pitch_mm)
    sheet = _place(local, hemisphere, centre_mm, rotation_deg)
    return _make_layout(
        "ld8x8",
        hemisphere,
        sheet,
        ["macro"] * 64,
        np.zeros(64),
        np.arange(64),
        wrap_about(sheet, centre_mm, hemisphere),
    )


def hb128(
    hemisphere: str = "left",
    centre_mm: Sequence[float] = GRID_CENTRE_MM,
    rotation_deg: float = 0.0,
    pitch_mm: float = 10.0,
) -> Layout:
    """Hybrid-density grid: an 8×8 macro grid at 10 mm plus 64 interleaved micro contacts.

    The micro contacts sit at the centres of the macro squares, offset by half a pitch right and down
    (the last micro row and column extend half a pitch beyond the macro grid), so together they form a 5 mm
    checkerboard; electrodes 0–63 are the macro contacts (row-major), 64–127 the micro contacts (row-major).
    ``grid()`` is a full 16×8 tensor (macro and micro rows alternate).

    Parameters
    ----------
    hemisphere : {'left', 'right'}
    centre_mm : (float, float)
        Sheet position ``(u, v)`` of the macro grid centre, mm.
    rotation_deg : float
        Rotation in the lateral view, degrees.
    pitch_mm : float
        Macro contact spacing, mm.

    Returns
    -------
    Layout
        128 electrodes.
    """
    check_choice("hemisphere", hemisphere, HEMISPHERES)
    macro = _grid_view_positions(8, 8, pitch_mm)
    micro = macro + np.array([pitch_mm / 2.0, -pitch_mm / 2.0])
    local = np.concatenate([macro, micro])
    sheet = _place(local, hemisphere, centre_mm, rotation_deg)
    idx = np.arange(64)
    return _make_layout(
        "hb128",
        hemisphere,
        sheet,
        ["macro"] * 64 + ["micro"] * 64,
        np.r_[np.zeros(64), np.ones(64)],
        np.r_[idx, idx],
        wrap_about(sheet, centre_mm, hemisphere),
    )


#: Default strips: (sheet start (u, v) mm, direction in the sheet (degrees from +u), rows, contacts).
DEFAULT_STRIPS: tuple[tuple[tuple[float, float], float, int, int], ...] = (
    ((6.0, 2.0), 112.0, 2, 8),  # along the ventral precentral / postcentral gyri, upwards
    ((18.0, -10.0), 190.0, 2, 8),  # along the superior temporal gyrus, backwards
    ((26.0, 3.0), 20.0, 1, 8),  # over the inferior frontal gyrus, forwards
    ((10.0, -30.0), 185.0, 1, 8),  # over the middle temporal gyrus, backwards
)


def strip(
    hemisphere: str = "left",
    strips: Sequence[tuple[tuple[float, float], float, int, int]] = DEFAULT_STRIPS,
    pitch_mm: float = 10.0,
) -> Layout:
    """Subdural strips (1×N or 2×N contacts at 10 mm).

    Parameters
    ----------
    hemisphere : {'left', 'right'}
    strips : sequence of ((u, v), direction_deg, n_rows, n_contacts)
        Each strip's first contact (sheet position, mm), its direction in the sheet (degrees
        counter-clockwise from anterior, +u), its number of rows (1 or 2; the second row lies one pitch to
        the strip's right) and contacts per row. The default (:data:`DEFAULT_STRIPS`) is two 2×8 strips over
        sensorimotor cortex and the superior temporal gyrus and two 1×8 strips (IFG, middle temporal gyrus):
        48 contacts.
    pitch_mm : float
        Contact spacing, mm.

    Returns
    -------
    Layout
        ``groups`` numbers the strip rows; ``grid()`` has one row per strip row.
    """
    check_choice("hemisphere", hemisphere, HEMISPHERES)
    sheet, groups, contacts = [], [], []
    g = 0
    for k, spec in enumerate(strips):
        try:
            (u0, v0), ang, n_rows, n_contacts = spec
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"strips[{k}] must be ((u, v), direction_deg, n_rows, n_contacts), got {spec!r}"
            ) from exc
        if n_rows not in (1, 2) or n_contacts < 1:
            raise ValueError(
                f"strips[{k}]: n_rows must be 1 or 2 and n_contacts >= 1, got {n_rows}, {n_contacts}"
            )
        t = math.radians(ang)
        along = np.array([math.cos(t), math.sin(t)])
        side = np.array([math.sin(t), -math.cos(t)])
        for r in range(n_rows):
            for c in range(n_contacts):
                sheet.append(np.array([u0, v0]) + along * c * pitch_mm + side * r * pitch_mm)
                groups.append(g)
                contacts.append(c)
            g += 1
    sheet = np.array(sheet)
    return _make_layout("strip", hemisphere, sheet, ["strip"] * len(sheet), groups, contacts)


#: Default sEEG entry points on the sheet (u, v), mm: sensorimotor, STG (through Heschl's gyrus), IFG, other.
DEFAULT_SHAFTS: tuple[tuple[float, float], ...] = (
    (8.0, 12.0),
    (0.0, 32.0),
    (-10.0, 18.0),
    (-10.0, -7.0),
    (-30.0, 1.0),
    (38.0, 8.0),
    (-20.0, -28.0),
    (30.0, 48.0),
)


def seeg(
    hemisphere: str = "left",
    entries_mm: Sequence[tuple[float, float]] = DEFAULT_SHAFTS,
    n_contacts: int = 8,
    spacing_mm: float = 3.5,
    first_depth_mm: float = 2.0,
) -> Layout:
    """Stereo-EEG depth shafts with 3-D contact positions.

    Each shaft enters the lateral surface at a sheet position and runs medially (towards the centre of the
    surface sphere, with a slight anterior and upward tilt); contact 0 is the deepest. Regions come from the
    3-D position (:func:`region_of_3d`): superficial contacts take the gyrus above them, deep contacts are
    white matter (``'other'``) except in Heschl's gyrus (``'auditory'``) and the banks of the central
    sulcus (``'sensorimotor'``).

    Parameters
    ----------
    hemisphere : {'left', 'right'}
    entries_mm : sequence of (u, v)
        Entry point of each shaft on the sheet, mm. The default (:data:`DEFAULT_SHAFTS`) is 8 shafts.
    n_contacts : int
        Contacts per shaft.
    spacing_mm : float
        Contact centre spacing along the shaft, mm.
    first_depth_mm : float
        Depth of the most superficial contact below the surface, mm.

    Returns
    -------
    Layout
        ``positions_mm`` is the sheet position laterally above each contact; ``groups`` numbers the shafts.
    """
    check_choice("hemisphere", hemisphere, HEMISPHERES)
    if n_contacts < 1:
        raise ValueError(f"n_contacts must be >= 1, got {n_contacts}")
    pos3d, groups, contacts = [], [], []
    for s, entry in enumerate(entries_mm):
        e3 = sheet_to_3d(np.asarray(entry, dtype=np.float64)[None, :], hemisphere)[0]
        direction = (_SPHERE_CENTRE - e3) / np.linalg.norm(_SPHERE_CENTRE - e3) + np.array([0.0, 0.12, 0.06])
        direction /= np.linalg.norm(direction)
        for c in range(n_contacts):
            depth = first_depth_mm + spacing_mm * (n_contacts - 1 - c)
            pos3d.append(e3 + direction * depth)
            groups.append(s)
            contacts.append(c)
    pos3d = np.array(pos3d)
    sheet, _ = sheet_from_3d(pos3d)
    return _make_layout(
        "seeg",
        hemisphere,
        sheet,
        ["depth"] * len(pos3d),
        groups,
        contacts,
        positions_3d=pos3d,
        regions=region_of_3d(pos3d),
    )


_BUILDERS = {"ld8x8": ld8x8, "hb128": hb128, "strip": strip, "seeg": seeg}


def make_layout(name: str, hemisphere: str = "left", n_channels: int | None = None, **kwargs) -> Layout:
    """Build a layout by name.

    Parameters
    ----------
    name : {'ld8x8', 'hb128', 'strip', 'seeg'}
        Layout name (:data:`LAYOUT_NAMES`).
    hemisphere : {'left', 'right'}
    n_channels : int, optional
        If given, the number of channels of the data the layout is for; a mismatch raises a ValueError
        naming both counts.
    **kwargs
        Passed to the builder (:func:`ld8x8`, :func:`hb128`, :func:`strip`, :func:`seeg`), e.g. ``centre_mm``
        or ``rotation_deg``.

    Returns
    -------
    Layout
    """
    check_choice("layout", name, LAYOUT_NAMES)
    check_choice("hemisphere", hemisphere, HEMISPHERES)
    layout = _BUILDERS[name](hemisphere=hemisphere, **kwargs)
    if n_channels is not None:
        check_channel_count(layout, n_channels)
    return layout


def check_channel_count(layout: Layout, n_channels: int) -> None:
    """Raise a ValueError naming both counts if ``n_channels`` differs from the layout's electrode count."""
    if int(n_channels) != layout.n_electrodes:
        raise ValueError(
            f"layout {layout.name!r} has {layout.n_electrodes} electrodes but the data has "
            f"{int(n_channels)} channels"
        )
