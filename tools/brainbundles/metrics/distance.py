"""Surface-distance metrics (HD95) on binary masks, in millimetres.

Definitions used here
---------------------
* **Surface** of a mask: the foreground voxels removed by one binary erosion
  with the face-connected structuring element (6-connectivity in 3-D),
  i.e. ``mask XOR erode(mask)``, with everything outside the array treated as
  background (a mask touching the array border has a surface there). This is
  the same surface MONAI's ``get_mask_edges`` (without subvoxels) and MedPy use.
* **Directed surface distances** ``d(P→R)``: for every surface voxel of ``P``
  the Euclidean distance (voxel centres, in mm, honouring anisotropic spacing)
  to the nearest surface voxel of ``R``, from
  ``scipy.ndimage.distance_transform_edt(~surface_R, sampling=spacing)``.
* **HD95**, ``method="max"`` (default): ``max(P95(d(P→R)), P95(d(R→P)))``,
  the larger of the two directed 95th percentiles. This is what MONAI's
  ``compute_hausdorff_distance(percentile=95)``, the WMH Segmentation
  Challenge's ``evaluation.py`` and DeepMind's ``surface-distance``
  ``compute_robust_hausdorff`` (area-weighted there) compute.
* **HD95**, ``method="pooled"``: ``P95(d(P→R) ∪ d(R→P))``, the 95th
  percentile of both directed sets pooled together (MedPy's ``hd95``). It
  typically lies between the two directed percentiles, so it is usually at
  most the ``"max"`` value, and can be much smaller when the far-away surface
  voxels are a small part of the pooled set (e.g. a small false-positive blob
  next to a large structure).

* **HD95**, ``method="surfel"``: DeepMind ``surface-distance``'s
  ``compute_robust_hausdorff``, which the BraTS 2023 evaluation uses: surface
  elements on the voxel-corner grid weighted by their area (MONAI's copy of
  its area table), the larger of the two directed area-weighted percentiles.
  It can differ from ``"max"`` by up to about a voxel.

For ``"max"`` and ``"pooled"`` percentiles use ``numpy.percentile``'s default
linear interpolation (the same as ``torch.quantile`` in MONAI) and voxel
surfaces are not weighted by surfel area.

Empty-mask conventions: both masks empty → ``0.0``; exactly one empty →
``nan`` (undefined; report summaries skip NaN and count how many they
skipped).

For speed both masks are cropped to the bounding box of their union plus a
one-voxel margin before eroding and running the distance transform. This does
not change the result: every surface voxel lies inside the box, Euclidean
distances between them do not depend on the crop, and erosion treats the
outside of the array as background exactly as the uncropped computation does.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import numpy as np
from monai.metrics.utils import get_code_to_measure_table
from numpy.typing import ArrayLike
from scipy import ndimage

from ._common import as_mask_pair, as_spacing

__all__ = ["HD95Method", "hd95", "surface_distances"]

HD95Method = Literal["max", "pooled", "surfel"]

_CROP_MARGIN = 1


def _union_bbox(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """Bounding box of a non-empty mask, grown by ``margin`` and clipped to the array."""
    slices = []
    for axis in range(mask.ndim):
        other_axes = tuple(a for a in range(mask.ndim) if a != axis)
        profile = np.any(mask, axis=other_axes) if other_axes else mask
        idx = np.flatnonzero(profile)
        lo = max(int(idx[0]) - margin, 0)
        hi = min(int(idx[-1]) + 1 + margin, mask.shape[axis])
        slices.append(slice(lo, hi))
    return tuple(slices)


def _surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels: ``mask XOR erode(mask)`` with face connectivity, outside = background."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    eroded = ndimage.binary_erosion(mask, structure=structure, border_value=0)
    return mask & ~eroded


def _distance_to(surface: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Euclidean distance in mm from every voxel to the nearest ``surface`` voxel.

    For isotropic spacing the unit-spacing transform is scaled instead of
    passing ``sampling`` (the same values up to rounding, about a third faster).
    """
    if all(s == spacing[0] for s in spacing):
        dist = ndimage.distance_transform_edt(~surface)
        dist *= spacing[0]
        return dist
    return ndimage.distance_transform_edt(~surface, sampling=spacing)


def surface_distances(
    pred_mask: ArrayLike,
    ref_mask: ArrayLike,
    spacing: float | Sequence[float] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm between two binary masks.

    Args:
        pred_mask: predicted binary mask.
        ref_mask: reference binary mask, same shape as ``pred_mask``.
        spacing: voxel size in mm, one value per axis (a scalar means isotropic).

    Returns:
        ``(d_pred_to_ref, d_ref_to_pred)``: 1-D float64 arrays with, for each
        surface voxel of the first mask, the distance to the nearest surface
        voxel of the second (in C order of the voxels). If either mask is empty
        both arrays are empty (distances to an empty surface are undefined).
    """
    pred, ref = as_mask_pair(pred_mask, ref_mask)
    sp = as_spacing(spacing, pred.ndim)
    empty = np.zeros(0, dtype=np.float64)
    if not pred.any() or not ref.any():
        return empty, empty.copy()
    box = _union_bbox(pred | ref, _CROP_MARGIN)
    surf_pred = _surface(pred[box])
    surf_ref = _surface(ref[box])
    d_pred_to_ref = np.asarray(_distance_to(surf_ref, sp)[surf_pred], dtype=np.float64)
    d_ref_to_pred = np.asarray(_distance_to(surf_pred, sp)[surf_ref], dtype=np.float64)
    return d_pred_to_ref, d_ref_to_pred


@functools.lru_cache(maxsize=32)
def _surfel_tables(spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Neighbourhood-code → surfel area (mm²) table and the code kernel, from MONAI's DeepMind port."""
    table, kernel = get_code_to_measure_table(spacing)
    table_np = np.asarray(table.cpu().numpy(), dtype=np.float64)
    kernel_np = np.asarray(kernel.cpu().numpy(), dtype=np.int16).reshape((2,) * len(spacing))
    return table_np, kernel_np


def _surfels(mask: np.ndarray, kernel: np.ndarray, full_code: int) -> tuple[np.ndarray, np.ndarray]:
    """Corner-grid surface points of a (padded) mask and their neighbourhood codes."""
    code = ndimage.correlate(mask.astype(np.int16), kernel, mode="constant", cval=0)
    border = (code != 0) & (code != full_code)
    return border, code


def _directed_robust(
    dist_to_other: np.ndarray, border: np.ndarray, code: np.ndarray, table: np.ndarray, percentile: float
) -> float:
    distances = dist_to_other[border]
    areas = table[code[border]]
    order = np.argsort(distances, kind="stable")
    distances, areas = distances[order], areas[order]
    cumulative = np.cumsum(areas) / np.sum(areas)
    idx = int(np.searchsorted(cumulative, percentile / 100.0))
    return float(distances[min(idx, distances.size - 1)])


def _surfel_hd95(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], percentile: float) -> float:
    """Robust Hausdorff distance of DeepMind ``surface-distance`` (both masks non-empty)."""
    if pred.ndim not in (2, 3):
        raise ValueError(f"method='surfel' needs 2-D or 3-D masks, got {pred.ndim}-D")
    table, kernel = _surfel_tables(spacing)
    full_code = len(table) - 1
    box = _union_bbox(pred | ref, 0)
    pred_c = np.pad(pred[box], 1)
    ref_c = np.pad(ref[box], 1)
    border_p, code_p = _surfels(pred_c, kernel, full_code)
    border_r, code_r = _surfels(ref_c, kernel, full_code)
    dist_to_p = ndimage.distance_transform_edt(~border_p, sampling=spacing)
    dist_to_r = ndimage.distance_transform_edt(~border_r, sampling=spacing)
    d_rp = _directed_robust(dist_to_p, border_r, code_r, table, percentile)
    d_pr = _directed_robust(dist_to_r, border_p, code_p, table, percentile)
    return max(d_rp, d_pr)


def hd95(
    pred_mask: ArrayLike,
    ref_mask: ArrayLike,
    spacing: float | Sequence[float] | np.ndarray,
    *,
    method: HD95Method = "max",
    percentile: float = 95.0,
) -> float:
    """95th-percentile Hausdorff distance in mm (see the module docstring for definitions).

    Args:
        pred_mask: predicted binary mask.
        ref_mask: reference binary mask, same shape as ``pred_mask``.
        spacing: voxel size in mm, one value per axis (a scalar means isotropic).
        method: ``"max"`` (default; max of the two directed percentiles, as
            MONAI and the WMH challenge), ``"pooled"`` (percentile of the
            union of both directed distance sets, as MedPy) or ``"surfel"``
            (DeepMind ``surface-distance``, as the BraTS 2023 code).
        percentile: the percentile in ``[0, 100]``; 100 gives the classic
            Hausdorff distance.

    Returns:
        The distance in mm. Both masks empty → ``0.0``; exactly one empty →
        ``nan``.
    """
    if method not in ("max", "pooled", "surfel"):
        raise ValueError(f"method must be 'max', 'pooled' or 'surfel', got {method!r}")
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    pred, ref = as_mask_pair(pred_mask, ref_mask)
    sp = as_spacing(spacing, pred.ndim)
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not has_pred and not has_ref:
        return 0.0
    if has_pred != has_ref:
        return float("nan")
    if method == "surfel":
        return _surfel_hd95(pred, ref, sp, percentile)
    d_pr, d_rp = surface_distances(pred, ref, sp)
    if method == "pooled":
        return float(np.percentile(np.concatenate([d_pr, d_rp]), percentile))
    return float(max(np.percentile(d_pr, percentile), np.percentile(d_rp, percentile)))
