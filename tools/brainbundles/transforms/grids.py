"""Channels acquired on different voxel grids: a clinical thick-slice FLAIR (e.g. 0.5 x 0.5 x 7.5 mm)
with a 1 mm T1 of another field of view and orientation.

MONAI's ``LoadImaged`` stacks the channel files of a case, which needs one grid. A bundle that accepts
several grids puts :class:`DeferOtherGridsd` before ``LoadImaged`` and :class:`ResampleDeferredd` after
its ``Orientationd`` / ``Spacingd``:

1. the first channel (the *reference*, whose grid the output is written on) is loaded and resampled to
   the working grid by the bundle's own traced transforms, so ``Invertd`` brings the prediction back
   to the reference's native grid;
2. every channel on another grid is resampled once, in world coordinates, straight from its own file
   onto that working grid (no detour through the reference's coarse slices), and put back at its place
   in the channel order.

Cases whose channels share one grid load exactly as before (both transforms then do nothing).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import LoadImage, MapTransform, ResampleToMatch

__all__ = ["DeferOtherGridsd", "ResampleDeferredd"]

#: tolerance (mm) when deciding that two channel files share a grid (as the input checks)
_ATOL_MM = 1e-3


def _grid(path: str | os.PathLike) -> tuple[tuple[int, ...], np.ndarray]:
    img = nib.load(os.fspath(path))  # header only
    return tuple(int(n) for n in img.shape[:3]), np.asarray(img.affine, dtype=np.float64)


class DeferOtherGridsd(MapTransform):
    """Before ``LoadImaged``: when the channel files of ``keys`` (a list of paths, the first being the
    reference) are not all on the reference's grid, keep only the reference in ``keys`` and move the
    others to ``<prefix><key>`` as ``[(channel index, path), ...]`` for :class:`ResampleDeferredd` (a prefix:
    MONAI's spatial transforms take ``<key>_*`` entries for metadata dicts)."""

    def __init__(
        self, keys: KeysCollection = "image", prefix: str = "deferred_", allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.prefix = prefix

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            paths = d[key]
            if isinstance(paths, str | os.PathLike) or len(paths) < 2:
                continue
            shape, affine = _grid(paths[0])
            others = [_grid(p) for p in paths[1:]]
            if all(s == shape and np.allclose(a, affine, rtol=0.0, atol=_ATOL_MM) for s, a in others):
                continue
            d[key] = [paths[0]]
            d[f"{self.prefix}{key}"] = [(i, os.fspath(p)) for i, p in enumerate(paths) if i > 0]
        return d


class ResampleDeferredd(MapTransform):
    """After the reference channel of ``keys`` is on the working grid: load each channel deferred by
    :class:`DeferOtherGridsd`, resample it in world coordinates onto that grid (``mode``, zeros outside
    its field of view) and insert it at its channel index. The image keeps the reference's metadata and
    transform history."""

    def __init__(
        self,
        keys: KeysCollection = "image",
        prefix: str = "deferred_",
        mode: str = "bilinear",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.prefix = prefix
        self.loader = LoadImage(reader="NibabelReader", image_only=True, ensure_channel_first=True)
        self.resample = ResampleToMatch(mode=mode, padding_mode="zeros")

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            deferred = d.pop(f"{self.prefix}{key}", None)
            if not deferred:
                continue
            img = d[key]
            if not isinstance(img, MetaTensor):
                raise TypeError(f"{key}: expected a MetaTensor (with an affine) to resample channels onto")
            channels = list(img.as_tensor())
            for index, path in sorted(deferred):
                moved = self.resample(self.loader(path), img_dst=img)
                channels.insert(index, torch.as_tensor(moved.as_tensor()[0], dtype=img.dtype))
            d[key] = MetaTensor(
                torch.stack(channels), meta=img.meta, applied_operations=img.applied_operations
            )
        return d
