"""One phantom case: :class:`Phantom` and :func:`make_phantom`, the checks of its arguments and its geometry.

``shape`` and ``spacing`` are given along the world axes R, A, S (x, y, z): the phantom is generated on
that RAS grid and then array and affine are reoriented together to ``orientation`` (nibabel axis codes),
so the world-space anatomy does not depend on ``orientation``; the returned arrays have ``shape``
permuted accordingly (e.g. ``"PIR"`` gives ``(shape[1], shape[2], shape[0])``). The affine puts the FOV
centre at world (0, 0, 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

from brainbundles.data.phantom.anatomy import _build_anatomy
from brainbundles.data.phantom.grid import _Grid
from brainbundles.data.phantom.ms import _add_ms
from brainbundles.data.phantom.render import CONTRASTS, _render_contrast
from brainbundles.data.phantom.tissue import _MS_LABEL, _TISSUE_LABEL, _TUMOUR_LABEL, _WMH_LABEL
from brainbundles.data.phantom.tumour import _add_tumour
from brainbundles.data.phantom.wmh import _add_wmh

_DEFAULT_SHAPE = (96, 112, 96)
_DEFAULT_SPACING = (1.5, 1.5, 1.5)
_MIN_SIZE = 8  # voxels per axis


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
