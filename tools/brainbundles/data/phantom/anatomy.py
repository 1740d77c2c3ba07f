"""The healthy anatomy of a phantom: tissue classes on the RAS grid.

Every structure is an analytic function of *world* coordinates (mm) sampled at the voxel centres, so a
case rendered on another grid with the same field of view (FOV = shape x spacing), or in another
orientation, is the same anatomy. The brain is an ellipsoid centred at the FOV centre with radii of
0.395-0.445 x the FOV extent per axis (randomised per case), flattened underneath and with a surface
perturbed by smooth noise; it stays inside the central 95% of the FOV. Inside it:

* a thin CSF layer on the surface, and sulci: narrow CSF sheets running radially into the brain along
  the zero set of a noise field on the sphere, with a randomly varying depth (some sulci fade out);
* a grey-matter ribbon of roughly constant thickness lining the surface and the sulci (so the cortex is
  *folded* into gyri), with a white-matter core; the interhemispheric fissure (a CSF sheet at the
  midline down to the corpus callosum, cutting through front and back) lined by medial cortex;
* two curved lateral ventricles (frontal horn, body, atrium, occipital and temporal horns), a thin third
  ventricle, and deep grey nuclei (thalamus, caudate head, lentiform nucleus: labelled GM);
* choroid plexus in the atria and vessels in the sulci (labelled CSF; they only show, enhancing, on T1c).

Sizes are in units of the brain radius, so they scale with the FOV: at shape (64, 76, 64) x 1.5 mm the
GM ribbon is about 3-4 voxels thick and the sulcal CSF 1-2 voxels wide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline

from brainbundles.data.phantom.grid import _Fourier, _Grid
from brainbundles.data.phantom.tissue import _CHOROID, _CSF, _DGM, _GM, _VESSEL, _WM


@dataclass
class _Anatomy:
    """A case's anatomy on the RAS grid (internal; :func:`_add_tumour` adds the tumour classes)."""

    grid: _Grid
    tissue: np.ndarray  # int8 tissue classes (_BG, _CSF, ...) on the RAS grid
    brain: np.ndarray  # flat indices of the brain voxels (tissue > 0)
    u: tuple[np.ndarray, np.ndarray, np.ndarray]  # per-axis normalised coordinates (world / radius)
    scale: np.ndarray  # d(u)/d(iso) per axis (iso = units of the geometric mean brain radius)
    flat_bottom: float  # the brain's ellipsoid is sqrt(ux^2 + uy^2 + (k uz)^2) < 1, k = this below uz = 0
    ventricle_ctrl: list[np.ndarray]  # rows (x, y, z, rx, ry, rz) in u swept (or stamped) as the ventricles
    ventricles: np.ndarray  # bool mask of the ventricles (choroid plexus included)
    tumour: np.ndarray | None = None  # flat indices of the tumour voxels (tumour classes), None without
    wmh: np.ndarray | None = None  # flat indices of the white-matter lesion voxels, None without
    ms: np.ndarray | None = None  # flat indices of the MS lesion voxels, None without
    ms_level: np.ndarray | None = None  # per MS lesion voxel (as ``ms``): its severity, 0-1


# control points (normalised coordinates: x lateral, y anterior, z superior) of the right lateral ventricle
# from the frontal horn tip over the body and atrium into the temporal horn: (x_inner, y, z, rx, ry, rz),
# where x_inner is the medial edge (centre x = x_inner + rx after scaling the half-axes)
_VENT_MAIN = np.array(
    [
        [0.030, 0.36, 0.02, 0.045, 0.050, 0.060],
        [0.025, 0.26, 0.07, 0.060, 0.060, 0.080],
        [0.025, 0.10, 0.11, 0.085, 0.060, 0.060],
        [0.030, -0.10, 0.11, 0.090, 0.060, 0.055],
        [0.100, -0.28, 0.06, 0.085, 0.070, 0.075],
        [0.190, -0.36, -0.08, 0.055, 0.055, 0.055],
        [0.260, -0.27, -0.20, 0.040, 0.045, 0.040],
        [0.300, -0.08, -0.27, 0.030, 0.040, 0.030],
    ]
)
# occipital horn, branching off the atrium (row 4 above) backwards
_VENT_OCC = np.array(
    [
        [0.100, -0.28, 0.06, 0.075, 0.060, 0.065],
        [0.150, -0.45, 0.04, 0.050, 0.050, 0.045],
        [0.150, -0.57, 0.03, 0.028, 0.030, 0.025],
    ]
)
_ATRIUM = 4
# deep grey nuclei (right side; mirrored): centre, half-axes
_NUCLEI = np.array(
    [
        [0.110, -0.10, -0.07, 0.095, 0.150, 0.100],  # thalamus
        [0.190, 0.22, 0.03, 0.060, 0.090, 0.080],  # caudate head
        [0.320, 0.05, -0.09, 0.055, 0.150, 0.100],  # lentiform nucleus
    ]
)


def _stamp(q: np.ndarray, axes: Sequence[np.ndarray], centre: np.ndarray, radii: np.ndarray) -> None:
    """``q = min(q, |(p - centre) / radii|^2)`` over the voxels of the ellipsoid's bounding box."""
    sl, parts = [], []
    for a in range(3):
        ax = axes[a]
        i0 = int(np.searchsorted(ax, centre[a] - radii[a], "left"))
        i1 = int(np.searchsorted(ax, centre[a] + radii[a], "right"))
        if i0 >= i1:
            return
        sl.append(slice(i0, i1))
        parts.append((((ax[i0:i1] - centre[a]) / radii[a]) ** 2).astype(np.float32))
    val = parts[0][:, None, None] + parts[1][None, :, None] + parts[2][None, None, :]
    view = q[tuple(sl)]
    np.minimum(view, val, out=view)


def _sweep(q: np.ndarray, axes: Sequence[np.ndarray], ctrl: np.ndarray) -> None:
    """Stamp ellipsoids densely along a smooth curve through the control rows ``(x, y, z, rx, ry, rz)``."""
    seg = np.linalg.norm(np.diff(ctrl[:, :3], axis=0), axis=1)
    t = np.concatenate([[0.0], np.cumsum(seg)])
    spline = CubicSpline(t, ctrl, axis=0, bc_type="natural")
    step = ctrl[:, 3:].min() / 3.0
    for row in spline(np.linspace(0.0, t[-1], max(2, int(math.ceil(t[-1] / step)) + 1))):
        _stamp(q, axes, row[:3], np.maximum(row[3:], 1e-3))


def _sulcal_distance(n: np.ndarray, grad: Sequence[np.ndarray]) -> np.ndarray:
    """Approximate distance to the zero set of a field: ``|n| / |grad n|``."""
    gw = np.sqrt(sum(g * g for g in grad))
    return np.abs(n) / np.maximum(gw, np.float32(1e-3))


def _build_anatomy(seed: int, grid: _Grid) -> _Anatomy:
    """Tissue classes of the case ``seed`` on ``grid``: see the module docstring."""
    rng = np.random.default_rng([seed, 0])
    # ---- case parameters (drawn in a fixed order, independent of the grid); lengths in units of the
    # (geometric) mean brain radius unless said otherwise
    radius_frac = 0.42 * (1.0 + rng.uniform(-0.06, 0.06, 3))
    flat_bottom = rng.uniform(1.08, 1.16)
    surf_amp = rng.uniform(0.025, 0.035)
    surf_field = _Fourier.draw(rng, 16, rng.uniform(0.5, 0.7))
    t_csf = rng.uniform(0.024, 0.030)  # surface CSF layer
    t_gm = rng.uniform(0.100, 0.115)  # GM ribbon thickness (gyral crowns)
    t_wall = t_gm * rng.uniform(0.70, 0.80)  # GM thickness on the sulcal walls and fundi
    sulc_half = rng.uniform(0.020, 0.026)  # sulcal CSF half-width
    sulc_depth = rng.uniform(0.24, 0.30)
    sulc_field = _Fourier.draw(rng, 24, rng.uniform(0.95, 1.1))
    sulc_tilt = rng.uniform(0.4, 0.7)
    tilt_fields = [_Fourier.draw(rng, 8, 0.5) for _ in range(3)]
    depth_field = _Fourier.draw(rng, 12, 0.8)
    fiss_field = _Fourier.draw(rng, 8, 1.0, dims=2)  # (y, z) -> lateral shift of the fissure
    fiss_amp = rng.uniform(0.03, 0.05)
    med_field = _Fourier.draw(rng, 16, 1.6)  # medial sulci: (y, z, +-hemisphere offset)
    med_depth_field = _Fourier.draw(rng, 8, 0.8)
    cc_top = rng.uniform(0.25, 0.29)
    vent_scale = rng.uniform(0.95, 1.3)
    vent_jitter = rng.uniform(-0.015, 0.015, (2, _VENT_MAIN.shape[0], 3))
    nuc_jitter = rng.uniform(-0.015, 0.015, (2, _NUCLEI.shape[0], 3))
    third_half = rng.uniform(0.020, 0.028)
    vessel_field = _Fourier.draw(rng, 16, 2.5)

    # ---- coordinates: u = world / radius per axis; isotropic units = world / mean radius
    fov = grid.fov
    # |surface noise| <= clip: the brain reaches at most 0.445 * (1 + 0.035 * 2) = 0.476 FOV from the centre
    clip = 2.0
    radii = radius_frac * fov
    r_mean = float(np.exp(np.mean(np.log(radii))))
    scale = (r_mean / radii).astype(np.float32)  # d(u)/d(iso)
    ux, uy, uz = (grid.axis_mm(a) / radii[a] for a in range(3))
    kz = np.where(uz < 0, flat_bottom, 1.0)
    rk_full = np.sqrt((ux**2)[:, None, None] + (uy**2)[None, :, None] + ((kz * uz) ** 2)[None, None, :])
    idx = np.flatnonzero(rk_full < 1.0 + surf_amp * clip)
    ii, jj, kk = np.unravel_index(idx, grid.shape)
    px, py, pz = ux[ii].astype(np.float32), uy[jj].astype(np.float32), uz[kk].astype(np.float32)
    kzv = kz[kk].astype(np.float32)
    rk = rk_full.ravel()[idx].astype(np.float32)
    rs = np.maximum(rk, np.float32(1e-6))
    v = (px / rs, py / rs, pz * kzv / rs)  # direction on the (flattened) ellipsoid

    # depth below the surface in isotropic units: (1 + a n - r) / |grad r|
    n_surf = np.clip(surf_field(v), -clip, clip)
    gr = np.sqrt((px * scale[0]) ** 2 + (py * scale[1]) ** 2 + (kzv**2 * pz * scale[2]) ** 2) / rs
    depth = (1.0 + np.float32(surf_amp) * n_surf - rk) / np.maximum(gr, np.float32(1e-3))
    keep = depth >= 0
    idx, jj, kk, px, py, pz, kzv, rs, depth = (a[keep] for a in (idx, jj, kk, px, py, pz, kzv, rs, depth))
    v = tuple(c[keep] for c in v)

    # ---- outer cortex: sulci along the zero set of a field on the sphere, of varying depth;
    # the field lives on the unit sphere; going deeper, the direction it is read at drifts smoothly
    # (a depth-dependent diffeomorphism of the sphere), so the sulci tilt and bend but every sulcus
    # stays open to the surface (no buried pockets). Distances are angular (sulci narrow with depth).
    drift = np.float32(sulc_tilt) * depth
    vw = [v[a] + drift * tilt_fields[a](v) for a in range(3)]
    norm = np.sqrt(vw[0] ** 2 + vw[1] ** 2 + vw[2] ** 2)
    vw = [c / norm for c in vw]
    n2, g = sulc_field.value_and_grad(vw)
    gdot = g[0] * vw[0] + g[1] * vw[1] + g[2] * vw[2]
    dist_sulc = _sulcal_distance(n2, [(g[a] - gdot * vw[a]) * scale[a] for a in range(3)])
    bottom = np.float32(t_csf) + np.float32(sulc_depth) * np.clip(0.85 + 0.5 * depth_field(v), 0.0, 1.2)
    csf = (depth < t_csf) | ((dist_sulc < sulc_half) & (depth < bottom))
    to_sulc = np.sqrt(np.maximum(dist_sulc - sulc_half, 0) ** 2 + np.maximum(depth - bottom, 0) ** 2)
    gm = (depth < t_csf + t_gm) | (to_sulc < t_wall)
    # cortical veins: tubes where the sulcal CSF sheets meet a level set of another field
    vessel = csf & (depth > t_csf) & (np.abs(vessel_field((px, py, pz))) < 0.25)

    # ---- medial cortex: the interhemispheric fissure, a wavy midline sheet down to the corpus callosum
    # (and through the brain in front of and behind it), with its own sulci; 2-D fields on the (y, z) plane
    y2, z2 = np.meshgrid(uy.astype(np.float32), uz.astype(np.float32), indexing="ij")
    zero2 = np.zeros_like(y2)
    shift = (np.float32(fiss_amp) * fiss_field((y2, z2, zero2)))[jj, kk]
    right = (px - shift) >= 0
    dist_med = np.empty_like(px)
    med_bottom = np.empty_like(px)
    for hemi, sel in ((1.5, right), (-1.5, ~right)):  # different sulci in each hemisphere
        h2 = np.full_like(y2, hemi)
        m, gm_ = med_field.value_and_grad((y2, z2, h2))
        dist_med[sel] = _sulcal_distance(m, (gm_[0] * scale[1], gm_[1] * scale[2]))[jj[sel], kk[sel]]
        mb = np.float32(sulc_depth) * np.clip(0.4 + 0.6 * med_depth_field((y2, z2, h2)), 0.0, 1.2)
        med_bottom[sel] = mb[jj[sel], kk[sel]]
    rel = np.abs(py + np.float32(0.03)) / np.float32(0.48)  # corpus callosum: y in [-0.51, 0.45]
    beyond = np.maximum(rel - 1, 0)  # in front of the genu / behind the splenium the floor falls away
    floor = np.float32(cc_top) - np.float32(0.17) * np.minimum(rel, 1) ** 2 - 0.34 * beyond - 3.0 * beyond**2
    above = pz > floor
    fiss_half = np.float32(sulc_half)
    xm = np.abs(px - shift) * scale[0] - fiss_half  # depth below the medial surface
    med_csf = above & ((xm < 0) | ((dist_med < sulc_half) & (xm < med_bottom)))
    to_med = np.sqrt(np.maximum(dist_med - sulc_half, 0) ** 2 + np.maximum(xm - med_bottom, 0) ** 2)
    gm |= above & ((xm < t_gm) | (to_med < t_wall))

    tis = np.full(idx.shape, _WM, dtype=np.int8)
    tis[gm] = _GM
    tis[csf | med_csf] = _CSF
    tis[vessel] = _VESSEL
    tissue = np.zeros(grid.shape, dtype=np.int8)
    tissue.ravel()[idx] = tis

    # ---- deep structures, stamped on the RAS grid (normalised coordinates)
    axes = (ux, uy, uz)
    q = np.full(grid.shape, np.inf, dtype=np.float32)
    for side, sign in enumerate((1.0, -1.0)):
        for n, row in enumerate(_NUCLEI):
            _stamp(q, axes, (row[:3] + nuc_jitter[side, n]) * [sign, 1, 1], row[3:])
    tissue[(q < 1.0) & (tissue == _WM)] = _DGM

    q.fill(np.inf)
    q_pad = np.full(grid.shape, np.inf, dtype=np.float32)
    pad = 0.05 * scale  # wall around the ventricles, in normalised units per axis
    choroid: list[tuple[np.ndarray, np.ndarray]] = []
    vent_ctrl: list[np.ndarray] = []
    for side, sign in enumerate((1.0, -1.0)):
        main = _VENT_MAIN.copy()
        main[:, :3] += vent_jitter[side]
        main[:, 3:] *= vent_scale
        occ = _VENT_OCC.copy()
        occ[:, 3:] *= vent_scale
        for ctrl in (main, occ):
            ctrl[:, 0] += ctrl[:, 3]  # medial edge -> centre
        occ[0, :3] = main[_ATRIUM, :3]
        for ctrl in (main, occ):
            ctrl[:, 0] *= sign
            vent_ctrl.append(ctrl)
            _sweep(q, axes, ctrl)
            _sweep(q_pad, axes, ctrl + np.r_[np.zeros(3), pad])
        choroid.append((main[_ATRIUM, :3] + [0.0, 0.0, -0.02], main[_ATRIUM, 3:] * 0.7))
    third_c, third_r = np.array([0.0, -0.08, -0.12]), np.array([third_half * scale[0], 0.16, 0.12])
    _stamp(q, axes, third_c, third_r)
    _stamp(q_pad, axes, third_c, third_r + pad)
    vent_ctrl.append(np.r_[third_c, third_r][None, :])
    ventricles = (q < 1.0) & (tissue > 0)
    # keep the ventricles closed: a deep sulcus or the fissure reaching them ends in GM short of them
    tissue[(q_pad < 1.0) & ~ventricles & ((tissue == _CSF) | (tissue == _VESSEL))] = _GM
    tissue[ventricles] = _CSF

    # choroid plexus: a small blob in each atrium (enhancing on T1c)
    q.fill(np.inf)
    for c, r in choroid:
        _stamp(q, axes, c, r)
    tissue[(q < 1.0) & ventricles] = _CHOROID

    return _Anatomy(
        grid=grid,
        tissue=tissue,
        brain=np.flatnonzero(tissue),
        u=(ux, uy, uz),
        scale=scale,
        flat_bottom=float(flat_bottom),
        ventricle_ctrl=vent_ctrl,
        ventricles=ventricles,
    )


def _deep_centre(rng: np.random.Generator, flat_bottom: float) -> np.ndarray:
    """A point (normalised coordinates) in the deep hemispheric region, off the midline: drawn at random
    until it lies well inside the brain's ellipsoid (analytic, so independent of the grid)."""
    for _ in range(1000):
        c = np.array(
            [rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.6), rng.uniform(-0.6, 0.55), rng.uniform(-0.1, 0.5)]
        )
        kz = flat_bottom if c[2] < 0 else 1.0
        if math.sqrt(c[0] ** 2 + c[1] ** 2 + (kz * c[2]) ** 2) < 0.72:
            return c
    raise RuntimeError("no deep point found")  # pragma: no cover - about half of the draws are accepted
