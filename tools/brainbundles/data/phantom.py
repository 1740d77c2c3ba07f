"""Synthetic, skull-stripped brain MRI phantoms, deterministic per seed.

:func:`make_phantom` renders one case: a 4-class tissue label map (0 background, 1 CSF, 2 GM, 3 WM) and
any of the contrasts in :data:`CONTRASTS`; with ``tumour=True`` also a brain tumour (BraTS-like) and its
label map, with ``wmh=True`` white-matter hyperintensities (WMH challenge-like) and theirs, with ``ms=True``
multiple-sclerosis lesions (MSSEG-like) and their mask.
:func:`write_phantom_dataset` writes a whole data set on disk in the layout of a real one (``"tissue"``:
IBSR18; ``"brats"``: BraTS 2018-2021; ``"wmh"``: the MICCAI 2017 WMH challenge; ``"ms"``: the MICCAI 2016
MSSEG challenge), with a manifest and a MONAI (Decathlon-style) datalist.

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

Tumour (``tumour=True``)
    One glioblastoma-like tumour per case, in the white matter / deep region of one hemisphere (both drawn
    per case), added to the healthy anatomy above, which stays the same (so does :attr:`Phantom.label`;
    :attr:`Phantom.tumour` holds 1 necrosis, 2 edema, 3 enhancing). In units of the (geometric mean) brain
    radius R, about 71 mm for a FOV of 160 x 192 x 160 mm:

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
    5-26 mL (median ~14; 15-50% of WT), the necrosis 0-9 mL.

White-matter hyperintensities (``wmh=True``)
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

Multiple-sclerosis lesions (``ms=True``)
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
    its means between a mild and a severe level (:data:`_MS_MEANS`): bright on FLAIR (1.1-1.45 x GM), T2
    (between GM and CSF; CSF stays brightest) and PD (1.08-1.3 x GM), mildly dark on T1 and T1c (between GM
    and WM, the severe ones nearer GM; no enhancement); a smooth texture as the WMH's, and the partial
    volume, bias field and noise of the rest give them soft edges. The number, kinds and severities of the
    lesions come from stream 3 and do not depend on the grid; each lesion's candidates come from its own
    stream ``[seed, 3, k + 1]`` but are checked (and juxtacortical ones placed) on the grid, so another grid
    of the same FOV gives mostly, not exactly, the same lesions. Intensities: streams 50 + contrast.

Intensities
    Per contrast, tissue means with realistic *relative* order (T1: WM > GM > CSF; T2: CSF > GM > WM;
    FLAIR: GM > WM > CSF; PD: CSF >= GM > WM, low contrast; T1c: T1 plus enhancing choroid plexus and
    vessels), jittered per case (+-10%, order kept), partial volume (the piecewise-constant image smoothed
    with a Gaussian of 0.5-0.7 voxel), a smooth multiplicative bias field (about +-15-20%), Rician (default)
    or Gaussian noise with an SNR of 15-30 relative to the brightest tissue (WM on T1), and a random overall
    scale (brightest tissue mean 300-1200). Voxels outside the brain are exactly 0 (skull-stripped: the
    brain mask is applied after the noise).

    Tumour means are set relative to the case's tissue means (:data:`_TUMOUR_MEANS`, each drawn per case
    within a range that keeps the order), BraTS-like: T1 hypo-intense (necrosis darkest, between CSF and
    GM; enhancing ~GM; edema between GM and WM); T1c as T1 but the rim enhancing (1.5-1.9 x WM); T2 edema
    bright (0.70-0.82 x CSF), necrosis brighter (0.86-0.95 x CSF), enhancing between GM and edema; FLAIR
    edema bright (1.2-1.45 x GM), necrosis dark-ish (between CSF and WM: suppressed fluid), enhancing
    between GM and edema; PD edema brighter than WM (1.12-1.2 x WM), necrosis ~CSF. A smooth texture (+-6%, up to
    twice that) varies them inside the tumour; partial volume, bias field and noise (whose level follows
    the healthy tissue) are applied as to the rest.

Geometry
    ``shape`` and ``spacing`` are given along the world axes R, A, S (x, y, z): the phantom is generated on
    that RAS grid and then array and affine are reoriented together to ``orientation`` (nibabel axis codes),
    so the world-space anatomy does not depend on ``orientation``; the returned arrays have ``shape``
    permuted accordingly (e.g. ``"PIR"`` gives ``(shape[1], shape[2], shape[0])``). The affine puts the FOV
    centre at world (0, 0, 0).

Randomness comes only from ``numpy.random.default_rng`` seeded with ``[seed, stream]`` (one stream for the
anatomy, one per contrast for its intensities and one for its noise; with a tumour, WMH or MS lesions, one
for their geometry and one per contrast for their intensities), so a contrast renders the same whatever
other contrasts are asked for, and the lesion options leave the healthy anatomy and its intensities as they
are.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform
from scipy.interpolate import CubicSpline
from scipy.ndimage import binary_dilation, gaussian_filter, generate_binary_structure
from scipy.ndimage import label as label_components
from scipy.spatial import cKDTree

from brainbundles.data.folds import assign_folds
from brainbundles.data.labels import (
    BRATS_CHANNELS,
    BRATS_LABELS,
    IBSR_CHANNELS,
    MS_CHANNELS,
    MS_LABELS,
    PHANTOM_LABELS,
    WMH_CHANNELS,
    WMH_LABELS,
    from_internal,
)
from brainbundles.fileio import atomic_write, write_json_atomic

logger = logging.getLogger("brainbundles")

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

_DEFAULT_SHAPE = (96, 112, 96)
_DEFAULT_SPACING = (1.5, 1.5, 1.5)
_MIN_SIZE = 8  # voxels per axis

# ------------------------------------------------------------------------------------------------ tissues

# internal tissue classes (values of the tissue map); each maps to a label value. The tumour classes only
# appear with ``tumour=True``: :attr:`Phantom.label` is taken before they are added (the healthy anatomy)
_BG, _CSF, _GM, _WM, _DGM, _CHOROID, _VESSEL, _NEC, _EDEMA, _ENH, _WMH, _LACUNE, _GLIOSIS, _MS = range(14)
_TISSUE_LABEL = np.array([0, 1, 2, 3, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0], dtype=np.uint8)
#: tumour classes -> :attr:`Phantom.tumour` values (the internal numbering of ``brainbundles.data.labels``:
#: 1 necrosis / non-enhancing core, 2 edema, 3 enhancing)
_TUMOUR_LABEL = np.array([0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 0, 0, 0, 0], dtype=np.uint8)
#: white-matter lesion classes -> :attr:`Phantom.wmh` values (the WMH challenge's: 1 WMH, 2 other pathology)
_WMH_LABEL = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 0], dtype=np.uint8)
#: multiple-sclerosis lesion class -> :attr:`Phantom.ms` values (MSSEG's consensus: 1 lesion)
_MS_LABEL = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], dtype=np.uint8)
_CONNECT6 = generate_binary_structure(3, 1)

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
#: tumour means per contrast, relative to the case's (jittered) means: ``class: (a, b, lo, hi)`` gives
#: ``mean[a] + f * (mean[b] - mean[a])`` with ``f`` drawn uniformly in ``[lo, hi]`` per case (``a = _BG``,
#: whose mean is 0, makes it ``f * mean[b]``); a class may refer to the classes listed before it. The
#: ranges keep the orders stated below whatever the draw (the tissue means are at least 4% apart).
_TUMOUR_MEANS: dict[str, dict[int, tuple[int, int, float, float]]] = {
    # T1: hypo-intense; necrosis darkest (between CSF and GM), enhancing ~GM, edema between GM and WM
    "t1": {_NEC: (_CSF, _GM, 0.25, 0.5), _ENH: (_BG, _GM, 0.88, 0.98), _EDEMA: (_GM, _WM, 0.3, 0.55)},
    # T1c: as T1, the enhancing rim bright (1.5-1.9 x WM)
    "t1c": {_NEC: (_CSF, _GM, 0.2, 0.45), _ENH: (_BG, _WM, 1.5, 1.9), _EDEMA: (_GM, _WM, 0.3, 0.55)},
    # T2: edema bright (0.70-0.82 x CSF), necrosis brighter (0.86-0.95 x CSF), enhancing between GM and edema
    "t2": {_EDEMA: (_BG, _CSF, 0.7, 0.82), _NEC: (_BG, _CSF, 0.86, 0.95), _ENH: (_GM, _EDEMA, 0.3, 0.6)},
    # FLAIR: edema bright (1.2-1.45 x GM), necrosis dark-ish (suppressed fluid: between CSF and WM),
    # enhancing bright-ish (between GM and edema)
    "flair": {_EDEMA: (_BG, _GM, 1.2, 1.45), _NEC: (_CSF, _WM, 0.35, 0.7), _ENH: (_GM, _EDEMA, 0.15, 0.5)},
    # PD: edema brighter than WM (1.12-1.2 x WM, ~GM-CSF), necrosis ~CSF, enhancing between WM and GM
    "pd": {_EDEMA: (_BG, _WM, 1.12, 1.2), _NEC: (_GM, _CSF, 0.8, 1.05), _ENH: (_WM, _GM, 0.6, 1.0)},
}
#: amplitude of the smooth intensity texture inside the tumour (relative)
_TUMOUR_TEXTURE = 0.06
#: white-matter lesion means per contrast, as :data:`_TUMOUR_MEANS`: WMH hyper-intense on FLAIR (1.15-1.4 x
#: GM), T2 and PD, mildly hypo-intense on T1 (between GM and WM); the other pathology is a lacune (a cavity
#: with fluid signal, dark on FLAIR) with a gliotic rim that is bright on FLAIR, as WMH are
_WMH_MEANS: dict[str, dict[int, tuple[int, int, float, float]]] = {
    "t1": {_WMH: (_GM, _WM, 0.3, 0.65), _LACUNE: (_BG, _CSF, 1.0, 1.2), _GLIOSIS: (_CSF, _GM, 0.5, 0.9)},
    "t1c": {_WMH: (_GM, _WM, 0.3, 0.65), _LACUNE: (_BG, _CSF, 1.0, 1.2), _GLIOSIS: (_CSF, _GM, 0.5, 0.9)},
    "t2": {_WMH: (_GM, _CSF, 0.25, 0.55), _LACUNE: (_BG, _CSF, 0.9, 1.0), _GLIOSIS: (_GM, _CSF, 0.3, 0.6)},
    "flair": {_WMH: (_BG, _GM, 1.15, 1.4), _LACUNE: (_CSF, _WM, 0.0, 0.3), _GLIOSIS: (_BG, _GM, 1.1, 1.3)},
    "pd": {_WMH: (_GM, _CSF, 0.4, 1.0), _LACUNE: (_BG, _CSF, 0.95, 1.0), _GLIOSIS: (_GM, _CSF, 0.3, 0.8)},
}

#: MS lesion means per contrast, relative to the case's tissue means: ``(a, b, mild, severe)`` gives
#: ``mean[a] + f * (mean[b] - mean[a])`` where ``f`` goes from ``mild`` to ``severe`` with the lesion voxel's
#: severity (drawn per lesion, lower towards its edge). FLAIR bright (1.1-1.45 x GM), T2 bright (between GM
#: and CSF, CSF brightest), PD bright (1.08-1.3 x GM, about CSF or above), T1 (and T1c: no enhancement)
#: mildly dark (between GM and WM, the severe ones nearer GM)
_MS_MEANS: dict[str, tuple[int, int, float, float]] = {
    "t1": (_GM, _WM, 0.7, 0.15),
    "t1c": (_GM, _WM, 0.7, 0.15),
    "t2": (_GM, _CSF, 0.25, 0.65),
    "flair": (_BG, _GM, 1.1, 1.45),
    "pd": (_BG, _GM, 1.08, 1.3),
}

# ------------------------------------------------------------------------------------------------ public API


@dataclass
class Phantom:
    """One synthetic case.

    Attributes:
        images: contrast name -> float32 image, oriented as requested (0 outside the brain).
        label: uint8 tissue labels (0 background, 1 CSF, 2 GM, 3 WM), same shape as the images; with a
            tumour, those of the healthy anatomy (the tumour's voxels keep the tissue it replaced).
        affine: 4x4 float64 voxel-to-world (RAS+ mm) affine of the arrays.
        tumour: uint8 tumour labels in the internal numbering of :mod:`brainbundles.data.labels` (0
            background, 1 necrosis, 2 edema, 3 enhancing), same shape as the images; None without a tumour.
        wmh: uint8 white-matter lesion labels as in the WMH challenge (0 background, 1 white-matter
            hyperintensity, 2 other pathology: a lacune with its rim), same shape as the images; None
            without ``wmh=True``.
        ms: uint8 multiple-sclerosis lesion mask (0 background, 1 lesion: MSSEG's consensus labels), same
            shape as the images; None without ``ms=True``.
    """

    images: dict[str, np.ndarray]
    label: np.ndarray
    affine: np.ndarray
    tumour: np.ndarray | None = None
    wmh: np.ndarray | None = None
    ms: np.ndarray | None = None


def make_phantom(
    seed: int,
    shape: Sequence[int] = _DEFAULT_SHAPE,
    spacing: Sequence[float] = _DEFAULT_SPACING,
    orientation: str = "RAS",
    contrasts: Sequence[str] = CONTRASTS,
    *,
    noise: str = "rician",
    tumour: bool = False,
    wmh: bool = False,
    ms: bool = False,
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
        tumour: add a brain tumour (necrosis, enhancing rim, edema; see the module docstring); without it
            the phantom is exactly the same as before the option existed.
        wmh: add white-matter hyperintensities (periventricular and deep) and, in some cases, a lacune
            (other pathology; see the module docstring); not together with ``tumour``.
        ms: add multiple-sclerosis lesions (periventricular, juxtacortical and deep ovoids; see the module
            docstring); not together with ``tumour`` or ``wmh``.

    Returns:
        a :class:`Phantom`; its arrays have ``shape`` permuted to ``orientation``.

    Raises:
        ValueError: a bad ``seed``, ``shape``, ``spacing``, ``orientation``, ``contrasts``, ``noise``,
            ``tumour``, ``wmh`` or ``ms``, or lesions of two kinds asked for.
    """
    seed = _check_seed(seed)
    grid = _Grid(_check_shape(shape), _check_spacing(spacing))
    codes = _check_orientation(orientation)
    wanted = _check_contrasts(contrasts)
    if noise not in ("rician", "gaussian", "none"):
        raise ValueError(f"noise: expected 'rician', 'gaussian' or 'none', got {noise!r}")
    if not isinstance(tumour, bool | np.bool_):
        raise ValueError(f"tumour: expected True or False, got {tumour!r}")
    if not isinstance(wmh, bool | np.bool_):
        raise ValueError(f"wmh: expected True or False, got {wmh!r}")
    if wmh and tumour:
        raise ValueError("wmh: white-matter lesions and a tumour cannot be combined (tumour=True, wmh=True)")
    if not isinstance(ms, bool | np.bool_):
        raise ValueError(f"ms: expected True or False, got {ms!r}")
    if ms and (tumour or wmh):
        other = "tumour" if tumour else "wmh"
        raise ValueError(f"ms: MS lesions cannot be combined with {other}=True (ms=True, {other}=True)")

    anatomy = _build_anatomy(seed, grid)
    label = _TISSUE_LABEL[anatomy.tissue]
    if tumour:
        _add_tumour(seed, anatomy)
    if wmh:
        _add_wmh(seed, anatomy)
    if ms:
        _add_ms(seed, anatomy)
    images = {c: _render_contrast(seed, anatomy, c, noise) for c in wanted}

    ornt = ornt_transform(axcodes2ornt(tuple("RAS")), axcodes2ornt(codes))
    affine = grid.affine() @ inv_ornt_aff(ornt, grid.shape)

    def orient(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(apply_orientation(a, ornt))

    return Phantom(
        images={c: orient(im) for c, im in images.items()},
        label=orient(label),
        affine=affine.astype(np.float64),
        tumour=orient(_TUMOUR_LABEL[anatomy.tissue]) if tumour else None,
        wmh=orient(_WMH_LABEL[anatomy.tissue]) if wmh else None,
        ms=orient(_MS_LABEL[anatomy.tissue]) if ms else None,
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


# ------------------------------------------------------------------------------------------------ tumour


def _sphere_directions(n: int) -> np.ndarray:
    """``n`` roughly uniform unit vectors (Fibonacci sphere), ``(n, 3)``."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = np.pi * (1.0 + math.sqrt(5.0)) * k
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


_DIRECTIONS = _sphere_directions(512)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3-D rotation matrix."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


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


# ------------------------------------------------------------------------------------------------ WMH


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


# ------------------------------------------------------------------------------------------------ MS lesions

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


def _lesion_means(
    rng: np.random.Generator, table: dict[int, tuple[int, int, float, float]], means: np.ndarray
) -> None:
    """Fill in lesion classes' means (a contrast's :data:`_TUMOUR_MEANS` or :data:`_WMH_MEANS`) from the
    case's tissue means."""
    for cls, (a, b, lo, hi) in table.items():
        means[cls] = means[a] + rng.uniform(lo, hi) * (means[b] - means[a])


def _lesion_texture(rng: np.random.Generator, anatomy: _Anatomy, t: np.ndarray) -> np.ndarray:
    """A smooth relative texture (1 +- 6%, up to twice that) at the flat indices ``t``."""
    texture = _Fourier.draw(rng, 12, rng.uniform(4.0, 6.0))
    ti, tj, tk = np.unravel_index(t, anatomy.grid.shape)
    ux, uy, uz = anatomy.u
    tp = (ux[ti].astype(np.float32), uy[tj].astype(np.float32), uz[tk].astype(np.float32))
    return 1.0 + np.float32(_TUMOUR_TEXTURE) * np.clip(texture(tp), -2.0, 2.0)


def _render_contrast(seed: int, anatomy: _Anatomy, contrast: str, noise: str) -> np.ndarray:
    """One contrast on the RAS grid: tissue means, partial volume, bias field, noise, brain mask."""
    stream = 10 + CONTRASTS.index(contrast)
    rng = np.random.default_rng([seed, stream])
    means = _tissue_means(rng, contrast)
    peak = means.max()  # the noise level follows the healthy tissue
    pv_sigma = rng.uniform(0.5, 0.7)
    bias_field = _Fourier.draw(rng, 8, 0.35)
    bias_amp = rng.uniform(0.06, 0.09)
    snr = rng.uniform(15.0, 30.0)

    ux, uy, uz = anatomy.u
    piecewise = means.astype(np.float32)[anatomy.tissue]
    # lesions draw from their own streams: the healthy tissue renders as without them
    for t, first, table in ((anatomy.tumour, 30, _TUMOUR_MEANS), (anatomy.wmh, 40, _WMH_MEANS)):
        if t is None:
            continue
        trng = np.random.default_rng([seed, first + CONTRASTS.index(contrast)])
        _lesion_means(trng, table[contrast], means)
        rel = _lesion_texture(trng, anatomy, t)
        piecewise.ravel()[t] = means.astype(np.float32)[anatomy.tissue.ravel()[t]] * rel
    if anatomy.ms is not None and anatomy.ms_level is not None:  # per voxel: the lesion's severity
        trng = np.random.default_rng([seed, 50 + CONTRASTS.index(contrast)])
        a, b, mild, severe = _MS_MEANS[contrast]
        f = np.float32(mild) + np.float32(severe - mild) * anatomy.ms_level
        lesion = np.float32(means[a]) + f * np.float32(means[b] - means[a])
        piecewise.ravel()[anatomy.ms] = lesion * _lesion_texture(trng, anatomy, anatomy.ms)
    img = gaussian_filter(piecewise, pv_sigma, mode="constant")
    idx = anatomy.brain
    ii, jj, kk = np.unravel_index(idx, anatomy.grid.shape)
    p = (ux[ii].astype(np.float32), uy[jj].astype(np.float32), uz[kk].astype(np.float32))
    vals = img.ravel()[idx] * np.exp(np.float32(bias_amp) * np.clip(bias_field(p), -2.5, 2.5))
    if noise != "none":
        sigma = np.float32(peak / snr)
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
    #: the datalist layout's channels when the files hold only some of them (``channels``, in this order):
    #: the datalist then lists these and every item names its own (as ``make_datalist`` does)
    datalist_channels: tuple[str, ...] | None = None


def _ibsr_id(number: int, total: int) -> str:
    return f"IBSR_{number:0{max(2, len(str(total)))}d}"


def _brats_id(number: int, total: int) -> str:
    return f"BraTS_phantom_{number:0{max(3, len(str(total)))}d}"


def _wmh_id(number: int, total: int) -> str:
    return f"Phantom_{number:0{max(3, len(str(total)))}d}"


def _wmh_dir(cid: str) -> str:
    """The WMH challenge folder ``<site>/<id>`` of a case id ``<site>_<id>``."""
    return cid.replace("_", "/", 1)


_LAYOUTS: dict[str, _Layout] = {
    "ibsr18": _Layout(
        name="ibsr18",
        channels=IBSR_CHANNELS,
        case_id=_ibsr_id,
        image_files=lambda cid: (f"{cid}/{cid}_ana_strip.nii.gz",),
        label_file=lambda cid: f"{cid}/{cid}_seg_ana.nii.gz",
    ),
    "brats": _Layout(  # BraTS 2018-2021
        name="brats",
        channels=tuple(BRATS_CHANNELS),
        case_id=_brats_id,
        image_files=lambda cid: tuple(f"{cid}/{cid}_{s}.nii.gz" for s in ("t1", "t1ce", "t2", "flair")),
        label_file=lambda cid: f"{cid}/{cid}_seg.nii.gz",
    ),
    "wmh": _Layout(  # MICCAI 2017 WMH challenge: <site>/<id>/pre/{FLAIR,T1}.nii.gz, <site>/<id>/wmh.nii.gz
        name="wmh",
        channels=WMH_CHANNELS,
        case_id=_wmh_id,
        image_files=lambda cid: tuple(f"{_wmh_dir(cid)}/pre/{s}.nii.gz" for s in ("FLAIR", "T1")),
        label_file=lambda cid: f"{_wmh_dir(cid)}/wmh.nii.gz",
    ),
    "msseg2016": _Layout(  # MICCAI 2016 MSSEG: <case>/Preprocessed_Data/<SEQ>_preprocessed, <case>/Masks/
        name="msseg2016",
        channels=("FLAIR", "T1", "T2", "PD"),
        case_id=_wmh_id,  # Phantom_001, ...
        image_files=lambda cid: tuple(
            f"{cid}/Preprocessed_Data/{s}_preprocessed.nii.gz" for s in ("FLAIR", "T1", "T2", "DP")
        ),
        label_file=lambda cid: f"{cid}/Masks/Consensus.nii.gz",
        datalist_channels=tuple(MS_CHANNELS),  # no GADO (T1Gd) file
    ),
}


@dataclass(frozen=True)
class _Task:
    """A phantom data set kind: its layout, the contrast written for each channel and the labels.

    ``make_label`` turns a rendered :class:`Phantom` into the task's label map (in the file convention);
    ``tumour`` renders the phantoms with a tumour; ``label_convention`` (a key of
    ``brainbundles.data.labels.LABEL_CONVENTIONS``), when set, is recorded in the manifest, the datalist
    and every datalist item.
    """

    name: str
    layout: str
    contrasts: tuple[str, ...]  # one per layout channel
    labels: dict[str, str]
    make_label: Callable[[Phantom], np.ndarray] = lambda p: p.label
    tumour: bool = False
    wmh: bool = False
    ms: bool = False
    label_convention: str | None = None


def _brats2019_label(p: Phantom) -> np.ndarray:
    assert p.tumour is not None
    return from_internal(p.tumour, "brats2019")


def _wmh_label(p: Phantom) -> np.ndarray:
    assert p.wmh is not None
    return p.wmh


def _ms_label(p: Phantom) -> np.ndarray:
    assert p.ms is not None
    return p.ms


_TASKS: dict[str, _Task] = {
    "tissue": _Task(name="tissue", layout="ibsr18", contrasts=("t1",), labels=PHANTOM_LABELS),
    "brats": _Task(
        name="brats",
        layout="brats",
        contrasts=("t1", "t1c", "t2", "flair"),
        labels=BRATS_LABELS["brats2019"],
        make_label=_brats2019_label,
        tumour=True,
        label_convention="brats2019",
    ),
    "wmh": _Task(
        name="wmh",
        layout="wmh",
        contrasts=("flair", "t1"),
        labels=WMH_LABELS,
        make_label=_wmh_label,
        wmh=True,
    ),
    "ms": _Task(
        name="ms",
        layout="msseg2016",
        contrasts=("flair", "t1", "t2", "pd"),
        labels=MS_LABELS,
        make_label=_ms_label,
        ms=True,
    ),
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
    ``"brats"`` writes the BraTS 2018-2021 layout of tumour phantoms (``tumour=True``):
    ``out/BraTS_phantom_001/BraTS_phantom_001_{t1,t1ce,t2,flair}.nii.gz`` (channels T1, T1c, T2, FLAIR
    rendered from the contrasts t1, t1c, t2, flair) and ``..._seg.nii.gz`` (uint8 labels in the BraTS 2019
    convention: 1 necrosis / non-enhancing core, 2 edema, 4 enhancing); the manifest, the datalist and
    every datalist item carry ``"label_convention": "brats2019"``.
    ``"wmh"`` writes the WMH challenge layout of phantoms with white-matter lesions (``wmh=True``):
    ``out/Phantom/001/pre/{FLAIR,T1}.nii.gz`` and ``out/Phantom/001/wmh.nii.gz`` (uint8: 1 WMH, 2 other
    pathology), case ids ``Phantom_001, ...`` (as the ``"wmh"`` datalist layout names them).
    ``"ms"`` writes the MICCAI 2016 MSSEG layout of phantoms with multiple-sclerosis lesions (``ms=True``):
    ``out/Phantom_001/Preprocessed_Data/{FLAIR,T1,T2,DP}_preprocessed.nii.gz`` (the contrasts flair, t1,
    t2, pd; DP is MSSEG's name for PD) and ``out/Phantom_001/Masks/Consensus.nii.gz`` (uint8: 1 lesion),
    case ids ``Phantom_001, ...``; there is no GADO (T1Gd) file, so the datalist lists the ``"msseg2016"``
    layout's channels FLAIR, T1, T2, PD, T1Gd (so does the manifest) and every item its own
    (``"channels": ["FLAIR", "T1", "T2", "PD"]``), as ``make_datalist`` does for such cases.
    Case ``i`` (0-based) is :func:`make_phantom` of seed ``seed * 100003 + i``. Also written:
    ``out/phantom.json`` (manifest) and ``out/datalist.json``, a Decathlon-style datalist with paths
    relative to ``out``; the training cases get ``fold = rank % folds`` where ``rank`` is their position in
    ``numpy.random.default_rng(seed).permutation(cases)`` (:func:`brainbundles.data.folds.assign_folds`, as
    ``brainbundles.data.datalist.make_datalist`` deals folds). Every file is written atomically (temporary file in the same folder, then ``os.replace``);
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
    channels = list(layout.datalist_channels or layout.channels)
    total = cases + test_cases
    entries: list[dict[str, Any]] = []
    for i in range(total):
        cid = layout.case_id(i + 1, total)
        ph = make_phantom(
            _case_seed(seed, i),
            shape,
            spacing,
            orientation,
            spec.contrasts,
            tumour=spec.tumour,
            wmh=spec.wmh,
            ms=spec.ms,
        )
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
        entry: dict[str, Any] = {"image": list(images), "label": label_rel, "case": cid}
        if channels != list(layout.channels):
            entry["channels"] = list(layout.channels)
        if spec.label_convention is not None:
            entry["label_convention"] = spec.label_convention
        entries.append(entry)
        logger.info("phantom %d of %d written: %s", i + 1, total, cid)

    fold_of = assign_folds(cases, range(folds), np.random.default_rng(seed))
    training = [{**e, "fold": fold_of[i]} for i, e in enumerate(entries[:cases])]
    name = f"phantom-{task}"
    datalist = {
        "name": name,
        "layout": "phantom",  # make_datalist("phantom", out, folds, seed) rebuilds this same datalist
        "channels": channels,
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
        "channels": channels,
        "labels": dict(spec.labels),
        "generator": "brainbundles.data.phantom",
    }
    if spec.label_convention is not None:
        datalist["label_convention"] = manifest["label_convention"] = spec.label_convention
    write_json_atomic(manifest, out / "phantom.json")
    write_json_atomic(datalist, out / "datalist.json")
    return out
