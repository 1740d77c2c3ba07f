"""Voxel grids of the input checks: a file's shape as a 3D volume (and its channels), affines compared
within :data:`AFFINE_ATOL_MM`, and how much of one grid's field of view another covers in world space."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brainbundles.errors import InputError

__all__ = ["AFFINE_ATOL_MM", "MIN_GRID_OVERLAP"]

#: tolerance (mm, absolute, no relative term) when comparing affines of channels and label
AFFINE_ATOL_MM = 1e-3


def _split_shape(path: str, shape: tuple[int, ...], what: str) -> tuple[tuple[int, int, int], int]:
    """(spatial shape, number of channels) of an image shape, or InputError when it is not a 3D volume.

    Trailing singleton axes beyond the third are dropped; a 4th axis holds channels; a 5D shape
    ``(X, Y, Z, 1, C)`` (NIfTI vector intent) is read as C channels.
    """
    dims = list(shape)
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if len(dims) == 5 and dims[3] == 1:
        dims = dims[:3] + [dims[4]]
    if len(dims) < 3:
        raise InputError(f"{path}: {what} is {len(dims)}D (shape {tuple(shape)}), expected a 3D volume")
    if len(dims) > 4:
        raise InputError(f"{path}: {what} is {len(dims)}D (shape {tuple(shape)}), expected a 3D volume")
    spatial = (int(dims[0]), int(dims[1]), int(dims[2]))
    if 1 in spatial:
        raise InputError(
            f"{path}: {what} is not 3D: shape {tuple(shape)} has a singleton spatial axis (a 2D slice), "
            "expected a 3D volume"
        )
    return spatial, int(dims[3]) if len(dims) == 4 else 1


def _affine_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def _same_affine(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.allclose(a, b, rtol=0.0, atol=AFFINE_ATOL_MM))


def _fmt_affine(a: np.ndarray) -> str:
    return np.array2string(
        np.asarray(a, dtype=np.float64)[:3], precision=4, suppress_small=True, separator=", "
    ).replace("\n", "")


def _world_box(shape: Sequence[int], affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The world-space (mm) bounding box of a grid's voxels, as (lower corner, upper corner)."""
    corners = np.array(
        [[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)]
    )
    world = (np.asarray(affine, dtype=np.float64) @ corners.T)[:3]
    return world.min(axis=1), world.max(axis=1)


def _overlap_fraction(
    shape: Sequence[int], affine: np.ndarray, ref_shape: Sequence[int], ref_affine: np.ndarray
) -> float:
    """Fraction of the reference grid's world bounding box that the other grid's box covers."""
    lo, hi = _world_box(shape, affine)
    rlo, rhi = _world_box(ref_shape, ref_affine)
    inter = np.clip(np.minimum(hi, rhi) - np.maximum(lo, rlo), 0.0, None)
    return float(np.prod(inter) / max(np.prod(rhi - rlo), 1e-9))


#: least fraction of the first channel's field of view that a channel on another grid must cover
MIN_GRID_OVERLAP = 0.5
