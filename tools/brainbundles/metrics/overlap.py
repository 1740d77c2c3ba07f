"""Overlap and volume metrics on binary masks.

All functions take masks as arrays of the same shape; any non-boolean array is
binarised as ``mask != 0``. Conventions for empty masks are documented on each
function and are relied on by :mod:`brainbundles.metrics.report`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from ._common import as_mask, as_mask_pair, as_spacing

__all__ = ["avd", "dice", "volume_ml"]


def dice(pred_mask: ArrayLike, ref_mask: ArrayLike) -> float:
    """Dice similarity coefficient ``2|P ∩ R| / (|P| + |R|)``.

    Args:
        pred_mask: predicted binary mask.
        ref_mask: reference binary mask, same shape as ``pred_mask``.

    Returns:
        Dice in ``[0, 1]``. Conventions: both masks empty → ``1.0`` (the
        prediction agrees perfectly with an empty reference); exactly one empty
        → ``0.0``. This differs from MONAI's ``compute_dice`` default
        (``ignore_empty=True``), which returns NaN whenever the reference is
        empty.
    """
    pred, ref = as_mask_pair(pred_mask, ref_mask)
    n_pred = int(np.count_nonzero(pred))
    n_ref = int(np.count_nonzero(ref))
    if n_pred + n_ref == 0:
        return 1.0
    n_both = int(np.count_nonzero(pred & ref))
    return 2.0 * n_both / (n_pred + n_ref)


def avd(pred_mask: ArrayLike, ref_mask: ArrayLike) -> float:
    """Absolute volume difference in percent, ``|V_pred - V_ref| / V_ref * 100``.

    The voxel volume cancels, so no spacing is needed.

    Args:
        pred_mask: predicted binary mask.
        ref_mask: reference binary mask, same shape as ``pred_mask``.

    Returns:
        AVD in percent (unbounded above; an empty prediction of a non-empty
        reference gives ``100.0``). Conventions: reference empty and prediction
        empty → ``0.0``; reference empty and prediction non-empty → ``nan``.
    """
    pred, ref = as_mask_pair(pred_mask, ref_mask)
    n_pred = int(np.count_nonzero(pred))
    n_ref = int(np.count_nonzero(ref))
    if n_ref == 0:
        return 0.0 if n_pred == 0 else float("nan")
    return abs(n_pred - n_ref) / n_ref * 100.0


def volume_ml(mask: ArrayLike, spacing: float | Sequence[float] | np.ndarray) -> float:
    """Volume of a binary mask in millilitres (cm³).

    Args:
        mask: binary mask.
        spacing: voxel size in mm, one value per axis (a scalar means isotropic).

    Returns:
        ``count(mask) * prod(spacing) / 1000``.
    """
    arr = as_mask(mask, "mask")
    sp = as_spacing(spacing, arr.ndim)
    return int(np.count_nonzero(arr)) * float(np.prod(sp)) / 1000.0
