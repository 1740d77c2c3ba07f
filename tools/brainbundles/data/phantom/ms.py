"""A phantom's multiple-sclerosis lesions (``make_phantom(..., ms=True)``).

Added to the healthy anatomy as the WMH are (:attr:`Phantom.ms`: 1 lesion, MSSEG's consensus mask):
5-20 ovoid lesions (ellipsoids) per case, each one 26-connected piece at least a voxel apart from the
others, of three kinds (the first two periventricular, the third juxtacortical, the others drawn
45/25/30%):

* *periventricular* (Dawson's fingers): long semi-axis 0.09-0.17 R (6-12 mm at the real brain scale,
  R ~71 mm), at least 1.6 x the short ones (0.045-0.075 R, 3-5 mm), pointing away from a lateral
  ventricle (normal to its course between the frontal horn and the atrium, from upwards to outwards),
  its inner end on the ventricle's wall;
* *juxtacortical*: semi-axes 0.045-0.085 R (3-6 mm), randomly turned, in the white matter at the
  grey/white boundary nearest to a point drawn in the outer brain, just reaching the cortex (the
  cortical voxels next to the lesion inside its ellipsoid join it, under 20% of it);
* *deep*: semi-axes 0.045-0.10 R (3-7 mm), randomly turned, in the deep hemispheric region.

Every lesion is clipped to the white matter (juxtacortical ones: and their cortical rim) and kept as its
largest 6-connected piece; a candidate is redrawn when that leaves under 40% of its ellipsoid's volume or
under 40 mm^3 at the real brain scale (~30 voxels at 1 mm on a real-sized FOV), or when it comes within a
voxel of another lesion (after 200 candidates the lesion is given up: only on far too coarse grids).
Each lesion has a severity (0-1, drawn per lesion, falling by 35% from its centre to its edge) that sets
its means between a mild and a severe level (``_MS_MEANS`` of :mod:`.render`): bright on FLAIR (1.1-1.45
x GM), T2 (between GM and CSF; CSF stays brightest) and PD (1.08-1.3 x GM), mildly dark on T1 and T1c
(between GM and WM, the severe ones nearer GM; no enhancement); a smooth texture as the WMH's, and the partial
volume, bias field and noise of the rest give them soft edges. The number, kinds and severities of the
lesions come from stream 3 and do not depend on the grid; each lesion's candidates come from its own
stream ``[seed, 3, k + 1]`` but are checked (and juxtacortical ones placed) on the grid, so another grid
of the same FOV gives mostly, not exactly, the same lesions. Intensities: streams 50 + contrast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.ndimage import binary_dilation
from scipy.ndimage import label as label_components
from scipy.spatial import cKDTree

from brainbundles.data.phantom.anatomy import _ATRIUM, _VENT_MAIN, _Anatomy, _deep_centre
from brainbundles.data.phantom.grid import _CONNECT6, _random_rotation
from brainbundles.data.phantom.tissue import _GM, _MS, _WM

#: MS lesion geometry, in units of the (geometric mean) brain radius R: ~71 mm at a FOV of 160 x 192 x 160
#: mm, ~64 mm at the default one
_MS_COUNT = (5, 20)  # lesions per case (inclusive)
_MS_KINDS = ("periventricular", "juxtacortical", "deep")
_MS_KIND_P = (0.45, 0.25, 0.30)  # the kinds of the lesions after the first three (2 periventricular, 1 juxta)
_MS_MIN_VOLUME = 40.0 / 71.4**3  # least lesion volume (R^3): 40 mm^3 at the real brain scale
_MS_MIN_KEPT = 0.4  # least fraction of the ellipsoid's volume that clipping to the white matter may leave
_MS_MIN_WHITE = 0.8  # least fraction of a lesion's voxels in white matter (juxtacortical ones touch cortex)
_MS_TRIES = 200  # candidates per lesion before it is given up (only on grids far too coarse for it)
_MS_EDGE = 0.35  # a lesion's severity falls by this fraction from its centre to its edge


@dataclass(frozen=True)
class _MSContext:
    """What the MS lesion candidates are drawn against (one case, on its grid)."""

    iso: tuple[np.ndarray, np.ndarray, np.ndarray]  # per-axis voxel centres, isotropic units
    voxel: float  # voxel volume, isotropic units
    white: np.ndarray  # bool: white matter (the lesions' home)
    cortex: np.ndarray  # bool: cortical grey matter (juxtacortical lesions may reach into its first voxel)
    ventricles: list[tuple[CubicSpline, float, float]]  # lateral ventricles: (spline, t start, t atrium)
    boundary: np.ndarray | None  # (n, 3) isotropic positions of white-matter voxels next to the cortex
    tree: cKDTree | None  # of ``boundary`` (None when it is empty)


def _ms_context(anatomy: _Anatomy) -> _MSContext:
    """The white matter, cortex, lateral ventricles' curves and grey/white boundary of a case."""
    scale = anatomy.scale.astype(np.float64)
    iso = tuple(anatomy.u[a] / scale[a] for a in range(3))
    voxel = float(np.prod([(ax[1] - ax[0]) if len(ax) > 1 else 1.0 for ax in iso]))
    white = (anatomy.tissue == _WM) & ~anatomy.ventricles
    cortex = anatomy.tissue == _GM
    vents = []
    for ctrl in anatomy.ventricle_ctrl:
        if len(ctrl) == len(_VENT_MAIN):  # the lateral ventricles' main curves (frontal horn to temporal)
            seg = np.linalg.norm(np.diff(ctrl[:, :3], axis=0), axis=1)
            t = np.concatenate([[0.0], np.cumsum(seg)])
            vents.append((CubicSpline(t, ctrl, axis=0, bc_type="natural"), 0.3 * t[1], float(t[_ATRIUM])))
    edge = np.argwhere(white & binary_dilation(cortex, _CONNECT6))
    boundary = np.stack([iso[a][edge[:, a]] for a in range(3)], axis=1) if len(edge) else None
    tree = cKDTree(boundary) if boundary is not None else None
    return _MSContext(iso, voxel, white, cortex, vents, boundary, tree)


def _frame(axis: np.ndarray, angle: float) -> np.ndarray:
    """A rotation matrix whose first column is the unit vector ``axis``, the others turned by ``angle``."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    g1 = np.cross(axis, helper)
    g1 /= np.linalg.norm(g1)
    g2 = np.cross(axis, g1)
    f1 = math.cos(angle) * g1 + math.sin(angle) * g2
    return np.stack([axis, f1, np.cross(axis, f1)], axis=1)


def _reach(rot: np.ndarray, radii: np.ndarray, direction: np.ndarray) -> float:
    """Distance from an ellipsoid's centre to its surface along the unit vector ``direction``."""
    return float(1.0 / np.linalg.norm((rot.T @ direction) / radii))


def _ms_candidate(
    rng: np.random.Generator, kind: str, ctx: _MSContext, anatomy: _Anatomy
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """One candidate lesion of ``kind``: centre (isotropic units), rotation (columns: the ellipsoid's axes)
    and semi-axes; None when the case has nowhere to put one."""
    scale = anatomy.scale.astype(np.float64)
    if kind == "periventricular":
        # a Dawson's finger: an ovoid whose long axis points away from a lateral ventricle's body (normal
        # to its course, upwards and outwards), its inner end on the ventricle's wall
        spline, t0, t1 = ctx.ventricles[int(rng.integers(len(ctx.ventricles)))]
        s = rng.uniform(t0, t1)
        row, slope = spline(s), spline(s, 1)
        centre_v, half = row[:3] / scale, np.maximum(row[3:], 1e-3) / scale
        tangent = slope[:3] / scale
        tangent /= np.linalg.norm(tangent)
        up = np.array([0.0, 0.0, 1.0]) - tangent[2] * tangent
        if np.linalg.norm(up) < 1e-6:  # (a vertical stretch of ventricle: never with these curves)
            up = np.array([1.0, 0.0, 0.0]) - tangent[0] * tangent
        up /= np.linalg.norm(up)
        out = np.cross(tangent, up)
        if out[0] * centre_v[0] < 0:  # lateral: away from the midline
            out = -out
        phi = rng.uniform(-0.5, 1.3)
        direction = math.cos(phi) * up + math.sin(phi) * out
        long = rng.uniform(0.09, 0.17)
        short = rng.uniform(0.045, 0.075, 2)
        radii = np.array([max(long, 1.6 * short.max()), *short])
        rot = _frame(direction, rng.uniform(0.0, math.pi))
        wall = 1.0 / np.linalg.norm(direction / half)  # the ventricle's wall along ``direction``
        return centre_v + direction * (wall + 0.8 * radii[0]), rot, radii
    if kind == "juxtacortical":
        # an ovoid in the white matter touching the cortex: at the grey/white boundary nearest to a point
        # drawn in the outer brain, pushed into the white matter so that it just reaches the boundary
        if ctx.tree is None:
            return None
        v = rng.standard_normal(3)
        v /= np.linalg.norm(v)
        kz = anatomy.flat_bottom if v[2] < 0 else 1.0
        u = rng.uniform(0.55, 0.85) * v / math.sqrt(v[0] ** 2 + v[1] ** 2 + (kz * v[2]) ** 2)
        rot = _random_rotation(rng)
        radii = rng.uniform(0.045, 0.085, 3)
        b = ctx.boundary[int(ctx.tree.query(u / scale)[1])]
        sl = tuple(
            slice(
                int(np.searchsorted(ctx.iso[a], b[a] - 0.08, "left")),
                int(np.searchsorted(ctx.iso[a], b[a] + 0.08, "right")),
            )
            for a in range(3)
        )
        w = np.argwhere(ctx.white[sl])
        pts = np.stack([ctx.iso[a][sl[a]][w[:, a]] for a in range(3)], axis=1)
        inward = pts.mean(axis=0) - b  # towards the white matter around b
        if not np.all(np.isfinite(inward)) or np.linalg.norm(inward) < 1e-9:
            inward = -u / scale
        inward /= np.linalg.norm(inward)
        return b + inward * 0.75 * _reach(rot, radii, inward), rot, radii
    # deep white matter: a randomly turned ovoid in the deep hemispheric region
    centre = _deep_centre(rng, anatomy.flat_bottom) / scale
    radii = rng.uniform(0.045, 0.1, 3)
    return centre, _random_rotation(rng), radii


def _ms_box(
    ctx: _MSContext, centre: np.ndarray, rot: np.ndarray, radii: np.ndarray
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """The ellipsoid's bounding box on the grid (one voxel wider on each side) and ``|R^T (p - c) / r|^2``
    over it; None when it misses the grid."""
    half = np.sqrt(((rot * radii[None, :]) ** 2).sum(axis=1))
    sl, rel = [], []
    for a in range(3):
        ax = ctx.iso[a]
        i0 = int(np.searchsorted(ax, centre[a] - half[a], "left"))
        i1 = int(np.searchsorted(ax, centre[a] + half[a], "right"))
        if i0 >= i1:
            return None
        i0, i1 = max(i0 - 1, 0), min(i1 + 1, len(ax))
        sl.append(slice(i0, i1))
        rel.append(ax[i0:i1] - centre[a])
    p = np.meshgrid(*rel, indexing="ij", sparse=True)
    q = sum(((rot[0, k] * p[0] + rot[1, k] * p[1] + rot[2, k] * p[2]) / radii[k]) ** 2 for k in range(3))
    return tuple(sl), q.astype(np.float32)


def _ms_lesion(
    kind: str, ctx: _MSContext, taken: np.ndarray, centre: np.ndarray, rot: np.ndarray, radii: np.ndarray
) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray] | None:
    """Rasterise a candidate: its box, its mask there and its ``q``; None when it is rejected (too small
    once clipped to the white matter, too little in white matter, a juxtacortical one not touching the
    cortex, or within a voxel of a lesion already placed)."""
    found = _ms_box(ctx, centre, rot, radii)
    if found is None:
        return None
    box, q = found
    inside = q < 1.0
    kept = inside & ctx.white[box]
    comp, n = label_components(kept, _CONNECT6)
    if n == 0:
        return None
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    kept = comp == int(sizes.argmax())  # one piece: a sulcus or the ventricle may cut the ellipsoid
    volume = 4.0 / 3.0 * math.pi * float(np.prod(radii))
    if kept.sum() * ctx.voxel < max(_MS_MIN_VOLUME, _MS_MIN_KEPT * volume):
        return None
    mask = kept
    if kind == "juxtacortical":  # it touches the cortex: the cortical voxels next to it join it
        rim = inside & ctx.cortex[box] & binary_dilation(kept, _CONNECT6)
        if not rim.any() or kept.sum() < _MS_MIN_WHITE * (kept.sum() + rim.sum()):
            return None
        mask = kept | rim
    if (binary_dilation(mask, np.ones((3, 3, 3), dtype=bool)) & taken[box]).any():
        return None
    return box, mask, q


def _add_ms(seed: int, anatomy: _Anatomy) -> None:
    """Put the multiple-sclerosis lesions of case ``seed`` into ``anatomy`` (see the module docstring):
    their number, kinds and severities from rng stream 3, each lesion's geometry from its own stream
    ``[seed, 3, k + 1]`` (so one lesion changes the others' only through the room it takes)."""
    rng = np.random.default_rng([seed, 3])
    count = int(rng.integers(_MS_COUNT[0], _MS_COUNT[1] + 1))
    kinds = ["periventricular", "periventricular", "juxtacortical"]
    kinds += [str(k) for k in rng.choice(_MS_KINDS, size=count - 3, p=_MS_KIND_P)]
    severity = rng.uniform(0.0, 1.0, count)

    ctx = _ms_context(anatomy)
    taken = np.zeros(anatomy.grid.shape, dtype=bool)
    level = np.zeros(anatomy.grid.shape, dtype=np.float32)  # per lesion voxel: its severity
    for k, kind in enumerate(kinds):
        lrng = np.random.default_rng([seed, 3, k + 1])
        for _ in range(_MS_TRIES):
            cand = _ms_candidate(lrng, kind, ctx, anatomy)
            if cand is None:
                break
            placed = _ms_lesion(kind, ctx, taken, *cand)
            if placed is None:
                continue
            box, mask, q = placed
            taken[box] |= mask
            level[box][mask] = severity[k] * (1.0 - _MS_EDGE * np.minimum(q[mask], 1.0))
            break
    anatomy.tissue[taken] = _MS
    anatomy.ms = np.flatnonzero(taken)
    anatomy.ms_level = level.ravel()[anatomy.ms]
