"""A phantom's brain tumour (``make_phantom(..., tumour=True)``).

One glioblastoma-like tumour per case, in the white matter / deep region of one hemisphere (both drawn
per case), added to the healthy anatomy (:mod:`.anatomy`), which stays the same (so does
:attr:`Phantom.label`; :attr:`Phantom.tumour` holds 1 necrosis, 2 edema, 3 enhancing). In units of the
(geometric mean) brain radius R, about 71 mm for a FOV of 160 x 192 x 160 mm:

* the *core* is an ellipsoid (mean radius 0.19-0.28 R, axes +-12%, randomly rotated) whose radius is
  perturbed by smooth noise over the directions (+-7-14%, up to twice that);
* in ~80% of the cases the core has a *necrotic* centre and an *enhancing rim* of radial thickness
  0.072-0.09 R, varying around the rim (+-30%) but never under 0.07 R (~5 mm at that FOV, 4.5 mm at the
  default one: at least 2 voxels at 2 mm); otherwise (~20%) the core, smaller (x 0.65-0.85), is solid
  enhancing tumour;
* *edema* extends 0.06-0.18 R beyond the core (varying with direction by +-40-60%, at least 0.03 R,
  roughened by a finer noise field of position), only into white matter and deep grey matter (it
  spares the cortex and never enters CSF), and only where it connects to the core;
* the core replaces any tissue but the ventricles (it effaces the sulci it reaches: no other mass
  effect); its centre is drawn, analytically (independently of the grid), where the core stays 0.11 R
  inside the brain's ellipsoid (so off the surface CSF) and 0.12 R off the midline, and where the
  ventricles do not reach the necrosis (they may cut into the rim); the tumour shrinks by 10% after
  every 50 rejected draws.

At the real brain scale the whole tumour (WT) is about 25-80 mL (median ~47), the tumour core (TC)
5-26 mL (median ~14; 15-50% of WT), the necrosis 0-9 mL. Its intensities: :mod:`.render`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.ndimage import label as label_components

from brainbundles.data.phantom.anatomy import _Anatomy
from brainbundles.data.phantom.grid import _CONNECT6, _Fourier, _random_rotation
from brainbundles.data.phantom.tissue import _DGM, _EDEMA, _ENH, _NEC, _WM


def _sphere_directions(n: int) -> np.ndarray:
    """``n`` roughly uniform unit vectors (Fibonacci sphere), ``(n, 3)``."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = np.pi * (1.0 + math.sqrt(5.0)) * k
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


_DIRECTIONS = _sphere_directions(512)


@dataclass(frozen=True)
class _TumourShape:
    """A tumour's geometry in isotropic units (the geometric mean brain radius), about its centre.

    In the tumour's frame (``d = rot @ (p - centre)``, ``r = |d|``, ``v = d / r``) the core (necrosis and
    enhancing rim) is ``r < core(v)``: a smooth-noise-perturbed ellipsoid; necrosis is ``r < core(v) -
    rim(v)``; edema is ``r < core(v) + ext(v) + jitter(p)`` (a shell of varying thickness, roughened by a
    field of position so that it is not star-shaped), in white matter and deep grey matter only.
    """

    rot: np.ndarray
    r_core: float
    axes: np.ndarray
    core_field: _Fourier
    core_amp: float
    necrotic: bool
    rim: float
    rim_field: _Fourier
    ext: float
    ext_field: _Fourier
    ext_amp: float
    rough_field: _Fourier
    rough_amp: float

    def radii(self, v: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Core, necrosis and edema radii along the unit vectors ``v`` (tumour frame; no roughness)."""
        ell = np.sqrt(sum((v[k] / np.float32(self.axes[k])) ** 2 for k in range(3)))
        core = (
            np.float32(self.r_core)
            * (1.0 + np.float32(self.core_amp) * np.clip(self.core_field(v), -2.0, 2.0))
            / ell
        )
        rim = np.float32(self.rim) * (1.0 + np.float32(0.3) * np.clip(self.rim_field(v), -1.5, 1.5))
        nec = core - np.maximum(rim, np.float32(_RIM_MIN))
        if not self.necrotic:
            nec = np.full_like(core, -1.0)
        ext = np.float32(self.ext) * (1.0 + np.float32(self.ext_amp) * np.clip(self.ext_field(v), -1.5, 2.0))
        edema = core + np.maximum(ext, np.float32(_EDEMA_MIN))
        return core, nec, edema

    def shrunk(self, factor: float) -> _TumourShape:
        return replace(self, r_core=self.r_core * factor, ext=self.ext * factor)


#: least radial thickness of the enhancing rim and of the edema around the core (isotropic units: at the
#: real brain scale, mean radius ~71 mm, 0.07 is ~5 mm; ~4.5 mm at the default shape and spacing)
_RIM_MIN = 0.07
_EDEMA_MIN = 0.03
#: the core stays this far (isotropic units) inside the brain's ellipsoid and off the midline
_CORE_DEPTH = 0.14
_CORE_MIDLINE = 0.12


def _draw_tumour(rng: np.random.Generator) -> tuple[float, _TumourShape]:
    """The hemisphere (+1 right, -1 left) and shape of a case's tumour (drawn in a fixed order)."""
    side = float(rng.choice([-1.0, 1.0]))
    necrotic = bool(rng.uniform() >= 0.2)  # ~20% of the cases: a solid enhancing core, no necrosis
    r_core = rng.uniform(0.19, 0.28) * (1.0 if necrotic else rng.uniform(0.65, 0.85))
    axes = np.exp(rng.normal(0.0, 0.12, 3))
    shape = _TumourShape(
        rot=_random_rotation(rng),
        r_core=r_core,
        axes=axes / np.exp(np.mean(np.log(axes))),
        core_field=_Fourier.draw(rng, 12, rng.uniform(0.6, 0.9)),
        core_amp=rng.uniform(0.07, 0.14),
        necrotic=necrotic,
        rim=rng.uniform(0.072, 0.09),
        rim_field=_Fourier.draw(rng, 8, 0.7),
        ext=rng.uniform(0.06, 0.18),
        ext_field=_Fourier.draw(rng, 16, rng.uniform(0.9, 1.3)),
        ext_amp=rng.uniform(0.4, 0.6),
        rough_field=_Fourier.draw(rng, 16, 3.0),
        rough_amp=rng.uniform(0.03, 0.05),
    )
    return side, shape


def _place_tumour(
    rng: np.random.Generator, anatomy: _Anatomy, side: float, shape: _TumourShape
) -> tuple[np.ndarray, _TumourShape]:
    """A centre (isotropic units, FOV centre at 0) in the ``side`` hemisphere where the core stays off the
    surface and the midline and the ventricles do not reach the necrosis (they may cut into the rim): drawn
    at random, the tumour shrinking by 10% after every 50 misses. Independent of the grid (analytic)."""
    scale = anatomy.scale.astype(np.float64)
    dirs = _DIRECTIONS.T.astype(np.float32)
    # ventricles as samples (centre, largest half-axis) along their curves, in isotropic units
    vent_c, vent_r = [], []
    for ctrl in anatomy.ventricle_ctrl:
        if len(ctrl) > 1:
            seg = np.linalg.norm(np.diff(ctrl[:, :3], axis=0), axis=1)
            t = np.concatenate([[0.0], np.cumsum(seg)])
            ctrl = CubicSpline(t, ctrl, axis=0, bc_type="natural")(np.linspace(0.0, t[-1], 40))
        vent_c.append(ctrl[:, :3] / scale)
        vent_r.append((ctrl[:, 3:] / scale).max(axis=1))
    vc, vr = np.concatenate(vent_c), np.concatenate(vent_r)
    kz = anatomy.flat_bottom
    for attempt in range(400):
        if attempt % 50 == 0:
            if attempt:
                shape = shape.shrunk(0.9)
            core, nec, _ = (a.astype(np.float64) for a in shape.radii(dirs))
            boundary = shape.rot.T @ (_DIRECTIONS.T * core)  # core boundary about the centre, world axes
            keep_out = (nec.max() if shape.necrotic else 0.6 * core.max()) + 0.02
        centre = np.array([side * rng.uniform(0.2, 0.7), rng.uniform(-0.6, 0.6), rng.uniform(-0.35, 0.5)])
        pts = centre[:, None] + boundary
        u = pts * scale[:, None]
        rk = np.sqrt(u[0] ** 2 + u[1] ** 2 + (np.where(u[2] < 0, kz, 1.0) * u[2]) ** 2)
        if rk.max() > 1.0 - _CORE_DEPTH or (side * pts[0]).min() < _CORE_MIDLINE:
            continue
        if (np.linalg.norm(vc - centre, axis=1) - vr).min() < keep_out:
            continue
        return centre, shape
    raise RuntimeError("no place found for the tumour")  # pragma: no cover - the shrinking always ends it


def _add_tumour(seed: int, anatomy: _Anatomy) -> None:
    """Put the tumour of case ``seed`` (rng stream 1) into ``anatomy``: necrosis, enhancing rim and edema
    tissue classes replace the healthy tissue (see the module docstring)."""
    rng = np.random.default_rng([seed, 1])
    side, shape = _draw_tumour(rng)
    centre, shape = _place_tumour(rng, anatomy, side, shape)
    grid, scale = anatomy.grid, anatomy.scale.astype(np.float64)
    edema = shape.radii(_DIRECTIONS.T.astype(np.float32))[2]
    reach = float(edema.max()) + 2.0 * shape.rough_amp + 0.01

    # bounding box on the grid
    sl = []
    for a in range(3):
        ax = anatomy.u[a]
        lo, hi = (centre[a] - reach) * scale[a], (centre[a] + reach) * scale[a]
        sl.append(slice(int(np.searchsorted(ax, lo, "left")), int(np.searchsorted(ax, hi, "right"))))
    box = tuple(sl)
    tis = anatomy.tissue[box]
    vent = anatomy.ventricles[box]
    pc = [(anatomy.u[a][sl[a]] / scale[a] - centre[a]).astype(np.float32) for a in range(3)]
    p = np.meshgrid(*pc, indexing="ij", sparse=True)
    r2 = p[0] ** 2 + p[1] ** 2 + p[2] ** 2
    inside = np.flatnonzero((r2 < np.float32(reach**2)) & (tis > 0))
    ii, jj, kk = np.unravel_index(inside, tis.shape)
    q = (pc[0][ii], pc[1][jj], pc[2][kk])  # offsets from the centre, world axes
    rot = shape.rot.astype(np.float32)
    d = [rot[k, 0] * q[0] + rot[k, 1] * q[1] + rot[k, 2] * q[2] for k in range(3)]
    r = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2)
    rs = np.maximum(r, np.float32(1e-6))
    v = [c / rs for c in d]
    v[2] = np.where(r > 0, v[2], np.float32(1.0))
    b_core, b_nec, b_edema = shape.radii(v)
    b_edema = np.maximum(
        b_edema + np.float32(shape.rough_amp) * np.clip(shape.rough_field(q), -2.0, 2.0),
        b_core + np.float32(_EDEMA_MIN),
    )
    t = tis.ravel()[inside]
    healthy = ~vent.ravel()[inside]
    core_m = (r < b_core) & healthy
    nec_m = core_m & (r < b_nec)
    edema_m = (r < b_edema) & ~core_m & ((t == _WM) | (t == _DGM))

    new = np.zeros(tis.shape, dtype=np.int8)
    flat = new.ravel()
    flat[inside[edema_m]] = _EDEMA
    flat[inside[core_m]] = _ENH
    flat[inside[nec_m]] = _NEC
    # edema only where it connects to the core through white / deep grey matter
    comp, _ = label_components(new > 0, _CONNECT6)
    keep = np.unique(comp[(new == _ENH) | (new == _NEC)])
    new[~np.isin(comp, keep[keep > 0])] = 0
    tis[new > 0] = new[new > 0]
    full = np.zeros(grid.shape, dtype=bool)
    full[box] = new > 0
    anatomy.tumour = np.flatnonzero(full)
