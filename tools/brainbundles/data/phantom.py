"""Synthetic, skull-stripped brain MRI phantoms, deterministic per seed.

:func:`make_phantom` renders one case: a 4-class tissue label map (0 background, 1 CSF, 2 GM, 3 WM) and
any of the contrasts in :data:`CONTRASTS`. :func:`write_phantom_dataset` writes a whole data set on disk in
the layout of a real one (``"tissue"``: IBSR18), with a manifest and a MONAI (Decathlon-style) datalist.

Anatomy
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

Intensities
    Per contrast, tissue means with realistic *relative* order (T1: WM > GM > CSF; T2: CSF > GM > WM;
    FLAIR: GM > WM > CSF; PD: CSF >= GM > WM, low contrast; T1c: T1 plus enhancing choroid plexus and
    vessels), jittered per case (+-10%, order kept), partial volume (the piecewise-constant image smoothed
    with a Gaussian of 0.5-0.7 voxel), a smooth multiplicative bias field (about +-15-20%), Rician (default)
    or Gaussian noise with an SNR of 15-30 relative to the brightest tissue (WM on T1), and a random overall
    scale (brightest tissue mean 300-1200). Voxels outside the brain are exactly 0 (skull-stripped: the
    brain mask is applied after the noise).

Geometry
    ``shape`` and ``spacing`` are given along the world axes R, A, S (x, y, z): the phantom is generated on
    that RAS grid and then array and affine are reoriented together to ``orientation`` (nibabel axis codes),
    so the world-space anatomy does not depend on ``orientation``; the returned arrays have ``shape``
    permuted accordingly (e.g. ``"PIR"`` gives ``(shape[1], shape[2], shape[0])``). The affine puts the FOV
    centre at world (0, 0, 0).

Randomness comes only from ``numpy.random.default_rng`` seeded with ``[seed, stream]`` (one stream for the
anatomy, one per contrast for its intensities and one for its noise), so a contrast renders the same
whatever other contrasts are asked for.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform
from scipy.interpolate import CubicSpline
from scipy.ndimage import gaussian_filter

from brainbundles.fileio import atomic_write, write_json_atomic

__all__ = [
    "CONTRASTS",
    "PHANTOM_LABELS",
    "PHANTOM_TASKS",
    "Phantom",
    "make_phantom",
    "write_phantom_dataset",
]

#: contrasts :func:`make_phantom` can render
CONTRASTS: tuple[str, ...] = ("t1", "t1c", "t2", "flair", "pd")

#: the label values of :attr:`Phantom.label` (Decathlon form)
PHANTOM_LABELS: dict[str, str] = {"0": "background", "1": "CSF", "2": "GM", "3": "WM"}

_DEFAULT_SHAPE = (96, 112, 96)
_DEFAULT_SPACING = (1.5, 1.5, 1.5)
_MIN_SIZE = 8  # voxels per axis

# ------------------------------------------------------------------------------------------------ tissues

# internal tissue classes (values of the tissue map); each maps to a label value
_BG, _CSF, _GM, _WM, _DGM, _CHOROID, _VESSEL = range(7)
_TISSUE_LABEL = np.array([0, 1, 2, 3, 2, 1, 1], dtype=np.uint8)

#: relative tissue means per contrast for (CSF, GM, deep GM, WM), before the per-case jitter and scale
_BASE_MEANS: dict[str, dict[int, float]] = {
    "t1": {_CSF: 0.22, _GM: 0.62, _DGM: 0.76, _WM: 1.00},
    "t1c": {_CSF: 0.22, _GM: 0.62, _DGM: 0.76, _WM: 1.00},
    "t2": {_CSF: 1.00, _GM: 0.52, _DGM: 0.46, _WM: 0.38},
    "flair": {_CSF: 0.14, _GM: 1.00, _DGM: 0.84, _WM: 0.70},
    "pd": {_CSF: 1.00, _GM: 0.92, _DGM: 0.86, _WM: 0.80},
}
#: least ratio between the means of tissues next to each other in a contrast's order
_MIN_STEP = 1.04
#: relative intensity (x WM) of choroid plexus and vessels on T1c; on the other contrasts they look like CSF
_ENHANCEMENT = {_CHOROID: 2.0, _VESSEL: 1.8}

# ------------------------------------------------------------------------------------------------ public API


@dataclass
class Phantom:
    """One synthetic case.

    Attributes:
        images: contrast name -> float32 image, oriented as requested (0 outside the brain).
        label: uint8 tissue labels (0 background, 1 CSF, 2 GM, 3 WM), same shape as the images.
        affine: 4x4 float64 voxel-to-world (RAS+ mm) affine of the arrays.
    """

    images: dict[str, np.ndarray]
    label: np.ndarray
    affine: np.ndarray


def make_phantom(
    seed: int,
    shape: Sequence[int] = _DEFAULT_SHAPE,
    spacing: Sequence[float] = _DEFAULT_SPACING,
    orientation: str = "RAS",
    contrasts: Sequence[str] = CONTRASTS,
    *,
    noise: str = "rician",
) -> Phantom:
    """Render the synthetic brain of ``seed``.

    Args:
        seed: non-negative integer; the same seed gives the same anatomy and images.
        shape: grid size in voxels along the world axes R, A, S (x, y, z), each >= 8.
        spacing: voxel size in mm along R, A, S (positive; anisotropic allowed).
        orientation: axis codes of the returned arrays (``"RAS"``, ``"LPS"``, ``"PIR"``, ...).
        contrasts: which of :data:`CONTRASTS` to render (may be empty: label only).
        noise: ``"rician"`` (magnitude of complex Gaussian noise), ``"gaussian"`` (clipped at 0) or
            ``"none"``.

    Returns:
        a :class:`Phantom`; its arrays have ``shape`` permuted to ``orientation``.

    Raises:
        ValueError: a bad ``seed``, ``shape``, ``spacing``, ``orientation``, ``contrasts`` or ``noise``.
    """
    seed = _check_seed(seed)
    grid = _Grid(_check_shape(shape), _check_spacing(spacing))
    codes = _check_orientation(orientation)
    wanted = _check_contrasts(contrasts)
    if noise not in ("rician", "gaussian", "none"):
        raise ValueError(f"noise: expected 'rician', 'gaussian' or 'none', got {noise!r}")

    anatomy = _build_anatomy(seed, grid)
    images = {c: _render_contrast(seed, anatomy, c, noise) for c in wanted}
    label = _TISSUE_LABEL[anatomy.tissue]

    ornt = ornt_transform(axcodes2ornt(tuple("RAS")), axcodes2ornt(codes))
    affine = grid.affine() @ inv_ornt_aff(ornt, grid.shape)

    def orient(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(apply_orientation(a, ornt))

    return Phantom(
        images={c: orient(im) for c, im in images.items()},
        label=orient(label),
        affine=affine.astype(np.float64),
    )


# ------------------------------------------------------------------------------------------------ validation


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    return int(seed)


def _check_shape(shape: Any) -> tuple[int, int, int]:
    try:
        vals = list(shape)
    except TypeError:
        raise ValueError(f"shape: expected 3 integers, got {shape!r}") from None
    if len(vals) != 3 or any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in vals):
        raise ValueError(f"shape: expected 3 integers, got {shape!r}")
    if any(v < _MIN_SIZE for v in vals):
        raise ValueError(f"shape: every size must be >= {_MIN_SIZE} voxels, got {tuple(vals)}")
    return int(vals[0]), int(vals[1]), int(vals[2])


def _check_spacing(spacing: Any) -> tuple[float, float, float]:
    try:
        vals = [float(v) for v in spacing]
    except (TypeError, ValueError):
        raise ValueError(f"spacing: expected 3 positive numbers (mm), got {spacing!r}") from None
    if len(vals) != 3 or not all(math.isfinite(v) and v > 0 for v in vals):
        raise ValueError(f"spacing: expected 3 positive numbers (mm), got {spacing!r}")
    return vals[0], vals[1], vals[2]


def _check_orientation(orientation: Any) -> str:
    if not isinstance(orientation, str) or len(orientation) != 3:
        raise ValueError(f"orientation: expected 3 axis codes such as 'RAS' or 'LPS', got {orientation!r}")
    codes = orientation.upper()
    axes = [next((i for i, pair in enumerate(("LR", "PA", "IS")) if c in pair), None) for c in codes]
    if None in axes or sorted(axes) != [0, 1, 2]:  # type: ignore[type-var]
        raise ValueError(
            f"orientation: expected one of L/R, one of P/A and one of I/S (e.g. 'RAS', 'LPS'), got {orientation!r}"
        )
    return codes


def _check_contrasts(contrasts: Any) -> list[str]:
    if isinstance(contrasts, str):
        contrasts = (contrasts,)
    try:
        names = [str(c).lower() for c in contrasts]
    except TypeError:
        raise ValueError(
            f"contrasts: expected a sequence of names from {CONTRASTS}, got {contrasts!r}"
        ) from None
    unknown = [c for c in names if c not in CONTRASTS]
    if unknown:
        raise ValueError(f"contrasts: unknown {unknown}; known contrasts are {list(CONTRASTS)}")
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------------------------------------ grid, noise


@dataclass(frozen=True)
class _Grid:
    """The RAS-ordered sampling grid: voxel centres at ``(i - (n - 1) / 2) * spacing`` mm."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    def axis_mm(self, a: int) -> np.ndarray:
        n = self.shape[a]
        return (np.arange(n, dtype=np.float64) - (n - 1) / 2.0) * self.spacing[a]

    @property
    def fov(self) -> np.ndarray:
        return np.asarray(self.shape, dtype=np.float64) * np.asarray(self.spacing)

    def affine(self) -> np.ndarray:
        aff = np.diag([*self.spacing, 1.0])
        aff[:3, 3] = [self.axis_mm(a)[0] for a in range(3)]
        return aff


@dataclass(frozen=True)
class _Fourier:
    """Smooth random field: ``sqrt(2 / K) * sum_k cos(2 pi f_k . p + phi_k)`` (unit variance)."""

    freqs: np.ndarray  # (K, 3), cycles per unit
    phases: np.ndarray  # (K,)

    @classmethod
    def draw(
        cls, rng: np.random.Generator, k: int, freq: float, spread: float = 0.25, dims: int = 3
    ) -> _Fourier:
        d = rng.standard_normal((k, dims))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        mags = freq * (1.0 + spread * rng.uniform(-1.0, 1.0, k))
        f = np.zeros((k, 3))
        f[:, :dims] = d * mags[:, None]
        return cls(freqs=f, phases=rng.uniform(0.0, 2.0 * np.pi, k))

    def _args(self, p: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        w = (2.0 * np.pi * self.freqs).astype(np.float32)
        return [
            (w[k], p[0] * w[k, 0] + p[1] * w[k, 1] + p[2] * w[k, 2] + np.float32(self.phases[k]))
            for k in range(len(w))
        ]

    def __call__(self, p: Sequence[np.ndarray]) -> np.ndarray:
        amp = np.float32(math.sqrt(2.0 / len(self.phases)))
        out = np.zeros(np.broadcast(*p).shape, dtype=np.float32)
        for _, arg in self._args(p):
            out += np.cos(arg)
        return out * amp

    def value_and_grad(self, p: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        amp = np.float32(math.sqrt(2.0 / len(self.phases)))
        shape = np.broadcast(*p).shape
        val = np.zeros(shape, dtype=np.float32)
        grad = [np.zeros(shape, dtype=np.float32) for _ in range(3)]
        for w, arg in self._args(p):
            val += np.cos(arg)
            s = np.sin(arg)
            for a in range(3):
                if w[a] != 0:
                    grad[a] -= s * w[a]
        return val * amp, [g * amp for g in grad]


# ------------------------------------------------------------------------------------------------ anatomy


@dataclass
class _Anatomy:
    """A case's anatomy on the RAS grid (internal; lesion tasks would add tissue classes here)."""

    grid: _Grid
    tissue: np.ndarray  # int8 tissue classes (_BG, _CSF, ...) on the RAS grid
    brain: np.ndarray  # flat indices of the brain voxels (tissue > 0)
    u: tuple[np.ndarray, np.ndarray, np.ndarray]  # per-axis normalised coordinates (world / radius)


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
            _sweep(q, axes, ctrl)
            _sweep(q_pad, axes, ctrl + np.r_[np.zeros(3), pad])
        choroid.append((main[_ATRIUM, :3] + [0.0, 0.0, -0.02], main[_ATRIUM, 3:] * 0.7))
    third_c, third_r = np.array([0.0, -0.08, -0.12]), np.array([third_half * scale[0], 0.16, 0.12])
    _stamp(q, axes, third_c, third_r)
    _stamp(q_pad, axes, third_c, third_r + pad)
    ventricles = (q < 1.0) & (tissue > 0)
    # keep the ventricles closed: a deep sulcus or the fissure reaching them ends in GM short of them
    tissue[(q_pad < 1.0) & ~ventricles & ((tissue == _CSF) | (tissue == _VESSEL))] = _GM
    tissue[ventricles] = _CSF

    # choroid plexus: a small blob in each atrium (enhancing on T1c)
    q.fill(np.inf)
    for c, r in choroid:
        _stamp(q, axes, c, r)
    tissue[(q < 1.0) & ventricles] = _CHOROID

    return _Anatomy(grid=grid, tissue=tissue, brain=np.flatnonzero(tissue), u=(ux, uy, uz))


# ------------------------------------------------------------------------------------------------ intensities


def _tissue_means(rng: np.random.Generator, contrast: str) -> np.ndarray:
    """Per-tissue means for one case: jittered (+-10%) with the contrast's tissue order kept (and at least
    4% between neighbours), scaled so the brightest tissue is at 300-1200."""
    base = _BASE_MEANS[contrast]
    order = sorted(base, key=base.get)  # tissues from darkest to brightest
    jittered = np.sort(np.array([base[t] for t in order]) * rng.uniform(0.9, 1.1, len(order)))
    for k in range(1, len(jittered)):  # keep some contrast between neighbouring tissues
        jittered[k] = max(jittered[k], jittered[k - 1] * _MIN_STEP)
    means = np.zeros(len(_TISSUE_LABEL), dtype=np.float64)
    means[order] = jittered
    for t in (_CHOROID, _VESSEL):
        means[t] = means[_CSF]
    if contrast == "t1c":
        for t, rel in _ENHANCEMENT.items():
            means[t] = rel * means[_WM]
    means *= rng.uniform(300.0, 1200.0) / jittered[-1]
    return means


def _render_contrast(seed: int, anatomy: _Anatomy, contrast: str, noise: str) -> np.ndarray:
    """One contrast on the RAS grid: tissue means, partial volume, bias field, noise, brain mask."""
    stream = 10 + CONTRASTS.index(contrast)
    rng = np.random.default_rng([seed, stream])
    means = _tissue_means(rng, contrast)
    pv_sigma = rng.uniform(0.5, 0.7)
    bias_field = _Fourier.draw(rng, 8, 0.35)
    bias_amp = rng.uniform(0.06, 0.09)
    snr = rng.uniform(15.0, 30.0)

    img = gaussian_filter(means.astype(np.float32)[anatomy.tissue], pv_sigma, mode="constant")
    idx = anatomy.brain
    ii, jj, kk = np.unravel_index(idx, anatomy.grid.shape)
    ux, uy, uz = anatomy.u
    p = (ux[ii].astype(np.float32), uy[jj].astype(np.float32), uz[kk].astype(np.float32))
    vals = img.ravel()[idx] * np.exp(np.float32(bias_amp) * np.clip(bias_field(p), -2.5, 2.5))
    if noise != "none":
        sigma = np.float32(means.max() / snr)
        nrng = np.random.default_rng([seed, stream + 10])
        re = vals + sigma * nrng.standard_normal(vals.shape, dtype=np.float32)
        if noise == "rician":
            im = sigma * nrng.standard_normal(vals.shape, dtype=np.float32)
            vals = np.sqrt(re * re + im * im)
        else:
            vals = np.maximum(re, 0.0)
    out = np.zeros(anatomy.grid.shape, dtype=np.float32)
    out.ravel()[idx] = vals
    return out


# ------------------------------------------------------------------------------------------------ data sets


@dataclass(frozen=True)
class _Layout:
    """How a data set lays out its cases on disk (file names relative to the data set folder)."""

    name: str
    channels: tuple[str, ...]  # datalist channel names, one file each
    case_id: Callable[[int, int], str]  # (1-based case number, number of cases) -> case id
    image_files: Callable[[str], tuple[str, ...]]  # case id -> one relative path per channel
    label_file: Callable[[str], str]  # case id -> relative path of the label


def _ibsr_id(number: int, total: int) -> str:
    return f"IBSR_{number:0{max(2, len(str(total)))}d}"


_LAYOUTS: dict[str, _Layout] = {
    "ibsr18": _Layout(
        name="ibsr18",
        channels=("T1",),
        case_id=_ibsr_id,
        image_files=lambda cid: (f"{cid}/{cid}_ana_strip.nii.gz",),
        label_file=lambda cid: f"{cid}/{cid}_seg_ana.nii.gz",
    ),
}


@dataclass(frozen=True)
class _Task:
    """A phantom data set kind: its layout, the contrast written for each channel and the labels.

    ``make_label`` turns a rendered :class:`Phantom` into the task's label map (e.g. lesion labels for the
    tumour / WMH / MS tasks, which would also add lesion tissue to the anatomy before rendering).
    """

    name: str
    layout: str
    contrasts: tuple[str, ...]  # one per layout channel
    labels: dict[str, str]
    make_label: Callable[[Phantom], np.ndarray] = lambda p: p.label


_TASKS: dict[str, _Task] = {
    "tissue": _Task(name="tissue", layout="ibsr18", contrasts=("t1",), labels=PHANTOM_LABELS),
}

#: the tasks :func:`write_phantom_dataset` can write
PHANTOM_TASKS: tuple[str, ...] = tuple(_TASKS)


def _case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` (0-based) of the data set ``seed``."""
    return seed * 100003 + index


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    img = nib.Nifti1Image(array, affine)
    img.header.set_data_dtype(array.dtype)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    atomic_write(path, lambda tmp: nib.save(img, tmp))


def _check_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def write_phantom_dataset(
    task: str,
    out: str | os.PathLike,
    cases: int = 10,
    seed: int = 0,
    shape: Sequence[int] = _DEFAULT_SHAPE,
    spacing: Sequence[float] = _DEFAULT_SPACING,
    orientation: str = "RAS",
    test_cases: int = 0,
    folds: int = 5,
    dtype: str = "float32",
) -> Path:
    """Write a synthetic data set laid out like the real one for ``task``.

    ``"tissue"`` writes the IBSR18 layout: ``out/IBSR_01/IBSR_01_ana_strip.nii.gz`` (T1) and
    ``out/IBSR_01/IBSR_01_seg_ana.nii.gz`` (uint8 labels 0 background, 1 CSF, 2 GM, 3 WM), numbered
    ``01, 02, ...`` for ``cases + test_cases`` cases, the last ``test_cases`` being the held-out test set.
    Case ``i`` (0-based) is :func:`make_phantom` of seed ``seed * 100003 + i``. Also written:
    ``out/phantom.json`` (manifest) and ``out/datalist.json``, a Decathlon-style datalist with paths
    relative to ``out``; the training cases get ``fold = rank % folds`` where ``rank`` is their position in
    ``numpy.random.default_rng(seed).permutation(cases)`` (as ``brainbundles.data.datalist.make_datalist``
    deals folds). Every file is written atomically (temporary file in the same folder, then ``os.replace``);
    existing files of the same names are replaced, others are left alone.

    Args:
        task: one of :data:`PHANTOM_TASKS`.
        out: the data set folder (created if needed).
        cases: number of training cases (>= 1).
        seed: data set seed (non-negative integer).
        shape, spacing, orientation: as for :func:`make_phantom`.
        test_cases: number of extra held-out cases (>= 0).
        folds: number of cross-validation folds (1 <= folds <= cases).
        dtype: image file data type, ``"float32"`` or ``"int16"`` (rounded and clipped).

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: an unknown ``task`` or ``dtype``, or a bad ``cases``, ``test_cases``, ``folds``,
            ``seed``, ``shape``, ``spacing`` or ``orientation``.
    """
    if task not in _TASKS:
        raise ValueError(f"task: unknown task {task!r}; known tasks are {list(PHANTOM_TASKS)}")
    spec = _TASKS[task]
    layout = _LAYOUTS[spec.layout]
    cases = _check_count("cases", cases, 1)
    test_cases = _check_count("test_cases", test_cases, 0)
    folds = _check_count("folds", folds, 1)
    if folds > cases:
        raise ValueError(f"folds: {folds} folds need at least as many training cases, got cases={cases}")
    if dtype not in ("float32", "int16"):
        raise ValueError(f"dtype: expected 'float32' or 'int16', got {dtype!r}")
    seed = _check_seed(seed)
    shape = _check_shape(shape)
    spacing = _check_spacing(spacing)
    orientation = _check_orientation(orientation)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    total = cases + test_cases
    entries: list[dict[str, Any]] = []
    for i in range(total):
        cid = layout.case_id(i + 1, total)
        ph = make_phantom(_case_seed(seed, i), shape, spacing, orientation, spec.contrasts)
        images = layout.image_files(cid)
        for rel, contrast in zip(images, spec.contrasts, strict=True):
            data = ph.images[contrast]
            if dtype == "int16":
                data = np.clip(np.rint(data), -32768, 32767).astype(np.int16)
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            _save_nifti(data, ph.affine, out / rel)
        label_rel = layout.label_file(cid)
        (out / label_rel).parent.mkdir(parents=True, exist_ok=True)
        _save_nifti(spec.make_label(ph).astype(np.uint8), ph.affine, out / label_rel)
        entries.append({"image": list(images), "label": label_rel, "case": cid})

    fold_of = np.empty(cases, dtype=int)
    for rank, i in enumerate(np.random.default_rng(seed).permutation(cases)):
        fold_of[i] = rank % folds
    training = [{**e, "fold": int(fold_of[i])} for i, e in enumerate(entries[:cases])]
    name = f"phantom-{task}"
    datalist = {
        "name": name,
        "layout": "phantom",  # make_datalist("phantom", out, folds, seed) rebuilds this same datalist
        "channels": list(layout.channels),
        "labels": dict(spec.labels),
        "folds": folds,
        "seed": seed,
        "numTraining": len(training),
        "numTest": test_cases,
        "training": training,
        "testing": entries[cases:],
    }
    manifest = {
        "task": task,
        "name": name,
        "layout": layout.name,
        "cases": cases,
        "test_cases": test_cases,
        "seed": seed,
        "shape": list(shape),
        "spacing": list(spacing),
        "orientation": orientation,
        "folds": folds,
        "dtype": dtype,
        "channels": list(layout.channels),
        "labels": dict(spec.labels),
        "generator": "brainbundles.data.phantom",
    }
    write_json_atomic(manifest, out / "phantom.json")
    write_json_atomic(datalist, out / "datalist.json")
    return out
