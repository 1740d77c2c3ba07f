"""Voxel values of the input checks: an image's values (finite, not constant, some positive, none
huge), scanned in slabs, and a label's distinct integer values."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brainbundles.errors import InputError

__all__ = ["MAX_ABS_INTENSITY"]

#: the largest absolute intensity accepted in an image: MRI scanners store 12- to 16-bit magnitudes and
#: rescaled floats stay far below this; values like 1e30 are a broken conversion, not a scan
MAX_ABS_INTENSITY = 1e7

#: elements per slab when scanning voxel values (32 MiB as float64)
_SLAB_ELEMENTS = 1 << 22


def _slabs(channel: np.ndarray):
    """Views of a 3D array in slabs along its last axis, each about :data:`_SLAB_ELEMENTS` elements."""
    step = max(1, _SLAB_ELEMENTS // max(1, channel.shape[0] * channel.shape[1]))
    for z in range(0, channel.shape[2], step):
        yield channel[:, :, z : z + step]


def _check_image_values(path: str, data: np.ndarray, channel_names: Sequence[str]) -> None:
    """Finite, not constant, some positive and none huge, per channel; ``data`` is (X, Y, Z) or
    (X, Y, Z, C) after squeezing. One pass in slabs: no temporary is larger than a slab."""
    if data.dtype.kind == "c":
        raise InputError(f"{path}: image has complex values, expected a real-valued (magnitude) image")
    if data.ndim == 3:
        data = data[..., None]
    n_nan = n_inf = 0
    ranges = []
    for c in range(data.shape[3]):
        lo = hi = None
        for slab in _slabs(data[..., c]):
            if data.dtype.kind == "f":
                finite = np.isfinite(slab)
                if not finite.all():
                    nan = int(np.count_nonzero(np.isnan(slab)))
                    n_nan += nan
                    n_inf += int(slab.size - np.count_nonzero(finite)) - nan
                    continue
            s_lo, s_hi = slab.min(), slab.max()
            lo = s_lo if lo is None else min(lo, s_lo)
            hi = s_hi if hi is None else max(hi, s_hi)
        ranges.append((lo, hi))
    if n_nan or n_inf:
        parts = [f"{n} {what}" for n, what in ((n_nan, "NaN"), (n_inf, "Inf")) if n]
        raise InputError(
            f"{path}: contains {' and '.join(parts)} voxel{'s' if n_nan + n_inf > 1 else ''} "
            f"(non-finite values are not allowed in an image; {data.size} voxels in total)"
        )
    for c, (lo, hi) in enumerate(ranges):
        which = f"channel {c} ({channel_names[c]}) " if data.shape[3] > 1 else ""
        if lo == hi:
            if lo == 0:
                raise InputError(f"{path}: {which}image is all zero (an empty volume)")
            raise InputError(f"{path}: {which}image is constant (every voxel is {lo.item()!r})")
        if max(abs(float(lo)), abs(float(hi))) > MAX_ABS_INTENSITY:
            raise InputError(
                f"{path}: {which}image values range from {float(lo):.3g} to {float(hi):.3g}, beyond the "
                f"{MAX_ABS_INTENSITY:.0e} of any MRI intensity (a broken conversion or scaling?)"
            )
        if hi <= 0:
            raise InputError(
                f"{path}: {which}image has no positive voxel (values {float(lo):.3g} to {float(hi):.3g}); "
                "MRI magnitude images are not negative (an inverted, phase or difference image?)"
            )


def _label_values(path: str, data: np.ndarray) -> np.ndarray:
    """Sorted distinct integer values of a label volume; InputError for NaN/Inf or non-integer values."""
    if data.dtype.kind == "b":
        data = data.view(np.uint8)
    if data.dtype.kind in "fc":
        if data.dtype.kind == "c":
            raise InputError(f"{path}: label has complex values, expected integer labels")
        finite = np.isfinite(data)
        if not finite.all():
            n_bad = int(data.size - np.count_nonzero(finite))
            raise InputError(f"{path}: label contains {n_bad} NaN/Inf voxels, expected integer labels")
        frac = data != np.round(data)
        if frac.any():
            examples = np.unique(data[frac])[:5]
            raise InputError(
                f"{path}: label has {int(np.count_nonzero(frac))} non-integer voxel values "
                f"(e.g. {', '.join(f'{v:g}' for v in examples)}), expected integer labels"
            )
        lo, hi = float(data.min()), float(data.max())
        if lo < np.iinfo(np.int64).min or hi > np.iinfo(np.int64).max:
            raise InputError(f"{path}: label values out of integer range ({lo:g}..{hi:g})")
        data = data.astype(np.int64)
    if data.dtype.kind not in "iu":
        raise InputError(f"{path}: label has data type {data.dtype}, expected integer labels")
    lo, hi = int(data.min()), int(data.max())
    if hi - lo < 32:  # the normal case: a few comparisons are much faster than sorting or counting
        return np.asarray(
            [v for v in range(lo, hi + 1) if v in (lo, hi) or (data == v).any()], dtype=np.int64
        )
    if hi - lo < 1 << 20:  # counting is faster than sorting
        counts = np.bincount((data.ravel().astype(np.int64) - lo), minlength=hi - lo + 1)
        return np.flatnonzero(counts) + lo
    return np.unique(data)
