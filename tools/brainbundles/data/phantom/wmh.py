"""A phantom's white-matter hyperintensities (``make_phantom(..., wmh=True)``).

Added to the healthy anatomy as the tumour is (:attr:`Phantom.wmh`: 1 WMH, 2 other pathology, the
WMH challenge's labels), in white matter only: a periventricular band 0.04-0.10 R thick around the
lateral ventricles, kept where a smooth field of position exceeds a per-case level (so caps and bands
of varying extent, some cases mild), and 4-12 deep ellipsoids of 0.04-0.08 R (3-7 mm at the default
FOV) centred in the deep hemispheric region; in 40% of the cases also a lacune (other pathology):
a small fluid-filled cavity in deep white or grey matter with a rim of gliosis that is bright on
FLAIR like the WMH. WMH are bright on FLAIR (1.15-1.4 x GM), T2 and PD and mildly dark on T1
(between GM and WM); the lacune has fluid signal (dark on FLAIR). The lesions are analytic
functions of position like the rest, from their own random streams (geometry: stream 2; intensities:
40 + contrast), so the healthy anatomy and its intensities do not change.
"""

from __future__ import annotations

import numpy as np

from brainbundles.data.phantom.anatomy import _Anatomy, _deep_centre, _stamp, _sweep
from brainbundles.data.phantom.grid import _Fourier
from brainbundles.data.phantom.tissue import _DGM, _GLIOSIS, _LACUNE, _WM, _WMH, _WMH_LABEL


def _add_wmh(seed: int, anatomy: _Anatomy) -> None:
    """Put the white-matter lesions of case ``seed`` (rng stream 2) into ``anatomy``: a patchy
    periventricular band and deep lesions (WMH, in white matter only) and, in 40% of the cases, a lacune
    with a gliotic rim (other pathology) in deep white or grey matter."""
    rng = np.random.default_rng([seed, 2])
    grid, axes, scale = anatomy.grid, anatomy.u, anatomy.scale
    tissue = anatomy.tissue
    white = (tissue == _WM) & ~anatomy.ventricles

    # periventricular: a band of 0.04-0.10 R around the lateral ventricles, kept where a smooth field of
    # position is above a per-case level (so it is patchy: caps and bands of varying extent)
    band = rng.uniform(0.04, 0.10) * scale
    patch_field = _Fourier.draw(rng, 12, rng.uniform(1.5, 2.5))
    patch_level = rng.uniform(-0.6, 0.3)
    q = np.full(grid.shape, np.inf, dtype=np.float32)
    for ctrl in anatomy.ventricle_ctrl:
        if len(ctrl) > 1:  # the lateral ventricles (the third ventricle is one stamped row)
            _sweep(q, axes, ctrl + np.r_[np.zeros(3), band])
    idx = np.flatnonzero((q < 1.0) & white)
    ii, jj, kk = np.unravel_index(idx, grid.shape)
    p = (axes[0][ii].astype(np.float32), axes[1][jj].astype(np.float32), axes[2][kk].astype(np.float32))
    lesion = np.zeros(grid.shape, dtype=bool)
    lesion.ravel()[idx[patch_field(p) > patch_level]] = True

    # deep (and juxtaventricular) lesions: 4-12 ellipsoids of 0.04-0.08 R, clipped to the white matter
    q.fill(np.inf)
    for _ in range(int(rng.integers(4, 13))):
        centre = _deep_centre(rng, anatomy.flat_bottom)
        _stamp(q, axes, centre, rng.uniform(0.04, 0.08) * rng.uniform(0.75, 1.3, 3) * scale)
    lesion |= (q < 1.0) & white

    # other pathology (label 2): a lacune, fluid-filled, with a rim of gliosis bright on FLAIR
    if rng.uniform() < 0.4:
        q.fill(np.inf)
        _stamp(q, axes, _deep_centre(rng, anatomy.flat_bottom), rng.uniform(0.035, 0.055) * scale)
        region = (q < 1.0) & (white | (tissue == _DGM))
        lesion &= ~region
        tissue[region] = _GLIOSIS
        tissue[region & (q < 0.45)] = _LACUNE
    tissue[lesion] = _WMH
    anatomy.wmh = np.flatnonzero(_WMH_LABEL[tissue])
